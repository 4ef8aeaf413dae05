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

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use mayfly_store::{BrokerWrite, Store, Sweep, Swept, WriteOutcome};
use tokio::sync::oneshot;

use crate::metrics::WriterMetrics;

/// Most writes in one transaction.
const MAX_BATCH: usize = 2048;

/// A checkpoint runs when no write has come for this long...
const IDLE_CHECKPOINT: Duration = Duration::from_millis(5);

/// ...or, under steady load, after this many commits or this much time since
/// the last one, whichever comes first: often enough that each checkpoint
/// copies little and the log stays small.
const CHECKPOINT_COMMITS: u32 = 64;
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Why writes were not committed (nothing of them was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The store failed.
    #[error("the store could not commit: {0}")]
    Store(String),
    /// The writer thread is gone.
    #[error("the store's writer has stopped")]
    Stopped,
    /// The writes were decided under a policy set that has since been
    /// replaced: decide again.
    #[error("the policies changed while the request was decided")]
    StalePolicy,
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

/// A batch of writes back from the writer: one outcome per write, and the
/// writes themselves, so that their memory is freed by the thread that
/// made it (mimalloc frees a block from another thread's heap through
/// atomics, and the writer would pay that for every string of every
/// credential).
struct Applied {
    outcomes: Vec<WriteOutcome>,
    writes: Vec<BrokerWrite>,
}

enum Job {
    /// Writes, and the policy generation they were decided under (if a
    /// decision stands behind them).
    Apply(Vec<BrokerWrite>, Option<u64>, Reply<Applied>),
    Sweep(Sweep, Reply<Swept>),
    /// A new policy set is in force: writes decided under an older one are
    /// refused from here on. Answered once everything before it is durable.
    Generation(u64, Reply<()>),
}

/// The handle requests use to write.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    metrics: Arc<WriterMetrics>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Apply(writes, generation, _) => {
                write!(f, "Apply({}, {generation:?})", writes.len())
            }
            Job::Sweep(sweep, _) => write!(f, "{sweep:?}"),
            Job::Generation(generation, _) => write!(f, "Generation({generation})"),
        }
    }
}

impl Writer {
    /// Starts the writer thread over `store` (made durable first), with
    /// policy generation `generation` in force.
    pub fn start(
        mut store: Store,
        generation: u64,
        metrics: Arc<WriterMetrics>,
    ) -> Result<Writer, WriteError> {
        store
            .configure_as_writer()
            .map_err(|e| WriteError::Store(e.to_string()))?;
        let (jobs, queue) = mpsc::channel();
        let reported = metrics.clone();
        std::thread::Builder::new()
            .name("mayfly-writer".into())
            .spawn(move || run(store, queue, generation, &reported))
            .map_err(|e| WriteError::Store(e.to_string()))?;
        Ok(Writer { jobs, metrics })
    }

    async fn call<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, WriteError> {
        let (done, wait) = oneshot::channel();
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        self.jobs.send(job(done)).map_err(|_| WriteError::Stopped)?;
        wait.await.map_err(|_| WriteError::Stopped)?
    }

    /// Commits `writes` (with whatever else is waiting) and returns their
    /// outcomes once they are durable.
    pub async fn apply(&self, writes: Vec<BrokerWrite>) -> Result<Vec<WriteOutcome>, WriteError> {
        self.apply_under(writes, None).await
    }

    /// Commits `writes`, refused whole if they were decided under a policy
    /// generation older than the one in force when they reach the commit.
    async fn apply_under(
        &self,
        writes: Vec<BrokerWrite>,
        generation: Option<u64>,
    ) -> Result<Vec<WriteOutcome>, WriteError> {
        let applied = self
            .call(|done| Job::Apply(writes, generation, done))
            .await?;
        // Freed here, by the thread that allocated them.
        drop(applied.writes);
        Ok(applied.outcomes)
    }

    /// Commits one write and returns its outcome.
    pub async fn apply_one(&self, write: BrokerWrite) -> Result<WriteOutcome, WriteError> {
        self.apply(vec![write])
            .await?
            .into_iter()
            .next()
            .ok_or(WriteError::Stopped)
    }

    /// Commits one write that policy generation `generation` allowed; if a
    /// newer policy set is in force by the time the write reaches the
    /// commit, nothing is written and [`WriteError::StalePolicy`] says to
    /// decide again.
    pub async fn apply_decided(
        &self,
        write: BrokerWrite,
        generation: u64,
    ) -> Result<WriteOutcome, WriteError> {
        self.apply_under(vec![write], Some(generation))
            .await?
            .into_iter()
            .next()
            .ok_or(WriteError::Stopped)
    }

    /// Puts policy generation `generation` in force: returns once every
    /// write queued before it is durable, and every write queued after it
    /// that was decided under an older generation is refused.
    pub async fn set_generation(&self, generation: u64) -> Result<(), WriteError> {
        self.call(|done| Job::Generation(generation, done)).await
    }

    /// Closes expired tasks and credentials and deletes what retention no
    /// longer keeps (a bounded amount per call).
    pub async fn sweep(&self, sweep: Sweep) -> Result<Swept, WriteError> {
        self.call(|done| Job::Sweep(sweep, done)).await
    }
}

fn run(mut store: Store, queue: mpsc::Receiver<Job>, mut generation: u64, metrics: &WriterMetrics) {
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
        let mut generations = Vec::new();
        let mut pending = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            match job {
                // INVARIANT: jobs are taken in the order they were queued,
                // and a generation change counts for every job after it; a
                // write decided under an older set never reaches the store.
                Job::Apply(_, Some(decided), done) if decided < generation => {
                    let _ = done.send(Err(WriteError::StalePolicy));
                }
                Job::Apply(writes, _, done) => {
                    pending += writes.len();
                    applies.push((writes, done));
                }
                Job::Sweep(sweep, done) => sweeps.push((sweep, done)),
                Job::Generation(new, done) => {
                    generation = generation.max(new);
                    generations.push(done);
                }
            }
            if pending < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if !applies.is_empty() {
            metrics.batch_size.observe(pending as f64);
            metrics.commits.fetch_add(1, Ordering::Relaxed);
            match store.broker_apply(applies.iter().flat_map(|(writes, _)| writes)) {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    for (writes, done) in applies {
                        let outcomes = outcomes.by_ref().take(writes.len()).collect();
                        let _ = done.send(Ok(Applied { outcomes, writes }));
                    }
                }
                Err(e) => {
                    let error = WriteError::Store(e.to_string());
                    for (_, done) in applies {
                        let _ = done.send(Err(error.clone()));
                    }
                }
            }
            checkpoints.committed();
        }
        // Answered after the batch is durable: whoever waits for the new
        // generation then reads every lease decided under the old one.
        for done in generations {
            let _ = done.send(Ok(()));
        }
        for (sweep, done) in sweeps {
            let _ = done.send(
                store
                    .broker_sweep(&sweep)
                    .map_err(|e| WriteError::Store(e.to_string())),
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

#[cfg(test)]
mod tests {
    use mayfly_store::NewAuditEvent;

    use super::*;

    fn write(n: i64) -> BrokerWrite {
        BrokerWrite::Audit(NewAuditEvent::new(n, "test", serde_json::json!({ "n": n })))
    }

    #[test]
    fn writes_decided_under_a_replaced_policy_set_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db").to_string_lossy()).unwrap();
        let writer = Writer::start(store, 0, Default::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(
                writer.apply_decided(write(1), 0).await,
                Ok(WriteOutcome::Done(0))
            );
            writer.set_generation(1).await.unwrap();
            assert_eq!(
                writer.apply_decided(write(2), 0).await,
                Err(WriteError::StalePolicy)
            );
            assert_eq!(
                writer.apply_decided(write(3), 1).await,
                Ok(WriteOutcome::Done(0))
            );
            // A late, older generation never lowers the one in force.
            writer.set_generation(0).await.unwrap();
            assert_eq!(
                writer.apply_decided(write(4), 0).await,
                Err(WriteError::StalePolicy)
            );
        });
        let events = Store::open(&dir.path().join("w.db").to_string_lossy())
            .unwrap()
            .audit_tail(10)
            .unwrap();
        let written: Vec<i64> = events.iter().map(|e| e.at).collect();
        assert_eq!(written, vec![1, 3]);
    }
}
