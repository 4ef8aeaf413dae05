//! MCP servers as MCP clients configure them: reading every server entry
//! (its transport and every value it passes: `env`, `headers`, arguments)
//! and wrapping chosen servers so their keys can be removed: a stdio
//! server runs under `mayfly run --inject`, a remote one becomes a stdio
//! server (`mayfly mcp connect`) under `mayfly run --inject --mcp-gate`.
//!
//! JSON files may be JSONC (comments, trailing commas, as VS Code writes
//! them): they are read, but a file with comments is not rewritten, since
//! rewriting would lose them. Server maps are found anywhere in the
//! document: `mcpServers` (Claude Desktop and Code, Cursor, Windsurf,
//! Cline), `servers` (VS Code), `context_servers` (Zed), and Codex's TOML
//! `[mcp_servers.NAME]`.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::mcp::{self, EntryWrap, toml_document, toml_error, wrap_toml_entry};
use super::{FileKind, Rewrite};

/// How a server is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Transport {
    /// A command the client starts, speaking on stdin and stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// A remote server (streamable HTTP or SSE).
    Remote {
        /// Its URL.
        url: String,
    },
}

/// Where a value sits in a server entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "in", content = "name")]
pub enum Place {
    /// An environment variable.
    Env(String),
    /// An HTTP header of a remote server.
    Header(String),
    /// A command-line argument (its index).
    Arg(usize),
    /// A query parameter of a remote server's URL.
    Query(String),
}

impl Place {
    /// The text a scanner reads for this value: a keyword-anchored rule
    /// needs the variable or header name beside it.
    pub fn context(&self, value: &str, args: &[String]) -> String {
        match self {
            Place::Env(name) => format!("{name}={value}\n"),
            Place::Header(name) => format!("{name}: {value}\n"),
            Place::Query(name) => format!("{name}={value}\n"),
            Place::Arg(index) => {
                let before = index
                    .checked_sub(1)
                    .and_then(|i| args.get(i))
                    .map(String::as_str)
                    .unwrap_or_default();
                format!("{before}={value}\n")
            }
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Env(name) => write!(f, "env {name}"),
            Place::Header(name) => write!(f, "header {name}"),
            Place::Arg(index) => write!(f, "argument {index}"),
            Place::Query(name) => write!(f, "URL parameter {name}"),
        }
    }
}

/// A value a server entry passes (a credential or not: the caller's
/// scanner decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Where it is.
    pub place: Place,
    /// The value.
    pub value: String,
}

/// One MCP server entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServer {
    /// Its name in the client.
    pub name: String,
    /// How it is reached.
    pub transport: Transport,
    /// Every value it passes.
    pub slots: Vec<Slot>,
    /// Whether it already runs under `mayfly run`.
    pub wrapped: bool,
}

/// The server maps' keys.
const SERVER_MAPS: [&str; 3] = ["mcpServers", "servers", "context_servers"];

/// Reads the MCP servers of a client configuration; the error says why the
/// file cannot be read (not JSON/JSONC or TOML, or malformed).
pub fn read_servers(path: &Path, text: &str) -> Result<Vec<McpServer>, String> {
    match FileKind::of(path) {
        Some(FileKind::Json) => {
            let document = parse_jsonc(text)?;
            let mut servers = Vec::new();
            collect_json(&document, &mut servers);
            Ok(servers)
        }
        Some(FileKind::Toml) => {
            let table: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| toml_error(text, e.message(), e.span()))?;
            let Some(toml::Value::Table(servers)) = table.get("mcp_servers") else {
                return Ok(Vec::new());
            };
            let json = serde_json::to_value(servers).map_err(|e| e.to_string())?;
            let Value::Object(servers) = json else {
                return Ok(Vec::new());
            };
            Ok(servers
                .iter()
                .filter_map(|(name, entry)| server(name, entry.as_object()?))
                .collect())
        }
        _ => Err("not an MCP client configuration Mayfly reads (JSON or Codex TOML)".into()),
    }
}

fn collect_json(value: &Value, out: &mut Vec<McpServer>) {
    let Value::Object(object) = value else {
        return;
    };
    for (key, child) in object {
        match child {
            Value::Object(entries) if SERVER_MAPS.contains(&key.as_str()) => {
                out.extend(
                    entries
                        .iter()
                        .filter_map(|(name, entry)| server(name, entry.as_object()?)),
                );
            }
            _ => collect_json(child, out),
        }
    }
}

fn text_map(value: Option<&Value>) -> Vec<(String, String)> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// One server entry; Zed nests its command as `{path, args, env}`.
fn server(name: &str, entry: &Map<String, Value>) -> Option<McpServer> {
    let nested = entry.get("command").and_then(Value::as_object);
    let scope = nested.unwrap_or(entry);
    let command = match nested {
        Some(nested) => nested.get("path").and_then(Value::as_str),
        None => entry.get("command").and_then(Value::as_str),
    };
    let url = entry
        .get("url")
        .or_else(|| entry.get("serverUrl"))
        .or_else(|| entry.get("httpUrl"))
        .and_then(Value::as_str);
    let args: Vec<String> = scope
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let transport = match (command, url) {
        (Some(command), _) => Transport::Stdio {
            command: command.to_owned(),
            args: args.clone(),
        },
        (None, Some(url)) => Transport::Remote {
            url: url.to_owned(),
        },
        (None, None) => return None,
    };
    let mut slots: Vec<Slot> = text_map(scope.get("env"))
        .into_iter()
        .map(|(k, v)| Slot {
            place: Place::Env(k),
            value: v,
        })
        .collect();
    for key in ["headers", "http_headers"] {
        slots.extend(text_map(entry.get(key)).into_iter().map(|(k, v)| Slot {
            place: Place::Header(k),
            value: v,
        }));
    }
    if let Transport::Remote { url } = &transport {
        slots.extend(query_pairs(url).map(|(k, v)| Slot {
            place: Place::Query(k.to_owned()),
            value: v.to_owned(),
        }));
    }
    slots.extend(args.iter().enumerate().map(|(i, v)| Slot {
        place: Place::Arg(i),
        value: v.clone(),
    }));
    let wrapped = matches!(&transport, Transport::Stdio { command, args }
        if command.rsplit('/').next() == Some("mayfly") && args.first().map(String::as_str) == Some("run"));
    Some(McpServer {
        name: name.to_owned(),
        transport,
        slots,
        wrapped,
    })
}

/// The `name=value` pairs of a URL's query, as written.
fn query_pairs(url: &str) -> impl Iterator<Item = (&str, &str)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
}

/// `url` without its query parameter `name`, if it has one.
fn without_parameter(url: &str, name: &str) -> Option<String> {
    let (base, query) = url.split_once('?')?;
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Some(out)
}

/// JSON, or JSONC: `//` and `/* */` comments and trailing commas are
/// dropped before parsing (outside strings).
fn parse_jsonc(text: &str) -> Result<Value, String> {
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    serde_json::from_str(&strip_jsonc(text)).map_err(|e| format!("not valid JSON or JSONC ({e})"))
}

/// Whether `text` has JSONC comments or trailing commas.
fn is_jsonc(text: &str) -> bool {
    strip_jsonc(text) != text
}

fn strip_jsonc(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_string = false;
    while let Some(&b) = bytes.get(i) {
        if in_string {
            if b == b'\\' {
                out.push_str(text.get(i..i + 2).unwrap_or_default());
                i += 2;
                continue;
            }
            if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if bytes.get(i..i + 2) == Some(b"//") {
            while bytes.get(i).is_some_and(|&c| c != b'\n') {
                i += 1;
            }
            continue;
        } else if bytes.get(i..i + 2) == Some(b"/*") {
            let end = text.get(i + 2..).and_then(|rest| rest.find("*/"));
            i = end.map_or(bytes.len(), |end| i + 2 + end + 2);
            continue;
        } else if b == b',' {
            let next = bytes
                .get(i + 1..)
                .unwrap_or_default()
                .iter()
                .find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'}') | Some(b']')) {
                i += 1;
                continue;
            }
        }
        let width = text
            .get(i..)
            .and_then(|rest| rest.chars().next())
            .map_or(1, char::len_utf8);
        out.push_str(text.get(i..i + width).unwrap_or_default());
        i += width;
    }
    out
}

/// How one server is wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerWrap {
    /// The server's name.
    pub server: String,
    /// Where its credentials were.
    pub moved: Moved,
    /// The custody entries it is given.
    pub entries: Vec<String>,
}

/// Where a wrapped server's credentials were taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// A stdio server's `env` variables: the server runs under
    /// `mayfly run --inject` and finds a relay-only key in them.
    Env(Vec<String>),
    /// A remote server's header: the entry becomes a stdio server,
    /// `mayfly mcp connect URL --through ENTRY` under `mayfly run --inject
    /// ENTRY --mcp-gate NAME`, and the broker adds the header.
    Header(String),
    /// A remote server's URL parameter: as [`Moved::Header`], with the
    /// parameter taken out of the URL; the broker adds it back.
    Query(String),
}

/// The `mayfly` program, owner and variables every wrapped server gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapWith {
    /// `mayfly` (or its full path).
    pub program: String,
    /// Who answers for the servers' tasks.
    pub owner: String,
    /// Variables that reach the broker (never secrets).
    pub env: Vec<(String, String)>,
}

/// The arguments of a wrapped stdio server: its keys come back in the
/// same variables, good only at the relay, which reaches the provider
/// whatever base URL the server uses (`--intercept`).
fn wrapped_args(
    wrap: &ServerWrap,
    env_keys: &[String],
    with: &WrapWith,
    command: &str,
    args: &[String],
) -> Vec<String> {
    let mut out = vec![
        "run".to_owned(),
        "--inject".to_owned(),
        wrap.entries.join(","),
        "--intercept".to_owned(),
    ];
    for key in env_keys {
        out.push("--key-var".to_owned());
        out.push(key.clone());
    }
    out.extend([
        "--purpose".to_owned(),
        format!("mcp server {}", wrap.server),
        "--owner".to_owned(),
        with.owner.clone(),
        "--".to_owned(),
        command.to_owned(),
    ]);
    out.extend(args.iter().cloned());
    out
}

/// The arguments of a wrapped remote server: `mayfly mcp connect` speaks
/// to it through the relay, whose broker adds the credential, under the
/// policy gate; the entry's other headers go along as they were.
fn remote_args(
    wrap: &ServerWrap,
    with: &WrapWith,
    url: &str,
    headers: &[(String, String)],
) -> Vec<String> {
    let entry = wrap.entries.join(",");
    let purpose = format!("mcp server {}", wrap.server);
    let mut out: Vec<String> = [
        "run",
        "--inject",
        &entry,
        "--mcp-gate",
        &wrap.server,
        "--purpose",
        &purpose,
        "--owner",
        &with.owner,
        "--",
        &with.program,
        "mcp",
        "connect",
        url,
        "--through",
        &entry,
    ]
    .map(str::to_owned)
    .to_vec();
    for (name, value) in headers {
        out.push("--header".to_owned());
        out.push(format!("{name}: {value}"));
    }
    out
}

/// Where a remote server's URL and headers are, by client.
const URL_KEYS: [&str; 3] = ["url", "serverUrl", "httpUrl"];
const HEADER_KEYS: [&str; 2] = ["headers", "http_headers"];

fn change_text(wrap: &ServerWrap) -> String {
    let entries = wrap.entries.join(", ");
    let name = &wrap.server;
    match &wrap.moved {
        Moved::Env(keys) => format!(
            "MCP server {name}: {} moved to custody ({entries}), command wrapped in mayfly run --inject",
            keys.join(", ")
        ),
        Moved::Header(header) => format!(
            "MCP server {name}: header {header} moved to custody ({entries}), the server reached through mayfly mcp connect under mayfly run --inject --mcp-gate"
        ),
        Moved::Query(parameter) => format!(
            "MCP server {name}: URL parameter {parameter} moved to custody ({entries}), the server reached through mayfly mcp connect under mayfly run --inject --mcp-gate"
        ),
    }
}

/// Wraps the named servers of a client configuration (every entry of that
/// name that holds what `moved` says). The error says why the file is
/// left as it is.
pub fn wrap_servers(
    path: &Path,
    text: &str,
    wraps: &[ServerWrap],
    with: &WrapWith,
) -> Result<Rewrite, String> {
    let mut changes = Vec::new();
    let text = match FileKind::of(path) {
        Some(FileKind::Json) => {
            if is_jsonc(text) {
                return Err(
                    "has comments or trailing commas (JSONC), which rewriting would lose; wrap its servers by hand".into(),
                );
            }
            let mut document: Value =
                serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
            wrap_json(&mut document, wraps, with, &mut changes)?;
            let mut out = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
            out.push('\n');
            out
        }
        Some(FileKind::Toml) => wrap_toml(text, wraps, with, &mut changes)?,
        _ => return Err("not an MCP client configuration Mayfly edits".into()),
    };
    if changes.is_empty() {
        return Err("none of the servers to wrap is here any more".into());
    }
    Ok(Rewrite { text, changes })
}

fn wrap_json(
    value: &mut Value,
    wraps: &[ServerWrap],
    with: &WrapWith,
    changes: &mut Vec<String>,
) -> Result<(), String> {
    let Value::Object(object) = value else {
        return Ok(());
    };
    for (key, child) in object.iter_mut() {
        match child {
            Value::Object(entries) if SERVER_MAPS.contains(&key.as_str()) => {
                for (name, entry) in entries.iter_mut() {
                    let (Some(wrap), Value::Object(entry)) =
                        (wraps.iter().find(|w| &w.server == name), entry)
                    else {
                        continue;
                    };
                    let wrapped = match &wrap.moved {
                        Moved::Env(keys) => wrap_stdio_json_entry(wrap, keys, entry, with)?,
                        Moved::Header(_) | Moved::Query(_) => {
                            wrap_remote_json_entry(wrap, entry, with)?
                        }
                    };
                    if wrapped {
                        changes.push(change_text(wrap));
                    }
                }
            }
            _ => wrap_json(child, wraps, with, changes)?,
        }
    }
    Ok(())
}

/// Wraps one JSON stdio server entry if it holds every key of `keys`.
fn wrap_stdio_json_entry(
    wrap: &ServerWrap,
    keys: &[String],
    entry: &mut Map<String, Value>,
    with: &WrapWith,
) -> Result<bool, String> {
    // Zed keeps command, args and env one level down.
    let zed = entry.get("command").is_some_and(Value::is_object);
    let scope = if zed {
        match entry.get_mut("command") {
            Some(Value::Object(inner)) => inner,
            _ => return Ok(false),
        }
    } else {
        entry
    };
    let holds_all = scope
        .get("env")
        .and_then(Value::as_object)
        .is_some_and(|env| keys.iter().all(|k| env.contains_key(k)));
    if !holds_all {
        return Ok(false);
    }
    let command_key = if zed { "path" } else { "command" };
    let entry_wrap = EntryWrap {
        keys,
        env: &with.env,
        program: &with.program,
    };
    mcp::wrap_json_entry(
        &wrap.server,
        scope,
        command_key,
        &entry_wrap,
        |command, args| wrapped_args(wrap, keys, with, command, args),
    )?;
    Ok(true)
}

/// Where a wrapped remote server is reached: its URL, and the headers
/// sent along.
type RemoteTarget = (String, Vec<(String, String)>);

/// The URL a wrapped remote server is reached at, and the headers that
/// go along: all but the credential's (a header credential), or all with
/// the URL losing the credential's parameter. `None` when the entry no
/// longer holds the credential there.
fn remote_target<'a>(
    wrap: &ServerWrap,
    url: &str,
    headers: Option<impl Iterator<Item = (&'a str, Option<&'a str>)>>,
) -> Result<Option<RemoteTarget>, String> {
    let name = &wrap.server;
    let mut headers: Vec<(&str, Option<&str>)> = headers.map(Iterator::collect).unwrap_or_default();
    let url = match &wrap.moved {
        Moved::Header(header) => {
            if !headers.iter().any(|(k, _)| k == header) {
                return Ok(None);
            }
            headers.retain(|(k, _)| k != header);
            url.to_owned()
        }
        Moved::Query(parameter) => match without_parameter(url, parameter) {
            Some(url) => url,
            None => return Ok(None),
        },
        Moved::Env(_) => return Ok(None),
    };
    let kept = headers
        .into_iter()
        .map(|(k, v)| {
            v.map(|v| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("MCP server {name}: header {k} is not text"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((url, kept)))
}

/// Turns one remote JSON server entry that holds the credential `wrap`
/// moved into a stdio entry running `mayfly mcp connect`.
fn wrap_remote_json_entry(
    wrap: &ServerWrap,
    entry: &mut Map<String, Value>,
    with: &WrapWith,
) -> Result<bool, String> {
    let Some(url) = URL_KEYS
        .iter()
        .find_map(|k| entry.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
    else {
        return Ok(false);
    };
    let headers = HEADER_KEYS
        .iter()
        .find_map(|k| entry.get(*k).and_then(Value::as_object))
        .map(|h| h.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let Some((url, kept)) = remote_target(wrap, &url, headers)? else {
        return Ok(false);
    };
    let args = remote_args(wrap, with, &url, &kept);
    for key in URL_KEYS.iter().chain(&HEADER_KEYS) {
        entry.shift_remove(*key);
    }
    for key in ["type", "transportType"] {
        if let Some(kind) = entry.get_mut(key) {
            *kind = Value::String("stdio".into());
        }
    }
    entry.insert("command".into(), Value::String(with.program.clone()));
    entry.insert(
        "args".into(),
        Value::Array(args.into_iter().map(Value::String).collect()),
    );
    let env = with
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    entry.insert("env".into(), Value::Object(env));
    Ok(true)
}

fn wrap_toml(
    text: &str,
    wraps: &[ServerWrap],
    with: &WrapWith,
    changes: &mut Vec<String>,
) -> Result<String, String> {
    let mut document = toml_document(text)?;
    let Some(servers) = document
        .get_mut("mcp_servers")
        .and_then(|s| s.as_table_like_mut())
    else {
        return Ok(text.to_owned());
    };
    for (name, server) in servers.iter_mut() {
        let (Some(wrap), Some(server)) = (
            wraps.iter().find(|w| w.server == name.get()),
            server.as_table_like_mut(),
        ) else {
            continue;
        };
        let wrapped = match &wrap.moved {
            Moved::Env(keys) => wrap_stdio_toml_entry(wrap, keys, server, with)?,
            Moved::Header(_) | Moved::Query(_) => wrap_remote_toml_entry(wrap, server, with)?,
        };
        if wrapped {
            changes.push(change_text(wrap));
        }
    }
    Ok(document.to_string())
}

/// Wraps one Codex stdio server if its `env` holds every key of `keys`.
fn wrap_stdio_toml_entry(
    wrap: &ServerWrap,
    keys: &[String],
    server: &mut dyn toml_edit::TableLike,
    with: &WrapWith,
) -> Result<bool, String> {
    let holds_all = server
        .get("env")
        .and_then(|e| e.as_table_like())
        .is_some_and(|env| keys.iter().all(|k| env.contains_key(k)));
    if !holds_all {
        return Ok(false);
    }
    let entry_wrap = EntryWrap {
        keys,
        env: &with.env,
        program: &with.program,
    };
    wrap_toml_entry(&wrap.server, server, &entry_wrap, |command, args| {
        wrapped_args(wrap, keys, with, command, args)
    })?;
    Ok(true)
}

/// Turns one Codex remote server (`url`, `http_headers`) that holds the
/// credential `wrap` moved into a stdio server running `mayfly mcp connect`.
fn wrap_remote_toml_entry(
    wrap: &ServerWrap,
    server: &mut dyn toml_edit::TableLike,
    with: &WrapWith,
) -> Result<bool, String> {
    let Some(url) = server
        .get("url")
        .and_then(|u| u.as_str())
        .map(str::to_owned)
    else {
        return Ok(false);
    };
    let headers = server
        .get("http_headers")
        .and_then(|h| h.as_table_like())
        .map(|h| h.iter().map(|(k, v)| (k, v.as_str())));
    let Some((url, kept)) = remote_target(wrap, &url, headers)? else {
        return Ok(false);
    };
    let args: toml_edit::Array = remote_args(wrap, with, &url, &kept).into_iter().collect();
    server.remove("url");
    server.remove("http_headers");
    server.insert("command", toml_edit::value(with.program.as_str()));
    server.insert("args", toml_edit::value(args));
    let mut env = toml_edit::InlineTable::new();
    for (key, value) in &with.env {
        env.insert(key, value.as_str().into());
    }
    server.insert("env", toml_edit::value(env));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with() -> WrapWith {
        WrapWith {
            program: "mayfly".into(),
            owner: "me".into(),
            env: vec![("MAYFLY_SERVER".into(), "http://127.0.0.1:8710".into())],
        }
    }

    #[test]
    fn every_client_shape_is_read() {
        let claude = r#"{"mcpServers": {
            "github": {"command": "npx", "args": ["-y", "server-github"], "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_x"}},
            "linear": {"url": "https://mcp.linear.app/mcp", "headers": {"Authorization": "Bearer lin_x"}}
        }}"#;
        let servers = read_servers(Path::new("claude_desktop_config.json"), claude).unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(
            servers[0].slots[0].place,
            Place::Env("GITHUB_PERSONAL_ACCESS_TOKEN".into())
        );
        assert_eq!(servers[0].slots.len(), 3, "env and both arguments");
        assert_eq!(
            servers[1].transport,
            Transport::Remote {
                url: "https://mcp.linear.app/mcp".into()
            }
        );
        assert_eq!(
            servers[1].slots[0].place,
            Place::Header("Authorization".into())
        );
        let vscode = "{\n  // mine\n  \"servers\": {\"gh\": {\"type\": \"stdio\", \"command\": \"gh-mcp\", \"env\": {\"T\": \"v\"},},},\n}";
        let servers = read_servers(Path::new("mcp.json"), vscode).unwrap();
        assert_eq!(servers[0].name, "gh");
        let zed = r#"{"context_servers": {"pg": {"command": {"path": "pg-mcp", "args": [], "env": {"PGPASSWORD": "p"}}}}}"#;
        let servers = read_servers(Path::new("settings.json"), zed).unwrap();
        assert_eq!(
            servers[0].transport,
            Transport::Stdio {
                command: "pg-mcp".into(),
                args: vec![]
            }
        );
        let codex = "[mcp_servers.gh]\ncommand = \"npx\"\nargs = [\"gh\"]\n[mcp_servers.gh.env]\nGITHUB_TOKEN = \"ghp_x\"\n";
        let servers = read_servers(Path::new("config.toml"), codex).unwrap();
        assert_eq!(
            servers[0].slots[0],
            Slot {
                place: Place::Env("GITHUB_TOKEN".into()),
                value: "ghp_x".into()
            }
        );
        assert!(
            read_servers(Path::new("x.json"), "{not json")
                .unwrap_err()
                .contains("JSONC")
        );
        assert!(
            read_servers(Path::new("x.json"), r#"{"other": 1}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn jsonc_keeps_strings_that_look_like_comments() {
        let text = "{\"a\": \"http://x/*y*/\", // c\n \"b\": [1,2,], /* d */ \"c\": \"\\\"//\"}";
        let value = parse_jsonc(text).unwrap();
        assert_eq!(value["a"], "http://x/*y*/");
        assert_eq!(value["c"], "\"//");
        assert_eq!(value["b"], serde_json::json!([1, 2]));
    }

    #[test]
    fn stdio_servers_are_wrapped_with_their_variables() {
        let text = r#"{"mcpServers": {"github": {"command": "npx", "args": ["-y", "server-github"], "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_x", "LOG": "1"}}, "fs": {"command": "fs"}}}"#;
        let wrap = ServerWrap {
            server: "github".into(),
            moved: Moved::Env(vec!["GITHUB_PERSONAL_ACCESS_TOKEN".into()]),
            entries: vec!["github-1a2b3c4d".into()],
        };
        let out = wrap_servers(Path::new("mcp.json"), text, &[wrap], &with()).unwrap();
        assert!(!out.text.contains("ghp_x"));
        let value: Value = serde_json::from_str(&out.text).unwrap();
        let github = &value["mcpServers"]["github"];
        assert_eq!(github["command"], "mayfly");
        assert_eq!(
            github["args"],
            serde_json::json!([
                "run",
                "--inject",
                "github-1a2b3c4d",
                "--intercept",
                "--key-var",
                "GITHUB_PERSONAL_ACCESS_TOKEN",
                "--purpose",
                "mcp server github",
                "--owner",
                "me",
                "--",
                "npx",
                "-y",
                "server-github"
            ])
        );
        assert_eq!(
            github["env"],
            serde_json::json!({"LOG": "1", "MAYFLY_SERVER": "http://127.0.0.1:8710"})
        );
        assert_eq!(value["mcpServers"]["fs"]["command"], "fs");
        let servers = read_servers(Path::new("mcp.json"), &out.text).unwrap();
        assert!(servers[0].wrapped && !servers[1].wrapped);
    }

    #[test]
    fn jsonc_files_and_vanished_servers_are_left_alone() {
        let wrap = ServerWrap {
            server: "gh".into(),
            moved: Moved::Env(vec!["T".into()]),
            entries: vec!["github-1".into()],
        };
        let jsonc =
            "{\"servers\": {\"gh\": {\"command\": \"x\", \"env\": {\"T\": \"v\"}}}, // mine\n}";
        assert!(
            wrap_servers(
                Path::new("mcp.json"),
                jsonc,
                std::slice::from_ref(&wrap),
                &with()
            )
            .unwrap_err()
            .contains("JSONC")
        );
        let gone = r#"{"servers": {"other": {"command": "x"}}}"#;
        assert!(
            wrap_servers(Path::new("mcp.json"), gone, &[wrap], &with())
                .unwrap_err()
                .contains("any more")
        );
    }

    #[test]
    fn codex_servers_are_wrapped_keeping_comments() {
        let text = "# mine\n[mcp_servers.gh]\ncommand = \"npx\" # runs it\nargs = [\"gh\"]\n\n[mcp_servers.gh.env]\nGITHUB_TOKEN = \"ghp_x\"\n";
        let wrap = ServerWrap {
            server: "gh".into(),
            moved: Moved::Env(vec!["GITHUB_TOKEN".into()]),
            entries: vec!["github-1".into()],
        };
        let out = wrap_servers(Path::new("config.toml"), text, &[wrap], &with()).unwrap();
        assert!(
            out.text.starts_with("# mine\n") && !out.text.contains("ghp_x"),
            "{}",
            out.text
        );
        let servers = read_servers(Path::new("config.toml"), &out.text).unwrap();
        assert!(servers[0].wrapped);
    }

    #[test]
    fn remote_servers_become_mayfly_mcp_connect_without_their_key() {
        let text = r#"{"mcpServers": {"gh": {"type": "http", "url": "https://api.githubcopilot.com/mcp/", "headers": {"Authorization": "Bearer ghp_x", "X-MCP-Toolsets": "repos"}}}}"#;
        let wrap = ServerWrap {
            server: "gh".into(),
            moved: Moved::Header("Authorization".into()),
            entries: vec!["github-mcp-1a2b3c4d".into()],
        };
        let out = wrap_servers(
            Path::new(".mcp.json"),
            text,
            std::slice::from_ref(&wrap),
            &with(),
        )
        .unwrap();
        assert!(!out.text.contains("ghp_x"), "{}", out.text);
        let value: Value = serde_json::from_str(&out.text).unwrap();
        let gh = &value["mcpServers"]["gh"];
        assert_eq!(
            gh,
            &serde_json::json!({
                "type": "stdio",
                "command": "mayfly",
                "args": [
                    "run", "--inject", "github-mcp-1a2b3c4d", "--mcp-gate", "gh",
                    "--purpose", "mcp server gh", "--owner", "me", "--",
                    "mayfly", "mcp", "connect", "https://api.githubcopilot.com/mcp/",
                    "--through", "github-mcp-1a2b3c4d", "--header", "X-MCP-Toolsets: repos"
                ],
                "env": {"MAYFLY_SERVER": "http://127.0.0.1:8710"}
            })
        );
        let servers = read_servers(Path::new(".mcp.json"), &out.text).unwrap();
        assert!(servers[0].wrapped);
        assert!(out.changes[0].contains("header Authorization"));

        // Codex's TOML, with the headers as a table of their own.
        let codex = "# mine\n[mcp_servers.gh]\nurl = \"https://api.githubcopilot.com/mcp/\"\n\n[mcp_servers.gh.http_headers]\nAuthorization = \"Bearer ghp_x\"\n";
        let out = wrap_servers(Path::new("config.toml"), codex, &[wrap], &with()).unwrap();
        assert!(
            out.text.starts_with("# mine\n") && !out.text.contains("ghp_x"),
            "{}",
            out.text
        );
        let servers = read_servers(Path::new("config.toml"), &out.text).unwrap();
        assert!(servers[0].wrapped, "{}", out.text);
        assert!(
            servers[0]
                .slots
                .iter()
                .all(|s| !matches!(s.place, Place::Header(_)))
        );
    }

    #[test]
    fn a_key_in_a_remote_servers_url_is_taken_out_of_it() {
        let text = r#"{"mcpServers": {"s": {"serverUrl": "https://mcp.example/mcp?team=web&api_key=k3y#top", "headers": {"X-Team": "web"}}}}"#;
        let servers = read_servers(Path::new("mcp_config.json"), text).unwrap();
        assert_eq!(
            servers[0].slots.last().unwrap(),
            &Slot {
                place: Place::Query("api_key".into()),
                value: "k3y".into()
            }
        );
        let wrap = ServerWrap {
            server: "s".into(),
            moved: Moved::Query("api_key".into()),
            entries: vec!["e".into()],
        };
        let out = wrap_servers(Path::new("mcp_config.json"), text, &[wrap], &with()).unwrap();
        assert!(!out.text.contains("k3y"), "{}", out.text);
        let value: Value = serde_json::from_str(&out.text).unwrap();
        let args = value["mcpServers"]["s"]["args"].as_array().unwrap().clone();
        assert!(
            args.contains(&"https://mcp.example/mcp?team=web#top".into()),
            "{args:?}"
        );
        assert!(args.contains(&"X-Team: web".into()), "{args:?}");
        assert_eq!(
            without_parameter("https://x/m?a=1", "a").as_deref(),
            Some("https://x/m")
        );
        assert_eq!(without_parameter("https://x/m?a=1", "b"), None);
    }

    #[test]
    fn a_remote_server_without_that_header_is_left_alone() {
        let text =
            r#"{"mcpServers": {"gh": {"url": "https://x/mcp", "headers": {"X-Other": "1"}}}}"#;
        let wrap = ServerWrap {
            server: "gh".into(),
            moved: Moved::Header("Authorization".into()),
            entries: vec!["e".into()],
        };
        assert!(
            wrap_servers(Path::new("mcp.json"), text, &[wrap], &with())
                .unwrap_err()
                .contains("any more")
        );
    }
}
