//! Pure domain types: no database, no wire formats.

mod ids;
mod money;
mod status;
mod tier;

pub use ids::{ClientIdempotencyKey, UserId};
pub use money::{Cents, Currency};
pub use status::{BackwardsMove, PaymentStatus};
pub use tier::{Tier, Tiers};

/// A value refused at the boundary, with a message fit for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);
