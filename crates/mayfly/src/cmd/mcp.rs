//! `mayfly mcp list | wrap | unwrap`: the MCP servers configured on this
//! machine and the credentials they hold, and taking those credentials out
//! of the configurations.
//!
//! `wrap` moves each credential of a stdio server's `env` into custody and
//! rewrites the server to run under `mayfly run --inject ... --intercept
//! --key-var VAR`, so the server finds a key in the variable it reads (good
//! only at the local relay) and its calls reach the provider through the
//! broker. A dry run by default; with `--apply` each file is replaced
//! atomically after its original is kept in `FILE.mayfly-wrap` (mode 0600:
//! it holds the keys), which `unwrap` restores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use mayfly_broker::client::{Client, ClientError};
use mayfly_broker::custody::{self, AddCustody, SecretValue};
use mayfly_migrate::servers::{
    McpServer, Place, ServerWrap, Transport, WrapWith, read_servers, wrap_servers,
};
use mayfly_scan::fingerprint::FingerprintKey;
use mayfly_scan::host::host_targets;
use mayfly_scan::rule::RuleSet;
use mayfly_scan::scan::{ScanOptions, Scanner};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::cmd::client::ClientAuthArgs;
use crate::cmd::migrate::write_atomically;
use crate::common::{data_dir, outln, print_json};

/// The MCP clients whose configurations are read.
const CLIENTS: [&str; 9] = [
    "Claude Desktop",
    "Claude Code",
    "Cursor",
    "VS Code",
    "Windsurf",
    "Zed",
    "Codex",
    "Cline",
    "Continue",
];

/// Which configurations and servers a command works on.
#[derive(Debug, Args)]
pub struct Selection {
    /// The home directory whose configurations are read [default: $HOME].
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Only this client (claude-desktop, claude-code, cursor, vscode, windsurf, zed, codex, cline, continue).
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<String>,
    /// Only the server of this name.
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
}

/// `mayfly mcp`.
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Every MCP server configured on this machine: client, file,
    /// transport, and the credentials it holds (by fingerprint, never the value).
    List {
        #[command(flatten)]
        select: Selection,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move stdio servers' credentials into custody and run the servers
    /// under `mayfly run --inject` (a dry run unless --apply).
    Wrap {
        #[command(flatten)]
        select: Selection,
        /// Write: take the keys into custody and rewrite the files.
        #[arg(long)]
        apply: bool,
        /// Who answers for the servers' tasks and the custody entries [default: $USER].
        #[arg(long)]
        owner: Option<String>,
        /// Send a provider's calls to this base URL instead of its public API
        /// (PROVIDER=URL, repeatable: an enterprise host, a test server).
        #[arg(long = "upstream", value_name = "PROVIDER=URL")]
        upstreams: Vec<String>,
        /// The broker's URL.
        #[arg(
            long,
            value_name = "URL",
            env = "MAYFLY_SERVER",
            default_value = "http://127.0.0.1:8710"
        )]
        broker: String,
        #[command(flatten)]
        auth: ClientAuthArgs,
    },
    /// Put a remote (streamable HTTP) MCP server behind a policy gate: each
    /// JSON-RPC request needs a Mayfly token for the gate's resource and is
    /// decided by policy (action "mcp") before it is forwarded; serves the
    /// protected resource metadata (RFC 9728) naming the broker.
    Gate {
        /// The MCP server's endpoint URL (`http://127.0.0.1:9000/mcp`).
        #[arg(long, value_name = "URL")]
        upstream: String,
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8720")]
        listen: String,
        /// The resource its tokens must be for (their audience) [default:
        /// http://ADDR followed by the upstream's path].
        #[arg(long, value_name = "URI")]
        resource: Option<String>,
        /// The broker that decides.
        #[arg(
            long,
            value_name = "URL",
            env = "MAYFLY_SERVER",
            default_value = "http://127.0.0.1:8710"
        )]
        broker: String,
        /// PEM certificates to trust for the upstream's TLS, beside the platform's roots.
        #[arg(long, value_name = "FILE", env = "MAYFLY_PROXY_CA_FILE")]
        upstream_ca_file: Option<PathBuf>,
    },
    /// Restore configurations `wrap --apply` rewrote, from the originals it
    /// kept (a dry run unless --apply).
    Unwrap {
        #[command(flatten)]
        select: Selection,
        /// Write the originals back.
        #[arg(long)]
        apply: bool,
    },
}

/// A credential a server holds.
struct Credential {
    place: Place,
    rule: String,
    provider: String,
    fingerprint: String,
    secret: SecretValue,
}

/// A server and its credentials.
struct Found {
    server: McpServer,
    credentials: Vec<Credential>,
}

/// A configuration file and what is in it.
struct ConfigFile {
    client: &'static str,
    path: PathBuf,
    text: String,
    servers: Result<Vec<Found>, String>,
}

fn normalized(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

fn scanner() -> anyhow::Result<Scanner> {
    let key = FingerprintKey::load_or_create(&FingerprintKey::default_path()?)?;
    let options = ScanOptions {
        reveal_secrets: true,
        ..ScanOptions::default()
    };
    Ok(Scanner::new(RuleSet::builtin()?, key, options)?)
}

/// The configuration files of the selected clients.
fn configs(select: &Selection, scanner: &Scanner) -> anyhow::Result<Vec<ConfigFile>> {
    let home = match &select.home {
        Some(home) => home.clone(),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("HOME is not set: pass --home DIR")?,
    };
    if let Some(client) = &select.client
        && !CLIENTS.iter().any(|c| normalized(c) == normalized(client))
    {
        bail!(
            "unknown --client {client:?}: use one of {}",
            CLIENTS.map(normalized).join(", ")
        );
    }
    let mut files = Vec::new();
    for target in host_targets(&home) {
        let Some(client) = CLIENTS.iter().find(|c| **c == target.tool) else {
            continue;
        };
        if select
            .client
            .as_ref()
            .is_some_and(|want| normalized(want) != normalized(client))
        {
            continue;
        }
        let is_config = target.path.is_file()
            && target
                .path
                .extension()
                .is_some_and(|e| e == "json" || e == "toml");
        if !is_config
            || target.path.ends_with(".claude/.credentials.json")
            || target.path.ends_with(".codex/auth.json")
        {
            continue;
        }
        let text = match std::fs::read_to_string(&target.path) {
            Ok(text) => text,
            Err(e) => {
                files.push(ConfigFile {
                    client,
                    path: target.path,
                    text: String::new(),
                    servers: Err(format!("cannot be read ({e})")),
                });
                continue;
            }
        };
        let servers = read_servers(&target.path, &text).map(|servers| {
            servers
                .into_iter()
                .filter(|s| select.server.as_ref().is_none_or(|want| *want == s.name))
                .map(|server| credentials(scanner, &target.path, server))
                .collect()
        });
        files.push(ConfigFile {
            client,
            path: target.path,
            text,
            servers,
        });
    }
    Ok(files)
}

/// The credentials among a server's values.
fn credentials(scanner: &Scanner, path: &Path, server: McpServer) -> Found {
    let args = match &server.transport {
        Transport::Stdio { args, .. } => args.clone(),
        Transport::Remote { .. } => Vec::new(),
    };
    let mut credentials = Vec::new();
    for slot in &server.slots {
        let text = slot.place.context(&slot.value, &args);
        let label = path.display().to_string();
        for finding in scanner.scan_bytes(&label, text.as_bytes()) {
            let Some(secret) = finding.secret.filter(|s| slot.value.contains(s.as_str())) else {
                continue;
            };
            let fingerprint = finding.fingerprint.to_hex();
            if credentials
                .iter()
                .any(|c: &Credential| c.fingerprint == fingerprint)
            {
                continue;
            }
            credentials.push(Credential {
                place: slot.place.clone(),
                rule: finding.rule.name.clone(),
                provider: finding.rule.provider.clone(),
                fingerprint,
                secret: SecretValue::new(secret),
            });
        }
    }
    Found {
        server,
        credentials,
    }
}

fn transport_text(transport: &Transport) -> String {
    match transport {
        Transport::Stdio { command, args } => {
            let mut text = format!("stdio  {command}");
            for arg in args {
                text.push(' ');
                text.push_str(arg);
            }
            text
        }
        Transport::Remote { url } => format!("remote {url}"),
    }
}

/// `mayfly mcp list`.
fn list(select: &Selection, as_json: bool) -> anyhow::Result<u8> {
    let scanner = scanner()?;
    let files = configs(select, &scanner)?;
    if as_json {
        let shown: Vec<serde_json::Value> = files
            .iter()
            .map(|file| match &file.servers {
                Err(e) => json!({"client": file.client, "file": file.path, "error": e}),
                Ok(servers) => json!({
                    "client": file.client,
                    "file": file.path,
                    "servers": servers.iter().map(|found| json!({
                        "name": found.server.name,
                        "transport": found.server.transport,
                        "wrapped": found.server.wrapped,
                        "credentials": found.credentials.iter().map(|c| json!({
                            "place": c.place,
                            "rule": c.rule,
                            "provider": c.provider,
                            "fingerprint": c.fingerprint,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                }),
            })
            .collect();
        print_json(&shown)?;
        return Ok(0);
    }
    if files.is_empty() {
        eprintln!("no MCP client configuration found");
        return Ok(0);
    }
    for file in &files {
        outln!("{}  {}", file.client, file.path.display())?;
        match &file.servers {
            Err(e) => outln!("  not read: {e}")?,
            Ok(servers) if servers.is_empty() => outln!("  no MCP servers")?,
            Ok(servers) => {
                for found in servers {
                    let wrapped = if found.server.wrapped {
                        "  (wrapped: runs under mayfly run)"
                    } else {
                        ""
                    };
                    outln!(
                        "  {}  {}{wrapped}",
                        found.server.name,
                        transport_text(&found.server.transport)
                    )?;
                    for c in &found.credentials {
                        outln!(
                            "      {}: {} ({}) {}",
                            c.place,
                            c.rule,
                            c.provider,
                            &c.fingerprint[..12.min(c.fingerprint.len())]
                        )?;
                    }
                }
            }
        }
    }
    Ok(0)
}

/// Why a server is not wrapped, if it is not.
fn unwrappable(found: &Found, upstreams: &BTreeMap<String, String>) -> Option<String> {
    let name = &found.server.name;
    if found.server.wrapped {
        return Some(format!("{name}: already wrapped"));
    }
    if let Transport::Remote { url } = &found.server.transport {
        return Some(format!(
            "{name}: a remote server ({url}); its credentials are sent in headers by the client, which Mayfly does not wrap: remove them by hand"
        ));
    }
    for c in &found.credentials {
        if !matches!(c.place, Place::Env(_)) {
            return Some(format!(
                "{name}: its {} credential is in its {}; move it to env, then wrap",
                c.provider, c.place
            ));
        }
        let known = custody::preset(&c.provider).is_some_and(|p| !p.upstream.is_empty());
        if !known && !upstreams.contains_key(&c.provider.to_ascii_lowercase()) {
            return Some(format!(
                "{name}: Mayfly has no API preset for {} ({}); add it by hand: mayfly custody add NAME --provider generic --upstream URL --stdin",
                c.provider, c.rule
            ));
        }
    }
    None
}

/// The custody entry a credential goes to: the provider's preset and the
/// start of the fingerprint, so one key in several files is one entry.
fn entry_name(c: &Credential) -> String {
    let provider =
        custody::preset(&c.provider).map_or_else(|| normalized(&c.provider), |p| p.id.to_owned());
    format!(
        "{provider}-{}",
        &c.fingerprint[..8.min(c.fingerprint.len())]
    )
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
fn wrap(
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
    let mut planned: Vec<(&ConfigFile, String, Vec<&Credential>)> = Vec::new();
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
            if let Some(why) = unwrappable(found, &upstreams) {
                skipped.push(format!("{}: {why}", file.path.display()));
                continue;
            }
            let mut entries: Vec<String> = found.credentials.iter().map(entry_name).collect();
            entries.dedup();
            wraps.push(ServerWrap {
                server: found.server.name.clone(),
                env_keys: found
                    .credentials
                    .iter()
                    .filter_map(|c| match &c.place {
                        Place::Env(name) => Some(name.clone()),
                        _ => None,
                    })
                    .collect(),
                entries,
            });
            moved.extend(found.credentials.iter());
        }
        if wraps.is_empty() {
            continue;
        }
        match wrap_servers(&file.path, &file.text, &wraps, &with) {
            Ok(rewrite) => {
                let secrets: Vec<&str> = moved.iter().map(|c| c.secret.expose()).collect();
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
    let mut added = Vec::new();
    for (_, _, moved) in &planned {
        for c in moved {
            let name = entry_name(c);
            if added.contains(&name) {
                continue;
            }
            add_to_custody(&client, &admin, &name, c, &owner, &upstreams)?;
            added.push(name);
        }
    }
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
        added.join(", ")
    );
    Ok(0)
}

fn add_to_custody(
    client: &Client,
    admin: &str,
    name: &str,
    c: &Credential,
    owner: &str,
    upstreams: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    match client.custody_show(admin, name) {
        Ok(entry) if entry.fingerprint.as_deref() == Some(c.fingerprint.as_str()) => return Ok(()),
        Ok(_) => {
            bail!("a custody entry named {name} exists for another secret; remove it or rename it")
        }
        Err(ClientError::Refused { status: 404, .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let preset = custody::preset(&c.provider);
    let upstream = upstreams
        .get(&c.provider.to_ascii_lowercase())
        .or_else(|| preset.and_then(|p| upstreams.get(p.id)))
        .cloned();
    client.custody_add(
        admin,
        &AddCustody {
            name: name.to_owned(),
            provider: preset.map_or("generic", |p| p.id).to_owned(),
            owner: owner.to_owned(),
            upstreams: upstream.into_iter().collect(),
            injection: None,
            max_age_days: None,
            grace_seconds: None,
            fingerprint: Some(c.fingerprint.clone()),
            secret: SecretValue::new(c.secret.expose().to_owned()),
        },
    )?;
    Ok(())
}

/// `mayfly mcp unwrap`.
fn unwrap(select: &Selection, apply: bool) -> anyhow::Result<u8> {
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

/// `mayfly mcp ...`.
pub fn mcp(command: McpCommand) -> anyhow::Result<u8> {
    match command {
        McpCommand::List { select, json } => list(&select, json),
        McpCommand::Wrap {
            select,
            apply,
            owner,
            upstreams,
            auth,
            broker,
        } => wrap(&select, apply, owner, &upstreams, &auth, &broker),
        McpCommand::Unwrap { select, apply } => unwrap(&select, apply),
        McpCommand::Gate {
            upstream,
            listen,
            resource,
            broker,
            upstream_ca_file,
        } => gate(&upstream, &listen, resource, &broker, upstream_ca_file),
    }
}

/// `mayfly mcp gate`.
fn gate(
    upstream: &str,
    listen: &str,
    resource: Option<String>,
    broker: &str,
    upstream_ca_file: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let config = mayfly_broker::mcp_gate::GateConfig::new(upstream, listen, resource, broker)?;
    let resource = config.resource.clone();
    let proxy = mayfly_broker::config::ProxyConfig {
        extra_ca_file: upstream_ca_file,
        ..mayfly_broker::config::ProxyConfig::default()
    };
    crate::common::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!(
            "mayfly mcp gate: listening on http://{listen}; resource {resource}; upstream {}; broker {broker}",
            config.upstream
        );
        mayfly_broker::mcp_gate::serve(
            config,
            &proxy,
            listener,
            crate::cmd::serve::shutdown_signal(),
        )
        .await?;
        anyhow::Ok(0)
    })
}
