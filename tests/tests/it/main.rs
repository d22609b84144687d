//! One test binary for the whole stack: the built binaries as processes, the sandbox, the browser-facing edge: a module per subject
//! (linked once, not once per file).
//! `tests/logs.rs` stays a binary of its own: it installs the global log
//! subscriber.

mod checklist;
mod faults;
mod hostile;
mod house;
mod openapi;
mod operate;
mod stripe_js;
mod tls;
