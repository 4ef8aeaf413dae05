//! `mayfly mcp wrap | unwrap`: taking servers' credentials out of the
//! configurations into custody, and putting the originals back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mayfly_broker::client::{Client, ClientError};
use mayfly_broker::custody::{self, AddCustody, Injection, SecretValue};
use mayfly_broker::mcp_bridge::server_url;
use mayfly_migrate::servers::{Moved, Place, ServerWrap, Transport, WrapWith, wrap_servers};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::Selection;
use super::configs::{ConfigFile, Credential, Found, configs, normalized, scanner};
use crate::cmd::client::ClientAuthArgs;
use crate::cmd::migrate::write_atomically;
use crate::common::{data_dir, outln};

/// Where a remote server's credential is sent: the server's origin, in
/// the header the configuration had it in.
struct RemoteUse {
    origin: String,
    injection: Injection,
}

/// A credential on its way into custody.
struct Move<'a> {
    credential: &'a Credential,
    /// The custody entry it goes to.
    entry: String,
    /// For a remote server's credential.
    remote: Option<RemoteUse>,
}

/// How a server is wrapped and where its credentials go, or why it is not
/// wrapped.
fn plan<'a>(
    found: &'a Found,
    upstreams: &BTreeMap<String, String>,
) -> Result<(ServerWrap, Vec<Move<'a>>), String> {
    if found.server.wrapped {
        return Err(format!("{}: already wrapped", found.server.name));
    }
    match &found.server.transport {
        Transport::Remote { url } => plan_remote(found, url),
        Transport::Stdio { .. } => plan_stdio(found, upstreams),
    }
}

fn plan_stdio<'a>(
    found: &'a Found,
    upstreams: &BTreeMap<String, String>,
) -> Result<(ServerWrap, Vec<Move<'a>>), String> {
    let name = &found.server.name;
    let mut keys = Vec::new();
    for c in &found.credentials {
        let Place::Env(key) = &c.place else {
            return Err(format!(
                "{name}: its {} credential is in its {}; move it to env, then wrap",
                c.provider, c.place
            ));
        };
        let known = custody::preset(&c.provider).is_some_and(|p| !p.upstream.is_empty());
        if !known && !upstreams.contains_key(&c.provider.to_ascii_lowercase()) {
            return Err(format!(
                "{name}: Mayfly has no API preset for {} ({}); add it by hand: mayfly custody add NAME --provider generic --upstream URL --stdin",
                c.provider, c.rule
            ));
        }
        keys.push(key.clone());
    }
    let moves: Vec<Move<'a>> = found
        .credentials
        .iter()
        .map(|c| Move {
            credential: c,
            entry: entry_name(c, ""),
            remote: None,
        })
        .collect();
    let mut entries: Vec<String> = moves.iter().map(|m| m.entry.clone()).collect();
    entries.dedup();
    let wrap = ServerWrap {
        server: name.clone(),
        moved: Moved::Env(keys),
        entries,
    };
    Ok((wrap, moves))
}

/// A remote server's one credential goes into custody for the server's
/// origin, injected in the header or URL parameter it was in.
fn plan_remote<'a>(found: &'a Found, url: &str) -> Result<(ServerWrap, Vec<Move<'a>>), String> {
    let name = &found.server.name;
    let [c] = found.credentials.as_slice() else {
        return Err(format!(
            "{name}: a remote server with {} credentials in its headers and URL; Mayfly injects one per remote server: wrap it by hand",
            found.credentials.len()
        ));
    };
    let (uri, origin) = server_url(url).map_err(|why| format!("{name}: its URL {why}"))?;
    custody::check_upstream(&origin).map_err(|e| format!("{name}: {e}"))?;
    let value = found
        .server
        .slots
        .iter()
        .find(|slot| slot.place == c.place)
        .map_or("", |slot| slot.value.as_str());
    let (injection, moved) = match &c.place {
        Place::Header(header) => {
            let template = value.replacen(c.secret.expose(), "{secret}", 1);
            if template.contains(c.secret.expose()) {
                return Err(format!(
                    "{name}: header {header} holds the key more than once; edit it by hand"
                ));
            }
            let injection = Injection::Header {
                name: header.clone(),
                template,
            };
            (injection, Moved::Header(header.clone()))
        }
        Place::Query(parameter) if value == c.secret.expose() => (
            Injection::Query {
                name: parameter.clone(),
            },
            Moved::Query(parameter.clone()),
        ),
        place => {
            return Err(format!(
                "{name}: its {} credential is in its {place}, not alone in a header or URL parameter; edit it by hand",
                c.provider
            ));
        }
    };
    custody::check_injection(&injection).map_err(|e| format!("{name}: {}: {e}", c.place))?;
    let entry = entry_name(c, uri.authority().map_or("", |a| a.as_str()));
    let wrap = ServerWrap {
        server: name.clone(),
        moved,
        entries: vec![entry.clone()],
    };
    let moves = vec![Move {
        credential: c,
        entry,
        remote: Some(RemoteUse { origin, injection }),
    }];
    Ok((wrap, moves))
}

/// The custody entry a credential goes to: the provider's preset, for a
/// remote server's credential its host (the proxy sends an entry to one
/// upstream), and the start of the fingerprint, so one key in several
/// files is one entry.
fn entry_name(c: &Credential, host: &str) -> String {
    let provider =
        custody::preset(&c.provider).map_or_else(|| normalized(&c.provider), |p| p.id.to_owned());
    let fingerprint = &c.fingerprint[..8.min(c.fingerprint.len())];
    if host.is_empty() {
        return format!("{provider}-{fingerprint}");
    }
    let room = 64usize.saturating_sub(provider.len() + fingerprint.len() + 2);
    let host: String = host
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '.' {
                ch
            } else {
                '-'
            }
        })
        .take(room)
        .collect();
    format!("{provider}-{host}-{fingerprint}")
}

/// The wrapper's program: `mayfly` from PATH, else this binary.
fn program() -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("mayfly").is_file()));
    if on_path {
        return "mayfly".to_owned();
    }
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "mayfly".to_owned())
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".mayfly-wrap");
    PathBuf::from(name)
}

/// A patch with every secret redacted.
fn redacted_patch(path: &Path, old: &str, new: &str, secrets: &[&str]) -> String {
    let redacted = |text: &str| {
        secrets.iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret, &mayfly_migrate::redact(secret))
        })
    };
    mayfly_migrate::patch(
        &path.display().to_string(),
        &redacted(old),
        &redacted(new),
        "",
    )
}

/// `mayfly mcp wrap`.
pub(super) fn wrap(
    select: &Selection,
    apply: bool,
    owner: Option<String>,
    upstream_args: &[String],
    auth: &ClientAuthArgs,
    broker: &str,
) -> anyhow::Result<u8> {
    let mut upstreams = BTreeMap::new();
    for pair in upstream_args {
        let (provider, url) = pair
            .split_once('=')
            .with_context(|| format!("--upstream {pair:?}: write PROVIDER=URL"))?;
        upstreams.insert(provider.to_ascii_lowercase(), url.to_owned());
    }
    let owner = owner
        .or_else(|| std::env::var("USER").ok())
        .context("pass --owner (who answers for the wrapped servers)")?;
    let scanner = scanner()?;
    let files = configs(select, &scanner)?;
    let with = WrapWith {
        program: program(),
        owner: owner.clone(),
        env: vec![
            ("MAYFLY_SERVER".to_owned(), broker.to_owned()),
            (
                "MAYFLY_LOCAL_SOCKET".to_owned(),
                data_dir()?.join("workload.sock").display().to_string(),
            ),
        ],
    };
    // What each file becomes, and the custody entries it needs.
    let mut planned: Vec<(&ConfigFile, String, Vec<Move<'_>>)> = Vec::new();
    let mut skipped = Vec::new();
    for file in &files {
        let servers = match &file.servers {
            Ok(servers) => servers,
            Err(e) => {
                skipped.push(format!("{}: not read: {e}", file.path.display()));
                continue;
            }
        };
        let mut wraps = Vec::new();
        let mut moved = Vec::new();
        for found in servers
            .iter()
            .filter(|f| f.server.wrapped || !f.credentials.is_empty())
        {
            match plan(found, &upstreams) {
                Ok((wrap, moves)) => {
                    wraps.push(wrap);
                    moved.extend(moves);
                }
                Err(why) => skipped.push(format!("{}: {why}", file.path.display())),
            }
        }
        if wraps.is_empty() {
            continue;
        }
        match wrap_servers(&file.path, &file.text, &wraps, &with) {
            Ok(rewrite) => {
                let secrets: Vec<&str> =
                    moved.iter().map(|m| m.credential.secret.expose()).collect();
                if secrets.iter().any(|s| rewrite.text.contains(s)) {
                    skipped.push(format!(
                        "{}: a key also appears where Mayfly cannot replace it safely; edit it by hand",
                        file.path.display()
                    ));
                    continue;
                }
                outln!(
                    "{} ({}): {}",
                    file.path.display(),
                    file.client,
                    rewrite.changes.join("; ")
                )?;
                outln!(
                    "{}",
                    redacted_patch(&file.path, &file.text, &rewrite.text, &secrets).trim_end()
                )?;
                planned.push((file, rewrite.text, moved));
            }
            Err(why) => skipped.push(format!("{}: {why}", file.path.display())),
        }
    }
    if !skipped.is_empty() {
        outln!("\nnot wrapped:")?;
        for why in &skipped {
            outln!("  {why}")?;
        }
    }
    if planned.is_empty() {
        eprintln!("nothing to wrap");
        return Ok(0);
    }
    if !apply {
        eprintln!("\ndry run: nothing written; run again with --apply");
        return Ok(0);
    }
    let client = Client::new(broker);
    let admin = auth.admin_token()?;
    // Every key into custody first: no file changes unless all are there.
    let entries = custody_entries(planned.iter().flat_map(|(_, _, moved)| moved))?;
    for (name, first) in &entries {
        add_to_custody(&client, &admin, name, first, &owner, &upstreams)?;
    }
    let added: Vec<&String> = entries.keys().collect();
    for (file, text, _) in &planned {
        let backup = backup_path(&file.path);
        // A second wrap keeps the first original: unwrap goes back to
        // before Mayfly touched the file.
        let original = match std::fs::read_to_string(&backup) {
            Ok(kept) => serde_json::from_str::<serde_json::Value>(&kept)
                .ok()
                .and_then(|v| {
                    v.get("original")
                        .and_then(|o| o.as_str())
                        .map(str::to_owned)
                })
                .with_context(|| {
                    format!(
                        "{} is not a backup mayfly mcp wrap made; move it away",
                        backup.display()
                    )
                })?,
            Err(_) => file.text.clone(),
        };
        let record = json!({"original": original, "wrapped_sha256": sha256_hex(text)});
        let _ = std::fs::remove_file(&backup);
        mayfly_broker::keys::write_private(&backup, record.to_string().as_bytes())
            .with_context(|| format!("cannot write the backup {}", backup.display()))?;
        write_atomically(&file.path, &file.text, text, false)?;
        eprintln!(
            "{}: wrapped (the original, keys included, kept in {} for `mayfly mcp unwrap`; delete it once the wrapped servers work)",
            file.path.display(),
            backup.display()
        );
    }
    eprintln!(
        "\n{} key{} in custody ({}); the wrapped servers get them through mayfly run --inject. \
         The copies were readable in those files: rotate them at their providers, then `mayfly custody rotate NAME --stdin`.",
        added.len(),
        if added.len() == 1 { "" } else { "s" },
        added
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(0)
}

/// The custody entries the moves need, each with its first move; one key
/// sent to one remote server from several configurations must go in the
/// same header.
fn custody_entries<'m, 'a: 'm>(
    moves: impl Iterator<Item = &'m Move<'a>>,
) -> anyhow::Result<BTreeMap<String, &'m Move<'a>>> {
    let mut entries: BTreeMap<String, &Move> = BTreeMap::new();
    for m in moves {
        let first = *entries.entry(m.entry.clone()).or_insert(m);
        let injection = |m: &Move| m.remote.as_ref().map(|r| r.injection.clone());
        if injection(first) != injection(m) {
            bail!(
                "one key goes to a remote MCP server in different headers or URL parameters (custody entry {}); wrap one configuration at a time with --client",
                m.entry
            );
        }
    }
    Ok(entries)
}

fn add_to_custody(
    client: &Client,
    admin: &str,
    name: &str,
    first: &Move<'_>,
    owner: &str,
    upstreams: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let c = first.credential;
    match client.custody_show(admin, name) {
        Ok(entry) if entry.fingerprint.as_deref() == Some(c.fingerprint.as_str()) => {
            if let Some(remote) = &first.remote
                && !entry.upstreams.contains(&remote.origin)
            {
                bail!(
                    "custody entry {name} holds this key but may not be sent to {}; remove it (mayfly custody remove {name}) and wrap again",
                    remote.origin
                );
            }
            return Ok(());
        }
        Ok(_) => {
            bail!("a custody entry named {name} exists for another secret; remove it or rename it")
        }
        Err(ClientError::Refused { status: 404, .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let preset = custody::preset(&c.provider);
    let (upstreams, injection) = match &first.remote {
        Some(remote) => (vec![remote.origin.clone()], Some(remote.injection.clone())),
        None => {
            let upstream = upstreams
                .get(&c.provider.to_ascii_lowercase())
                .or_else(|| preset.and_then(|p| upstreams.get(p.id)))
                .cloned();
            (upstream.into_iter().collect(), None)
        }
    };
    client.custody_add(
        admin,
        &AddCustody {
            name: name.to_owned(),
            provider: preset.map_or("generic", |p| p.id).to_owned(),
            owner: owner.to_owned(),
            upstreams,
            injection,
            max_age_days: None,
            grace_seconds: None,
            fingerprint: Some(c.fingerprint.clone()),
            secret: SecretValue::new(c.secret.expose().to_owned()),
        },
    )?;
    Ok(())
}

/// `mayfly mcp unwrap`.
pub(super) fn unwrap(select: &Selection, apply: bool) -> anyhow::Result<u8> {
    let scanner = scanner()?;
    let files = configs(select, &scanner)?;
    let mut restored = 0;
    for file in &files {
        let backup = backup_path(&file.path);
        let Ok(kept) = std::fs::read_to_string(&backup) else {
            continue;
        };
        let record: serde_json::Value = serde_json::from_str(&kept).with_context(|| {
            format!("{} is not a backup mayfly mcp wrap made", backup.display())
        })?;
        let (Some(original), Some(wrapped)) = (
            record.get("original").and_then(|v| v.as_str()),
            record.get("wrapped_sha256").and_then(|v| v.as_str()),
        ) else {
            bail!("{} is not a backup mayfly mcp wrap made", backup.display());
        };
        if sha256_hex(&file.text) != wrapped {
            outln!(
                "{}: changed since mayfly mcp wrap; not restored (the original is in {})",
                file.path.display(),
                backup.display()
            )?;
            continue;
        }
        let secrets: Vec<String> = scanner
            .scan_bytes(&file.path.display().to_string(), original.as_bytes())
            .into_iter()
            .filter_map(|f| f.secret)
            .collect();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        outln!(
            "{} ({}): restore the original",
            file.path.display(),
            file.client
        )?;
        outln!(
            "{}",
            redacted_patch(&file.path, &file.text, original, &secrets).trim_end()
        )?;
        if apply {
            write_atomically(&file.path, &file.text, original, false)?;
            std::fs::remove_file(&backup)
                .with_context(|| format!("cannot remove {}", backup.display()))?;
            eprintln!(
                "{}: restored; the keys are in it again (and still in custody: `mayfly custody remove NAME` drops them there)",
                file.path.display()
            );
        }
        restored += 1;
    }
    if restored == 0 {
        eprintln!("nothing to unwrap: no configuration has a backup from mayfly mcp wrap");
    } else if !apply {
        eprintln!("\ndry run: nothing written; run again with --apply");
    }
    Ok(0)
}
