//! The rules of money, in one place for both binaries: amounts in integer
//! cents (read exactly, never through a float), the tiers sold, user ids and
//! idempotency keys, the payment status machine, and the shape of a Stripe
//! event. No database, no server, no network: `payments-core` builds the use
//! cases on it, and the edge reads the same rules instead of copying them.

mod ids;
mod ledger;
mod money;
#[cfg(feature = "diesel")]
mod sql;
mod status;
pub mod stripe_event;
pub mod text;
mod tier;
pub mod top_up;

pub use ids::{Actor, ClientIdempotencyKey, Reason, UserId};
pub use ledger::LedgerKind;
pub use money::{Cents, Currency, UsdAmountError};
pub use status::{BackwardsMove, PaymentStatus};
pub use tier::{NotATier, Tier, Tiers};

/// A value refused at the boundary, with a message fit for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);
