use std::sync::Arc;

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
    /// The balance is below what was asked; nothing was written.
    #[error("the balance of {balance_cents} cents is below the {asked_cents} cents asked")]
    InsufficientCredits {
        balance_cents: i64,
        asked_cents: i64,
    },
    /// The process holds as many balance watches as it may.
    #[error("{0}")]
    TooManyWatchers(String),
    /// What the request names does not exist for this user.
    #[error("{0}")]
    NotFound(String),
    /// Too many calls of this kind right now (syncs past their budget of
    /// Stripe calls); nothing was done. Retry after `retry_after_secs`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u32,
    },
    /// Postgres or Stripe cannot be reached right now; retrying may help.
    #[error(transparent)]
    Unavailable(Cause),
    /// A bug or a broken invariant; details are logged, not returned.
    #[error(transparent)]
    Internal(Cause),
    /// A Stripe event failed for a reason that will not go away by itself
    /// and was parked (`service::parked`): it is retried with backoff, and
    /// an operator sees it (`ListParkedEvents`). The cause is the failure.
    #[error("the event could not be applied and was parked: {0}")]
    EventParked(Cause),
}

impl Error {
    /// Whether trying again later may succeed with nothing changed: a
    /// dependency down, a payment that kept changing. Anything else (a
    /// Stripe object the service cannot read, a request Stripe refuses, a
    /// row the database refuses) needs a fix first.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// What went wrong, for the log: a message, and the error that caused it
/// (a database or Stripe error, kept whole rather than flattened to text).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Cause {
    pub message: String,
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// The error's own message, with the error kept as the source.
    pub fn from_error(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: source.to_string(),
            source: Some(Arc::new(source)),
        }
    }

    /// Whether the first source is an `E` (which dependency failed).
    pub fn source_is<E: std::error::Error + 'static>(&self) -> bool {
        self.source
            .as_deref()
            .is_some_and(|source| (source as &dyn std::error::Error).is::<E>())
    }

    /// The message and what each source adds to it, `: `-separated, for a
    /// log line (a source whose text the line holds already adds nothing).
    pub fn chain(&self) -> String {
        let mut text = self.message.clone();
        let mut next = self.source.as_deref().map(|s| s as &dyn std::error::Error);
        while let Some(source) = next {
            let said = source.to_string();
            if !text.contains(&said) {
                text.push_str(": ");
                text.push_str(&said);
            }
            next = source.source();
        }
        text
    }
}

/// Two causes are equal when they say the same: a source is for the log.
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Cause {}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self {
            message,
            source: None,
        }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

impl From<InvalidInput> for Error {
    fn from(err: InvalidInput) -> Self {
        Error::InvalidArgument(err.0)
    }
}

impl From<DbError> for Error {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(_) => Error::Unavailable(Cause::from_error(err)),
            other => Error::Internal(Cause::from_error(other)),
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
            GatewayError::Unavailable(_) => Error::Unavailable(Cause::from_error(err)),
            GatewayError::IdempotencyConflict(_) => Error::IdempotencyConflict(err.to_string()),
            GatewayError::NotFound
            | GatewayError::Rejected(_)
            | GatewayError::UnexpectedState(_)
            | GatewayError::Undecodable { .. } => Error::Internal(Cause::from_error(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_keeps_its_source() {
        let err = Error::from(DbError::Unavailable("connection refused".into()));
        let Error::Unavailable(cause) = &err else {
            panic!("{err:?}")
        };
        assert!(std::error::Error::source(cause).is_some());
        assert!(cause.source_is::<DbError>());
        assert!(!cause.source_is::<GatewayError>());
        assert_eq!(err.to_string(), "database unavailable: connection refused");
        assert_eq!(cause.chain(), "database unavailable: connection refused");

        let query = diesel::result::Error::QueryBuilderError("bad query".into());
        let Error::Internal(cause) = Error::from(query) else {
            panic!("a query error is internal")
        };
        assert!(cause.chain().contains("bad query"), "{}", cause.chain());
        assert!(std::error::Error::source(&cause).is_some());
    }
}
