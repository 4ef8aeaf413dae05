//! What `/metrics` exposes, in the Prometheus text format (0.0.4):
//! exchanges issued and refused (by OAuth error), their latency, token
//! revocations, proxied requests, the writer's queue depth, batch sizes and
//! commits, and the live leases. Counters are atomics: recording costs a
//! few nanoseconds on the request path and takes no lock, bar the
//! refusals by reason (a small map, touched only on refusals).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation of `value` (seconds, or a count).
    pub fn observe(&self, value: f64) {
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if value <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        family(out, name, "histogram", help);
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// What the writer thread reports.
#[derive(Debug)]
pub struct WriterMetrics {
    /// Jobs queued and not yet taken by the writer.
    pub queue_depth: AtomicI64,
    /// Writes per group commit.
    pub batch_size: Histogram,
    /// Group commits made.
    pub commits: AtomicU64,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        WriterMetrics {
            queue_depth: AtomicI64::new(0),
            batch_size: Histogram::new(&[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
            commits: AtomicU64::new(0),
        }
    }
}

/// What the sweep deletes past its retention, in the order of
/// [`Metrics::swept`]'s counts.
const RETENTION_KINDS: [&str; 3] = ["credentials", "tasks", "audit_events"];

/// The broker's counters.
#[derive(Debug)]
pub struct Metrics {
    issued: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    exchange_seconds: Histogram,
    revocations: AtomicU64,
    proxied: Mutex<BTreeMap<String, u64>>,
    /// Rows deleted past their retention, by [`RETENTION_KINDS`].
    deleted: [AtomicU64; 3],
    /// The writer's own figures.
    pub writer: std::sync::Arc<WriterMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            issued: AtomicU64::new(0),
            refused: Mutex::new(BTreeMap::new()),
            exchange_seconds: Histogram::new(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            revocations: AtomicU64::new(0),
            proxied: Mutex::new(BTreeMap::new()),
            deleted: Default::default(),
            writer: std::sync::Arc::new(WriterMetrics::default()),
        }
    }
}

impl Metrics {
    /// One token exchange answered: issued, or refused with an OAuth
    /// error code.
    pub fn exchange(&self, refused: Option<&'static str>, took: Duration) {
        match refused {
            None => {
                self.issued.fetch_add(1, Ordering::Relaxed);
            }
            Some(error) => {
                let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
                *refused.entry(error).or_insert(0) += 1;
            }
        }
        self.exchange_seconds.observe(took.as_secs_f64());
    }

    /// Credentials revoked (RFC 7009, admin, task end).
    pub fn revoked(&self, count: u64) {
        self.revocations.fetch_add(count, Ordering::Relaxed);
    }

    /// What one sweep deleted past its retention.
    pub fn swept(&self, swept: &mayfly_store::Swept) {
        let counts = [
            swept.leases_deleted,
            swept.tasks_deleted,
            swept.events_deleted,
        ];
        for (counter, count) in self.deleted.iter().zip(counts) {
            counter.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// One request through the injecting proxy, for custody entry `entry`.
    pub fn proxied(&self, entry: &str) {
        let mut proxied = self.proxied.lock().unwrap_or_else(|p| p.into_inner());
        match proxied.get_mut(entry) {
            Some(n) => *n += 1,
            None => {
                proxied.insert(entry.to_owned(), 1);
            }
        }
    }

    /// The Prometheus text exposition, with `live_leases` read from the
    /// store by the caller (`None` when the store did not answer).
    pub fn render(&self, live_leases: Option<i64>) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "mayfly_exchanges_total",
            "counter",
            "Token exchanges answered, by outcome and OAuth error.",
        );
        let _ = writeln!(
            out,
            "mayfly_exchanges_total{{outcome=\"issued\",error=\"\"}} {}",
            self.issued.load(Ordering::Relaxed)
        );
        for (error, n) in self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "mayfly_exchanges_total{{outcome=\"refused\",error=\"{error}\"}} {n}"
            );
        }
        self.exchange_seconds.render(
            &mut out,
            "mayfly_exchange_duration_seconds",
            "Time to answer a token exchange.",
        );
        scalar(
            &mut out,
            "mayfly_revocations_total",
            "counter",
            "Credentials revoked (RFC 7009, admin, task end).",
            self.revocations.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "mayfly_proxy_requests_total",
            "counter",
            "Requests through the injecting proxy, by custody entry.",
        );
        for (entry, n) in self
            .proxied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let entry = entry.replace(['\\', '"', '\n'], "_");
            let _ = writeln!(out, "mayfly_proxy_requests_total{{entry=\"{entry}\"}} {n}");
        }
        family(
            &mut out,
            "mayfly_retention_deleted_total",
            "counter",
            "Rows deleted by the sweep past their retention: closed credentials, ended tasks, audit events.",
        );
        for (kind, counter) in RETENTION_KINDS.iter().zip(&self.deleted) {
            let _ = writeln!(
                out,
                "mayfly_retention_deleted_total{{kind=\"{kind}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let writer = &self.writer;
        scalar(
            &mut out,
            "mayfly_writer_queue_depth",
            "gauge",
            "Writes waiting for the writer thread.",
            writer.queue_depth.load(Ordering::Relaxed).max(0),
        );
        writer.batch_size.render(
            &mut out,
            "mayfly_writer_batch_size",
            "Writes per durable group commit.",
        );
        scalar(
            &mut out,
            "mayfly_writer_commits_total",
            "counter",
            "Durable group commits.",
            writer.commits.load(Ordering::Relaxed),
        );
        if let Some(live) = live_leases {
            scalar(
                &mut out,
                "mayfly_live_leases",
                "gauge",
                "Credentials issued and neither expired nor revoked.",
                live,
            );
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric family with one unlabelled sample.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_the_text_parses() {
        let metrics = Metrics::default();
        metrics.exchange(None, Duration::from_micros(700));
        metrics.exchange(Some("access_denied"), Duration::from_millis(3));
        metrics.proxied("openai");
        metrics.writer.batch_size.observe(3.0);
        let text = metrics.render(Some(5));
        assert!(text.contains("mayfly_exchanges_total{outcome=\"issued\",error=\"\"} 1"));
        assert!(
            text.contains("mayfly_exchanges_total{outcome=\"refused\",error=\"access_denied\"} 1")
        );
        assert!(text.contains("mayfly_exchange_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("mayfly_exchange_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("mayfly_exchange_duration_seconds_count 2"));
        assert!(text.contains("mayfly_writer_batch_size_bucket{le=\"2\"} 0"));
        assert!(text.contains("mayfly_writer_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("mayfly_proxy_requests_total{entry=\"openai\"} 1"));
        assert!(text.contains("mayfly_live_leases 5"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
