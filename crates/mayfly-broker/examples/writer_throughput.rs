//! The lease writer alone: how many leases per second its one thread
//! commits durably to SQLite (`synchronous=FULL`, group commits, each lease
//! with its audit event), given leases already built. Many requests hand
//! it one lease each at once, as exchanges under load do; nothing else
//! runs (no HTTP, no signature, no policy).
//!
//! ```sh
//! cargo run --release -p mayfly-broker --example writer_throughput [-- LEASES [SUBMITTERS]]
//! ```
//! Prints one JSON object: leases, wall seconds, leases per second, the
//! writer thread's CPU seconds and microseconds per lease, commits and
//! the mean batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mayfly_broker::metrics::WriterMetrics;
use mayfly_broker::writer::Writer;
use mayfly_store::{BrokerWrite, LeaseRecord, NewAuditEvent, Store, TaskRecord, WriteOutcome};
use serde_json::json;

/// The allocator `mayfly serve` runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: i64 = 1_900_000_000;

/// CPU seconds (user and system) of this process's thread named `name`.
fn thread_cpu_seconds(name: &str) -> Option<f64> {
    let ticks_per_second = 100.0; // Linux's USER_HZ
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).ok()?;
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        // Fields after the command's closing parenthesis: utime is the
        // 12th, stime the 13th.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        return Some((utime + stime) / ticks_per_second);
    }
    None
}

fn task() -> TaskRecord {
    TaskRecord {
        id: "task-writer-bench".into(),
        workload: "repo:acme/app:ref:refs/heads/main".into(),
        issuer: "bench".into(),
        owner: "team-bench".into(),
        purpose: "writer benchmark".into(),
        tenant: "acme".into(),
        audiences: vec!["https://api.bench.invalid".into()],
        attributes: "{}".into(),
        source_addr: "127.0.0.1".into(),
        started_at: NOW,
        expires_at: NOW + 86_400,
        ended_at: None,
        end_reason: None,
    }
}

/// The writes one exchange hands the writer: its lease and its event.
fn lease(n: usize) -> BrokerWrite {
    let jti = format!("{:012x}{n:020x}", NOW * 1000);
    BrokerWrite::IssueLease {
        audit: NewAuditEvent::new(
            NOW,
            "token.issue",
            json!({"jti": jti, "task": "task-writer-bench", "workload": "repo:acme/app:ref:refs/heads/main",
                   "audience": "https://api.bench.invalid", "exp": NOW + 900,
                   "policies": ["bench"], "bound": false}),
        ),
        lease: LeaseRecord {
            jti,
            task_id: "task-writer-bench".into(),
            workload: "repo:acme/app:ref:refs/heads/main".into(),
            owner: "team-bench".into(),
            tenant: "acme".into(),
            audience: "https://api.bench.invalid".into(),
            scope: String::new(),
            client_id: "bench".into(),
            cnf_jkt: None,
            source_addr: "127.0.0.1".into(),
            issued_at: NOW,
            expires_at: NOW + 900,
            revoked_at: None,
            revoke_reason: None,
        },
        proof: None,
        grant: None,
        decided_under: 0,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let leases: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let submitters: usize = args.next().map_or(Ok(1024), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("writer.db").to_string_lossy().into_owned();
    let mut store = Store::open(&db)?;
    let started = store.broker_apply(&[BrokerWrite::StartTask {
        task: task(),
        max_live: None,
        audit: NewAuditEvent::new(NOW, "task.start", json!({"task": "task-writer-bench"})),
    }])?;
    assert_eq!(started, vec![WriteOutcome::Done(1)]);
    let metrics = Arc::new(WriterMetrics::default());
    let writer = Writer::start(store, 0, metrics.clone())?;
    let queues: Vec<Vec<BrokerWrite>> = (0..submitters.max(1))
        .map(|queue| {
            (queue..leases)
                .step_by(submitters.max(1))
                .map(lease)
                .collect()
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let cpu_before = thread_cpu_seconds("mayfly-writer").unwrap_or(f64::NAN);
    let start = Instant::now();
    let refused = runtime.block_on(async {
        let mut handles = Vec::new();
        for queue in queues {
            let writer = writer.clone();
            handles.push(tokio::spawn(async move {
                let mut refused = 0usize;
                for write in queue {
                    match writer.apply_one(write).await {
                        Ok(WriteOutcome::Done(_)) => {}
                        _ => refused += 1,
                    }
                }
                refused
            }));
        }
        let mut refused = 0;
        for handle in handles {
            refused += handle.await.unwrap_or(usize::MAX);
        }
        refused
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds("mayfly-writer").unwrap_or(f64::NAN) - cpu_before;
    let commits = metrics.commits.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "leases": leases,
            "refused": refused,
            "submitters": submitters,
            "wall_s": wall,
            "leases_per_s": leases as f64 / wall,
            "writer_cpu_s": cpu,
            "writer_cpu_us_per_lease": cpu * 1e6 / leases as f64,
            "commits": commits,
            "mean_batch": leases as f64 / commits.max(1) as f64,
        })
    );
    Ok(())
}
