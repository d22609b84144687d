//! The developer's tools for the whole stack: the demo (the README's main
//! command: every process on loopback, one top-up walked end to end, the web
//! client served) and the benchmark, and what they share with the tests:
//! starting and stopping the binaries, the local secrets and key set, the
//! web client's development server, a small HTTP client. Development only.

pub mod http;
pub mod local;
pub mod process;
pub mod web;
