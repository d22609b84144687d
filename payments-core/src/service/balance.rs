//! Reading a user's balance.

use super::{Balance, CURRENCY, PaymentsService};
use crate::Error;
use crate::domain::{Cents, UserId};
use crate::stripe::PaymentGateway;

impl<G: PaymentGateway> PaymentsService<G> {
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn get_balance(&self, user_id: &str) -> Result<Balance, Error> {
        let user = UserId::parse(user_id)?;
        let balance = match self.balance_reads.find(user.as_str()).await? {
            Some(row) => Balance {
                user_id: row.user_id,
                balance_cents: Cents::new(row.balance_cents),
                currency: row.currency,
                updated_at: Some(row.updated_at),
            },
            None => Balance {
                user_id: user.as_str().to_owned(),
                balance_cents: Cents::new(0),
                currency: CURRENCY,
                updated_at: None,
            },
        };
        Ok(balance)
    }
}
