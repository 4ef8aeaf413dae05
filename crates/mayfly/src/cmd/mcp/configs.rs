//! Reading the MCP client configurations on this machine: every server,
//! its transport, and the credentials among its values (`mayfly mcp list`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mayfly_broker::custody::SecretValue;
use mayfly_migrate::servers::{McpServer, Place, Transport, read_servers};
use mayfly_scan::fingerprint::FingerprintKey;
use mayfly_scan::host::host_targets;
use mayfly_scan::rule::RuleSet;
use mayfly_scan::scan::{ScanOptions, Scanner};
use serde_json::json;

use super::Selection;
use crate::common::{outln, print_json};

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

/// A credential a server holds.
pub(super) struct Credential {
    pub(super) place: Place,
    pub(super) rule: String,
    pub(super) provider: String,
    pub(super) fingerprint: String,
    pub(super) secret: SecretValue,
}

/// A server and its credentials.
pub(super) struct Found {
    pub(super) server: McpServer,
    pub(super) credentials: Vec<Credential>,
}

/// A configuration file and what is in it.
pub(super) struct ConfigFile {
    pub(super) client: &'static str,
    pub(super) path: PathBuf,
    pub(super) text: String,
    pub(super) servers: Result<Vec<Found>, String>,
}

pub(super) fn normalized(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

pub(super) fn scanner() -> anyhow::Result<Scanner> {
    let key = FingerprintKey::load_or_create(&FingerprintKey::default_path()?)?;
    let options = ScanOptions {
        reveal_secrets: true,
        ..ScanOptions::default()
    };
    Ok(Scanner::new(RuleSet::builtin()?, key, options)?)
}

/// The configuration files of the selected clients.
pub(super) fn configs(select: &Selection, scanner: &Scanner) -> anyhow::Result<Vec<ConfigFile>> {
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

/// A server's transport with every credential it holds redacted (a key
/// can sit in an argument or in the URL).
fn shown_transport(found: &Found) -> Transport {
    let redacted = |text: &str| {
        found.credentials.iter().fold(text.to_owned(), |text, c| {
            text.replace(
                c.secret.expose(),
                &mayfly_migrate::redact(c.secret.expose()),
            )
        })
    };
    match &found.server.transport {
        Transport::Stdio { command, args } => Transport::Stdio {
            command: redacted(command),
            args: args.iter().map(|a| redacted(a)).collect(),
        },
        Transport::Remote { url } => Transport::Remote { url: redacted(url) },
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
pub(super) fn list(select: &Selection, as_json: bool) -> anyhow::Result<u8> {
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
                        "transport": shown_transport(found),
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
                        transport_text(&shown_transport(found))
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
