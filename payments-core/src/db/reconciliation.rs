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

/// The creation time (Unix seconds) of the newest event reconciliation has
/// applied; `None` before its first pass.
pub async fn events_cursor(conn: &mut AsyncPgConnection) -> Result<Option<i64>, DbError> {
    Ok(reconciliation_cursor::table
        .select(reconciliation_cursor::events_created_at)
        .first(conn)
        .await
        .optional()?)
}

/// Moves the cursor to `created` (Unix seconds); never backwards, so two
/// passes at once leave the later one's.
pub async fn advance_events_cursor(
    conn: &mut AsyncPgConnection,
    created: i64,
) -> Result<(), DbError> {
    diesel::sql_query(
        "INSERT INTO reconciliation_cursor AS c (singleton, events_created_at, updated_at)
         VALUES (true, $1, now())
         ON CONFLICT (singleton) DO UPDATE
            SET events_created_at = GREATEST(c.events_created_at, excluded.events_created_at),
                updated_at = now()",
    )
    .bind::<diesel::sql_types::BigInt, _>(created)
    .execute(conn)
    .await?;
    Ok(())
}

/// What an operator watches: payments Stripe reported paid (our row says
/// `succeeded`) with no top-up in the ledger, which should always be 0; and
/// the age in seconds of the oldest payment not final (`None` when none is).
pub async fn lifecycle_gauges(conn: &mut AsyncPgConnection) -> Result<(i64, Option<f64>), DbError> {
    #[derive(diesel::QueryableByName)]
    struct Gauges {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        paid_not_credited: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
        oldest_open_age_secs: Option<f64>,
    }
    let gauges: Gauges = diesel::sql_query(
        "SELECT
           (SELECT count(*) FROM payments p
             WHERE p.status = 'succeeded'
               AND NOT EXISTS (SELECT 1 FROM ledger_entries l
                                WHERE l.user_id = p.user_id
                                  AND l.stripe_intent_id = p.stripe_intent_id
                                  AND l.kind = 'top_up')) AS paid_not_credited,
           (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM payments
             WHERE status NOT IN ('succeeded', 'canceled')) AS oldest_open_age_secs",
    )
    .get_result(conn)
    .await?;
    Ok((gauges.paid_not_credited, gauges.oldest_open_age_secs))
}
