//! Durable writes with group commit: one thread owns the writing store
//! connection; requests hand it their writes and wait for the commit. All
//! writes waiting when a commit starts go into the same transaction, so
//! under load one disk sync covers many tokens and no token is ever
//! returned before its lease is on disk.
//!
//! The same thread moves SQLite's write-ahead log into the database
//! (checkpoints), between commits and after their callers have their
//! answers: never inside a commit, where it would hold every waiting
//! request, and never from another connection while commits go on, which
//! would leave the log growing for as long as the load lasts (SQLite only
//! restarts the log once everything in it is checkpointed).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use mayfly_store::{BrokerWrite, Store, WriteOutcome};
use tokio::sync::oneshot;

use crate::clock::Timestamp;

/// Most writes in one transaction.
const MAX_BATCH: usize = 2048;

/// A checkpoint runs when no write has come for this long...
const IDLE_CHECKPOINT: Duration = Duration::from_millis(5);

/// ...or, under steady load, after this many commits or this much time since
/// the last one, whichever comes first: often enough that each checkpoint
/// copies little and the log stays small.
const CHECKPOINT_COMMITS: u32 = 64;
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// A failed commit (nothing of it was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the store could not commit: {0}")]
pub struct WriteError(pub String);

enum Job {
    Apply(
        Vec<BrokerWrite>,
        oneshot::Sender<Result<Vec<WriteOutcome>, WriteError>>,
    ),
    Sweep(
        Timestamp,
        i64,
        oneshot::Sender<Result<(u64, u64), WriteError>>,
    ),
}

/// The handle requests use to write.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Apply(writes, _) => write!(f, "Apply({})", writes.len()),
            Job::Sweep(now, limit, _) => write!(f, "Sweep({now}, {limit})"),
        }
    }
}

impl Writer {
    /// Starts the writer thread over `store` (made durable first).
    pub fn start(mut store: Store) -> Result<Writer, WriteError> {
        store
            .configure_as_writer()
            .map_err(|e| WriteError(e.to_string()))?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("mayfly-writer".into())
            .spawn(move || run(store, queue))
            .map_err(|e| WriteError(e.to_string()))?;
        Ok(Writer { jobs })
    }

    /// Commits `writes` (with whatever else is waiting) and returns their
    /// outcomes once they are durable.
    pub async fn apply(&self, writes: Vec<BrokerWrite>) -> Result<Vec<WriteOutcome>, WriteError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job::Apply(writes, done))
            .map_err(|_| WriteError("the writer has stopped".into()))?;
        wait.await
            .map_err(|_| WriteError("the writer has stopped".into()))?
    }

    /// Commits one write and returns its outcome.
    pub async fn apply_one(&self, write: BrokerWrite) -> Result<WriteOutcome, WriteError> {
        self.apply(vec![write])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| WriteError("no outcome".into()))
    }

    /// Closes expired tasks and credentials (a bounded amount per call).
    pub async fn sweep(&self, now: Timestamp, limit: i64) -> Result<(u64, u64), WriteError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job::Sweep(now, limit, done))
            .map_err(|_| WriteError("the writer has stopped".into()))?;
        wait.await
            .map_err(|_| WriteError("the writer has stopped".into()))?
    }
}

fn run(mut store: Store, queue: mpsc::Receiver<Job>) {
    let mut checkpoints = Checkpoints::new();
    loop {
        // With nothing to checkpoint, sleep until a write comes.
        let next = if checkpoints.commits == 0 {
            queue.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            queue.recv_timeout(IDLE_CHECKPOINT)
        };
        let first = match next {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                checkpoints.run(&mut store);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut applies = Vec::new();
        let mut sweeps = Vec::new();
        let mut pending = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Apply(writes, done) => {
                    pending += writes.len();
                    applies.push((writes, done));
                }
                Job::Sweep(now, limit, done) => sweeps.push((now, limit, done)),
            }
            if pending < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if !applies.is_empty() {
            let mut all = Vec::with_capacity(pending);
            let mut waiting = Vec::with_capacity(applies.len());
            for (writes, done) in applies {
                waiting.push((writes.len(), done));
                all.extend(writes);
            }
            match store.broker_apply(&all) {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    for (count, done) in waiting {
                        let _ = done.send(Ok(outcomes.by_ref().take(count).collect()));
                    }
                }
                Err(e) => {
                    let error = WriteError(e.to_string());
                    for (_, done) in waiting {
                        let _ = done.send(Err(error.clone()));
                    }
                }
            }
            checkpoints.committed();
        }
        for (now, limit, done) in sweeps {
            let _ = done.send(
                store
                    .broker_sweep(now, limit)
                    .map_err(|e| WriteError(e.to_string())),
            );
            checkpoints.committed();
        }
        if checkpoints.due() {
            checkpoints.run(&mut store);
        }
    }
    checkpoints.run(&mut store);
}

/// When the writer last checkpointed, and what it committed since.
struct Checkpoints {
    commits: u32,
    last: Instant,
}

impl Checkpoints {
    fn new() -> Checkpoints {
        Checkpoints {
            commits: 0,
            last: Instant::now(),
        }
    }

    fn committed(&mut self) {
        self.commits += 1;
    }

    fn due(&self) -> bool {
        self.commits >= CHECKPOINT_COMMITS
            || (self.commits > 0 && self.last.elapsed() >= CHECKPOINT_INTERVAL)
    }

    /// Checkpoints if anything was committed since the last time. A failed
    /// checkpoint loses nothing (the log still holds every commit); it is
    /// reported, and the next one after another commit tries again.
    fn run(&mut self, store: &mut Store) {
        if self.commits == 0 {
            return;
        }
        if let Err(e) = store.checkpoint() {
            tracing::warn!("checkpoint failed (will retry): {e}");
        }
        self.commits = 0;
        self.last = Instant::now();
    }
}
