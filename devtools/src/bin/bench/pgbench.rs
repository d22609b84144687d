//! The Postgres ceilings: pgbench with the service's own statements, and a reference.

use anyhow::{Context, bail};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use payments_core::db::apply::WebhookValues;

use crate::load::Figures;
use crate::scenarios::event_body;
use crate::world::World;

/// Scenario 5: the ceiling: pgbench running the statements of one applied
/// webhook, rendered from the service's own queries
/// (`payments_core::db::apply::webhook_statements`).
pub(crate) async fn pgbench(world: &World, round: &str) -> anyhow::Result<Figures> {
    let capacity = if world.args.smoke { 20_000 } else { 300_000 };
    let users = world.args.users;
    let mut conn = AsyncPgConnection::establish(&world.database_url).await?;
    seed_payments(
        &mut conn,
        &format!(
            "SELECT 'pi_pgb_{round}_' || i AS stripe_intent_id, 'pgb-user-' || (i % {users}) AS user_id,
                    500 AS amount_cents, 0 AS amount_received_cents, 'requires_payment_method' AS status
               FROM generate_series(1, {capacity}) AS i"
        ),
    )
    .await?;
    // pgbench reads `:name` as a variable even inside a string (`"livemode":false`
    // broke its prepared statements): a space after each key's colon keeps
    // the JSON, and its size within a byte per key.
    let payload = format!(
        "'{}'",
        event_body(round, 0, users)
            .replace('\'', "''")
            .replace("\":", "\": ")
    );
    let statements = payments_core::db::apply::webhook_statements(&WebhookValues {
        user_id: &format!("('pgb-user-' || (:i % {users}))"),
        intent_id: &format!("('pi_pgb_{round}_' || :i)"),
        // What the read (the first statement) returned: `\gset p_` below.
        read_status: ":p_status",
        read_amount_received_cents: ":p_amount_received_cents",
        event_id: "('evt_pgb_' || CAST(:e AS bigint))",
        event_type: "'payment_intent.succeeded'",
        payload: &payload,
        now: "now()",
        status: "'succeeded'",
        amount_received_cents: "500",
        credit_cents: "500",
        currency: "'usd'",
    });
    let mut script =
        format!("\\set i random(1, {capacity})\n\\set e random(1, 4000000000000000000)\n");
    for (n, statement) in statements.iter().enumerate() {
        // pgbench reads one statement per line; the read's row becomes the
        // variables `p_<column>` that the write compares against.
        script.push_str(&statement.split_whitespace().collect::<Vec<_>>().join(" "));
        script.push_str(if n == 0 { " \\gset p_\n" } else { ";\n" });
    }
    run_pgbench(world, "pgbench: one webhook's SQL (ceiling)", &script).await
}

/// For scale: the least a webhook that credits exactly once can write, as a
/// hand-written backend does it (an event-id table for deduplication, a
/// counter per user; no payment state, no ledger, no payload), in tables of
/// its own. Not our SQL, so nothing of ours to drift from.
pub(crate) async fn pgbench_reference(world: &World) -> anyhow::Result<Figures> {
    let users = world.args.users;
    let mut conn = AsyncPgConnection::establish(&world.database_url).await?;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS reference_processed_events (event_id text PRIMARY KEY)",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS reference_users (id text PRIMARY KEY, credits bigint NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query(format!(
        "INSERT INTO reference_users SELECT 'ref-user-' || i, 0 FROM generate_series(0, {users}) AS i
         ON CONFLICT DO NOTHING"
    ))
    .execute(&mut conn)
    .await?;
    let script = format!(
        r"\set u random(0, {users})
\set e random(1, 4000000000000000000)
BEGIN;
INSERT INTO reference_processed_events VALUES ('evt_ref_' || CAST(:e AS bigint)) ON CONFLICT DO NOTHING;
UPDATE reference_users SET credits = credits + 500 WHERE id = 'ref-user-' || :u;
COMMIT;
"
    );
    run_pgbench(world, "pgbench: least exactly-once credit", &script).await
}

/// Stores the payments `select` yields (`stripe_intent_id`, `user_id`,
/// `amount_cents`, `amount_received_cents`, `status`), each with its owner
/// first, as the service does.
pub(crate) async fn seed_payments(
    conn: &mut AsyncPgConnection,
    select: &str,
) -> anyhow::Result<()> {
    diesel::sql_query(format!(
        "INSERT INTO intent_owners (stripe_intent_id, user_id)
         SELECT stripe_intent_id, user_id FROM ({select}) AS new"
    ))
    .execute(conn)
    .await?;
    diesel::sql_query(format!(
        "INSERT INTO payments (stripe_intent_id, user_id, amount_cents, amount_received_cents, currency, status)
         SELECT stripe_intent_id, user_id, amount_cents, amount_received_cents, 'usd', status
           FROM ({select}) AS new"
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// The ceiling of the create path: the same INSERT a new intent makes.
pub(crate) async fn pgbench_insert(world: &World, round: &str) -> anyhow::Result<Figures> {
    let script = format!(
        r"\set e random(1, 4000000000000000000)
WITH owner AS (INSERT INTO intent_owners (stripe_intent_id, user_id) VALUES ('pi_pgbi_{round}_' || CAST(:e AS bigint), 'pgb-user-' || (CAST(:e AS bigint) % {users})) ON CONFLICT DO NOTHING) INSERT INTO payments (stripe_intent_id, user_id, amount_cents, currency, status) VALUES ('pi_pgbi_{round}_' || CAST(:e AS bigint), 'pgb-user-' || (CAST(:e AS bigint) % {users}), 500, 'usd', 'requires_payment_method') ON CONFLICT DO NOTHING RETURNING stripe_intent_id;
",
        users = world.args.users
    );
    run_pgbench(world, "pgbench: one intent's INSERT (ceiling)", &script).await
}

pub(crate) async fn run_pgbench(
    world: &World,
    scenario: &str,
    script: &str,
) -> anyhow::Result<Figures> {
    let script_path =
        std::env::temp_dir().join(format!("payments-bench-{}.sql", std::process::id()));
    std::fs::write(&script_path, script)?;
    let total = world.args.warmup_seconds + world.args.seconds;
    let busy_from = crate::load::machine_busy_seconds();
    let output = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            // As the service runs them (diesel-async prepares each statement once).
            "-M",
            "prepared",
            "-c",
            &world.args.connections.to_string(),
            "-j",
            "2",
            "-T",
            &total.to_string(),
            "-f",
        ])
        .arg(&script_path)
        .arg(&world.database_url)
        .output()
        .await
        .context("running pgbench (install postgresql-client / postgresql-contrib)")?;
    let busy = crate::load::machine_busy_seconds() - busy_from;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // The script stays, to be run by hand.
        bail!(
            "pgbench failed (script kept at {}): {}{}",
            script_path.display(),
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_file(&script_path);
    let number_after = |prefix: &str| -> f64 {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    let tps = number_after("tps = ");
    let transactions = number_after("number of transactions actually processed:") as u64;
    let failed = number_after("number of failed transactions:") as u64;
    let latency = number_after("latency average =");
    Ok(Figures {
        scenario: scenario.into(),
        requests: transactions,
        errors: failed,
        seconds: total as f64,
        requests_per_sec: tps,
        p50_ms: latency,
        p90_ms: 0.0,
        p99_ms: 0.0,
        rss_kib: Vec::new(),
        // Warm-up included: pgbench counts its transactions over the whole run.
        cpu_us_per_request: crate::load::per_request(busy, transactions),
    })
}
