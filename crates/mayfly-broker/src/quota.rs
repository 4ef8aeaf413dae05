//! Per-workload rate limits: a token bucket per workload (its issuer and
//! id), refilled continuously. Buckets of workloads that have gone quiet
//! are dropped, so the table stays small whatever callers do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Most buckets kept; past it, full (idle) buckets are dropped first.
const CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A rate of `per_second` requests per key, with bursts of twice that.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl RateLimiter {
    /// A limiter of `per_second` requests per key; 0 admits everything.
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: 2.0 * f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request for (`issuer`, `workload`) at `now`; `false` when
    /// its bucket is empty.
    pub fn admit(&self, issuer: &str, workload: &str, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() >= CAPACITY {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| {
                b.tokens + rate * now.saturating_duration_since(b.updated).as_secs_f64() < burst
            });
            if buckets.len() >= CAPACITY {
                buckets.clear();
            }
        }
        let bucket = buckets
            .entry((issuer.to_owned(), workload.to_owned()))
            .or_insert(Bucket {
                tokens: self.burst,
                updated: now,
            });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_the_rate() {
        let limiter = RateLimiter::new(10);
        let start = Instant::now();
        let admitted = (0..100).filter(|_| limiter.admit("ci", "w", start)).count();
        assert_eq!(admitted, 20, "a burst of twice the rate");
        assert!(!limiter.admit("ci", "w", start));
        assert!(
            limiter.admit("ci", "other", start),
            "each workload has its own"
        );
        let later = start + Duration::from_millis(500);
        let admitted = (0..100).filter(|_| limiter.admit("ci", "w", later)).count();
        assert_eq!(admitted, 5, "refilled at 10 per second");
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::new(0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.admit("ci", "w", now)));
    }
}
