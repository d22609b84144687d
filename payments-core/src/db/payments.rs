//! The `payments` table: one row per PaymentIntent this service created.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::payments;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
pub struct PaymentRow {
    pub id: i64,
    pub stripe_intent_id: String,
    pub user_id: String,
    pub amount_cents: i64,
    pub amount_received_cents: i64,
    pub currency: String,
    pub status: String,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = payments)]
pub struct NewPayment<'a> {
    pub stripe_intent_id: &'a str,
    pub user_id: &'a str,
    pub amount_cents: i64,
    pub amount_received_cents: i64,
    pub currency: &'a str,
    pub status: &'a str,
    pub idempotency_key: Option<&'a str>,
}

/// What an event changes on a payment; `None` failure fields clear them.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = payments, treat_none_as_null = true)]
pub struct PaymentUpdate<'a> {
    pub status: &'a str,
    pub amount_received_cents: i64,
    pub failure_code: Option<&'a str>,
    pub failure_message: Option<&'a str>,
    pub updated_at: DateTime<Utc>,
}

/// Inserts `new` unless a row with its intent id, or its user and
/// idempotency key, exists; returns the inserted row.
pub async fn insert_if_absent(
    conn: &mut AsyncPgConnection,
    new: &NewPayment<'_>,
) -> Result<Option<PaymentRow>, DbError> {
    Ok(diesel::insert_into(payments::table)
        .values(new)
        .on_conflict_do_nothing()
        .returning(PaymentRow::as_returning())
        .get_result(conn)
        .await
        .optional()?)
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

pub async fn find_by_intent(
    conn: &mut AsyncPgConnection,
    intent_id: &str,
) -> Result<Option<PaymentRow>, DbError> {
    Ok(payments::table
        .filter(payments::stripe_intent_id.eq(intent_id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The payment, locked until the end of the transaction.
pub async fn lock_by_intent(
    conn: &mut AsyncPgConnection,
    intent_id: &str,
) -> Result<Option<PaymentRow>, DbError> {
    Ok(payments::table
        .filter(payments::stripe_intent_id.eq(intent_id))
        .select(PaymentRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: i64,
    changes: &PaymentUpdate<'_>,
) -> Result<PaymentRow, DbError> {
    Ok(diesel::update(payments::table.find(id))
        .set(changes)
        .returning(PaymentRow::as_returning())
        .get_result(conn)
        .await?)
}
