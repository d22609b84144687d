//! The `intent_owners` table: the one user each PaymentIntent belongs to,
//! fixed when the intent is first stored. Global (not per user): it is how a
//! webhook, which names only the intent, finds the user whose rows to touch.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::intent_owners;

pub async fn find(
    conn: &mut AsyncPgConnection,
    intent_id: &str,
) -> Result<Option<String>, DbError> {
    Ok(intent_owners::table
        .find(intent_id)
        .select(intent_owners::user_id)
        .first(conn)
        .await
        .optional()?)
}

/// Records `user_id` as the intent's owner unless it has one; answers the
/// owner, which is `user_id` or whoever claimed the intent first.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    intent_id: &str,
    user_id: &str,
) -> Result<String, DbError> {
    diesel::insert_into(intent_owners::table)
        .values((
            intent_owners::stripe_intent_id.eq(intent_id),
            intent_owners::user_id.eq(user_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    find(conn, intent_id)
        .await?
        .ok_or(DbError::Query(std::sync::Arc::new(
            diesel::result::Error::NotFound,
        )))
}
