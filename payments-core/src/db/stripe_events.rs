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

pub async fn exists(conn: &mut AsyncPgConnection, event_id: &str) -> Result<bool, DbError> {
    Ok(
        diesel::select(diesel::dsl::exists(stripe_events::table.find(event_id)))
            .get_result(conn)
            .await?,
    )
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
