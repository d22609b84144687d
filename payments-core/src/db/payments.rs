//! The `payments` table: one row per PaymentIntent this service created.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::payments;
use crate::domain::{Currency, PaymentStatus};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
pub struct PaymentRow {
    pub stripe_intent_id: String,
    pub user_id: String,
    pub amount_cents: i64,
    pub amount_received_cents: i64,
    pub currency: Currency,
    pub status: PaymentStatus,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Clawed back so far by refunds, net of refunds that failed.
    pub amount_refunded_cents: i64,
    /// Clawed back so far by disputes, net of disputes won.
    pub amount_disputed_cents: i64,
}

/// `None` is inserted as NULL: one statement shape, prepared once per connection.
#[derive(Debug, Insertable)]
#[diesel(table_name = payments, treat_none_as_default_value = false)]
pub struct NewPayment<'a> {
    pub stripe_intent_id: &'a str,
    pub user_id: &'a str,
    pub amount_cents: i64,
    pub amount_received_cents: i64,
    pub currency: Currency,
    pub status: PaymentStatus,
    pub idempotency_key: Option<&'a str>,
}

/// How many of the user's payments created after `since` are still open
/// (neither succeeded nor canceled), counting at most `up_to`: the partial
/// index `payments_open_by_user` keeps it to that many index entries.
pub async fn count_open_since(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    since: DateTime<Utc>,
    up_to: i64,
) -> Result<i64, DbError> {
    // A column of the index: an index-only scan where the visibility map allows.
    let open: Vec<DateTime<Utc>> = payments::table
        .select(payments::created_at)
        .filter(payments::user_id.eq(user_id))
        .filter(payments::created_at.gt(since))
        // Constants, not binds: the planner must see the partial index's own predicate.
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "status NOT IN ('succeeded', 'canceled')",
        ))
        .limit(up_to)
        .load(conn)
        .await?;
    Ok(open.len() as i64)
}

/// Inserts the payment row alone (its owner claimed before) unless it
/// conflicts with a stored row; true when inserted.
pub async fn insert_if_absent(
    conn: &mut AsyncPgConnection,
    new: &NewPayment<'_>,
) -> Result<bool, DbError> {
    let inserted = diesel::insert_into(payments::table)
        .values(new)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Inserts every row of `new` that conflicts with no stored row (nor with an
/// earlier row of `new`), in one statement; returns the inserted intent ids.
/// Each intent's owner is recorded in `intent_owners` by the same statement;
/// a row whose intent is owned by another user fails the whole statement
/// (`payments_intent_owner_fkey`).
pub async fn insert_all_if_absent(
    conn: &mut AsyncPgConnection,
    new: &[NewPayment<'_>],
) -> Result<Vec<String>, DbError> {
    Ok(InsertAllIfAbsent {
        stripe_intent_ids: new.iter().map(|p| p.stripe_intent_id).collect(),
        user_ids: new.iter().map(|p| p.user_id).collect(),
        amounts_cents: new.iter().map(|p| p.amount_cents).collect(),
        amounts_received_cents: new.iter().map(|p| p.amount_received_cents).collect(),
        currencies: new.iter().map(|p| p.currency).collect(),
        statuses: new.iter().map(|p| p.status).collect(),
        idempotency_keys: new.iter().map(|p| p.idempotency_key).collect(),
    }
    .load(conn)
    .await?)
}

/// `INSERT … SELECT FROM unnest(<one array per column>)`: one statement text
/// whatever the number of rows, so Postgres parses and plans it once per
/// connection (a `VALUES` list would be a new statement for every size).
struct InsertAllIfAbsent<'a> {
    stripe_intent_ids: Vec<&'a str>,
    user_ids: Vec<&'a str>,
    amounts_cents: Vec<i64>,
    amounts_received_cents: Vec<i64>,
    currencies: Vec<Currency>,
    statuses: Vec<PaymentStatus>,
    idempotency_keys: Vec<Option<&'a str>>,
}

impl QueryFragment<Pg> for InsertAllIfAbsent<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH new AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.stripe_intent_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.user_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.amounts_cents)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.amounts_received_cents)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.currencies)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.statuses)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.idempotency_keys)?;
        out.push_sql(
            ") AS new (stripe_intent_id, user_id, amount_cents, amount_received_cents, \
             currency, status, idempotency_key)), \
             owners AS (INSERT INTO intent_owners (stripe_intent_id, user_id) \
             SELECT stripe_intent_id, user_id FROM new ON CONFLICT DO NOTHING) \
             INSERT INTO payments (stripe_intent_id, user_id, amount_cents, \
             amount_received_cents, currency, status, idempotency_key) \
             SELECT * FROM new ON CONFLICT DO NOTHING RETURNING stripe_intent_id",
        );
        Ok(())
    }
}

impl Query for InsertAllIfAbsent<'_> {
    type SqlType = Text;
}

/// Static, so diesel caches the prepared statement.
impl QueryId for InsertAllIfAbsent<'_> {
    type QueryId = InsertAllIfAbsent<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Gives a row stored without a key (recovered from a webhook) the key of
/// the request that created its intent; a row that has a key keeps it.
pub async fn set_idempotency_key(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    intent_id: &str,
    idempotency_key: &str,
) -> Result<(), DbError> {
    diesel::update(
        payments::table
            .find((user_id, intent_id))
            .filter(payments::idempotency_key.is_null()),
    )
    .set((
        payments::idempotency_key.eq(idempotency_key),
        payments::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_by_idempotency_key(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    idempotency_key: &str,
) -> Result<Option<PaymentRow>, DbError> {
    Ok(payments::table
        .filter(payments::user_id.eq(user_id))
        .filter(payments::idempotency_key.eq(idempotency_key))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The user's payment for an intent.
pub async fn find(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    intent_id: &str,
) -> Result<Option<PaymentRow>, DbError> {
    Ok(payments::table
        .find((user_id, intent_id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The user's payment for an intent, and whether the event `event_id` was
/// applied to it already: one round trip, on the user's shard.
pub async fn find_with_event(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    intent_id: &str,
    event_id: &str,
) -> Result<Option<(PaymentRow, bool)>, DbError> {
    Ok(find_with_event_query!(user_id, intent_id, event_id)
        .first(conn)
        .await
        .optional()?)
}

/// The statement of [`find_with_event`], also rendered for the benchmark
/// (`db::apply::webhook_statements`). A macro: the query's type is unnameable.
macro_rules! find_with_event_query {
    ($user_id:expr, $intent_id:expr, $event_id:expr) => {{
        use $crate::db::schema::{payments, stripe_events};
        let applied = diesel::dsl::exists(
            stripe_events::table
                .filter(stripe_events::user_id.eq($user_id))
                .filter(stripe_events::event_id.eq($event_id)),
        );
        payments::table
            .find(($user_id, $intent_id))
            .select(($crate::db::payments::PaymentRow::as_select(), applied))
    }};
}
pub(crate) use find_with_event_query;

/// The payment for an intent, whoever owns it: its owner is looked up first
/// (`intent_owners`). For operators and tests; the money paths know the user.
pub async fn find_by_intent(
    conn: &mut AsyncPgConnection,
    intent_id: &str,
) -> Result<Option<PaymentRow>, DbError> {
    match super::intent_owners::find(conn, intent_id).await? {
        Some(owner) => find(conn, &owner, intent_id).await,
        None => Ok(None),
    }
}
