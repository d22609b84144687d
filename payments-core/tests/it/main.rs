//! One test binary for payments-core against a real Postgres (a fresh database per test) and the Stripe sandbox at the HTTP boundary: a module per subject
//! (linked once, not once per file).

mod backfill;
mod cancellation;
mod clawbacks;
mod coalescing;
mod credit_log;
mod events;
mod history;
mod owners;
mod properties;
mod reconciliation;
mod schema;
mod schema_files;
mod spend_model;
mod spends;
mod stripe_limits;
