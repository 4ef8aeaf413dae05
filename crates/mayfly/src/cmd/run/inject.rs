//! `mayfly run --inject NAME`: CMD uses secrets in custody without ever
//! holding them. A relay on loopback takes CMD's requests (CMD's SDK is
//! pointed at it through its own variables, with a key good only there)
//! and forwards them to the broker's proxy with the task's access token,
//! bound by DPoP to a key that never leaves this process and refreshed
//! before it expires. When `mayfly run` ends, so does the relay, and the
//! task's tokens are revoked: nothing CMD kept is of any use.

use std::sync::Arc;

use anyhow::Context as _;
use mayfly_broker::Clock as _;
use mayfly_broker::client::{Client, ClientError, IdentitySource};
use mayfly_broker::custody::{self, CustodyUse};
use mayfly_broker::dpop::ProofKey;
use mayfly_broker::relay::{LocalCa, Relay, RelayEntry, TokenSlots};

use super::{blocking, refresh_after};

/// The relay and what CMD is told about it.
pub(super) struct Injected {
    /// The relay (stops when dropped).
    pub(super) relay: Relay,
    /// Variables for CMD.
    pub(super) env: Vec<(String, String)>,
    /// Variables CMD must not inherit.
    pub(super) env_remove: Vec<&'static str>,
    /// The key CMD presents to the relay (good only there).
    pub(super) local_key: String,
    /// Keeps the tokens fresh.
    pub(super) refresher: tokio::task::JoinHandle<()>,
}

/// What the broker says about each entry to inject (its audience, and the
/// provider whose SDK variables CMD gets); a bare `github` that no custody
/// entry is named comes back as the GitHub App upstream instead.
pub(super) async fn describe(
    client: &Client,
    source: &IdentitySource,
    names: &[String],
) -> anyhow::Result<(Vec<CustodyUse>, bool)> {
    if names.is_empty() {
        return Ok((Vec::new(), false));
    }
    for name in names {
        custody::check_name(name)?;
    }
    let (client, source, names) = (client.clone(), source.clone(), names.to_vec());
    blocking(move || {
        let identity = source.token(&client)?;
        let mut entries = Vec::new();
        let mut github_app = false;
        for name in &names {
            match client.custody_use(&identity, name) {
                Ok(entry) => entries.push(entry),
                Err(ClientError::Refused { status: 404, .. }) if name == "github" => {
                    github_app = true;
                }
                Err(e) => return Err(e).with_context(|| format!("--inject {name}")),
            }
        }
        Ok((entries, github_app))
    })
    .await
}

/// Exchanges a DPoP-bound token for each entry; returns the shortest
/// lifetime.
async fn exchange_all(
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
    entries: &[CustodyUse],
    token_ttl: Option<i64>,
    key: &Arc<ProofKey>,
    slots: &TokenSlots,
) -> anyhow::Result<i64> {
    let (client, source, task_id) = (client.clone(), source.clone(), task_id.to_owned());
    let (entries, key, slots) = (entries.to_vec(), key.clone(), slots.clone());
    blocking(move || {
        let identity = source.token(&client)?;
        let mut shortest = i64::MAX;
        for entry in &entries {
            let now = mayfly_broker::SystemClock.now();
            let response = client
                .exchange_bound(&identity, &task_id, &entry.audience, token_ttl, &key, now)
                .with_context(|| format!("a credential for {}", entry.name))?;
            shortest = shortest.min(response.expires_in);
            slots.set(&entry.name, response.access_token);
        }
        Ok(shortest)
    })
    .await
}

/// The variables CMD gets: per entry, its provider's SDK variables (base
/// URL on the relay, key good only there); for all, `MAYFLY_PROXY_URL`
/// (entries below it by name) and `MAYFLY_PROXY_KEY`. Intercepting, the
/// SDKs keep their own base URLs and get `HTTPS_PROXY` and the CA bundle
/// instead.
fn variables(
    relay: &Relay,
    entries: &[CustodyUse],
    local_key: &str,
    bundle: Option<&std::path::Path>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |name: &str, value: String, env: &mut Vec<(String, String)>| {
        if env.iter().any(|(n, _)| n == name) {
            eprintln!(
                "mayfly run: {name} is already set for another injected entry; keeping the first"
            );
        } else {
            env.push((name.to_owned(), value));
        }
    };
    for entry in entries {
        let Some(preset) = custody::preset(&entry.provider) else {
            continue;
        };
        if bundle.is_none() {
            for (name, suffix) in preset.base_url_vars {
                set(
                    name,
                    format!("{}{suffix}", relay.url(&entry.name)),
                    &mut env,
                );
            }
        }
        for name in preset.key_vars {
            set(name, local_key.to_owned(), &mut env);
        }
    }
    set(
        "MAYFLY_PROXY_URL",
        format!("http://{}", relay.address),
        &mut env,
    );
    set("MAYFLY_PROXY_KEY", local_key.to_owned(), &mut env);
    if let (Some(bundle), Some(proxy)) = (bundle, relay.intercept_address) {
        for name in ["HTTPS_PROXY", "https_proxy"] {
            set(name, format!("http://{proxy}"), &mut env);
        }
        for name in [
            "SSL_CERT_FILE",
            "NODE_EXTRA_CA_CERTS",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
        ] {
            set(name, bundle.display().to_string(), &mut env);
        }
    }
    env
}

/// Variables that would let CMD's connections bypass the intercepting
/// proxy.
const BYPASS_VARIABLES: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Starts the relay with a first token per entry, and keeps them fresh;
/// with `intercept` (CMD's private folder), also the intercepting proxy,
/// its CA bundle written in that folder.
pub(super) async fn start(
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
    entries: Vec<CustodyUse>,
    token_ttl: Option<i64>,
    intercept: Option<std::path::PathBuf>,
) -> anyhow::Result<Injected> {
    let key = Arc::new(ProofKey::generate()?);
    let slots = TokenSlots::default();
    let first = exchange_all(client, source, task_id, &entries, token_ttl, &key, &slots).await?;
    let local_key = mayfly_broker::relay::new_local_key()?;
    let ca = match &intercept {
        Some(_) => Some(Arc::new(LocalCa::load_or_create(
            &crate::common::data_dir()?,
        )?)),
        None => None,
    };
    let relay = Relay::start(
        client.base(),
        entries
            .iter()
            .map(|e| RelayEntry {
                name: e.name.clone(),
                injection: e.injection.clone(),
                upstreams: e.upstreams.clone(),
            })
            .collect(),
        local_key.clone(),
        key.clone(),
        slots.clone(),
        ca.clone(),
    )
    .await?;
    let bundle = match (&ca, &intercept) {
        (Some(ca), Some(dir)) => Some(ca.write_bundle(&dir.join("ca-bundle.pem"))?),
        _ => None,
    };
    let env = variables(&relay, &entries, &local_key, bundle.as_deref());
    let refresher = {
        let (client, source, task_id) = (client.clone(), source.clone(), task_id.to_owned());
        tokio::spawn(async move {
            let mut expires_in = first;
            loop {
                tokio::time::sleep(refresh_after(expires_in)).await;
                match exchange_all(
                    &client, &source, &task_id, &entries, token_ttl, &key, &slots,
                )
                .await
                {
                    Ok(shortest) => expires_in = shortest,
                    Err(e) => {
                        eprintln!("mayfly run: refresh failed: {e:#}");
                        expires_in = 6;
                    }
                }
            }
        })
    };
    Ok(Injected {
        relay,
        env,
        local_key,
        env_remove: if intercept.is_some() {
            BYPASS_VARIABLES.to_vec()
        } else {
            Vec::new()
        },
        refresher,
    })
}
