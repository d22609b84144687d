//! What the core counts for Prometheus: money moved by kind (in cents),
//! Stripe calls by operation and result, the database pool, and
//! reconciliation passes. The binary that holds the core registers these in
//! its registry (`CoreMetrics::register`); every label value comes from a
//! fixed set, never from a caller.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::LedgerKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MoneyLabels {
    kind: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StripeCallLabels {
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type SecondsGauge = Gauge<f64, AtomicU64>;
type SecondsCounter = Counter<f64, AtomicU64>;

/// Every Stripe call the gateway makes, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeOperation {
    CreatePaymentIntent,
    RetrievePaymentIntent,
    CancelPaymentIntent,
    ListRefunds,
    RetrieveDispute,
    ListDisputes,
    ListEvents,
}

impl StripeOperation {
    pub const fn as_str(self) -> &'static str {
        match self {
            StripeOperation::CreatePaymentIntent => "create_payment_intent",
            StripeOperation::RetrievePaymentIntent => "retrieve_payment_intent",
            StripeOperation::CancelPaymentIntent => "cancel_payment_intent",
            StripeOperation::ListRefunds => "list_refunds",
            StripeOperation::RetrieveDispute => "retrieve_dispute",
            StripeOperation::ListDisputes => "list_disputes",
            StripeOperation::ListEvents => "list_events",
        }
    }
}

/// Clones share their counts.
#[derive(Clone, Debug)]
pub struct CoreMetrics {
    entries: Family<MoneyLabels, Counter>,
    cents: Family<MoneyLabels, Counter>,
    stripe_calls: Family<StripeCallLabels, Counter>,
    stripe_retries: Family<OperationLabels, Counter>,
    stripe_latency: HistogramFamily<OperationLabels>,
    pool_connections: Family<StateLabels, Gauge>,
    pool_waiting: Gauge,
    pool_timeouts: Counter,
    pool_wait: SecondsCounter,
    /// Serialises `observe_pool`, which turns bb8's totals into increments.
    pool_seen: Arc<std::sync::Mutex<PoolTotals>>,
    passes: Family<ResultLabels, Counter>,
    pass_actions: Family<ActionLabels, Counter>,
    last_pass: SecondsGauge,
}

/// bb8's figures: gauges, and totals since the pool started.
struct PoolReading {
    in_use: u32,
    idle: u32,
    waiting: u64,
    timed_out: u64,
    wait: std::time::Duration,
}

#[derive(Debug, Default)]
struct PoolTotals {
    timed_out: u64,
    wait: std::time::Duration,
}

/// A ledger entry's sign, as a label.
fn direction(kind: LedgerKind, signed_cents: i64) -> &'static str {
    match kind {
        LedgerKind::Adjustment if signed_cents < 0 => "debit",
        LedgerKind::Adjustment => "credit",
        LedgerKind::Refund | LedgerKind::Dispute | LedgerKind::Spend => "debit",
        LedgerKind::TopUp
        | LedgerKind::RefundReversal
        | LedgerKind::DisputeReversal
        | LedgerKind::SpendReversal => "credit",
    }
}

const PASS_ACTIONS: [&str; 5] = [
    "intent_checked",
    "credited",
    "canceled",
    "event_backfilled",
    "failed",
];

/// Counts no registry holds (a core built without `with_metrics`).
impl Default for CoreMetrics {
    fn default() -> Self {
        Self::new(|| Histogram::new(std::iter::empty()))
    }
}

impl CoreMetrics {
    /// `latency` makes the Stripe call histogram (the binaries' one shape).
    pub fn new(latency: fn() -> Histogram) -> Self {
        let metrics = Self {
            entries: Family::default(),
            cents: Family::default(),
            stripe_calls: Family::default(),
            stripe_retries: Family::default(),
            stripe_latency: HistogramFamily::new_with_constructor(latency),
            pool_connections: Family::default(),
            pool_waiting: Gauge::default(),
            pool_timeouts: Counter::default(),
            pool_wait: SecondsCounter::default(),
            pool_seen: Arc::default(),
            passes: Family::default(),
            pass_actions: Family::default(),
            last_pass: SecondsGauge::default(),
        };
        // Every series an alert or a rate reads exists from the start, at 0.
        for kind in LedgerKind::ALL {
            let mut directions = vec![direction(kind, 1)];
            if kind == LedgerKind::Adjustment {
                directions.push(direction(kind, -1));
            }
            for direction in directions {
                let labels = MoneyLabels {
                    kind: kind.as_str(),
                    direction,
                };
                let _ = metrics.entries.get_or_create(&labels);
                let _ = metrics.cents.get_or_create(&labels);
            }
        }
        for result in ["ok", "error"] {
            let _ = metrics.passes.get_or_create(&ResultLabels { result });
        }
        for action in PASS_ACTIONS {
            let _ = metrics.pass_actions.get_or_create(&ActionLabels { action });
        }
        for state in ["in_use", "idle"] {
            let _ = metrics
                .pool_connections
                .get_or_create(&StateLabels { state });
        }
        metrics
    }

    /// Adds every metric of the core to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "payments_ledger_entries",
            "Ledger entries booked, by kind and direction (replays not counted)",
            self.entries.clone(),
        );
        registry.register(
            "payments_ledger_cents",
            "Money booked in the ledger in cents (minor units, USD), by kind and direction",
            self.cents.clone(),
        );
        registry.register(
            "payments_stripe_calls",
            "Stripe API calls (retries included in one call), by operation and result",
            self.stripe_calls.clone(),
        );
        registry.register(
            "payments_stripe_call_retries",
            "Stripe attempts that failed transiently (429, 5xx, timeouts) and were retried, by operation",
            self.stripe_retries.clone(),
        );
        registry.register_with_unit(
            "payments_stripe_call_duration",
            "Time a Stripe call took, retries included, by operation",
            Unit::Seconds,
            self.stripe_latency.clone(),
        );
        registry.register(
            "payments_db_pool_connections",
            "Database pool connections, by state (in_use, idle)",
            self.pool_connections.clone(),
        );
        registry.register(
            "payments_db_pool_waiting",
            "Requests waiting for a database pool connection",
            self.pool_waiting.clone(),
        );
        registry.register(
            "payments_db_pool_get_timeouts",
            "Requests that waited for a pool connection past the pool's timeout (answered UNAVAILABLE)",
            self.pool_timeouts.clone(),
        );
        registry.register_with_unit(
            "payments_db_pool_get_wait",
            "Time spent waiting for a database pool connection, summed",
            Unit::Seconds,
            self.pool_wait.clone(),
        );
        registry.register(
            "payments_reconciliation_passes",
            "Reconciliation passes run by this process, by result (ok, error)",
            self.passes.clone(),
        );
        registry.register(
            "payments_reconciliation_actions",
            "What reconciliation passes did: intent_checked, credited, canceled, event_backfilled, failed",
            self.pass_actions.clone(),
        );
        registry.register_with_unit(
            "payments_reconciliation_last_success_timestamp",
            "When this process last finished a reconciliation pass without error (Unix time; 0: never)",
            Unit::Seconds,
            self.last_pass.clone(),
        );
    }

    /// A ledger entry booked now (not a replay), of `signed_cents`.
    pub(crate) fn booked(&self, kind: LedgerKind, signed_cents: i64) {
        let labels = MoneyLabels {
            kind: kind.as_str(),
            direction: direction(kind, signed_cents),
        };
        self.entries.get_or_create(&labels).inc();
        self.cents
            .get_or_create(&labels)
            .inc_by(signed_cents.unsigned_abs());
    }

    /// One Stripe call, retries included.
    pub(crate) fn stripe_call(
        &self,
        operation: StripeOperation,
        result: &'static str,
        took: std::time::Duration,
    ) {
        let operation = operation.as_str();
        self.stripe_calls
            .get_or_create(&StripeCallLabels { operation, result })
            .inc();
        self.stripe_latency
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn stripe_retry(&self, operation: StripeOperation) {
        self.stripe_retries
            .get_or_create(&OperationLabels {
                operation: operation.as_str(),
            })
            .inc();
    }

    /// The pool as bb8 reports it, before a scrape.
    pub fn observe_pool(&self, state: &bb8::State) {
        let stats = &state.statistics;
        self.record_pool(PoolReading {
            in_use: state.connections.saturating_sub(state.idle_connections),
            idle: state.idle_connections,
            waiting: stats.pending_gets(),
            timed_out: stats.get_timed_out,
            wait: stats.get_wait_time,
        });
    }

    fn record_pool(&self, reading: PoolReading) {
        self.pool_connections
            .get_or_create(&StateLabels { state: "in_use" })
            .set(reading.in_use.into());
        self.pool_connections
            .get_or_create(&StateLabels { state: "idle" })
            .set(reading.idle.into());
        self.pool_waiting
            .set(i64::try_from(reading.waiting).unwrap_or(i64::MAX));
        let mut seen = self.pool_seen.lock().unwrap_or_else(|e| e.into_inner());
        self.pool_timeouts
            .inc_by(reading.timed_out.saturating_sub(seen.timed_out));
        self.pool_wait
            .inc_by(reading.wait.saturating_sub(seen.wait).as_secs_f64());
        seen.timed_out = seen.timed_out.max(reading.timed_out);
        seen.wait = seen.wait.max(reading.wait);
    }

    pub(crate) fn pass_done(&self, done: Result<&crate::Reconciled, ()>) {
        let Ok(done) = done else {
            self.passes
                .get_or_create(&ResultLabels { result: "error" })
                .inc();
            return;
        };
        self.passes
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        let counts = [
            done.intents_checked,
            done.credited,
            done.canceled,
            done.events_backfilled,
            done.failed,
        ];
        for (action, count) in PASS_ACTIONS.into_iter().zip(counts) {
            self.pass_actions
                .get_or_create(&ActionLabels { action })
                .inc_by(u64::try_from(count).unwrap_or(0));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_pass.set(now.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &CoreMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn money_is_counted_by_kind_and_direction_in_cents() {
        let metrics = CoreMetrics::default();
        let before = text(&metrics);
        assert!(
            before.contains(r#"payments_ledger_cents_total{kind="top_up",direction="credit"} 0"#),
            "{before}"
        );
        metrics.booked(LedgerKind::TopUp, 1_000);
        metrics.booked(LedgerKind::Spend, -250);
        metrics.booked(LedgerKind::Adjustment, -5);
        metrics.booked(LedgerKind::Adjustment, 7);
        let after = text(&metrics);
        for line in [
            r#"payments_ledger_cents_total{kind="top_up",direction="credit"} 1000"#,
            r#"payments_ledger_cents_total{kind="spend",direction="debit"} 250"#,
            r#"payments_ledger_cents_total{kind="adjustment",direction="debit"} 5"#,
            r#"payments_ledger_cents_total{kind="adjustment",direction="credit"} 7"#,
            r#"payments_ledger_entries_total{kind="spend",direction="debit"} 1"#,
        ] {
            assert!(after.contains(line), "{line} missing from\n{after}");
        }
    }

    #[test]
    fn the_pool_totals_become_increments_once() {
        let metrics = CoreMetrics::default();
        let reading = || PoolReading {
            in_use: 3,
            idle: 2,
            waiting: 1,
            timed_out: 3,
            wait: std::time::Duration::from_millis(1_500),
        };
        metrics.record_pool(reading());
        metrics.record_pool(reading());
        let text = text(&metrics);
        for line in [
            r#"payments_db_pool_connections{state="in_use"} 3"#,
            r#"payments_db_pool_connections{state="idle"} 2"#,
            "payments_db_pool_waiting 1",
            "payments_db_pool_get_timeouts_total 3",
            "payments_db_pool_get_wait_seconds_total 1.5",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
