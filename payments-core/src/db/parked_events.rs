//! Parked events: Stripe events whose apply failed for a reason that will
//! not go away by itself, kept with their attempts, last error and next try
//! so that they hold nothing else back (`service::parked` owns the policy:
//! what parks, and the backoff).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::parked_stripe_events;

/// A parked event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = parked_stripe_events, check_for_backend(diesel::pg::Pg))]
pub struct ParkedEvent {
    pub event_id: String,
    pub event_type: String,
    pub object_id: Option<String>,
    /// Every client_secret removed, as for applied events.
    pub payload: String,
    pub attempts: i32,
    pub last_error: String,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// One failure of an event's apply.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub object_id: Option<&'a str>,
    pub payload: &'a str,
    pub error: &'a str,
    pub failed_at: DateTime<Utc>,
    /// When to try again (the service's backoff).
    pub next_attempt_at: DateTime<Utc>,
}

/// Parks the event, or counts one more failure of an event parked already,
/// and answers its row.
pub async fn park(
    conn: &mut AsyncPgConnection,
    failure: &Failure<'_>,
) -> Result<ParkedEvent, DbError> {
    // Only excluded values in DO UPDATE SET: Citus refuses non-immutable
    // functions (now(), timestamp arithmetic) there.
    Ok(diesel::sql_query(
        "INSERT INTO parked_stripe_events AS p
                (event_id, event_type, object_id, payload, attempts, last_error,
                 first_failed_at, last_failed_at, next_attempt_at)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $6, $7)
         ON CONFLICT (event_id) DO UPDATE
            SET attempts = p.attempts + 1,
                last_error = excluded.last_error,
                last_failed_at = excluded.last_failed_at,
                next_attempt_at = excluded.next_attempt_at
         RETURNING event_id, event_type, object_id, payload, attempts, last_error,
                   first_failed_at, last_failed_at, next_attempt_at",
    )
    .bind::<diesel::sql_types::Text, _>(failure.event_id)
    .bind::<diesel::sql_types::Text, _>(failure.event_type)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(failure.object_id)
    .bind::<diesel::sql_types::Text, _>(failure.payload)
    .bind::<diesel::sql_types::Text, _>(failure.error)
    .bind::<diesel::sql_types::Timestamptz, _>(failure.failed_at)
    .bind::<diesel::sql_types::Timestamptz, _>(failure.next_attempt_at)
    .get_result(conn)
    .await?)
}

/// Forgets the event (it was applied); true when it was parked.
pub async fn unpark(conn: &mut AsyncPgConnection, event_id: &str) -> Result<bool, DbError> {
    let deleted = diesel::delete(parked_stripe_events::table.find(event_id))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}

/// The parked event `event_id`, if it is parked.
pub async fn find(
    conn: &mut AsyncPgConnection,
    event_id: &str,
) -> Result<Option<ParkedEvent>, DbError> {
    Ok(parked_stripe_events::table
        .find(event_id)
        .select(ParkedEvent::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Events whose next try is due at `now`, the longest waiting first.
pub async fn due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ParkedEvent>, DbError> {
    Ok(parked_stripe_events::table
        .filter(parked_stripe_events::next_attempt_at.le(now))
        .order((
            parked_stripe_events::next_attempt_at,
            parked_stripe_events::event_id,
        ))
        .limit(limit)
        .select(ParkedEvent::as_select())
        .load(conn)
        .await?)
}

/// A page of parked events by event id, after `after` (exclusive).
pub async fn page(
    conn: &mut AsyncPgConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ParkedEvent>, DbError> {
    let mut query = parked_stripe_events::table
        .order(parked_stripe_events::event_id)
        .limit(limit)
        .select(ParkedEvent::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(parked_stripe_events::event_id.gt(after.to_owned()));
    }
    Ok(query.load(conn).await?)
}

/// How many events are parked.
pub async fn count(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(parked_stripe_events::table.count().get_result(conn).await?)
}
