//! Revocation at the provider: revokers as data (the documented API that
//! ends a leaked secret, in one or more steps), and their execution, with
//! retries on rate limits and server errors. Nothing of a provider's answer
//! is kept but the outcome and the values later steps need.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::{
    Endpoints, backoff, parse_headers, read_body, retry_after, send, transport_reason,
};
use crate::verifier::{Method, PreparedRequest, origin_of};

/// The built-in revokers and manual steps, embedded in the binary.
const BUILTIN: &str = include_str!("../revokers.toml");

/// One request of a revoker, as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// `METHOD URL`.
    pub request: String,
    /// `Name: value` headers.
    #[serde(default)]
    pub headers: Vec<String>,
    /// A request body.
    #[serde(default)]
    pub body: Option<String>,
    /// Statuses that mean the step worked.
    pub ok: Vec<u16>,
    /// Statuses that mean the secret no longer works.
    #[serde(default)]
    pub already: Vec<u16>,
    /// Statuses that mean the secret may not revoke itself.
    #[serde(default = "default_denied")]
    pub denied: Vec<u16>,
    /// A JSON pointer to a boolean; false means already revoked.
    #[serde(default)]
    pub ok_when: Option<String>,
    /// Values later steps use: name to JSON pointer.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
}

fn default_denied() -> Vec<u16> {
    vec![403]
}

/// One revoker, as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevokerSpec {
    /// Stable kebab-case id, named by rules (`revoke = "..."`).
    pub id: String,
    /// The provider.
    pub provider: String,
    /// The provider's documentation of the API.
    pub docs: String,
    /// The requests, in order.
    pub steps: Vec<StepSpec>,
}

/// What to do by hand where a provider has no revocation API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSpec {
    /// The provider.
    pub provider: String,
    /// The steps.
    pub steps: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokerFile {
    #[serde(default)]
    revokers: Vec<RevokerSpec>,
    #[serde(default)]
    manual: Vec<ManualSpec>,
}

/// A checked step.
#[derive(Debug, Clone)]
struct Step {
    spec: StepSpec,
    method: Method,
    url: String,
    origin: String,
    headers: Vec<(String, String)>,
}

/// A checked revoker.
#[derive(Debug, Clone)]
pub struct Revoker {
    /// The revoker as written.
    pub spec: RevokerSpec,
    steps: Vec<Step>,
}

/// Why a revoker file or revoker was refused.
#[derive(Debug, thiserror::Error)]
pub enum RevokerError {
    /// Not valid revoker TOML.
    #[error("{origin}: not a valid revoker file: {reason}")]
    Parse {
        /// The file.
        origin: String,
        /// The parser's message.
        reason: String,
    },
    /// A field the engine cannot use.
    #[error("{origin}: revoker {id}: {reason}")]
    Invalid {
        /// The revoker.
        id: String,
        /// The file.
        origin: String,
        /// What to change.
        reason: String,
    },
    /// A rule names a revoker that does not exist.
    #[error(
        "rule {rule} names revoker {revoker:?}, which does not exist; `mayfly rules providers` lists them"
    )]
    UnknownRevoker {
        /// The rule.
        rule: String,
        /// The revoker it names.
        revoker: String,
    },
}

/// How a revocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The provider revoked it.
    Revoked,
    /// The provider says it no longer works (revoked or expired before).
    AlreadyInactive(String),
    /// The secret may not revoke itself: an owner must, by hand.
    Denied(String),
    /// Not settled: rate limited, unreachable, or an answer the revoker does
    /// not know. Nothing was recorded; try again.
    Failed(String),
}

impl Revoker {
    fn compile(spec: RevokerSpec, origin: &str) -> Result<Revoker, RevokerError> {
        let invalid = |reason: &str| RevokerError::Invalid {
            id: spec.id.clone(),
            origin: origin.to_owned(),
            reason: reason.to_owned(),
        };
        if spec.steps.is_empty() {
            return Err(invalid("a revoker needs at least one step"));
        }
        let mut steps = Vec::new();
        for step in &spec.steps {
            let (method, url) = match step.request.split_once(' ') {
                Some(("GET", url)) => (Method::Get, url.trim()),
                Some(("POST", url)) => (Method::Post, url.trim()),
                Some(("DELETE", url)) => (Method::Delete, url.trim()),
                _ => return Err(invalid("request must be \"GET|POST|DELETE URL\"")),
            };
            let Some((url_origin, _)) = origin_of(url) else {
                return Err(invalid("the URL must be https://host/... (no user info)"));
            };
            if !url.starts_with("https://") || url_origin.contains('{') {
                return Err(invalid("the URL must be https, with a fixed host"));
            }
            if step.ok.is_empty() {
                return Err(invalid("each step lists the statuses that mean it worked"));
            }
            let headers = parse_headers(&step.headers).map_err(invalid)?;
            steps.push(Step {
                spec: step.clone(),
                method,
                url: url.to_owned(),
                origin: url_origin,
                headers,
            });
        }
        Ok(Revoker { spec, steps })
    }

    /// The requests it will send, for a person to read before saying yes:
    /// `DELETE https://api.vercel.com/v3/user/tokens/current`.
    pub fn describe(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| format!("{} {}", s.method.as_str(), s.url))
            .collect()
    }

    /// The origins (`https://host`) and hosts its steps contact.
    pub fn origins(&self) -> Vec<(String, String)> {
        self.steps
            .iter()
            .filter_map(|s| {
                let (origin, host) = origin_of(&s.url)?;
                Some((origin, host))
            })
            .collect()
    }

    /// Runs the steps for `secret` through `agent` (see [`agent`]), each
    /// sent to its override in `endpoints` when there is one.
    pub fn revoke(
        &self,
        secret: &str,
        endpoints: &Endpoints,
        agent: &ureq::Agent,
    ) -> RevokeOutcome {
        let mut captures: BTreeMap<String, String> = BTreeMap::new();
        let last = self.steps.len().saturating_sub(1);
        for (index, step) in self.steps.iter().enumerate() {
            let mut url = crate::http::fill(&step.url, secret, &captures, true);
            if let Some(base) = endpoints.for_origin(&step.origin)
                && let Some(rest) = url.strip_prefix(&step.origin)
            {
                url = format!("{}{rest}", base.trim_end_matches('/'));
            }
            let request = PreparedRequest {
                method: step.method,
                url,
                headers: step
                    .headers
                    .iter()
                    .map(|(n, v)| (n.clone(), crate::http::fill(v, secret, &captures, false)))
                    .collect(),
                body: step
                    .spec
                    .body
                    .as_ref()
                    .map(|b| crate::http::fill(b, secret, &captures, false)),
            };
            let (status, text) = match send_with_retries(agent, &request) {
                Ok(answer) => answer,
                Err(reason) => return RevokeOutcome::Failed(reason),
            };
            let spec = &step.spec;
            if spec.already.contains(&status) {
                return RevokeOutcome::AlreadyInactive(format!("status {status}"));
            }
            if spec.denied.contains(&status) {
                return RevokeOutcome::Denied(format!(
                    "status {status}: this secret may not revoke itself"
                ));
            }
            if !spec.ok.contains(&status) {
                return RevokeOutcome::Failed(format!("unexpected status {status}"));
            }
            let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
            if let Some(pointer) = &spec.ok_when {
                match json.as_ref().and_then(|j| j.pointer(pointer)?.as_bool()) {
                    Some(true) => {}
                    Some(false) => {
                        return RevokeOutcome::AlreadyInactive(format!("{pointer} is false"));
                    }
                    None => {
                        return RevokeOutcome::Failed(format!("an answer without {pointer}"));
                    }
                }
            }
            for (name, pointer) in &spec.capture {
                let value = json
                    .as_ref()
                    .and_then(|j| j.pointer(pointer))
                    .and_then(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .or_else(|| v.as_i64().map(|n| n.to_string()))
                    });
                match value {
                    Some(value) => {
                        captures.insert(name.clone(), value);
                    }
                    None => {
                        return RevokeOutcome::Failed(format!("an answer without {pointer}"));
                    }
                }
            }
            if index == last {
                return RevokeOutcome::Revoked;
            }
        }
        RevokeOutcome::Failed("no step ran".to_owned())
    }
}

/// The HTTP client revocations go through (no redirects), each request
/// allowed `timeout`; one serves every revocation of a command.
pub fn agent(timeout: Duration) -> ureq::Agent {
    crate::http::agent(timeout, "revocation of a leaked secret")
}

/// Sends a request, retrying rate limits (honouring a short `Retry-After`),
/// server errors and failed connections; the status and body, or why not.
fn send_with_retries(
    agent: &ureq::Agent,
    request: &PreparedRequest,
) -> Result<(u16, String), String> {
    const TRIES: u32 = 3;
    let mut reason = String::new();
    for attempt in 0..TRIES {
        if attempt > 0 {
            std::thread::sleep(backoff(attempt - 1));
        }
        let mut response = match send(agent, request) {
            Ok(response) => response,
            Err(e) => {
                reason = transport_reason(&e).to_owned();
                continue;
            }
        };
        let status = response.status().as_u16();
        if status == 429 {
            let after = retry_after(&response).unwrap_or(0);
            if after > 5 {
                return Err(format!("rate limited (retry after {after} s)"));
            }
            std::thread::sleep(Duration::from_secs(after));
            reason = "rate limited (429)".to_owned();
            continue;
        }
        if (500..600).contains(&status) {
            reason = format!("server error ({status})");
            continue;
        }
        return Ok((status, read_body(&mut response)));
    }
    Err(reason)
}

/// The revokers by id, and the manual steps by provider.
#[derive(Debug, Clone, Default)]
pub struct Revokers {
    by_id: BTreeMap<String, Revoker>,
    manual: BTreeMap<String, String>,
}

impl Revokers {
    /// The revokers embedded in the binary.
    pub fn builtin() -> Result<Revokers, RevokerError> {
        let mut set = Revokers::default();
        set.add_toml(BUILTIN, "builtin:revokers.toml")?;
        Ok(set)
    }

    /// Parses a revoker file and adds what it holds.
    pub fn add_toml(&mut self, text: &str, origin: &str) -> Result<(), RevokerError> {
        let file: RevokerFile = toml::from_str(text).map_err(|e| RevokerError::Parse {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
        for spec in file.revokers {
            let revoker = Revoker::compile(spec, origin)?;
            self.by_id.insert(revoker.spec.id.clone(), revoker);
        }
        for manual in file.manual {
            self.manual
                .insert(manual.provider.to_ascii_lowercase(), manual.steps);
        }
        Ok(())
    }

    /// The revoker `id`.
    pub fn get(&self, id: &str) -> Option<&Revoker> {
        self.by_id.get(id)
    }

    /// Every revoker, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Revoker> {
        self.by_id.values()
    }

    /// What to do by hand to revoke a secret of `provider`.
    pub fn manual_steps(&self, provider: &str) -> String {
        self.manual
            .get(&provider.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| {
                format!("{provider} has no revocation API Mayfly knows: revoke or rotate it in {provider}'s console or settings")
            })
    }

    /// Checks that every rule's `revoke` names a revoker here.
    pub fn check_rules(&self, rules: &mayfly_scan::rule::RuleSet) -> Result<(), RevokerError> {
        for rule in rules.rules() {
            if let Some(id) = &rule.spec.revoke
                && !self.by_id.contains_key(id)
            {
                return Err(RevokerError::UnknownRevoker {
                    rule: rule.spec.id.clone(),
                    revoker: id.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_revokers_load_and_cover_ten_providers() {
        let revokers = Revokers::builtin().unwrap();
        let providers: std::collections::BTreeSet<&str> =
            revokers.iter().map(|r| r.spec.provider.as_str()).collect();
        assert!(providers.len() >= 10, "{providers:?}");
        revokers
            .check_rules(&mayfly_scan::rule::RuleSet::builtin().unwrap())
            .unwrap();
        assert!(
            revokers
                .manual_steps("openai")
                .contains("platform.openai.com")
        );
        assert!(revokers.manual_steps("Acme").contains("no revocation API"));
        let cloudflare = revokers.get("cloudflare-token-delete").unwrap();
        assert_eq!(cloudflare.describe().len(), 2);
    }

    #[test]
    fn bad_revokers_are_refused_with_the_reason() {
        let mut set = Revokers::default();
        for (step, reason) in [
            (
                "{ request = \"PUT https://x.test/\", ok = [200] }",
                "GET|POST|DELETE",
            ),
            (
                "{ request = \"DELETE http://x.test/\", ok = [200] }",
                "https",
            ),
            (
                "{ request = \"DELETE https://x.test/\", ok = [] }",
                "statuses",
            ),
        ] {
            let text = format!(
                "[[revokers]]\nid = \"x\"\nprovider = \"X\"\ndocs = \"d\"\nsteps = [{step}]\n"
            );
            let err = set.add_toml(&text, "r.toml").unwrap_err();
            assert!(err.to_string().contains(reason), "{err}");
        }
    }
}
