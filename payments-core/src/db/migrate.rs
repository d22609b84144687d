//! The schema, brought up to date: the versioned migrations
//! (`migrations/versioned/`: tables, constraints, data moves, the drop of a
//! function whose signature changed), then the SQL functions, one file
//! each (`migrations/functions/`), each applied again whenever its text
//! changes (Flyway's repeatable migrations). Both run under one advisory
//! lock, so replicas starting together migrate once.
//!
//! Mechanism and policy: the functions hold the writes' guards (what a
//! statement may change, under which lock); the service decides what to
//! write (`crate::service`).

use std::sync::Arc;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::result::Error as DieselError;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use sha2::{Digest, Sha256};

use super::DbError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/versioned");

/// Held while migrations run, so replicas starting together migrate once.
const MIGRATION_LOCK_KEY: i64 = 0x7061_796d_656e_7473; // "payments"

/// One SQL function and the one file that makes it.
#[derive(Debug, Clone, Copy)]
pub struct SqlFunction {
    pub name: &'static str,
    /// `CREATE OR REPLACE FUNCTION …`, as the file holds it.
    pub sql: &'static str,
}

macro_rules! sql_function {
    ($name:literal) => {
        SqlFunction {
            name: $name,
            sql: include_str!(concat!("../../../migrations/functions/", $name, ".sql")),
        }
    };
}

/// Every file of `migrations/functions/`, in the order they are applied
/// (a test checks the list and the directory agree).
pub const FUNCTIONS: &[SqlFunction] = &[
    sql_function!("apply_stripe_event"),
    sql_function!("apply_clawback"),
    sql_function!("spend_credits"),
    sql_function!("spend_credits_batch"),
    sql_function!("reverse_spend"),
    sql_function!("adjust_balance"),
];

impl SqlFunction {
    /// The hex SHA-256 of the file, as `schema_functions` records it.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

#[derive(diesel::QueryableByName)]
struct Changed {
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[allow(dead_code)]
    name: String,
}

/// Applies pending migrations, then every function whose file changed,
/// under an advisory lock; returns what was applied: the versions, then
/// `functions/<name>` for each function (re)made.
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, DbError> {
    let conn =
        <AsyncPgConnection as diesel_async::AsyncConnection>::establish(database_url).await?;
    let mut conn: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
    tokio::task::spawn_blocking(move || {
        let lock = format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})");
        diesel::RunQueryDsl::execute(diesel::sql_query(lock), &mut conn)?;
        let applied = migrate(&mut conn);
        let unlock = format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})");
        diesel::RunQueryDsl::execute(diesel::sql_query(unlock), &mut conn)?;
        applied
    })
    .await
    .map_err(|err| DbError::Unavailable(format!("migration task failed: {err}")))?
}

fn migrate(conn: &mut AsyncConnectionWrapper<AsyncPgConnection>) -> Result<Vec<String>, DbError> {
    let mut applied: Vec<String> = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|err| DbError::Query(Arc::new(DieselError::QueryBuilderError(err))))?;
    // All of them or none: a file that fails leaves every function as it was.
    let functions = conn.transaction(|conn| {
        let mut made = Vec::new();
        for function in FUNCTIONS {
            let changed: Vec<Changed> = diesel::RunQueryDsl::load(
                diesel::sql_query(
                    "INSERT INTO schema_functions (name, sha256) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE
                        SET sha256 = excluded.sha256, applied_at = now()
                      WHERE schema_functions.sha256 <> excluded.sha256
                     RETURNING name",
                )
                .bind::<diesel::sql_types::Text, _>(function.name)
                .bind::<diesel::sql_types::Text, _>(function.sha256()),
                conn,
            )?;
            if !changed.is_empty() {
                conn.batch_execute(function.sql)?;
                made.push(format!("functions/{}", function.name));
            }
        }
        Ok::<_, DieselError>(made)
    })?;
    applied.extend(functions);
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_file_is_listed_once_and_makes_its_function() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/functions");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut listed: Vec<String> = FUNCTIONS
            .iter()
            .map(|f| format!("{}.sql", f.name))
            .collect();
        listed.sort();
        assert_eq!(files, listed);
        for function in FUNCTIONS {
            let made = format!("CREATE OR REPLACE FUNCTION {}(", function.name);
            assert_eq!(
                function.sql.matches("CREATE OR REPLACE FUNCTION").count(),
                1,
                "{}",
                function.name
            );
            assert!(
                function.sql.contains(&made),
                "{} does not make {}",
                function.name,
                function.name
            );
            assert_eq!(function.sha256().len(), 64);
        }
    }
}
