//! Store reads on pooled connections, off the async workers (point reads
//! on SQLite excepted: [`ReadPool::point_read`]). Writes go through the
//! one writer thread: [`crate::writer`].

use std::sync::Mutex;

use mayfly_store::{Store, StoreError};

use crate::error::BrokerError;

/// Most idle connections kept.
const IDLE_CONNECTIONS: usize = 16;

/// Runs blocking work off the async workers: the store's drivers block
/// (PostgreSQL's on its own runtime, which tokio forbids inside an async
/// task), and so do file reads and identity-provider fetches.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BrokerError::Internal(format!("a blocking task failed: {e}")))?
}

/// Connections for reads, opened as needed and reused.
#[derive(Debug)]
pub struct ReadPool {
    target: String,
    sqlite: bool,
    idle: Mutex<Vec<Store>>,
}

impl Drop for ReadPool {
    fn drop(&mut self) {
        // A PostgreSQL connection closes by running a small runtime of its
        // own, which cannot start on a tokio worker (where the last broker
        // handle is dropped when a runtime shuts down): close them on a
        // plain thread.
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if idle.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let closer = std::thread::Builder::new()
            .name("mayfly-close-readers".into())
            .spawn(move || drop(idle));
        if let Ok(closer) = closer {
            let _ = closer.join();
        }
    }
}

impl ReadPool {
    /// A pool over the store at `target` (a SQLite path or a PostgreSQL URL).
    pub fn new(target: &str) -> ReadPool {
        ReadPool {
            target: target.to_owned(),
            sqlite: !(target.starts_with("postgres://") || target.starts_with("postgresql://")),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `work` on a pooled connection, off the async workers.
    pub async fn read<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        work: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, BrokerError> {
        let pool = self.clone();
        blocking(move || pool.with(work)).await
    }

    /// Runs a point read (one row by its key) on a pooled connection: on
    /// SQLite right here on the async worker, as it takes microseconds and
    /// never waits for the writer (write-ahead log), which spares the
    /// request two thread hand-offs; on PostgreSQL off the workers, as
    /// [`ReadPool::read`].
    pub async fn point_read<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        work: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, BrokerError> {
        if self.sqlite {
            return self.with(work);
        }
        self.read(work).await
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, BrokerError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut store = match pooled {
            Some(store) => store,
            None => {
                let mut store = Store::open(&self.target)?;
                store.configure_for_point_reads()?;
                store
            }
        };
        // A connection whose work failed may be broken: it is dropped.
        let value = work(&mut store)?;
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_CONNECTIONS
        {
            idle.push(store);
        }
        Ok(value)
    }
}
