//! Coalescing: calls that arrive while a statement is in flight go to
//! Postgres together, as one statement, when it returns. Under no load a call
//! is one statement as before; under load one round trip (and, for writes,
//! one commit) answers many calls, and the round trip and the commit are most
//! of what a small statement costs Postgres. Nothing waits on a timer.
//!
//! A batch's statement starts after every call in it arrived, so each call
//! sees every commit made before it was made, and a write is answered only
//! once it is committed.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{DbError, DbPool};

/// A statement that answers many calls at once. Each call's row belongs to
/// one user and depends on no other call's row.
pub trait Batch: Send + Sync + 'static {
    type Call: Send + 'static;
    type Answer: Send + 'static;

    /// One answer per call, in the calls' order.
    fn run(
        pool: &DbPool,
        calls: &[Self::Call],
    ) -> impl Future<Output = Vec<Result<Self::Answer, DbError>>> + Send;

    /// For a [`Coalescer::keyed`]: calls with the same key always go to the
    /// same lane.
    fn lane_key(_call: &Self::Call) -> &str {
        ""
    }
}

struct Waiting<B: Batch> {
    call: B::Call,
    reply: oneshot::Sender<Result<B::Answer, DbError>>,
}

pub struct Coalescer<B: Batch> {
    pool: DbPool,
    /// Statements in flight at once: while they run, the next batch gathers.
    lanes: usize,
    /// The most calls one statement answers.
    max_batch: usize,
    /// One queue per lane ([`Coalescer::keyed`]), or one that every lane takes from.
    keyed: bool,
    /// Started on the first call, so a service can be built outside a runtime.
    queues: OnceLock<Vec<mpsc::UnboundedSender<Waiting<B>>>>,
}

impl<B: Batch> Coalescer<B> {
    /// Each batch is taken by whichever lane is free.
    pub fn new(pool: DbPool, lanes: usize, max_batch: usize) -> Self {
        Self {
            pool,
            lanes: lanes.max(1),
            max_batch: max_batch.max(1),
            keyed: false,
            queues: OnceLock::new(),
        }
    }

    /// Each lane has its own queue, and a call goes to the lane of its
    /// [`Batch::lane_key`]: calls on the same rows (one user's spends) share
    /// batches instead of waiting on each other's row locks from lanes in
    /// flight side by side.
    pub fn keyed(pool: DbPool, lanes: usize, max_batch: usize) -> Self {
        Self {
            keyed: true,
            ..Self::new(pool, lanes, max_batch)
        }
    }

    /// Answers `call` in the next batch.
    pub async fn call(&self, call: B::Call) -> Result<B::Answer, DbError> {
        let queues = self.queues.get_or_init(|| self.start_lanes());
        let queue = match queues.len() {
            1 => &queues[0],
            lanes => {
                let mut hasher = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(B::lane_key(&call), &mut hasher);
                &queues[(std::hash::Hasher::finish(&hasher) % lanes as u64) as usize]
            }
        };
        let (reply, answer) = oneshot::channel();
        let stopped = || DbError::Unavailable("the database lanes stopped".into());
        queue.send(Waiting { call, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// The lanes stop when the coalescer (their queues' only sender) is dropped.
    fn start_lanes(&self) -> Vec<mpsc::UnboundedSender<Waiting<B>>> {
        let (queues, lanes_per_queue) = if self.keyed {
            (self.lanes, 1)
        } else {
            (1, self.lanes)
        };
        (0..queues)
            .map(|_| {
                let (queue, waiting) = mpsc::unbounded_channel();
                let waiting = Arc::new(Mutex::new(waiting));
                for _ in 0..lanes_per_queue {
                    tokio::spawn(lane::<B>(
                        self.pool.clone(),
                        waiting.clone(),
                        self.max_batch,
                    ));
                }
                queue
            })
            .collect()
    }
}

async fn lane<B: Batch>(
    pool: DbPool,
    waiting: Arc<Mutex<mpsc::UnboundedReceiver<Waiting<B>>>>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        // Waits for one call, then takes every call already waiting.
        if waiting.lock().await.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        let (calls, replies): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|waiting| (waiting.call, waiting.reply))
            .unzip();
        let answers = B::run(&pool, &calls).await;
        debug_assert_eq!(answers.len(), replies.len());
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A caller that went away needs no answer.
            let _ = reply.send(answer);
        }
    }
}
