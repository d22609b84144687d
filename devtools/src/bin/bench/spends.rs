//! The spend scenarios: `SpendCredits` over gRPC spread over the users and
//! on one hot user, and pgbench making one spend per transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::ensure;
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use payments_devtools::local::INTERNAL_TOKEN;
use payments_proto::SpendCreditsRequest;
use payments_proto::payments_service_client::PaymentsServiceClient;
use tonic::transport::Channel;

use crate::data::check_ledger;
use crate::load::{self, Figures};
use crate::pgbench::run_pgbench;
use crate::world::{World, durations};

/// What each bench user is given before the spends: far more than 1-cent
/// spends take in a run.
const FUNDS_CENTS: i64 = 1_000_000_000;

/// The HTTP/2 connections a backend service's client pool would hold.
pub(crate) async fn grpc_channels(world: &World) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..crate::GRPC_CONNECTIONS {
        channels.push(
            Channel::from_shared(world.grpc_url.clone())?
                .connect()
                .await?,
        );
    }
    Ok(channels)
}

/// Scenario: 1-cent spends, each with its own key, over every user (`hot`:
/// all on one user); then every spend answered Ok is checked to be in the
/// ledger once, no balance ever went below zero, balances equal ledgers.
pub(crate) async fn spends(world: &World, hot: bool) -> anyhow::Result<Figures> {
    let (warmup, duration) = durations(world);
    let label = if hot { "hot" } else { "spread" };
    let prefix = format!("bench-{}-{label}-", world.label);
    fund(&world.database_url, label).await?;
    let channels = grpc_channels(world).await?;
    let users = if hot { 1 } else { world.args.users };
    let authorization: tonic::metadata::MetadataValue<_> =
        format!("Bearer {INTERNAL_TOKEN}").parse()?;
    let spent = Arc::new(AtomicU64::new(0));
    let cpu_before = CpuSplit::take(world).await?;
    let name = if hot {
        "SpendCredits (gRPC, one hot user)"
    } else {
        "SpendCredits (gRPC)"
    };
    let figures = {
        let (spent, prefix) = (spent.clone(), prefix.clone());
        load::run(
            name,
            world.args.connections,
            warmup,
            duration,
            move |worker, n| {
                let mut client =
                    PaymentsServiceClient::new(channels[worker % channels.len()].clone());
                let mut request = tonic::Request::new(SpendCreditsRequest {
                    user_id: format!("bench-user-{}", (worker as u64 * 7919 + n) % users),
                    amount_cents: 1,
                    idempotency_key: format!("{prefix}{worker}-{n}"),
                    reason: "bench".into(),
                });
                request
                    .metadata_mut()
                    .insert("authorization", authorization.clone());
                let spent = spent.clone();
                async move {
                    let answer = client.spend_credits(request).await;
                    Some(match answer {
                        Ok(_) => {
                            spent.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        }
                        Err(status) => Err(status.to_string()),
                    })
                }
            },
        )
        .await
    };
    let cpu = CpuSplit::take(world).await?.since(&cpu_before);
    let mut conn = AsyncPgConnection::establish(&world.database_url).await?;
    let booked: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM ledger_entries WHERE kind = 'spend' AND idempotency_key LIKE $1",
    )
    .bind::<diesel::sql_types::Text, _>(format!("{prefix}%"))
    .get_result(&mut conn)
    .await?;
    let spent = AtomicU64::load(&spent, Ordering::Relaxed);
    ensure!(
        booked.n as u64 == spent,
        "{name}: {spent} spends answered Ok, {} booked",
        booked.n
    );
    let overdrawn: Count =
        diesel::sql_query("SELECT count(*) AS n FROM ledger_entries WHERE balance_after_cents < 0")
            .get_result(&mut conn)
            .await?;
    ensure!(overdrawn.n == 0, "{name}: {} entries overdrew", overdrawn.n);
    check_ledger(&world.database_url).await?;
    println!(
        "    {}: checked {spent} spends, each booked once, none overdrew, ledger sums equal",
        world.label
    );
    println!(
        "    {}: CPU per spend (warm-up included): load generator {:.0} µs, payments-grpc {:.0} µs, \
         its Postgres backends {:.0} µs",
        world.label,
        cpu.load_generator * 1e6 / spent as f64,
        cpu.payments_grpc * 1e6 / spent as f64,
        cpu.postgres * 1e6 / spent as f64,
    );
    Ok(figures)
}

/// CPU seconds used so far by this process, by payments-grpc and by the
/// Postgres backends serving this stack's database (payments-grpc's pool
/// and listener, which stay connected through a scenario).
struct CpuSplit {
    load_generator: f64,
    payments_grpc: f64,
    postgres: f64,
}

#[derive(QueryableByName)]
struct Backend {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

impl CpuSplit {
    async fn take(world: &World) -> anyhow::Result<Self> {
        let mut conn = AsyncPgConnection::establish(&world.database_url).await?;
        let backends: Vec<Backend> = diesel::sql_query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .load(&mut conn)
        .await?;
        Ok(Self {
            load_generator: crate::load::cpu_seconds(std::process::id()),
            payments_grpc: crate::load::cpu_seconds(world.grpc_pid),
            postgres: backends
                .iter()
                .map(|b| crate::load::cpu_seconds(b.pid as u32))
                .sum(),
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            load_generator: self.load_generator - before.load_generator,
            payments_grpc: self.payments_grpc - before.payments_grpc,
            postgres: self.postgres - before.postgres,
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Gives every bench user `FUNDS_CENTS`, as an operator's adjustment would:
/// the entry and the balance together.
async fn fund(database_url: &str, label: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    diesel::sql_query(format!(
        "WITH funded AS (
             UPDATE balances SET balance_cents = balance_cents + {FUNDS_CENTS}
              WHERE user_id LIKE 'bench-user-%'
          RETURNING user_id, balance_cents, currency)
         INSERT INTO ledger_entries
             (user_id, amount_cents, balance_after_cents, currency, kind, idempotency_key, reason, actor)
         SELECT user_id, {FUNDS_CENTS}, balance_cents, currency, 'adjustment',
                'bench-funds-{label}', 'bench funds', 'bench'
           FROM funded"
    ))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// The ceiling of a spend made alone: pgbench calling `spend_credits`, one
/// spend per transaction, over as many users (their own, with room to spend).
pub(crate) async fn pgbench_spend(world: &World) -> anyhow::Result<Figures> {
    let users = world.args.users;
    let mut conn = AsyncPgConnection::establish(&world.database_url).await?;
    diesel::sql_query(format!(
        "INSERT INTO balances (user_id, balance_cents, currency)
         SELECT 'pgb-user-' || i, {FUNDS_CENTS}, 'usd' FROM generate_series(0, {users} - 1) AS i
         ON CONFLICT (user_id) DO UPDATE SET balance_cents = excluded.balance_cents"
    ))
    .execute(&mut conn)
    .await?;
    let script = format!(
        r"\set u random(0, {users} - 1)
\set k random(1, 4000000000000000000)
SELECT outcome FROM spend_credits('pgb-user-' || :u, 1, 'pgb-spend-' || CAST(:k AS bigint), NULL, now());
"
    );
    run_pgbench(world, "pgbench: one spend per transaction", &script).await
}
