//! Policy as code with Cedar: the schema, loading and validating policy
//! sets, and the decision on every task start, exchange and proxied use of
//! a custody entry ([`decide`]; default deny).
//!
//! Policies carry an `@id("...")` annotation (otherwise they are named
//! `file.cedar#N`); a permitting policy may cap the lifetime of what it
//! allows with `@max_ttl("seconds")`.

mod decide;
mod request;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use cedar_policy::{
    Authorizer, EntityId, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet,
    RestrictedExpression, Schema, ValidationMode, Validator,
};

pub use self::request::{Action, McpRequest, PolicyRequest, TaskFacts, UseRequest};
#[cfg(test)]
use crate::identity::Workload;

/// Mayfly's Cedar schema (documented in `policies/schema.cedarschema`).
pub const SCHEMA: &str = include_str!("../../policies/schema.cedarschema");

/// The policies used when no directory is configured.
pub const DEFAULT_POLICIES: &str = include_str!("../../policies/default.cedar");

/// Why policies were refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The directory or a file could not be read.
    #[error("cannot read policies from {path}: {reason}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The system's message.
        reason: String,
    },
    /// A file does not parse.
    #[error("{file}: {reason}")]
    Parse {
        /// The file.
        file: String,
        /// Cedar's diagnostics.
        reason: String,
    },
    /// The set does not validate against Mayfly's schema.
    #[error("the policies do not validate against Mayfly's schema:\n{0}")]
    Invalid(String),
    /// Two policies share an id.
    #[error("policy id {0:?} is used twice; give each policy its own @id")]
    DuplicateId(String),
    /// The embedded schema failed to load (a build defect).
    #[error("Mayfly's Cedar schema does not load: {0}")]
    Schema(String),
}

/// What policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// The policies that decided (permits when allowed, forbids when
    /// denied by one; empty when nothing permitted: default deny).
    pub policies: Vec<String>,
    /// The lowest `@max_ttl` of the permitting policies.
    pub max_ttl: Option<i64>,
    /// Evaluation errors (a policy that erred counts as not applying).
    pub errors: Vec<String>,
}

impl Decision {
    /// A denial because the request could not be put to Cedar.
    fn error(error: String) -> Decision {
        Decision {
            allowed: false,
            policies: Vec::new(),
            max_ttl: None,
            errors: vec![error],
        }
    }

    /// A sentence for the denied caller.
    pub fn reason(&self) -> String {
        if self.allowed {
            return "allowed".into();
        }
        if self.policies.is_empty() {
            "no policy permits it (default deny)".into()
        } else {
            format!("forbidden by policy {}", self.policies.join(", "))
        }
    }
}

/// A loaded, validated policy set.
#[derive(Debug, Clone)]
pub struct Policies {
    set: PolicySet,
    max_ttl: HashMap<PolicyId, i64>,
    /// Ids of the policies, in load order.
    pub ids: Vec<String>,
    /// Where they came from (`<embedded>` or a directory).
    pub origin: String,
    /// The files they were read from, as (name, Cedar text), in order:
    /// what the store keeps for the other replicas.
    pub files: Vec<(String, String)>,
    /// SHA-256 (hex) of the files, names and texts: tells a set already in
    /// force from a new one.
    pub digest: String,
    /// Which set this is on the store (0 until it is put in force): a
    /// decision carries it to the commit of what it allowed, and a write
    /// decided under a replaced set, on any replica, is refused and decided
    /// again.
    pub generation: u64,
}

/// The schema, the validator and the authorizer.
pub struct PolicyEngine {
    schema: Schema,
    authorizer: Authorizer,
    workload_type: EntityTypeName,
    issuer_type: EntityTypeName,
    resource_type: EntityTypeName,
    actions: [EntityUid; 4],
    custody_type: EntityTypeName,
    mcp_type: EntityTypeName,
    /// `ip("...")` of recent callers' addresses: cedar-policy parses the
    /// extension's name each time it builds one, which costs more than the
    /// rest of a decision; callers come from few addresses.
    source_ips: Mutex<HashMap<String, RestrictedExpression>>,
}

/// Most source addresses whose `ip(...)` expression is kept.
const SOURCE_IP_CACHE: usize = 1024;

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyEngine")
    }
}

fn type_name(name: &str) -> Result<EntityTypeName, PolicyError> {
    EntityTypeName::from_str(name).map_err(|e| PolicyError::Schema(e.to_string()))
}

impl PolicyEngine {
    /// Loads Mayfly's schema.
    pub fn new() -> Result<PolicyEngine, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| PolicyError::Schema(e.to_string()))?;
        let action_type = type_name("Action")?;
        let action =
            |name: &str| EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(name));
        Ok(PolicyEngine {
            schema,
            authorizer: Authorizer::new(),
            workload_type: type_name("Workload")?,
            issuer_type: type_name("Issuer")?,
            resource_type: type_name("Resource")?,
            actions: [
                action(Action::StartTask.as_str()),
                action(Action::Exchange.as_str()),
                action("use"),
                action("mcp"),
            ],
            custody_type: type_name("Custody")?,
            mcp_type: type_name("McpServer")?,
            source_ips: Mutex::new(HashMap::new()),
        })
    }

    /// The embedded default policies.
    pub fn defaults(&self) -> Result<Policies, PolicyError> {
        self.load_texts(
            &[("default.cedar".to_owned(), DEFAULT_POLICIES.to_owned())],
            "<embedded>",
        )
    }

    /// Loads every `*.cedar` file of a directory (sorted by name).
    pub fn load_dir(&self, dir: &Path) -> Result<Policies, PolicyError> {
        let read_error = |path: &Path, e: std::io::Error| PolicyError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read_error(dir, e))? {
            let path = entry.map_err(|e| read_error(dir, e))?.path();
            if path.extension().is_some_and(|e| e == "cedar") && path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.push((name, text));
            }
        }
        files.sort();
        self.load_texts(&files, &dir.display().to_string())
    }

    /// Parses and validates policy files given as (name, text).
    pub fn load_texts(
        &self,
        files: &[(String, String)],
        origin: &str,
    ) -> Result<Policies, PolicyError> {
        let mut set = PolicySet::new();
        let mut max_ttl = HashMap::new();
        let mut ids = Vec::new();
        for (file, text) in files {
            let parsed = PolicySet::from_str(text).map_err(|e| PolicyError::Parse {
                file: file.clone(),
                reason: diagnostics(&e),
            })?;
            if parsed.templates().next().is_some() {
                return Err(PolicyError::Parse {
                    file: file.clone(),
                    reason: "templates are not supported; write static policies".into(),
                });
            }
            for (n, policy) in parsed.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{file}#{n}"));
                let policy: Policy = policy.new_id(PolicyId::new(&id));
                if let Some(value) = policy.annotation("max_ttl") {
                    let seconds = value.parse::<i64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                        PolicyError::Parse {
                            file: file.clone(),
                            reason: format!("policy {id}: @max_ttl must be a positive number of seconds, not {value:?}"),
                        }
                    })?;
                    max_ttl.insert(policy.id().clone(), seconds);
                }
                set.add(policy)
                    .map_err(|_| PolicyError::DuplicateId(id.clone()))?;
                ids.push(id);
            }
        }
        let validation = Validator::new(self.schema.clone()).validate(&set, ValidationMode::Strict);
        if !validation.validation_passed() {
            let problems: Vec<String> = validation
                .validation_errors()
                .map(|e| format!("  - policy {}: {e}", e.policy_id()))
                .collect();
            return Err(PolicyError::Invalid(problems.join("\n")));
        }
        Ok(Policies {
            set,
            max_ttl,
            ids,
            origin: origin.to_owned(),
            files: files.to_vec(),
            digest: digest(files),
            generation: 0,
        })
    }
}

/// SHA-256 (hex) of policy files: each name and text, length-prefixed so
/// no two different sets share a digest by moving text between files.
fn digest(files: &[(String, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (name, text) in files {
        for part in [name, text] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
    }
    crate::b64::hex(&hash.finalize())
}

/// Cedar's parse diagnostics, one per line.
fn diagnostics(errors: &cedar_policy::ParseErrors) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn workload() -> Workload {
        Workload {
            id: "repo:acme/app:ref:refs/heads/main".into(),
            issuer: "gha".into(),
            kind: "github-actions",
            tenant: "acme".into(),
            tags: BTreeMap::from([("ref".to_owned(), "refs/heads/main".to_owned())]),
            expires_at: 0,
        }
    }

    fn request<'a>(w: &'a Workload, action: Action, audiences: &'a [String]) -> PolicyRequest<'a> {
        PolicyRequest {
            workload: w,
            action,
            task: TaskFacts {
                purpose: "deploy",
                owner: "team-platform",
                tenant: "acme",
                audiences,
                started_at: 1_800_000_000 - 10,
            },
            audience: "https://api.acme.test",
            scope: &[],
            requested_ttl: 300,
            now: 1_800_000_000,
            dpop: false,
            source_ip: "127.0.0.1",
        }
    }

    #[test]
    fn defaults_allow_the_tasks_audiences_only() {
        let engine = PolicyEngine::new().unwrap();
        let policies = engine.defaults().unwrap();
        let w = workload();
        let audiences = vec!["https://api.acme.test".to_owned()];
        let decision = engine.decide(&policies, &request(&w, Action::Exchange, &audiences));
        assert!(decision.allowed, "{decision:?}");
        assert_eq!(decision.max_ttl, Some(900));
        let other = vec!["https://other.test".to_owned()];
        let decision = engine.decide(&policies, &request(&w, Action::Exchange, &other));
        assert!(!decision.allowed);
        assert_eq!(decision.reason(), "no policy permits it (default deny)");
    }

    #[test]
    fn tags_and_forbids_decide() {
        let engine = PolicyEngine::new().unwrap();
        let policies = engine
            .load_texts(
                &[(
                    "ci.cedar".into(),
                    r#"
                    @id("main-only")
                    permit (principal, action == Action::"exchange", resource == Resource::"https://api.acme.test")
                    when { principal.hasTag("ref") && principal.getTag("ref") == "refs/heads/main" };
                    @id("no-night")
                    forbid (principal, action, resource) when { context.hour < 6 };
                    "#
                    .into(),
                )],
                "test",
            )
            .unwrap();
        let w = workload();
        let audiences = vec![];
        let mut req = request(&w, Action::Exchange, &audiences);
        req.now = 1_800_000_000 - 1_800_000_000 % 86_400 + 12 * 3600;
        assert!(engine.decide(&policies, &req).allowed);
        req.now -= 9 * 3600;
        let denied = engine.decide(&policies, &req);
        assert!(!denied.allowed);
        assert_eq!(denied.policies, vec!["no-night".to_owned()]);
    }

    #[test]
    fn policies_can_require_the_issuer_that_vouched() {
        let engine = PolicyEngine::new().unwrap();
        let policies = engine
            .load_texts(
                &[(
                    "issuer.cedar".into(),
                    r#"permit (principal in Issuer::"gha", action, resource);"#.into(),
                )],
                "test",
            )
            .unwrap();
        let mut w = workload();
        let audiences = vec![];
        assert!(
            engine
                .decide(&policies, &request(&w, Action::Exchange, &audiences))
                .allowed
        );
        w.issuer = "other".into();
        assert!(
            !engine
                .decide(&policies, &request(&w, Action::Exchange, &audiences))
                .allowed
        );
    }

    #[test]
    fn invalid_policies_are_refused_with_diagnostics() {
        let engine = PolicyEngine::new().unwrap();
        let err = engine
            .load_texts(
                &[(
                    "bad.cedar".into(),
                    "permit (principal, action, resource) when { context.nope == 1 };".into(),
                )],
                "test",
            )
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = engine
            .load_texts(
                &[("broken.cedar".into(), "permit (principal".into())],
                "test",
            )
            .unwrap_err();
        assert!(err.to_string().starts_with("broken.cedar"), "{err}");
    }
}
