//! The `stripe_events` table: every event id processed, once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::stripe_events;

pub const OUTCOME_APPLIED: &str = "applied";
pub const OUTCOME_IGNORED: &str = "ignored";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = stripe_events, check_for_backend(diesel::pg::Pg))]
pub struct StripeEventRow {
    pub event_id: String,
    pub event_type: String,
    pub object_id: Option<String>,
    pub user_id: Option<String>,
    pub outcome: String,
    pub payload: String,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
}

/// `None` is inserted as NULL: one statement shape, prepared once per connection.
#[derive(Debug, Insertable)]
#[diesel(table_name = stripe_events, treat_none_as_default_value = false)]
pub struct NewStripeEvent<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub object_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub outcome: &'a str,
    pub payload: &'a str,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
}

/// Whether the event was applied already. An event recorded `ignored` is
/// looked at again: the cause (a wrong Stripe key, an edited intent) may be gone.
pub async fn was_applied(conn: &mut AsyncPgConnection, event_id: &str) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        stripe_events::table
            .find(event_id)
            .filter(stripe_events::outcome.eq(OUTCOME_APPLIED)),
    ))
    .get_result(conn)
    .await?)
}

/// Records the event as applied: inserted, or turned from `ignored` into
/// `applied`; false when it was applied already (a concurrent delivery).
pub async fn record_applied(
    conn: &mut AsyncPgConnection,
    event: &NewStripeEvent<'_>,
) -> Result<bool, DbError> {
    use diesel::query_dsl::methods::FilterDsl;
    use diesel::upsert::excluded;
    let upsert = diesel::insert_into(stripe_events::table)
        .values(event)
        .on_conflict(stripe_events::event_id)
        .do_update()
        .set((
            stripe_events::outcome.eq(excluded(stripe_events::outcome)),
            stripe_events::object_id.eq(excluded(stripe_events::object_id)),
            stripe_events::user_id.eq(excluded(stripe_events::user_id)),
            stripe_events::payload.eq(excluded(stripe_events::payload)),
            stripe_events::processed_at.eq(excluded(stripe_events::processed_at)),
        ));
    // ON CONFLICT … DO UPDATE … WHERE: only an event recorded `ignored` is taken over.
    let recorded = FilterDsl::filter(upsert, stripe_events::outcome.eq(OUTCOME_IGNORED))
        .execute(conn)
        .await?;
    Ok(recorded == 1)
}

/// Records the event unless its id was recorded before; true when recorded.
pub async fn insert_if_absent(
    conn: &mut AsyncPgConnection,
    event: &NewStripeEvent<'_>,
) -> Result<bool, DbError> {
    let inserted = diesel::insert_into(stripe_events::table)
        .values(event)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Empties the stored payloads of events received before `cutoff`, at most
/// `batch` of them; answers how many. The rows stay: they are the registry
/// that keeps each event applied once.
pub async fn forget_payloads_before(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<usize, DbError> {
    let old: Vec<String> = stripe_events::table
        .select(stripe_events::event_id)
        .filter(stripe_events::received_at.lt(cutoff))
        .filter(stripe_events::payload.ne(""))
        .limit(batch)
        .load(conn)
        .await?;
    if old.is_empty() {
        return Ok(0);
    }
    Ok(diesel::update(stripe_events::table)
        .filter(stripe_events::event_id.eq_any(old))
        .set(stripe_events::payload.eq(""))
        .execute(conn)
        .await?)
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    event_id: &str,
) -> Result<Option<StripeEventRow>, DbError> {
    Ok(stripe_events::table
        .find(event_id)
        .select(StripeEventRow::as_select())
        .first(conn)
        .await
        .optional()?)
}
