use crate::db::DbError;
use crate::domain::{InvalidInput, NotATier};
use crate::stripe::GatewayError;

/// Every way a use case can fail, as a caller needs to tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is wrong; repeating it will not help.
    #[error("{0}")]
    InvalidArgument(String),
    /// The amount is not one of the tiers sold (the error names them).
    #[error(transparent)]
    NotATier(#[from] NotATier),
    /// The idempotency key was already used for a different request.
    #[error("{0}")]
    IdempotencyConflict(String),
    /// The user holds as many unpaid intents as allowed; one must be paid
    /// or abandoned (cancelled) before another is created.
    #[error("{0}")]
    TooManyOpenIntents(String),
    /// Postgres or Stripe cannot be reached right now; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a broken invariant; details are logged, not returned.
    #[error("{0}")]
    Internal(String),
}

impl From<InvalidInput> for Error {
    fn from(err: InvalidInput) -> Self {
        Error::InvalidArgument(err.0)
    }
}

impl From<DbError> for Error {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(reason) => {
                Error::Unavailable(format!("database unavailable: {reason}"))
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        DbError::from(err).into()
    }
}

impl From<GatewayError> for Error {
    fn from(err: GatewayError) -> Self {
        match err {
            GatewayError::Unavailable(_) => Error::Unavailable(err.to_string()),
            GatewayError::IdempotencyConflict(_) => Error::IdempotencyConflict(err.to_string()),
            GatewayError::NotFound | GatewayError::Rejected(_) => Error::Internal(err.to_string()),
        }
    }
}
