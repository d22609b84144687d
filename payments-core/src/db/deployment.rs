//! The `deployment` table: this deployment's id, made by its first migration.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::deployment;

pub async fn id(conn: &mut AsyncPgConnection) -> Result<String, DbError> {
    Ok(deployment::table.select(deployment::id).first(conn).await?)
}
