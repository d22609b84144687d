//! Test databases come from one migrated template, and each is its own.

use diesel_async::RunQueryDsl;
use payments_test_support::{TestDatabase, count_rows};

#[tokio::test]
async fn databases_made_at_once_are_fully_migrated_and_independent() {
    let databases = create_at_once(4).await;
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../migrations/versioned"
    ))
    .unwrap()
    .filter(|entry| entry.as_ref().unwrap().path().is_dir())
    .count() as i64;
    let mut first = databases[0].connection().await;
    diesel::sql_query(
        "INSERT INTO intent_owners (stripe_intent_id, user_id) VALUES ('pi_1', 'u1')",
    )
    .execute(&mut first)
    .await
    .unwrap();
    for (n, db) in databases.iter().enumerate() {
        let mut conn = db.connection().await;
        assert_eq!(
            count_rows(&mut conn, "__diesel_schema_migrations").await,
            migrations,
            "database {n}"
        );
        // Every function file applied too.
        assert_eq!(
            count_rows(&mut conn, "schema_functions").await,
            payments_core::db::migrate::FUNCTIONS.len() as i64,
            "database {n}"
        );
        let owners = count_rows(&mut conn, "intent_owners").await;
        assert_eq!(owners, i64::from(n == 0), "database {n}");
    }
    let names: std::collections::HashSet<&str> =
        databases.iter().map(|db| db.url.as_str()).collect();
    assert_eq!(names.len(), databases.len());
}

async fn create_at_once(count: usize) -> Vec<TestDatabase> {
    let tasks: Vec<_> = (0..count)
        .map(|_| tokio::spawn(TestDatabase::create()))
        .collect();
    let mut databases = Vec::new();
    for task in tasks {
        databases.push(task.await.unwrap());
    }
    databases
}
