//! Validation: each distinct secret found, asked once of its provider,
//! with bounded concurrency, a rate limit and a concurrency limit per host,
//! timeouts and retries. Only the verdict is kept.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use mayfly_scan::finding::{Cell, Finding, Liveness, Validation};
use mayfly_scan::fingerprint::Fingerprint;
use zeroize::Zeroizing;

use crate::http::{Endpoints, backoff, read_body, retry_after, send, transport_reason};
use crate::verifier::{Verifier, Verifiers};

/// How validation runs.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Requests in flight at once, all hosts together.
    pub workers: usize,
    /// Requests in flight at once to one host.
    pub per_host: usize,
    /// Requests per second to one host.
    pub rate: f64,
    /// Time allowed for one request (connect, send, answer).
    pub timeout: Duration,
    /// Further tries after a rate limit, a server error or a failed request.
    pub retries: u32,
    /// Longest wait a `Retry-After` is honoured for; longer ones give up.
    pub max_retry_after: Duration,
    /// Where to send each provider's requests instead (`https://api.github.com`
    /// to `http://127.0.0.1:8080/github`): local test servers, proxies.
    pub endpoints: Endpoints,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            workers: 32,
            per_host: 4,
            rate: 20.0,
            timeout: Duration::from_secs(10),
            retries: 2,
            max_retry_after: Duration::from_secs(5),
            endpoints: Endpoints::default(),
        }
    }
}

/// One secret to ask about.
struct Job<'v> {
    fingerprint: Fingerprint,
    verifier: &'v Verifier,
    secret: Zeroizing<String>,
    /// The signing key found beside it, for signed verifiers.
    partner: Option<Zeroizing<String>>,
    attempt: u32,
    not_before: Option<Instant>,
}

/// The state of one host.
#[derive(Default)]
struct Host {
    in_flight: usize,
    next_at: Option<Instant>,
}

struct Queue<'v> {
    pending: BTreeMap<String, VecDeque<Job<'v>>>,
    hosts: HashMap<String, Host>,
    remaining: usize,
}

/// Hands out jobs so that no host gets more than its share.
struct Scheduler<'v> {
    queue: Mutex<Queue<'v>>,
    wake: Condvar,
    per_host: usize,
    interval: Duration,
}

/// What a job's request came to.
enum Outcome {
    Done(Liveness, Option<String>),
    /// Try again, after at least this long; `host_wide` pauses the host.
    Retry {
        after: Duration,
        host_wide: bool,
        reason: String,
    },
}

impl<'v> Scheduler<'v> {
    fn next(&self) -> Option<Job<'v>> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if queue.remaining == 0 {
                return None;
            }
            let now = Instant::now();
            let mut soonest: Option<Instant> = None;
            let mut chosen = None;
            for (host, jobs) in &queue.pending {
                let Some(job) = jobs.front() else { continue };
                let state = queue.hosts.get(host);
                if state.is_some_and(|s| s.in_flight >= self.per_host) {
                    continue;
                }
                let ready_at = [state.and_then(|s| s.next_at), job.not_before]
                    .into_iter()
                    .flatten()
                    .max();
                match ready_at {
                    Some(at) if at > now => {
                        soonest = Some(soonest.map_or(at, |s| s.min(at)));
                    }
                    _ => {
                        chosen = Some(host.clone());
                        break;
                    }
                }
            }
            if let Some(host) = chosen
                && let Some(job) = queue.pending.get_mut(&host).and_then(VecDeque::pop_front)
            {
                let state = queue.hosts.entry(host).or_default();
                state.in_flight += 1;
                state.next_at = Some(now + self.interval);
                return Some(job);
            }
            let wait = soonest.map_or(Duration::from_millis(100), |at| at - now);
            queue = self
                .wake
                .wait_timeout(queue, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn finish(&self, mut job: Job<'v>, outcome: &Outcome, retries: u32) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let host = job.verifier.host.clone();
        let state = queue.hosts.entry(host.clone()).or_default();
        state.in_flight = state.in_flight.saturating_sub(1);
        let requeued = match outcome {
            Outcome::Retry {
                after, host_wide, ..
            } if job.attempt < retries => {
                let at = Instant::now() + *after;
                if *host_wide {
                    state.next_at = Some(state.next_at.map_or(at, |n| n.max(at)));
                }
                job.attempt += 1;
                job.not_before = Some(at);
                queue.pending.entry(host).or_default().push_back(job);
                true
            }
            _ => {
                queue.remaining = queue.remaining.saturating_sub(1);
                false
            }
        };
        self.wake.notify_all();
        requeued
    }
}

/// Asks providers about found secrets.
#[derive(Debug)]
pub struct Validator {
    verifiers: Verifiers,
    options: ValidateOptions,
    agent: ureq::Agent,
}

/// What a validation run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationSummary {
    /// Distinct secrets asked about.
    pub secrets: usize,
    /// Of them, live.
    pub live: usize,
    /// Of them, dead.
    pub dead: usize,
    /// Of them, unsettled.
    pub unknown: usize,
    /// Requests sent, retries included.
    pub requests: usize,
}

impl Validator {
    /// A validator over `verifiers`.
    pub fn new(verifiers: Verifiers, options: ValidateOptions) -> Validator {
        let agent = crate::http::agent(options.timeout, "secret validation");
        Validator {
            verifiers,
            options,
            agent,
        }
    }

    /// The first finding of each distinct secret that has a verifier, with
    /// that verifier.
    fn targets<'f>(&self, findings: &'f [Finding]) -> Vec<(&'f Finding, &Verifier)> {
        let mut seen = BTreeSet::new();
        findings
            .iter()
            .filter_map(|f| {
                let verifier = self.verifiers.get(f.rule.verify.as_deref()?)?;
                f.value()?;
                seen.insert(f.fingerprint).then_some((f, verifier))
            })
            .collect()
    }

    /// What a signed verifier's request is signed with: the value of a
    /// `secret_rule` finding in the same file (and git blob), nearest by
    /// line.
    fn partner(findings: &[Finding], of: &Finding, rule: &str) -> Option<Zeroizing<String>> {
        fn place(f: &Finding) -> (&String, &Option<Cell>, &Option<String>) {
            (&f.location.path, &f.location.cell, &f.location.blob)
        }
        findings
            .iter()
            .filter(|f| f.rule.id == rule && place(f) == place(of))
            .min_by_key(|f| f.location.line.abs_diff(of.location.line))
            .and_then(|f| f.value())
            .map(|v| Zeroizing::new(String::from_utf8_lossy(v.expose()).into_owned()))
    }

    /// A verdict reached without asking: a signed verifier with nothing to
    /// sign with, or a canary token.
    fn settled_without_asking(job: &Job<'_>) -> Option<(Liveness, String)> {
        let sign = job.verifier.spec.sign.as_ref()?;
        if crate::aws::is_canary(&job.secret) {
            let account = crate::aws::account_id(&job.secret).unwrap_or_default();
            return Some((
                Liveness::Unknown,
                format!(
                    "a canary token (AWS account {account:012}): never called, using it would raise its alarm"
                ),
            ));
        }
        if job.partner.is_none() {
            return Some((
                Liveness::Unknown,
                format!("no {} beside it to sign with", sign.secret_rule),
            ));
        }
        None
    }

    /// The hosts a validation of `findings` would contact, and how many
    /// secrets each: said before anything is sent.
    pub fn hosts(&self, findings: &[Finding]) -> BTreeMap<String, usize> {
        let mut hosts = BTreeMap::new();
        for (_, verifier) in self.targets(findings) {
            *hosts.entry(verifier.host.clone()).or_insert(0) += 1;
        }
        hosts
    }

    /// Asks about every distinct secret of `findings` that has a verifier,
    /// once, and records the verdict (checked at `now`, seconds since the
    /// epoch) on each of its copies.
    pub fn validate(&self, findings: &mut [Finding], now: i64) -> ValidationSummary {
        let checked_at = mayfly_scan::time::rfc3339(now);
        let targets = self.targets(findings);
        let mut pending: BTreeMap<String, VecDeque<Job<'_>>> = BTreeMap::new();
        let count = targets.len();
        let mut settled: HashMap<Fingerprint, Validation> = HashMap::new();
        for (finding, verifier) in targets {
            let Some(value) = finding.value() else {
                continue;
            };
            let job = Job {
                fingerprint: finding.fingerprint,
                verifier,
                secret: Zeroizing::new(String::from_utf8_lossy(value.expose()).into_owned()),
                partner: verifier
                    .spec
                    .sign
                    .as_ref()
                    .and_then(|sign| Self::partner(&*findings, finding, &sign.secret_rule)),
                attempt: 0,
                not_before: None,
            };
            if let Some((status, reason)) = Self::settled_without_asking(&job) {
                settled.insert(
                    job.fingerprint,
                    Validation {
                        status,
                        verifier: verifier.spec.id.clone(),
                        host: verifier.host.clone(),
                        checked_at: checked_at.clone(),
                        at: now,
                        reason: Some(reason),
                    },
                );
                continue;
            }
            pending
                .entry(verifier.host.clone())
                .or_default()
                .push_back(job);
        }
        let count = count - settled.len();
        let scheduler = Scheduler {
            queue: Mutex::new(Queue {
                pending,
                hosts: HashMap::new(),
                remaining: count,
            }),
            wake: Condvar::new(),
            per_host: self.options.per_host.max(1),
            interval: Duration::from_secs_f64(1.0 / self.options.rate.max(0.001)),
        };
        let results: Mutex<HashMap<Fingerprint, Validation>> = Mutex::new(HashMap::new());
        let requests = Mutex::new(0usize);
        std::thread::scope(|scope| {
            for _ in 0..self.options.workers.clamp(1, count.max(1)) {
                scope.spawn(|| {
                    while let Some(job) = scheduler.next() {
                        let outcome = self.ask(&job, now);
                        *requests.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                        let (fingerprint, verifier) = (job.fingerprint, job.verifier);
                        if scheduler.finish(job, &outcome, self.options.retries) {
                            continue;
                        }
                        let (status, reason) = match outcome {
                            Outcome::Done(status, reason) => (status, reason),
                            Outcome::Retry { reason, .. } => (Liveness::Unknown, Some(reason)),
                        };
                        let validation = Validation {
                            status,
                            verifier: verifier.spec.id.clone(),
                            host: verifier.host.clone(),
                            checked_at: checked_at.clone(),
                            at: now,
                            reason,
                        };
                        results
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(fingerprint, validation);
                    }
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        results.extend(settled);
        let mut summary = ValidationSummary {
            secrets: results.len(),
            requests: requests.into_inner().unwrap_or_else(|p| p.into_inner()),
            ..ValidationSummary::default()
        };
        for validation in results.values() {
            match validation.status {
                Liveness::Live => summary.live += 1,
                Liveness::Dead => summary.dead += 1,
                Liveness::Unknown => summary.unknown += 1,
            }
        }
        for finding in findings.iter_mut() {
            if let Some(validation) = results.get(&finding.fingerprint) {
                finding.validation = Some(validation.clone());
            }
        }
        summary
    }

    /// Sends one request and reads the verdict. Never keeps the body, and
    /// never says anything of the request (its URL may hold the secret).
    fn ask(&self, job: &Job<'_>, now: i64) -> Outcome {
        let verifier = job.verifier;
        let base = self.options.endpoints.for_origin(&verifier.origin);
        let mut request = verifier.prepare(&job.secret, base);
        if let (Some(sign), Some(partner)) = (&verifier.spec.sign, &job.partner) {
            let amz_date = crate::aws::amz_date(&mayfly_scan::time::rfc3339(now));
            let content_type = request
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let input = crate::aws::SigningInput {
                method: request.method.as_str(),
                host: &verifier.host,
                path: verifier.path(),
                content_type: &content_type,
                body: request.body.as_deref().unwrap_or_default(),
                region: &sign.region,
                service: &sign.service,
                amz_date: &amz_date,
            };
            let authorization = crate::aws::authorization(&input, &job.secret, partner);
            request
                .headers
                .push(("X-Amz-Date".to_owned(), amz_date.clone()));
            request
                .headers
                .push(("Authorization".to_owned(), authorization));
        }
        let result = send(&self.agent, &request);
        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                return Outcome::Retry {
                    after: backoff(job.attempt),
                    host_wide: false,
                    reason: transport_reason(&error).to_owned(),
                };
            }
        };
        let status = response.status().as_u16();
        if status == 429 {
            let after = retry_after(&response).map_or(backoff(job.attempt), Duration::from_secs);
            if after > self.options.max_retry_after {
                return Outcome::Done(
                    Liveness::Unknown,
                    Some(format!("rate limited (retry after {} s)", after.as_secs())),
                );
            }
            return Outcome::Retry {
                after,
                host_wide: true,
                reason: "rate limited (429)".to_owned(),
            };
        }
        if (500..600).contains(&status) {
            return Outcome::Retry {
                after: backoff(job.attempt),
                host_wide: false,
                reason: format!("server error ({status})"),
            };
        }
        let spec = &verifier.spec;
        if spec.dead.contains(&status) {
            return Outcome::Done(Liveness::Dead, Some(format!("status {status}")));
        }
        if !spec.live.contains(&status) {
            return Outcome::Done(
                Liveness::Unknown,
                Some(format!("unexpected status {status}")),
            );
        }
        let Some(pointer) = &spec.live_when else {
            return Outcome::Done(Liveness::Live, None);
        };
        match serde_json::from_str::<serde_json::Value>(&read_body(&mut response))
            .ok()
            .and_then(|v| v.pointer(pointer).and_then(serde_json::Value::as_bool))
        {
            Some(true) => Outcome::Done(Liveness::Live, None),
            Some(false) => Outcome::Done(Liveness::Dead, Some(format!("{pointer} is false"))),
            None => Outcome::Done(
                Liveness::Unknown,
                Some(format!("an answer without {pointer}")),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mayfly_scan::fingerprint::FingerprintKey;

    use super::*;

    #[test]
    fn the_scheduler_spaces_requests_to_one_host_and_caps_those_in_flight() {
        let verifiers = Verifiers::builtin().unwrap();
        let github = verifiers.get("github-user").unwrap();
        let key = FingerprintKey::from_bytes(b"a key for the scheduler's unit test").unwrap();
        let jobs: VecDeque<Job<'_>> = (0..6)
            .map(|i| Job {
                fingerprint: key.fingerprint(format!("secret-{i}").as_bytes()),
                verifier: github,
                secret: Zeroizing::new(format!("secret-{i}")),
                partner: None,
                attempt: 0,
                not_before: None,
            })
            .collect();
        let interval = Duration::from_millis(40);
        let scheduler = Scheduler {
            queue: Mutex::new(Queue {
                pending: BTreeMap::from([(github.host.clone(), jobs)]),
                hosts: HashMap::new(),
                remaining: 6,
            }),
            wake: Condvar::new(),
            per_host: 2,
            interval,
        };
        let starts = Mutex::new(Vec::new());
        let (in_flight, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    while let Some(job) = scheduler.next() {
                        starts.lock().unwrap().push(Instant::now());
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        scheduler.finish(job, &Outcome::Done(Liveness::Live, None), 0);
                    }
                });
            }
        });
        let mut starts = starts.into_inner().unwrap();
        starts.sort();
        assert_eq!(starts.len(), 6);
        for pair in starts.windows(2) {
            assert!(
                pair[1] - pair[0] >= interval - Duration::from_millis(2),
                "{:?}",
                pair[1] - pair[0]
            );
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
    }

    #[test]
    fn a_rate_limit_pauses_the_host_and_is_retried() {
        let verifiers = Verifiers::builtin().unwrap();
        let github = verifiers.get("github-user").unwrap();
        let key = FingerprintKey::from_bytes(b"a key for the scheduler's unit test").unwrap();
        let job = Job {
            fingerprint: key.fingerprint(b"s"),
            verifier: github,
            secret: Zeroizing::new("s".to_owned()),
            partner: None,
            attempt: 0,
            not_before: None,
        };
        let scheduler = Scheduler {
            queue: Mutex::new(Queue {
                pending: BTreeMap::from([(github.host.clone(), VecDeque::from([job]))]),
                hosts: HashMap::new(),
                remaining: 1,
            }),
            wake: Condvar::new(),
            per_host: 1,
            interval: Duration::ZERO,
        };
        let limited = Outcome::Retry {
            after: Duration::from_millis(80),
            host_wide: true,
            reason: "rate limited (429)".to_owned(),
        };
        let first = scheduler.next().unwrap();
        let at = Instant::now();
        assert!(scheduler.finish(first, &limited, 2), "requeued");
        let again = scheduler.next().unwrap();
        assert!(at.elapsed() >= Duration::from_millis(75), "the host paused");
        assert_eq!(again.attempt, 1);
        assert!(!scheduler.finish(again, &limited, 1), "no more tries");
        assert!(scheduler.next().is_none());
    }
}
