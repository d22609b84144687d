//! Reconciliation's reads and its cursor: payments still open (of every
//! user, oldest first, a bounded batch per pass), and where its read of
//! Stripe's Events API stands.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::payments::PaymentRow;
use super::schema::{payments, reconciliation_cursor};

/// Statuses that wait for the customer: an intent left in one is abandoned
/// after a while.
const WAITING_FOR_THE_CUSTOMER: [&str; 3] = [
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
];

/// Payments not final (`succeeded`, `canceled`) and not updated since
/// `cutoff`, least recently updated first.
pub async fn open_not_updated_since(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<PaymentRow>, DbError> {
    Ok(payments::table
        .filter(payments::status.ne_all(["succeeded", "canceled"]))
        .filter(payments::updated_at.lt(cutoff))
        .order(payments::updated_at)
        .limit(limit)
        .select(PaymentRow::as_select())
        .load(conn)
        .await?)
}

/// Payments still waiting for the customer and created before `cutoff`,
/// least recently updated first.
pub async fn waiting_since(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<PaymentRow>, DbError> {
    Ok(payments::table
        .filter(payments::status.eq_any(WAITING_FOR_THE_CUSTOMER))
        .filter(payments::created_at.lt(cutoff))
        .order(payments::updated_at)
        .limit(limit)
        .select(PaymentRow::as_select())
        .load(conn)
        .await?)
}

/// Where reconciliation's read of Stripe's Events API stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventsCursor {
    /// Walking forward: the newest event the backfill has handled (applied,
    /// found applied, or parked); the next read starts right after it.
    pub last_id: Option<String>,
    /// While finding where to begin (walking back from the newest event):
    /// the oldest event handled so far; the walk goes on below it.
    pub seek_id: Option<String>,
    /// The walk back reaches down to events created at this time (Unix
    /// seconds); once it has, the creation time of `last_id`, from where a
    /// walk back starts again should Stripe no longer know `last_id`.
    pub created_at: i64,
}

/// The cursor; `None` before the first pass.
pub async fn events_cursor(conn: &mut AsyncPgConnection) -> Result<Option<EventsCursor>, DbError> {
    Ok(reconciliation_cursor::table
        .select((
            reconciliation_cursor::events_last_id,
            reconciliation_cursor::events_seek_id,
            reconciliation_cursor::events_created_at,
        ))
        .first::<(Option<String>, Option<String>, i64)>(conn)
        .await
        .optional()?
        .map(|(last_id, seek_id, created_at)| EventsCursor {
            last_id,
            seek_id,
            created_at,
        }))
}

/// Stores the cursor whole. Two passes at once each write a cursor behind
/// which everything was handled, so whichever writes last, nothing is
/// skipped (at worst some events are read again, and are duplicates).
pub async fn store_events_cursor(
    conn: &mut AsyncPgConnection,
    cursor: &EventsCursor,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    // Only excluded values in DO UPDATE SET: Citus refuses now() there.
    diesel::sql_query(
        "INSERT INTO reconciliation_cursor AS c
                (singleton, events_created_at, events_last_id, events_seek_id, updated_at)
         VALUES (true, $1, $2, $3, $4)
         ON CONFLICT (singleton) DO UPDATE
            SET events_created_at = excluded.events_created_at,
                events_last_id = excluded.events_last_id,
                events_seek_id = excluded.events_seek_id,
                updated_at = excluded.updated_at",
    )
    .bind::<diesel::sql_types::BigInt, _>(cursor.created_at)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(cursor.last_id.as_deref())
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(cursor.seek_id.as_deref())
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// A payment recorded paid this long ago (by `updated_at`, which the
/// writer sets from its own clock inside its transaction) may still be
/// committing: a look for uncredited payments starts this much before the
/// last one ended. Far longer than any transaction lives (statement and
/// idle-in-transaction timeouts) plus any sane clock skew.
const PAID_NOT_CREDITED_OVERLAP: &str = "10 minutes";

/// What one look for paid payments without their top-up found.
#[derive(Debug, Clone, PartialEq)]
pub struct PaidNotCredited {
    /// Payments our row says `succeeded` whose top-up the ledger lacks
    /// (should always be 0).
    pub count: i64,
    /// Where the next look starts: the overlap before now, or the oldest
    /// uncredited payment found, whichever is earlier, so that one stays
    /// counted until it is credited.
    pub next_since: DateTime<Utc>,
}

/// Payments our row says `succeeded` with no top-up in the ledger, among
/// those updated since `since` (all of them when `None`). Scanning every
/// paid payment grows with the table (half a second at a million on the
/// bench machine), so the metrics scrape looks once at all of them and then
/// only at what changed since its last look, through
/// `payments_succeeded_by_updated_at`.
pub async fn paid_not_credited(
    conn: &mut AsyncPgConnection,
    since: Option<DateTime<Utc>>,
) -> Result<PaidNotCredited, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        next_since: DateTime<Utc>,
    }
    let select = format!(
        "SELECT count(*) AS count,
                LEAST(now() - interval '{PAID_NOT_CREDITED_OVERLAP}', min(p.updated_at)) AS next_since
           FROM payments p
          WHERE p.status = 'succeeded'
            AND NOT EXISTS (SELECT 1 FROM ledger_entries l
                             WHERE l.user_id = p.user_id
                               AND l.stripe_intent_id = p.stripe_intent_id
                               AND l.kind = 'top_up')"
    );
    let found: Found = match since {
        None => diesel::sql_query(select).get_result(conn).await?,
        Some(since) => {
            diesel::sql_query(format!("{select} AND p.updated_at >= $1"))
                .bind::<diesel::sql_types::Timestamptz, _>(since)
                .get_result(conn)
                .await?
        }
    };
    Ok(PaidNotCredited {
        count: found.count,
        next_since: found.next_since,
    })
}

/// The age in seconds of the oldest payment not final (`None` when none
/// is), through the partial index of open payments.
pub async fn oldest_open_payment_age(conn: &mut AsyncPgConnection) -> Result<Option<f64>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Age {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
        secs: Option<f64>,
    }
    let age: Age = diesel::sql_query(
        "SELECT extract(epoch FROM now() - min(created_at))::float8 AS secs FROM payments
          WHERE status NOT IN ('succeeded', 'canceled')",
    )
    .get_result(conn)
    .await?;
    Ok(age.secs)
}
