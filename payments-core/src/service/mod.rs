//! The use cases, one module each; they own transactions and idempotency.
//! A new use case is a new module with its own `impl PaymentsService`.

mod adjust;
mod apply_event;
mod backfill;
mod balance;
mod clawbacks;
mod create_intent;
mod history;
mod parked;
mod reconcile;
mod spend;
mod sync;
mod sync_budget;
mod watch;

use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;

use crate::Error;
use crate::db::balance_reads::BalanceReads;
use crate::db::payment_inserts::PaymentInserts;
use crate::db::spend_batches::SpendBatches;
use crate::db::{CancelOnDrop, DbPool, stripe_events};
use crate::domain::{Cents, Currency, Tiers};
use crate::stripe::PaymentGateway;

pub use adjust::Adjusted;
pub use create_intent::{CreatedIntent, TopUpOptions};
pub use history::{DEFAULT_PAGE_SIZE, LedgerEntry, MAX_PAGE_SIZE, Page};
pub use parked::{Retried, retry_pause};
pub use reconcile::{ACTED_ON_EVENT_TYPES, ReconcileSettings, Reconciled};
pub use spend::Spent;
pub use sync::Synced;
pub use sync_budget::{CALLS_PER_SYNC, FRESH_FOR};
pub use watch::BalanceWatch;

/// The one currency balances are kept in.
const CURRENCY: Currency = Currency::Usd;

/// Stripe calls a second for syncs on one replica, by default: five syncs,
/// a sixth of Stripe's live read limit of 100 a second.
pub const DEFAULT_SYNC_CALLS_PER_SECOND: u32 = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub user_id: String,
    pub balance_cents: Cents,
    pub currency: Currency,
    /// `None` for a user whose balance never changed.
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Applied,
    Duplicate,
    Ignored,
}

pub struct PaymentsService<G> {
    pool: DbPool,
    balance_reads: BalanceReads,
    payment_inserts: PaymentInserts,
    /// `None`: each spend is its own transaction (on Citus, where a batch of
    /// several users' spends would span shards).
    spend_batches: Option<SpendBatches>,
    gateway: G,
    tiers: Tiers,
    open_intents: OpenIntentLimit,
    /// Read from the database once, on first use.
    deployment: tokio::sync::OnceCell<String>,
    /// The watchers of balances, woken by the database's announcements.
    balances: std::sync::Arc<crate::watch::BalanceHub>,
    /// Announces this process's balance changes to every process.
    announcer: crate::watch::Announcer,
    reconcile: ReconcileSettings,
    metrics: crate::metrics::CoreMetrics,
    /// Whether events may be parked, as this process last knew (true until
    /// the parked events are first counted): `service::parked`.
    parked_hint: std::sync::atomic::AtomicBool,
    sync_budget: sync_budget::SyncBudget,
}

/// At most `max` unpaid intents created within `window` per user: against
/// card testing and floods of intents, each a Stripe call and a row.
/// `max` 0 turns the limit off (the benchmark's create scenario).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenIntentLimit {
    pub max: i64,
    pub window: chrono::Duration,
}

impl Default for OpenIntentLimit {
    fn default() -> Self {
        Self {
            max: 20,
            window: chrono::Duration::hours(24),
        }
    }
}

impl<G: PaymentGateway> PaymentsService<G> {
    pub fn new(pool: DbPool, gateway: G, tiers: Tiers) -> Self {
        Self {
            balance_reads: BalanceReads::new(pool.clone()),
            payment_inserts: PaymentInserts::new(pool.clone()),
            spend_batches: Some(SpendBatches::new(pool.clone())),
            announcer: crate::watch::Announcer::start(pool.clone()),
            pool,
            gateway,
            tiers,
            open_intents: OpenIntentLimit::default(),
            deployment: tokio::sync::OnceCell::new(),
            balances: std::sync::Arc::default(),
            reconcile: ReconcileSettings::default(),
            metrics: crate::metrics::CoreMetrics::default(),
            parked_hint: std::sync::atomic::AtomicBool::new(true),
            sync_budget: sync_budget::SyncBudget::new(DEFAULT_SYNC_CALLS_PER_SECOND),
        }
    }

    /// At most `calls_per_second` Stripe calls a second for
    /// `SyncPaymentIntent` on this replica ([`sync_budget`]).
    pub fn with_sync_budget(mut self, calls_per_second: u32) -> Self {
        self.sync_budget = sync_budget::SyncBudget::new(calls_per_second);
        self
    }

    /// Counts into `metrics` (registered by the binary) instead of counts
    /// no one reads.
    pub fn with_metrics(mut self, metrics: crate::metrics::CoreMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The database pool's state, for its gauges.
    pub fn observe_pool(&self) {
        self.metrics.observe_pool(&self.pool.state());
    }

    pub fn with_open_intent_limit(mut self, limit: OpenIntentLimit) -> Self {
        self.open_intents = limit;
        self
    }

    /// Whether concurrent spends share a transaction (the default); off,
    /// each spend commits alone.
    pub fn with_spend_coalescing(mut self, on: bool) -> Self {
        self.spend_batches = on.then(|| SpendBatches::new(self.pool.clone()));
        self
    }

    /// On a Citus cluster (`on`), every write is one worker's: spends each
    /// commit alone, and a new payment's owner is claimed first on the
    /// intent's shard, then its row written on the user's (docs/citus.md).
    pub fn on_citus(self, on: bool) -> Self {
        if !on {
            return self;
        }
        let mut service = self.with_spend_coalescing(false);
        service.payment_inserts = PaymentInserts::owner_first(service.pool.clone());
        service
    }

    /// A pooled connection; UNAVAILABLE when none comes within the pool's timeout.
    async fn connection(&self) -> Result<CancelOnDrop<'_>, Error> {
        let conn = self.pool.get().await.map_err(crate::db::DbError::from)?;
        Ok(CancelOnDrop::new(conn))
    }

    /// This deployment's id (`metadata[deployment]` of every intent it creates).
    pub async fn deployment_id(&self) -> Result<&str, Error> {
        let id = self
            .deployment
            .get_or_try_init(|| async {
                let mut conn = self.connection().await?;
                Ok::<_, Error>(crate::db::deployment::id(&mut conn).await?)
            })
            .await?;
        Ok(id.as_str())
    }

    /// Empties the stored payloads of events received more than `retention`
    /// ago, in batches; answers how many.
    pub async fn forget_old_event_payloads(
        &self,
        retention: chrono::Duration,
    ) -> Result<usize, Error> {
        const BATCH: i64 = 1_000;
        let cutoff = Utc::now() - retention;
        let mut forgotten = 0;
        loop {
            let mut conn = self.connection().await?;
            let done = stripe_events::forget_payloads_before(&mut conn, cutoff, BATCH).await?;
            forgotten += done;
            if (done as i64) < BATCH {
                return Ok(forgotten);
            }
        }
    }

    /// Whether Postgres answers, for health checks.
    pub async fn check_database(&self) -> Result<(), Error> {
        let mut conn = self.connection().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }
}
