//! The `balances` table: the source of truth for what a user may spend.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::balances;
use crate::domain::Currency;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = balances, check_for_backend(diesel::pg::Pg))]
pub struct BalanceRow {
    pub user_id: String,
    pub balance_cents: i64,
    pub currency: Currency,
    pub updated_at: DateTime<Utc>,
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> Result<Option<BalanceRow>, DbError> {
    Ok(balances::table
        .find(user_id)
        .select(BalanceRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The balances of those of `user_ids` that have one, in no order.
pub async fn find_many(
    conn: &mut AsyncPgConnection,
    user_ids: &[&str],
) -> Result<Vec<BalanceRow>, DbError> {
    Ok(balances::table
        .filter(balances::user_id.eq_any(user_ids))
        .select(BalanceRow::as_select())
        .load(conn)
        .await?)
}

/// Adds `cents` (signed) to the user's balance, creating it at 0 first.
/// Call it in the transaction that writes the matching ledger entry.
pub async fn add(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    cents: i64,
    currency: Currency,
    now: DateTime<Utc>,
) -> Result<BalanceRow, DbError> {
    let row = BalanceRow {
        user_id: user_id.to_owned(),
        balance_cents: cents,
        currency,
        updated_at: now,
    };
    Ok(diesel::insert_into(balances::table)
        .values(&row)
        .on_conflict(balances::user_id)
        .do_update()
        .set((
            balances::balance_cents.eq(balances::balance_cents + excluded(balances::balance_cents)),
            balances::updated_at.eq(excluded(balances::updated_at)),
        ))
        .returning(BalanceRow::as_returning())
        .get_result(conn)
        .await?)
}
