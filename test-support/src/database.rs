//! A fresh database per test, created from a template database.
//!
//! The template is migrated once per set of migrations: its name carries a
//! hash of `migrations/`, it is built under an advisory lock (so test
//! processes started together build it once) under a temporary name, and
//! renamed when complete. Each test's database is then a `CREATE DATABASE
//! … TEMPLATE`, a file copy, instead of running every migration again.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use payments_core::db::{self, DbPool, PoolConfig};
use sha2::{Digest, Sha256};

/// The Postgres server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Held while a template is built: one builder per server at a time.
const TEMPLATE_LOCK_KEY: i64 = 0x7465_6d70_6c61_7465; // "template"

/// A database of its own for one test, migrated, dropped when the value is.
pub struct TestDatabase {
    pub url: String,
    name: String,
    maintenance_url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        Self::create_on(&server_url()).await
    }

    /// A fresh database on the server of `server_url` (any database there).
    pub async fn create_on(server_url: &str) -> Self {
        let (maintenance_url, _) = db::maintenance_url(server_url).expect("server URL");
        let name = format!("payments_test_{}", uuid::Uuid::new_v4().simple());
        if crate::citus::enabled() {
            crate::citus::create(&maintenance_url, &name).await;
            return Self {
                url: database_url(&maintenance_url, &name),
                name,
                maintenance_url,
            };
        }
        let mut conn = AsyncPgConnection::establish(&maintenance_url)
            .await
            .expect("connect to the maintenance database (is Postgres running?)");
        let template = template(&mut conn, &maintenance_url).await;
        diesel::sql_query(format!(
            "CREATE DATABASE {} TEMPLATE {}",
            db::quote_ident(&name),
            db::quote_ident(&template)
        ))
        .execute(&mut conn)
        .await
        .expect("create the test database from the template");
        Self {
            url: database_url(&maintenance_url, &name),
            name,
            maintenance_url,
        }
    }

    /// A database with nothing in it, not even the migrations (the
    /// upgrade tests load an old schema into one).
    pub async fn create_empty() -> Self {
        let (maintenance_url, _) = db::maintenance_url(&server_url()).expect("server URL");
        let name = format!("payments_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(&maintenance_url)
            .await
            .expect("connect to the maintenance database (is Postgres running?)");
        diesel::sql_query(format!("CREATE DATABASE {}", db::quote_ident(&name)))
            .execute(&mut conn)
            .await
            .expect("create an empty test database");
        Self {
            url: database_url(&maintenance_url, &name),
            name,
            maintenance_url,
        }
    }

    pub async fn pool(&self) -> DbPool {
        self.pool_with(PoolConfig {
            max_size: 8,
            connection_timeout: Duration::from_secs(2),
            ..PoolConfig::default()
        })
        .await
    }

    pub async fn pool_with(&self, config: PoolConfig) -> DbPool {
        db::connect_pool(&self.url, &config).await.expect("pool")
    }

    /// Drops the database now, under whatever still uses it (an outage).
    pub async fn drop_in_use(&self) {
        let mut conn = AsyncPgConnection::establish(&self.maintenance_url)
            .await
            .expect("connect to the maintenance database");
        diesel::sql_query(self.drop_sql())
            .execute(&mut conn)
            .await
            .expect("drop the test database");
    }

    fn drop_sql(&self) -> String {
        format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            db::quote_ident(&self.name)
        )
    }

    pub async fn connection(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let maintenance_url = self.maintenance_url.clone();
        let sql = self.drop_sql();
        let name = self.name.clone();
        // Drop may run inside a runtime; a thread of its own can block.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                if crate::citus::enabled() {
                    return crate::citus::drop(&maintenance_url, &name).await;
                }
                let mut conn = AsyncPgConnection::establish(&maintenance_url).await.ok()?;
                diesel::sql_query(sql)
                    .execute(&mut conn)
                    .await
                    .ok()
                    .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

fn database_url(maintenance_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(maintenance_url).expect("server url");
    url.set_path(&format!("/{name}"));
    url.into()
}

/// The template for the current migrations, built if the server has none.
async fn template(conn: &mut AsyncPgConnection, maintenance_url: &str) -> String {
    let name = format!("payments_template_{}", &migrations_hash()[..16]);
    if database_exists(conn, &name).await {
        return name;
    }
    diesel::sql_query(format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .execute(conn)
        .await
        .expect("template lock");
    if !database_exists(conn, &name).await {
        let building = format!("{name}_building_{}", uuid::Uuid::new_v4().simple());
        let url = database_url(maintenance_url, &building);
        db::create_database_if_missing(&url)
            .await
            .expect("create the template database");
        db::migrate::run_migrations(&url)
            .await
            .expect("migrate the template database");
        // Complete: published under its name in one step, and closed to
        // connections, which would block copying it.
        for sql in [
            format!(
                "ALTER DATABASE {} RENAME TO {}",
                db::quote_ident(&building),
                db::quote_ident(&name)
            ),
            format!(
                "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true",
                db::quote_ident(&name)
            ),
        ] {
            diesel::sql_query(sql)
                .execute(conn)
                .await
                .expect("publish the template database");
        }
    }
    diesel::sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
        .execute(conn)
        .await
        .expect("template unlock");
    name
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let found: Found =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found")
            .bind::<diesel::sql_types::Text, _>(name)
            .get_result(conn)
            .await
            .expect("pg_database");
    found.found
}

/// A hash of every file under `migrations/`: a changed migration gets a new
/// template, never a stale one.
fn migrations_hash() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("migrations/") {
            let path = entry.expect("migrations/ entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut digest = Sha256::new();
    for file in files {
        digest.update(
            file.strip_prefix(&root)
                .unwrap_or(&file)
                .to_string_lossy()
                .as_bytes(),
        );
        digest.update([0]);
        digest.update(std::fs::read(&file).expect("a migration file"));
        digest.update([0]);
    }
    hex::encode(digest.finalize())
}
