//! The schema's files tell the truth: every SQL function in a migrated
//! database is exactly its file under `migrations/functions/`; Citus's
//! distribution step names every function of one user; the committed
//! snapshot (`migrations/schema.sql`) is what the migrations make; and a
//! database built by the migrations of 7 December upgrades in place to
//! exactly what a fresh one is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use payments_core::db::migrate::{FUNCTIONS, run_migrations};
use payments_test_support::TestDatabase;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    definition: String,
}

/// The functions of `schema` (none an extension's): name and definition as
/// Postgres prints it, with the schema's name taken out.
async fn functions_in(conn: &mut AsyncPgConnection, schema: &str) -> Vec<(String, String)> {
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT p.proname::text AS name,
                replace(pg_get_functiondef(p.oid), n.nspname || '.', '') AS definition
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = $1
            AND NOT EXISTS (SELECT 1 FROM pg_depend d
                             WHERE d.objid = p.oid AND d.deptype = 'e')
          ORDER BY 1, 2",
    )
    .bind::<Text, _>(schema)
    .load(conn)
    .await
    .unwrap();
    rows.into_iter().map(|r| (r.name, r.definition)).collect()
}

#[tokio::test]
async fn every_function_in_the_database_is_exactly_its_file() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    let migrated = functions_in(conn, "public").await;
    // Each file made again, alone, in a schema of its own.
    conn.batch_execute("CREATE SCHEMA from_files; SET search_path TO from_files, public")
        .await
        .unwrap();
    for function in FUNCTIONS {
        conn.batch_execute(function.sql).await.unwrap();
    }
    let from_files = functions_in(conn, "from_files").await;
    assert_eq!(from_files.len(), FUNCTIONS.len(), "one function per file");
    let names: Vec<&str> = migrated.iter().map(|(name, _)| name.as_str()).collect();
    let expected: BTreeSet<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
    assert_eq!(
        names.iter().copied().collect::<BTreeSet<_>>(),
        expected,
        "functions in the database that no file makes, or files not applied"
    );
    for ((name, in_database), (_, in_file)) in migrated.iter().zip(&from_files) {
        assert_eq!(
            in_database, in_file,
            "{name} differs from migrations/functions/{name}.sql"
        );
    }
}

#[derive(diesel::QueryableByName)]
struct Signature {
    #[diesel(sql_type = Text)]
    signature: String,
}

#[tokio::test]
async fn citus_distributes_every_function_whose_first_argument_is_the_user() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    let of_one_user: Vec<Signature> = diesel::sql_query(
        "SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
          WHERE p.pronamespace = 'public'::regnamespace AND p.proargnames[1] = 'p_user_id'",
    )
    .load(conn)
    .await
    .unwrap();
    let of_one_user: BTreeSet<String> = of_one_user
        .into_iter()
        .map(|s| s.signature.replace(' ', ""))
        .collect();
    assert!(of_one_user.len() >= 5, "{of_one_user:?}");

    let script = std::fs::read_to_string(repo().join("deploy/citus/distribute.sql")).unwrap();
    let mut distributed = BTreeSet::new();
    for call in script.split("create_distributed_function(").skip(1) {
        let mut quoted = call.split('\'');
        let signature = quoted.nth(1).expect("a quoted signature");
        let argument = quoted.nth(1).expect("the distribution argument");
        assert_eq!(
            argument, "p_user_id",
            "{signature} is distributed by {argument}"
        );
        // As Postgres names it (and it must exist).
        let named: Signature =
            diesel::sql_query("SELECT to_regprocedure($1)::oid::regprocedure::text AS signature")
                .bind::<Text, _>(signature)
                .get_result(conn)
                .await
                .unwrap_or_else(|err| panic!("distribute.sql names {signature}: {err}"));
        distributed.insert(named.signature.replace(' ', ""));
    }
    assert_eq!(distributed, of_one_user);
}

/// `pg_dump --schema-only`, without what changes from run to run (its
/// header, settings and comments).
fn schema_of(url: &str) -> String {
    let output = std::process::Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", "--no-privileges", url])
        .output()
        .expect("pg_dump runs (PostgreSQL's client programs)");
    assert!(
        output.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump = String::from_utf8(output.stdout).unwrap();
    let mut kept = Vec::new();
    for line in dump.lines() {
        let noise = line.starts_with("--")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict")
            || line.starts_with("SET ")
            || line.starts_with("SELECT pg_catalog.set_config");
        if noise || (line.is_empty() && kept.last().is_none_or(|last: &&str| last.is_empty())) {
            continue;
        }
        kept.push(line);
    }
    kept.join("\n").trim().to_owned() + "\n"
}

const SNAPSHOT_HEADER: &str = "\
-- The whole schema as the migrations make it: every table, constraint,
-- index and function, in one file a reviewer can read (pg_dump
-- --schema-only of a freshly migrated database, its settings and comments
-- left out). Generated: payments-core/tests/it/schema_files.rs fails when
-- it is stale; `UPDATE_SCHEMA_SNAPSHOT=1 cargo test -p payments-core --test
-- it schema_files` writes it. Never edit it by hand.

";

#[tokio::test]
async fn the_committed_schema_snapshot_is_what_the_migrations_make() {
    let db = TestDatabase::create().await;
    let snapshot = format!("{SNAPSHOT_HEADER}{}", schema_of(&db.url));
    let path = repo().join("migrations/schema.sql");
    if std::env::var_os("UPDATE_SCHEMA_SNAPSHOT").is_some() {
        std::fs::write(&path, &snapshot).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == snapshot,
        "migrations/schema.sql is stale: run `UPDATE_SCHEMA_SNAPSHOT=1 cargo test -p \
         payments-core --test it schema_files` and commit it"
    );
}

#[tokio::test]
async fn a_database_of_the_7_december_release_upgrades_in_place_to_a_fresh_ones_schema() {
    let old = TestDatabase::create_empty().await;
    let fixture = repo().join("payments-core/tests/fixtures/schema-2026-12-07.sql");
    let dump = std::fs::read_to_string(fixture).unwrap();
    let mut conn = old.connection().await;
    conn.batch_execute(&dump).await.unwrap();
    drop(conn);
    let before = schema_of(&old.url);
    assert!(!before.contains("schema_functions"));

    let applied = run_migrations(&old.url).await.unwrap();
    let mut expected = vec!["20261208000001".to_owned()];
    expected.extend(FUNCTIONS.iter().map(|f| format!("functions/{}", f.name)));
    assert_eq!(applied, expected);
    let fresh = TestDatabase::create().await;
    assert_eq!(schema_of(&old.url), schema_of(&fresh.url));

    // Once is enough: a second start changes nothing, and a changed file is
    // applied again, alone.
    assert_eq!(
        run_migrations(&old.url).await.unwrap(),
        Vec::<String>::new()
    );
    let mut conn = old.connection().await;
    conn.batch_execute(
        "UPDATE schema_functions SET sha256 = repeat('0', 64) WHERE name = 'reverse_spend'",
    )
    .await
    .unwrap();
    drop(conn);
    assert_eq!(
        run_migrations(&old.url).await.unwrap(),
        vec!["functions/reverse_spend".to_owned()]
    );
    assert_eq!(schema_of(&old.url), schema_of(&fresh.url));
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Every name the migrated database knows: tables, columns, constraints,
/// indexes and functions.
async fn names_in_the_database(conn: &mut AsyncPgConnection) -> BTreeSet<String> {
    let names: Vec<Name> = diesel::sql_query(
        "SELECT relname::text AS name FROM pg_class
          WHERE relnamespace = 'public'::regnamespace
         UNION SELECT attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0
         UNION SELECT conname::text FROM pg_constraint
          WHERE connamespace = 'public'::regnamespace
         UNION SELECT proname::text FROM pg_proc
          WHERE pronamespace = 'public'::regnamespace",
    )
    .load(conn)
    .await
    .unwrap();
    names.into_iter().map(|n| n.name).collect()
}

fn is_identifier_path(token: &str) -> bool {
    !token.is_empty()
        && token.split("::").all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// ARCHITECTURE.md's "Where each rule of money lives": every file it names
/// exists, and every name it gives (a constraint, an index, a function, a
/// type, a setting) exists in the migrated database or in a file named on
/// the same line, so the map cannot point at something dropped or renamed.
#[tokio::test]
async fn the_rule_map_names_only_files_and_things_that_exist() {
    let db = TestDatabase::create().await;
    let in_database = names_in_the_database(&mut db.connection().await).await;
    let architecture = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let map = architecture
        .split("## Where each rule of money lives")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("ARCHITECTURE.md has its rule map");
    let mut missing = Vec::new();
    let mut names_checked = 0;
    for line in map.lines().filter(|line| line.starts_with("- ")) {
        let tokens: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        let mut files = Vec::new();
        for token in &tokens {
            let path = token.split("::").next().unwrap();
            if path.contains('/') && !path.contains(' ') {
                let full = repo().join(path);
                match std::fs::read_to_string(&full).or_else(|_| {
                    full.is_dir()
                        .then(String::new)
                        .ok_or(std::io::ErrorKind::NotFound)
                }) {
                    Ok(text) => files.push(text),
                    Err(_) => missing.push(format!("the file {path}")),
                }
            }
        }
        for token in tokens
            .iter()
            .filter(|t| !t.contains('/') && is_identifier_path(t))
        {
            let name = token.rsplit("::").next().unwrap();
            let known = in_database.contains(name)
                || files.iter().any(|text| {
                    text.match_indices(name).any(|(at, _)| {
                        let before = text[..at].chars().next_back();
                        let after = text[at + name.len()..].chars().next();
                        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    })
                });
            names_checked += 1;
            if !known {
                missing.push(format!("`{token}` (in the database or a file of: {line})"));
            }
        }
    }
    assert!(names_checked >= 30, "only {names_checked} names checked");
    assert!(
        missing.is_empty(),
        "the rule map names what does not exist:\n{}",
        missing.join("\n")
    );
}
