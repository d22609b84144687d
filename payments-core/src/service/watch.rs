//! Watching a balance: the current one at once, then one per change,
//! pushed by the balance hub (`crate::watch`), until the watch is dropped or
//! the process stops.

use super::{Balance, PaymentsService};
use crate::Error;
use crate::domain::UserId;
use crate::stripe::PaymentGateway;
use crate::watch::Subscription;

/// One watcher of one user's balance; read it with
/// [`PaymentsService::next_balance`].
#[derive(Debug)]
pub struct BalanceWatch {
    user_id: String,
    subscription: Subscription,
    /// What the watcher was last told; `None` before the first message.
    last: Option<Balance>,
}

impl<G: PaymentGateway> PaymentsService<G> {
    /// Starts watching the user's balance. Subscribed before the first read,
    /// so no change between the two is missed.
    pub fn watch_balance(&self, user_id: &str) -> Result<BalanceWatch, Error> {
        let user = UserId::parse(user_id)?;
        let subscription = self.balances.subscribe(user.as_str()).ok_or_else(|| {
            Error::TooManyWatchers(format!(
                "this server holds {} balance watches, its most; retry shortly",
                crate::watch::MAX_WATCHERS
            ))
        })?;
        Ok(BalanceWatch {
            subscription,
            user_id: user.as_str().to_owned(),
            last: None,
        })
    }

    /// The balance to send next: at once the first time, then when it has
    /// changed. `None` once the process stops.
    pub async fn next_balance(&self, watch: &mut BalanceWatch) -> Option<Result<Balance, Error>> {
        loop {
            if watch.last.is_some() {
                let subscription = &mut watch.subscription;
                tokio::select! {
                    changed = subscription.changes.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                    _ = subscription.closed.wait_for(|closed| *closed) => return None,
                }
            } else if *watch.subscription.closed.borrow() {
                return None;
            }
            // Several changes heard at once are one read.
            watch.subscription.changes.mark_unchanged();
            let balance = match self.get_balance(&watch.user_id).await {
                Ok(balance) => balance,
                Err(err) => return Some(Err(err)),
            };
            if watch.last.as_ref() != Some(&balance) {
                watch.last = Some(balance.clone());
                return Some(Ok(balance));
            }
        }
    }

    /// Hears balance changes on `database_url` (one connection for the
    /// whole process) until [`PaymentsService::stop_watches`].
    pub fn listen_for_balance_changes(&self, database_url: String) -> tokio::task::JoinHandle<()> {
        self.balances.spawn_listener(database_url)
    }

    /// Ends every watch: the process stops.
    pub fn stop_watches(&self) {
        self.balances.close();
    }
}
