//! Live tasks kept in memory, so an exchange does not read its task from
//! the store every time. The store stays the authority: a lease is only
//! committed while its task is live there, so a stale entry can cost a
//! refused write, never a credential for an ended task. Every change that
//! ends tasks goes through [`TaskCache::forget`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mayfly_store::{RevokeSelector, TaskRecord};

use crate::clock::Timestamp;

/// Most tasks kept; past it, expired ones go first, then the cache starts
/// over (a miss costs one read).
const CAPACITY: usize = 100_000;

/// What ended, and so must leave the cache.
#[derive(Debug, Clone, Copy)]
pub enum Forget<'a> {
    /// What a revocation selected (a task, a workload's or an owner's tasks).
    Revoked(&'a RevokeSelector),
    /// Tasks whose lifetime is over at this time.
    ExpiredAt(Timestamp),
}

/// Live tasks by id.
#[derive(Debug, Default)]
pub struct TaskCache {
    tasks: Mutex<HashMap<String, Arc<TaskRecord>>>,
}

impl TaskCache {
    /// The cached task, if any.
    pub fn get(&self, id: &str) -> Option<Arc<TaskRecord>> {
        self.tasks.lock().ok().and_then(|c| c.get(id).cloned())
    }

    /// Keeps a live task.
    pub fn insert(&self, task: Arc<TaskRecord>, now: Timestamp) {
        if task.ended_at.is_some() || task.expires_at <= now {
            return;
        }
        if let Ok(mut cache) = self.tasks.lock() {
            if cache.len() >= CAPACITY {
                cache.retain(|_, t| t.expires_at > now);
                if cache.len() >= CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(task.id.clone(), task);
        }
    }

    /// Drops what ended.
    pub fn forget(&self, what: Forget<'_>) {
        let Ok(mut cache) = self.tasks.lock() else {
            return;
        };
        match what {
            Forget::Revoked(RevokeSelector::Task(id)) => {
                cache.remove(id);
            }
            Forget::Revoked(RevokeSelector::Workload(workload)) => {
                cache.retain(|_, t| t.workload != *workload);
            }
            Forget::Revoked(RevokeSelector::Owner(owner)) => {
                cache.retain(|_, t| t.owner != *owner);
            }
            // One credential: its task goes on.
            Forget::Revoked(RevokeSelector::Lease(_)) => {}
            Forget::ExpiredAt(now) => cache.retain(|_, t| t.expires_at > now),
        }
    }

    /// How many tasks are kept.
    pub fn len(&self) -> usize {
        self.tasks.lock().map(|c| c.len()).unwrap_or_default()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, workload: &str, owner: &str, expires_at: Timestamp) -> Arc<TaskRecord> {
        Arc::new(TaskRecord {
            id: id.into(),
            workload: workload.into(),
            issuer: "ci".into(),
            owner: owner.into(),
            purpose: "p".into(),
            tenant: "t".into(),
            audiences: vec!["a".into()],
            attributes: String::new(),
            source_addr: "127.0.0.1".into(),
            started_at: 0,
            expires_at,
            ended_at: None,
            end_reason: None,
        })
    }

    #[test]
    fn each_kind_of_end_forgets_its_tasks() {
        let cache = TaskCache::default();
        cache.insert(task("t1", "w1", "o1", 100), 0);
        cache.insert(task("t2", "w2", "o1", 100), 0);
        cache.insert(task("t3", "w3", "o2", 50), 0);
        cache.insert(task("t4", "w4", "o3", 100), 0);
        cache.forget(Forget::Revoked(&RevokeSelector::Lease("j".into())));
        assert_eq!(cache.len(), 4);
        cache.forget(Forget::ExpiredAt(60));
        assert!(cache.get("t3").is_none());
        cache.forget(Forget::Revoked(&RevokeSelector::Owner("o1".into())));
        assert!(cache.get("t1").is_none() && cache.get("t2").is_none());
        cache.forget(Forget::Revoked(&RevokeSelector::Workload("w4".into())));
        assert!(cache.is_empty());
        cache.insert(task("t5", "w5", "o5", 100), 0);
        cache.forget(Forget::Revoked(&RevokeSelector::Task("t5".into())));
        assert!(cache.is_empty());
    }

    #[test]
    fn ended_tasks_are_not_kept() {
        let cache = TaskCache::default();
        cache.insert(task("t1", "w", "o", 10), 10);
        assert!(cache.is_empty());
    }
}
