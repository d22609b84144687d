//! The Stripe event registry, in two tables:
//! - `stripe_events`: the events applied to a user's payment, keyed by
//!   `(user_id, event_id)`, written by the money transaction (`db::apply`);
//! - `ignored_stripe_events`: the events that concern no user of ours, keyed
//!   by `event_id`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::{ignored_stripe_events, stripe_events};

/// What became of a recorded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedOutcome {
    /// Applied to a user's payment (`stripe_events`).
    Applied,
    /// About no user of ours (`ignored_stripe_events`).
    Ignored,
}

impl RecordedOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordedOutcome::Applied => "applied",
            RecordedOutcome::Ignored => "ignored",
        }
    }
}

impl PartialEq<&str> for RecordedOutcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An event as recorded, from either table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEventRecord {
    pub event_id: String,
    pub event_type: String,
    pub object_id: Option<String>,
    /// `None` for an ignored event.
    pub user_id: Option<String>,
    pub outcome: RecordedOutcome,
    /// Why it was ignored.
    pub reason: Option<String>,
    pub payload: String,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = stripe_events, check_for_backend(diesel::pg::Pg))]
struct AppliedRow {
    event_id: String,
    event_type: String,
    stripe_intent_id: String,
    user_id: String,
    payload: String,
    received_at: DateTime<Utc>,
    processed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = ignored_stripe_events, check_for_backend(diesel::pg::Pg))]
struct IgnoredRow {
    event_id: String,
    event_type: String,
    object_id: Option<String>,
    reason: String,
    payload: String,
    received_at: DateTime<Utc>,
    processed_at: DateTime<Utc>,
}

/// `None` is inserted as NULL: one statement shape, prepared once per connection.
#[derive(Debug, Insertable)]
#[diesel(table_name = ignored_stripe_events, treat_none_as_default_value = false)]
pub struct IgnoredEvent<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub object_id: Option<&'a str>,
    pub reason: &'a str,
    pub payload: &'a str,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
}

/// Records an ignored event unless its id was recorded ignored before; true
/// when recorded.
pub async fn record_ignored(
    conn: &mut AsyncPgConnection,
    event: &IgnoredEvent<'_>,
) -> Result<bool, DbError> {
    let inserted = diesel::insert_into(ignored_stripe_events::table)
        .values(event)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// An event applied to a user's payment by more than one statement (a
/// refund's or dispute's clawbacks, each its own transaction): recorded
/// after its effects, which are each once per Stripe object whatever
/// happens in between.
#[derive(Debug, Insertable)]
#[diesel(table_name = stripe_events)]
pub struct AppliedEvent<'a> {
    pub user_id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub stripe_intent_id: &'a str,
    pub payload: &'a str,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
}

/// Records an applied event; false when it was recorded before.
pub async fn record_applied(
    conn: &mut AsyncPgConnection,
    event: &AppliedEvent<'_>,
) -> Result<bool, DbError> {
    let inserted = diesel::insert_into(stripe_events::table)
        .values(event)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Whether the event was applied to the user's payments.
pub async fn is_applied(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    event_id: &str,
) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        stripe_events::table.find((user_id, event_id)),
    ))
    .get_result(conn)
    .await?)
}

/// Empties the stored payloads of events received before `cutoff`, at most
/// `batch` per table; answers how many. The rows stay: they are the registry
/// that keeps each event applied once.
pub async fn forget_payloads_before(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<usize, DbError> {
    let applied: Vec<(String, String)> = stripe_events::table
        .select((stripe_events::user_id, stripe_events::event_id))
        .filter(stripe_events::received_at.lt(cutoff))
        .filter(stripe_events::payload.ne(""))
        .limit(batch)
        .load(conn)
        .await?;
    let mut forgotten = 0;
    // One user's row at a time: each update stays on its user's shard.
    for (user_id, event_id) in &applied {
        forgotten += diesel::update(stripe_events::table.find((user_id, event_id)))
            .set(stripe_events::payload.eq(""))
            .execute(conn)
            .await?;
    }
    let ignored: Vec<String> = ignored_stripe_events::table
        .select(ignored_stripe_events::event_id)
        .filter(ignored_stripe_events::received_at.lt(cutoff))
        .filter(ignored_stripe_events::payload.ne(""))
        .limit(batch)
        .load(conn)
        .await?;
    if !ignored.is_empty() {
        forgotten += diesel::update(ignored_stripe_events::table)
            .filter(ignored_stripe_events::event_id.eq_any(ignored))
            .set(ignored_stripe_events::payload.eq(""))
            .execute(conn)
            .await?;
    }
    Ok(forgotten)
}

/// The event as recorded: applied (to whichever user) if it was, else
/// ignored. For operators and tests; on Citus it asks every shard.
pub async fn find(
    conn: &mut AsyncPgConnection,
    event_id: &str,
) -> Result<Option<StripeEventRecord>, DbError> {
    let applied = stripe_events::table
        .filter(stripe_events::event_id.eq(event_id))
        .select(AppliedRow::as_select())
        .first(conn)
        .await
        .optional()?;
    if let Some(row) = applied {
        return Ok(Some(StripeEventRecord {
            event_id: row.event_id,
            event_type: row.event_type,
            object_id: Some(row.stripe_intent_id),
            user_id: Some(row.user_id),
            outcome: RecordedOutcome::Applied,
            reason: None,
            payload: row.payload,
            received_at: row.received_at,
            processed_at: row.processed_at,
        }));
    }
    let ignored = ignored_stripe_events::table
        .find(event_id)
        .select(IgnoredRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(ignored.map(|row| StripeEventRecord {
        event_id: row.event_id,
        event_type: row.event_type,
        object_id: row.object_id,
        user_id: None,
        outcome: RecordedOutcome::Ignored,
        reason: Some(row.reason),
        payload: row.payload,
        received_at: row.received_at,
        processed_at: row.processed_at,
    }))
}
