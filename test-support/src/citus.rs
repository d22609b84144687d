//! Test databases on a Citus cluster, for the Citus test target
//! (`scripts/test-citus`, docs/citus.md): with `TEST_CITUS=1` and
//! `TEST_DATABASE_URL` naming the coordinator, each test's database is made
//! on the coordinator and on every worker the coordinator's maintenance
//! database lists, given the `citus` extension and those workers, migrated
//! as `payments-grpc migrate` does, and distributed by the project's own
//! `deploy/citus/distribute.sql`. No template: a distributed database
//! cannot be copied.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use payments_core::db;

/// Whether the tests run on a Citus cluster.
pub fn enabled() -> bool {
    std::env::var("TEST_CITUS").is_ok_and(|value| value == "1")
}

/// `url` on another node (host and port), same user and database.
fn on_node(url: &str, host: &str, port: u16) -> String {
    let mut url = url::Url::parse(url).expect("a database URL");
    url.set_host(Some(host)).expect("a host");
    url.set_port(Some(port)).expect("a port");
    url.into()
}

fn with_database(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("a database URL");
    url.set_path(&format!("/{name}"));
    url.into()
}

async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url)
        .await
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"))
}

/// Every node's maintenance URL, the coordinator first, and the workers'
/// (host, port).
async fn nodes(maintenance_url: &str) -> (Vec<String>, Vec<(String, u16)>) {
    #[derive(diesel::QueryableByName)]
    struct Node {
        #[diesel(sql_type = diesel::sql_types::Text)]
        nodename: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        nodeport: i32,
    }
    let mut conn = connect(maintenance_url).await;
    let workers: Vec<Node> = diesel::sql_query(
        "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeid",
    )
    .load(&mut conn)
    .await
    .expect("the coordinator's workers (pg_dist_node; is this a Citus coordinator?)");
    assert!(!workers.is_empty(), "the coordinator lists no worker");
    let workers: Vec<(String, u16)> = workers
        .into_iter()
        .map(|node| (node.nodename, u16::try_from(node.nodeport).expect("a port")))
        .collect();
    let mut urls = vec![maintenance_url.to_owned()];
    urls.extend(
        workers
            .iter()
            .map(|(host, port)| on_node(maintenance_url, host, *port)),
    );
    (urls, workers)
}

/// Held while a database is made or dropped on the nodes: Citus refuses a
/// node's registration while another database's drop ends its connections.
const SETUP_LOCK_KEY: i64 = 0x6369_7475_735f_6462; // "citus_db"

async fn setup_lock(maintenance_url: &str) -> AsyncPgConnection {
    let mut conn = connect(maintenance_url).await;
    diesel::sql_query(format!("SELECT pg_advisory_lock({SETUP_LOCK_KEY})"))
        .execute(&mut conn)
        .await
        .expect("the Citus setup lock");
    conn
}

/// Makes database `name` on every node, distributed as in production.
pub(crate) async fn create(maintenance_url: &str, name: &str) {
    let _held_until_dropped = setup_lock(maintenance_url).await;
    let (urls, workers) = nodes(maintenance_url).await;
    for url in &urls {
        diesel::sql_query(format!("CREATE DATABASE {}", db::quote_ident(name)))
            .execute(&mut connect(url).await)
            .await
            .expect("create the test database on a node");
        connect(&with_database(url, name))
            .await
            .batch_execute("CREATE EXTENSION citus")
            .await
            .expect("the citus extension");
    }
    let url = with_database(maintenance_url, name);
    let coordinator = url::Url::parse(&url).expect("a database URL");
    let mut conn = connect(&url).await;
    let mut setup = format!(
        "SELECT citus_set_coordinator_host('{}', {});",
        coordinator.host_str().expect("a host"),
        coordinator.port().unwrap_or(5432)
    );
    for (host, port) in &workers {
        setup.push_str(&format!("SELECT citus_add_node('{host}', {port});"));
    }
    conn.batch_execute(&setup)
        .await
        .expect("register the workers");
    db::migrate::run_migrations(&url)
        .await
        .expect("migrate on Citus");
    let distribute =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/citus/distribute.sql");
    let distribute = std::fs::read_to_string(distribute).expect("deploy/citus/distribute.sql");
    // One statement at a time, as psql sends them: Citus passes a DDL
    // statement's text on to the workers, which refuse several at once.
    let script: String = distribute
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(|line| format!("{line}\n"))
        .collect();
    for statement in script.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        conn.batch_execute(statement)
            .await
            .unwrap_or_else(|err| panic!("deploy/citus/distribute.sql: {statement}: {err}"));
    }
}

/// Drops database `name` on every node.
pub(crate) async fn drop(maintenance_url: &str, name: &str) -> Option<()> {
    let _held_until_dropped = setup_lock(maintenance_url).await;
    let (urls, _) = nodes(maintenance_url).await;
    for url in urls {
        let mut conn = AsyncPgConnection::establish(&url).await.ok()?;
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            db::quote_ident(name)
        ))
        .execute(&mut conn)
        .await
        .ok()?;
    }
    Some(())
}
