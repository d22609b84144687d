//! Postgres: the schema, row types, small query functions, the pool and the
//! embedded migrations.

pub mod adjustments;
pub mod apply;
pub mod balance_reads;
pub mod balances;
pub mod clawbacks;
pub mod coalesce;
pub mod deployment;
pub mod history;
pub mod intent_owners;
pub mod keyed_moves;
pub mod ledger;
pub mod migrate;
pub mod parked_events;
pub mod payment_inserts;
pub mod payments;
pub mod reconciliation;
pub mod schema;
pub mod spend_batches;
pub mod spends;
pub mod stripe_events;

use std::sync::Arc;
use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, PoolError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// Writes `call` (`SELECT … FROM some_function(`), then each value bound as
/// its SQL type, comma-separated, then `)`: the body of a `walk_ast` for a
/// call of one of the money functions (`migrations/functions/` says what each does).
macro_rules! push_call {
    ($out:ident, $call:expr, $first_type:ty => $first:expr $(, $type:ty => $value:expr)* $(,)?) => {
        let mut out = $out;
        out.push_sql($call);
        out.push_bind_param::<$first_type, _>($first)?;
        $(
            out.push_sql(", ");
            out.push_bind_param::<$type, _>($value)?;
        )*
        out.push_sql(")");
    };
}
pub(crate) use push_call;

/// A struct holding the arguments of one call of a money function, and the
/// diesel query that sends it: `call` (`SELECT … FROM some_function(`), the
/// fields bound in their order as their SQL types, answering a row of
/// `output` types. Its query id is static, so diesel prepares it once per
/// connection.
macro_rules! function_call {
    (
        $name:ident = $call:expr => ($($output:ty),+ $(,)?) {
            $($field:ident: $field_type:ty => $sql_type:ty),+ $(,)?
        }
    ) => {
        // Each call borrows its text arguments: `'a`.
        struct $name<'a> {
            $($field: $field_type,)+
        }

        impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for $name<'_> {
            fn walk_ast<'b>(
                &'b self,
                out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
            ) -> diesel::QueryResult<()> {
                $crate::db::push_call!(out, $call, $($sql_type => &self.$field),+);
                Ok(())
            }
        }

        impl diesel::query_builder::Query for $name<'_> {
            type SqlType = ($($output,)+);
        }

        impl diesel::query_builder::QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
    };
}
pub(crate) use function_call;

pub type DbPool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;
pub type PooledConnection<'a> =
    bb8::PooledConnection<'a, AsyncDieselConnectionManager<AsyncPgConnection>>;

/// A pooled connection that, when dropped inside a transaction (the call
/// was cancelled: its client went away or its deadline passed), asks
/// Postgres to cancel the statement in progress. Without it the backend
/// keeps waiting (on a row lock, say) for a caller that is gone; the pool
/// then discards the connection, as it does any left mid-transaction.
/// Outside a transaction the drop cannot tell whether a statement is in
/// flight: work that may wait on a lock runs under [`CancelOnDrop::cancelling`].
pub struct CancelOnDrop<'a> {
    conn: PooledConnection<'a>,
    /// Inside [`CancelOnDrop::cancelling`].
    working: bool,
}

impl<'a> CancelOnDrop<'a> {
    pub fn new(conn: PooledConnection<'a>) -> Self {
        Self {
            conn,
            working: false,
        }
    }

    /// Runs `work` (statements outside a transaction, such as a write that
    /// waits for a row lock); if the call is dropped before it finishes, the
    /// statement in progress is cancelled, as inside a transaction.
    pub async fn cancelling<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut AsyncPgConnection) -> T,
    ) -> T {
        self.working = true;
        let result = work(&mut self.conn).await;
        self.working = false;
        result
    }
}

impl std::ops::Deref for CancelOnDrop<'_> {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for CancelOnDrop<'_> {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        use diesel::connection::TransactionManagerStatus;
        use diesel_async::{AnsiTransactionManager, TransactionManager};
        let conn: &mut AsyncPgConnection = &mut self.conn;
        let in_transaction = match AnsiTransactionManager::transaction_manager_status_mut(conn) {
            TransactionManagerStatus::Valid(status) => status.transaction_depth().is_some(),
            TransactionManagerStatus::InError => true,
        };
        if !in_transaction && !self.working {
            return;
        }
        let cancel = conn.cancel_token();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tracing::info!("call dropped while its statement ran: cancelling the statement");
            runtime.spawn(async move {
                if let Err(err) = cancel.cancel_query(tokio_postgres::NoTls).await {
                    tracing::warn!(error = %err, "could not cancel the abandoned statement");
                }
            });
        }
    }
}

/// How the errors of SQLSTATE classes 57 (operator intervention: shutdown,
/// restart, cancel) and 08 (connection exception) begin: the server, or a
/// Citus worker behind the coordinator, is going away; the query is not
/// wrong. Matched on the message because diesel-async 0.9 keeps the
/// SQLSTATE of these to itself (its error wrapper is private;
/// docs/choices.md).
const SERVER_GOING_AWAY: [&str; 5] = [
    "terminating connection",
    "the database system is",
    "canceling statement due to",
    "server closed the connection",
    // Citus, SQLSTATE 08006: "connection to the remote node postgres@host:port failed …".
    "connection to the remote node",
];

/// What the database layer answers; the use cases turn it into their own
/// `Error`. Cloneable, so one failed batch answers each of its callers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// Postgres cannot be reached, or the connection broke.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint refused the write.
    #[error("conflicting row: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Query(#[source] Arc<DieselError>),
    /// The database answered something its functions never answer.
    #[error("unexpected answer from the database: {0}")]
    Unexpected(String),
}

impl From<DieselError> for DbError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                DbError::Conflict(info.message().to_owned())
            }
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => DbError::Unavailable(info.message().to_owned()),
            // SQLSTATE classes 57 and 08: see SERVER_GOING_AWAY.
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if SERVER_GOING_AWAY
                    .iter()
                    .any(|m| info.message().starts_with(m)) =>
            {
                DbError::Unavailable(info.message().to_owned())
            }
            DieselError::BrokenTransactionManager => {
                DbError::Unavailable("the connection's transaction state broke".into())
            }
            other => DbError::Query(Arc::new(other)),
        }
    }
}

impl From<bb8::RunError<PoolError>> for DbError {
    fn from(err: bb8::RunError<PoolError>) -> Self {
        DbError::Unavailable(err.to_string())
    }
}

impl From<diesel::ConnectionError> for DbError {
    fn from(err: diesel::ConnectionError) -> Self {
        DbError::Unavailable(err.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_size: u32,
    /// How long a request waits for a connection before answering UNAVAILABLE.
    pub connection_timeout: Duration,
    pub session: SessionLimits,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 16,
            connection_timeout: Duration::from_secs(5),
            session: SessionLimits::default(),
        }
    }
}

/// Set on every pooled connection, so no call (nor a call whose client has
/// gone) keeps a backend busy or a row locked for long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// `statement_timeout`: one statement at most this long.
    pub statement_timeout: Duration,
    /// `lock_timeout`: waiting for a row lock at most this long.
    pub lock_timeout: Duration,
    /// `idle_in_transaction_session_timeout`: a transaction left open by a
    /// vanished caller is rolled back and its locks released.
    pub idle_in_transaction_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(2),
            idle_in_transaction_timeout: Duration::from_secs(10),
        }
    }
}

/// While a statement runs, Postgres checks this often whether the client is
/// still connected, and stops the statement when it is not: the backend of
/// a call dropped mid-statement (its connection dropped) stops at once.
const CLIENT_CONNECTION_CHECK: Duration = Duration::from_millis(500);

impl SessionLimits {
    fn set_statement(&self) -> String {
        format!(
            "SET statement_timeout = {}; SET lock_timeout = {}; \
             SET idle_in_transaction_session_timeout = {}; \
             SET client_connection_check_interval = {}",
            self.statement_timeout.as_millis(),
            self.lock_timeout.as_millis(),
            self.idle_in_transaction_timeout.as_millis(),
            CLIENT_CONNECTION_CHECK.as_millis()
        )
    }
}

pub async fn connect_pool(database_url: &str, config: &PoolConfig) -> Result<DbPool, DbError> {
    let set_limits = config.session.set_statement();
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.custom_setup = Box::new(move |url| {
        let set_limits = set_limits.clone();
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.batch_execute(&set_limits)
                .await
                .map_err(|err| diesel::ConnectionError::BadConnection(err.to_string()))?;
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        database_url,
        manager_config,
    );
    bb8::Pool::builder()
        .max_size(config.max_size)
        .connection_timeout(config.connection_timeout)
        // No ping per checkout (a round trip on every call): a connection
        // broken by a database restart fails its call, is found broken and
        // dropped, and the pool connects anew.
        .test_on_check_out(false)
        .build(manager)
        .await
        .map_err(|err| DbError::Unavailable(err.to_string()))
}

/// Whether the database is a Citus cluster's (the `citus` extension is
/// there): its writes must then each stay on one worker.
pub async fn is_citus(pool: &DbPool) -> Result<bool, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        citus: bool,
    }
    let mut conn = pool.get().await?;
    let found: Found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus",
    )
    .get_result(&mut conn)
    .await?;
    Ok(found.citus)
}

/// Creates the database named in `database_url` when it does not exist, by
/// connecting to the server's `postgres` database.
pub async fn create_database_if_missing(database_url: &str) -> Result<(), DbError> {
    let err = match AsyncPgConnection::establish(database_url).await {
        Ok(_) => return Ok(()),
        Err(err) => err,
    };
    if !err.to_string().contains("does not exist") {
        return Err(err.into());
    }
    let (maintenance_url, name) = maintenance_url(database_url)?;
    tracing::info!(database = %name, "creating the database");
    let mut conn = AsyncPgConnection::establish(&maintenance_url).await?;
    let created = diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name)))
        .execute(&mut conn)
        .await;
    match created {
        // Another replica created it first (duplicate_database).
        Err(DieselError::DatabaseError(_, info)) if info.message().contains("already exists") => {
            Ok(())
        }
        Err(err) => Err(err.into()),
        Ok(_) => Ok(()),
    }
}

/// The URL of the same server's `postgres` database, and the database name of `database_url`.
pub fn maintenance_url(database_url: &str) -> Result<(String, String), DbError> {
    let mut url = url::Url::parse(database_url)
        .map_err(|err| DbError::Unavailable(format!("DATABASE_URL is not a URL: {err}")))?;
    let name = url.path().trim_start_matches('/').to_owned();
    let name = percent_encoding::percent_decode_str(&name)
        .decode_utf8_lossy()
        .into_owned();
    if name.is_empty() {
        return Err(DbError::Unavailable(
            "DATABASE_URL names no database".into(),
        ));
    }
    url.set_path("/postgres");
    Ok((url.into(), name))
}

/// A SQL identifier in double quotes, safe for any name.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_url_points_at_the_postgres_database() {
        let (url, name) =
            maintenance_url("postgres://u:p@127.0.0.1:5432/pay%20ments?sslmode=disable").unwrap();
        assert_eq!(
            url,
            "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable"
        );
        assert_eq!(name, "pay ments");
        assert!(maintenance_url("postgres://127.0.0.1:5432").is_err());
        assert!(maintenance_url("not a url").is_err());
    }

    #[test]
    fn connection_failures_are_unavailable_and_query_failures_are_not() {
        let error =
            |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        for (kind, message) in [
            (DatabaseErrorKind::UnableToSendCommand, "connection closed"),
            (DatabaseErrorKind::ClosedConnection, "closed"),
            (
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            (
                DatabaseErrorKind::Unknown,
                "the database system is shutting down",
            ),
            (
                DatabaseErrorKind::Unknown,
                "canceling statement due to statement timeout",
            ),
            // As Citus 13.2 answered with a worker stopped (checked by hand).
            (
                DatabaseErrorKind::Unknown,
                "connection to the remote node postgres@127.0.0.1:9702 failed with the following error: Connection refused",
            ),
        ] {
            assert!(
                matches!(DbError::from(error(kind, message)), DbError::Unavailable(_)),
                "{message}"
            );
        }
        assert!(matches!(
            DbError::from(error(DatabaseErrorKind::UniqueViolation, "duplicate key")),
            DbError::Conflict(_)
        ));
        assert!(matches!(
            DbError::from(error(
                DatabaseErrorKind::Unknown,
                "relation \"payments\" does not exist"
            )),
            DbError::Query(_)
        ));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("payments"), "\"payments\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
