//! The payments core: domain types, Postgres state, the Stripe client and the
//! use cases (create an intent, apply a Stripe event, read a balance).

pub mod db;
mod error;
pub mod metrics;
mod service;
pub mod stripe;
pub mod watch;

/// The rules of money, shared with the edge.
pub use payments_domain as domain;

pub use error::Error;
pub use service::{
    ACTED_ON_EVENT_TYPES, Adjusted, Balance, BalanceWatch, CALLS_PER_SYNC, CreatedIntent,
    DEFAULT_PAGE_SIZE, DEFAULT_SYNC_CALLS_PER_SECOND, EventOutcome, FRESH_FOR, LedgerEntry,
    MAX_PAGE_SIZE, OpenIntentLimit, Page, PaymentsService, ReconcileSettings, Reconciled, Retried,
    Spent, Synced, TopUpOptions, retry_pause,
};
