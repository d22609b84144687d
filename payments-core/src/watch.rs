//! Live balances. Each change of a balance made through the service is
//! announced on the Postgres channel `balance_changed` (the user's id) right
//! after it commits ([`Announcer`]); every payments-grpc process hears the
//! channel on one connection and wakes the watchers of that user
//! ([`BalanceHub`]). A change made through any replica reaches every
//! replica's watchers; no watcher polls, and a thousand watchers share one
//! database connection.
//!
//! Why not a trigger on `balances`: a transaction that NOTIFYs takes a lock
//! on the database's notification queue from its commit until it ends, so
//! every crediting webhook would commit (and fsync) one at a time: pgbench
//! of the webhook's statements fell from 1,600–2,000 to 540–620 tps. The
//! announcement is its own statement, with no write of its own (no commit
//! record to flush), sent after the money transaction, batched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::sql_types::{Array, Text};
use diesel_async::RunQueryDsl;
use tokio::sync::{mpsc, watch};

use crate::db::DbPool;

/// The channel the balances trigger announces on.
pub const CHANNEL: &str = "balance_changed";
/// Wait before listening again after the connection broke.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Announcements waiting to be sent at most; past it one is dropped (its
/// watchers then learn of the change with the user's next one).
const MAX_WAITING_ANNOUNCEMENTS: usize = 10_000;
/// Watchers one process holds at most (each a task and a few hundred bytes);
/// past it a new watch is refused until one ends.
pub const MAX_WATCHERS: usize = 10_000;
/// Users named by one NOTIFY statement at most.
const MAX_ANNOUNCED_AT_ONCE: usize = 1_000;

/// Sends `NOTIFY balance_changed, '<user id>'` for each balance change this
/// process committed: off the caller's path, a batch per statement.
#[derive(Debug, Clone)]
pub struct Announcer {
    waiting: mpsc::Sender<String>,
}

impl Announcer {
    /// Starts the task that sends announcements on `pool`.
    pub fn start(pool: DbPool) -> Self {
        let (waiting, users) = mpsc::channel(MAX_WAITING_ANNOUNCEMENTS);
        tokio::spawn(announce(pool, users));
        Self { waiting }
    }

    /// The user's balance changed (committed).
    pub fn changed(&self, user_id: &str) {
        if self.waiting.try_send(user_id.to_owned()).is_err() {
            tracing::warn!(user_id, "balance change not announced: too many waiting");
        }
    }
}

async fn announce(pool: DbPool, mut users: mpsc::Receiver<String>) {
    let mut batch = Vec::new();
    while users.recv_many(&mut batch, MAX_ANNOUNCED_AT_ONCE).await > 0 {
        batch.sort_unstable();
        batch.dedup();
        let sent = async {
            let mut conn = pool.get().await.map_err(|err| err.to_string())?;
            diesel::sql_query(format!(
                "SELECT pg_notify('{CHANNEL}', user_id) FROM unnest($1) AS user_id"
            ))
            .bind::<Array<Text>, _>(&batch)
            .execute(&mut conn)
            .await
            .map_err(|err| err.to_string())
        };
        if let Err(err) = sent.await {
            tracing::warn!(error = %err, users = batch.len(), "balance changes not announced");
        }
        batch.clear();
    }
}

/// Who watches which user: one `watch` channel per watched user, whose
/// value counts the changes heard.
#[derive(Debug)]
pub struct BalanceHub {
    users: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Subscriptions alive.
    watchers: std::sync::atomic::AtomicUsize,
    /// At most this many.
    max_watchers: usize,
    /// True once the process stops: every watch ends.
    closed: watch::Sender<bool>,
}

/// One watcher's subscription; dropping it forgets the user when it was
/// the last watcher.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<BalanceHub>,
    user_id: String,
    pub(crate) changes: watch::Receiver<u64>,
    pub(crate) closed: watch::Receiver<bool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub
            .watchers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut users = self.hub.users.lock().unwrap_or_else(|p| p.into_inner());
        // This receiver is still counted while it is being dropped.
        if users
            .get(&self.user_id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            users.remove(&self.user_id);
        }
    }
}

impl Default for BalanceHub {
    fn default() -> Self {
        Self::with_max_watchers(MAX_WATCHERS)
    }
}

impl BalanceHub {
    pub fn with_max_watchers(max_watchers: usize) -> Self {
        Self {
            users: Mutex::default(),
            watchers: std::sync::atomic::AtomicUsize::new(0),
            max_watchers,
            closed: watch::Sender::new(false),
        }
    }

    /// A new watcher of `user_id`; `None` when the process holds as many
    /// as it may.
    pub fn subscribe(self: &Arc<Self>, user_id: &str) -> Option<Subscription> {
        let taken = self
            .watchers
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| (n < self.max_watchers).then_some(n + 1),
            )
            .is_ok();
        if !taken {
            return None;
        }
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let changes = users
            .entry(user_id.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        Some(Subscription {
            hub: self.clone(),
            user_id: user_id.to_owned(),
            changes,
            closed: self.closed.subscribe(),
        })
    }

    /// The user's balance changed: wake their watchers.
    pub fn changed(&self, user_id: &str) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = users.get(user_id) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Changes may have been missed (the listener reconnected): every
    /// watcher reads its balance again.
    pub fn changed_all(&self) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        for sender in users.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Ends every watch (the process stops).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// How many users are watched (tests, logs).
    pub fn watched_users(&self) -> usize {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Listens on `database_url` for balance changes until the hub closes,
    /// reconnecting when the connection breaks (then every watcher reads
    /// again, in case a change went by meanwhile).
    pub fn spawn_listener(self: &Arc<Self>, database_url: String) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut closed = hub.closed.subscribe();
            loop {
                tokio::select! {
                    () = hub.listen_once(&database_url) => {}
                    _ = closed.wait_for(|closed| *closed) => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_AFTER) => {}
                    _ = closed.wait_for(|closed| *closed) => return,
                }
            }
        })
    }

    /// One connection's life: LISTEN, then every notification to its users.
    async fn listen_once(&self, database_url: &str) {
        let (client, mut connection) =
            match tokio_postgres::connect(database_url, tokio_postgres::NoTls).await {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "balance listener: cannot connect; retrying");
                    return;
                }
            };
        let (notifications, mut heard) = tokio::sync::mpsc::unbounded_channel();
        // The connection is driven here; notifications come out of it.
        let driver = async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(note)) => {
                        if notifications.send(note.payload().to_owned()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "balance listener: connection broke");
                        return;
                    }
                }
            }
        };
        let listen = async {
            if let Err(err) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                tracing::warn!(error = %err, "balance listener: LISTEN failed");
                return;
            }
            tracing::info!("balance listener: listening");
            // Changes made while no connection listened.
            self.changed_all();
            while let Some(user_id) = heard.recv().await {
                self.changed(&user_id);
            }
        };
        tokio::select! {
            () = driver => {}
            () = listen => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_wakes_only_that_users_watchers_and_the_last_drop_forgets_the_user() {
        let hub = Arc::new(BalanceHub::with_max_watchers(3));
        let mut ann = hub.subscribe("ann").unwrap();
        let ann_too = hub.subscribe("ann").unwrap();
        let bob = hub.subscribe("bob").unwrap();
        assert!(hub.subscribe("cid").is_none(), "past the most watchers");
        assert_eq!(hub.watched_users(), 2);

        hub.changed("ann");
        assert!(ann.changes.has_changed().unwrap());
        assert!(!bob.changes.has_changed().unwrap());
        ann.changes.mark_unchanged();
        hub.changed_all();
        assert!(ann.changes.has_changed().unwrap() && bob.changes.has_changed().unwrap());

        drop(ann_too);
        assert_eq!(hub.watched_users(), 2, "ann still has a watcher");
        assert!(hub.subscribe("cid").is_some(), "a place freed");
        drop(ann);
        drop(bob);
        assert_eq!(hub.watched_users(), 0);
        hub.changed("ann");
    }
}
