//! Balance reads, coalesced: the reads waiting at once are answered by one
//! `user_id = ANY($1)` query.

use std::collections::HashMap;

use super::balances::{self, BalanceRow};
use super::coalesce::{Batch, Coalescer};
use super::{DbError, DbPool};

/// Queries in flight at once, and the most reads one query answers.
const LANES: usize = 2;
const MAX_BATCH: usize = 256;

pub struct BalanceReads(Coalescer<BalanceRead>);

impl BalanceReads {
    pub fn new(pool: DbPool) -> Self {
        Self(Coalescer::new(pool, LANES, MAX_BATCH))
    }

    /// The user's balance row, if the user has one.
    pub async fn find(&self, user_id: &str) -> Result<Option<BalanceRow>, DbError> {
        self.0.call(user_id.to_owned()).await
    }
}

struct BalanceRead;

impl Batch for BalanceRead {
    type Call = String;
    type Answer = Option<BalanceRow>;

    async fn run(pool: &DbPool, user_ids: &[String]) -> Vec<Result<Option<BalanceRow>, DbError>> {
        let rows = async {
            let mut conn = pool.get().await?;
            let ids: Vec<&str> = user_ids.iter().map(String::as_str).collect();
            balances::find_many(&mut conn, &ids).await
        };
        match rows.await {
            Ok(rows) => {
                let by_user: HashMap<&str, &BalanceRow> =
                    rows.iter().map(|row| (row.user_id.as_str(), row)).collect();
                user_ids
                    .iter()
                    .map(|id| Ok(by_user.get(id.as_str()).map(|row| (*row).clone())))
                    .collect()
            }
            Err(err) => vec![Err(err); user_ids.len()],
        }
    }
}
