//! `mayfly run --inject pg:NAME[:LEVEL]` and `--inject github[:NAME]`:
//! CMD gets a credential its upstream made for this task alone (a
//! PostgreSQL role in `DATABASE_URL` and `PG*`, a GitHub installation
//! token in `GITHUB_TOKEN` and `GH_TOKEN`), which the broker drops or
//! revokes when the task ends.

use anyhow::Context as _;
use mayfly_broker::client::{Client, IdentitySource};
use mayfly_broker::minted::Target;

use super::blocking;

/// One upstream credential to give CMD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UpstreamInject {
    /// As given on the command line.
    pub(super) spec: String,
    /// The upstream's audience.
    pub(super) audience: String,
    /// The level (PostgreSQL) or repositories and permissions (GitHub).
    pub(super) scope: Option<String>,
}

/// The GitHub App upstream `name`, with `scope`.
pub(super) fn github(spec: &str, name: &str, scope: Option<&str>) -> UpstreamInject {
    UpstreamInject {
        spec: spec.to_owned(),
        audience: Target::Github(name).audience(),
        scope: scope.map(str::to_owned),
    }
}

/// Splits `--inject` values into custody entry names and upstream
/// credentials (`pg:NAME[:LEVEL]`, `postgres:NAME[:LEVEL]`,
/// `github:NAME`). A bare `github` stays a custody name: it names the
/// GitHub App only when no custody entry has that name.
pub(super) fn split(
    values: &[String],
    github_scope: Option<&str>,
) -> anyhow::Result<(Vec<String>, Vec<UpstreamInject>)> {
    let mut custody = Vec::new();
    let mut upstreams: Vec<UpstreamInject> = Vec::new();
    for value in values {
        let inject = match value.split(':').collect::<Vec<_>>().as_slice() {
            [_] => {
                if !custody.contains(value) {
                    custody.push(value.clone());
                }
                continue;
            }
            ["pg" | "postgres", name] | ["pg" | "postgres", name, ""] if !name.is_empty() => {
                UpstreamInject {
                    spec: value.clone(),
                    audience: Target::Postgres(name).audience(),
                    scope: None,
                }
            }
            ["pg" | "postgres", name, level] if !name.is_empty() => UpstreamInject {
                spec: value.clone(),
                audience: Target::Postgres(name).audience(),
                scope: Some((*level).to_owned()),
            },
            ["github", name] if !name.is_empty() => github(value, name, github_scope),
            _ => anyhow::bail!(
                "--inject {value}: give a custody entry's name, pg:NAME[:LEVEL] for a PostgreSQL role, or github[:NAME] for a GitHub App token"
            ),
        };
        if upstreams.iter().any(|u| u.audience == inject.audience) {
            anyhow::bail!("--inject {value}: that upstream is already injected");
        }
        upstreams.push(inject);
    }
    Ok((custody, upstreams))
}

/// Exchanges for each upstream credential; returns CMD's variables.
pub(super) async fn fetch(
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
    upstreams: &[UpstreamInject],
) -> anyhow::Result<Vec<(String, String)>> {
    if upstreams.is_empty() {
        return Ok(Vec::new());
    }
    let (client, source, task_id) = (client.clone(), source.clone(), task_id.to_owned());
    let upstreams = upstreams.to_vec();
    blocking(move || {
        let identity = source.token(&client)?;
        let mut env: Vec<(String, String)> = Vec::new();
        for upstream in &upstreams {
            let response = client
                .exchange(
                    &identity,
                    &task_id,
                    &upstream.audience,
                    upstream.scope.as_deref(),
                    None,
                )
                .with_context(|| format!("--inject {}", upstream.spec))?;
            let credential = response.upstream_credential.with_context(|| {
                format!(
                    "--inject {}: the broker returned no upstream credential (is it older than this mayfly?)",
                    upstream.spec
                )
            })?;
            eprintln!(
                "mayfly run: {} for this task, until it ends (at most {} s)",
                upstream.spec, response.expires_in
            );
            for (name, value) in credential.environment() {
                if env.iter().any(|(n, _)| n == name) {
                    anyhow::bail!(
                        "--inject {}: {name} is already set by another injected upstream; inject one of each kind",
                        upstream.spec
                    );
                }
                env.push((name.to_owned(), value));
            }
        }
        Ok(env)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn specs_name_custody_entries_and_upstreams() {
        let (custody, upstreams) = split(
            &values(&[
                "openai",
                "pg:app:read",
                "github:acme",
                "postgres:billing",
                "openai",
            ]),
            Some("repo:web contents:read"),
        )
        .unwrap();
        assert_eq!(custody, vec!["openai"]);
        assert_eq!(upstreams[0].audience, "urn:mayfly:postgres:app");
        assert_eq!(upstreams[0].scope.as_deref(), Some("read"));
        assert_eq!(upstreams[1].audience, "urn:mayfly:github:acme");
        assert_eq!(
            upstreams[1].scope.as_deref(),
            Some("repo:web contents:read")
        );
        assert_eq!(upstreams[2].audience, "urn:mayfly:postgres:billing");
        assert_eq!(upstreams[2].scope, None);
    }

    #[test]
    fn bad_specs_say_what_is_accepted() {
        for bad in ["pg:", "pg:a:b:c", "redis:x", "github:"] {
            let err = split(&values(&[bad]), None).unwrap_err().to_string();
            assert!(err.contains("pg:NAME[:LEVEL]"), "{bad}: {err}");
        }
        let err = split(&values(&["pg:a", "pg:a:write"]), None).unwrap_err();
        assert!(err.to_string().contains("already injected"), "{err}");
    }
}
