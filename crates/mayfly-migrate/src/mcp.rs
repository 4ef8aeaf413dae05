//! MCP client configurations: a server entry that passes the secret in its
//! `env` loses it, and its command runs under `mayfly run --inject ENTRY
//! --purpose "mcp server NAME" --owner OWNER -- COMMAND ARGS`.
//! JSON (Claude Desktop and Code, Cursor, Windsurf: `mcpServers`; VS Code:
//! `servers`, also under `mcp`) keeps its key order; Codex's TOML
//! (`[mcp_servers.NAME]`) keeps its comments and layout.

use serde_json::{Map, Value};

use super::{Rewrite, Wrapper};

/// The arguments that wrap a server's command.
fn wrapped_args(wrapper: &Wrapper, server: &str, command: &str, args: &[String]) -> Vec<String> {
    let mut out = vec![
        "run".to_owned(),
        "--inject".to_owned(),
        wrapper.entry.clone(),
        "--purpose".to_owned(),
        format!("mcp server {server}"),
        "--owner".to_owned(),
        wrapper.owner.clone(),
        "--".to_owned(),
        command.to_owned(),
    ];
    out.extend(args.iter().cloned());
    out
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        None => Some(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => None,
    }
}

/// What wrapping changes in one server entry, for `mayfly migrate` and
/// `mayfly mcp wrap` alike.
pub(crate) struct EntryWrap<'a> {
    /// The `env` variables whose values moved into custody.
    pub keys: &'a [String],
    /// Variables added to reach the broker (never secrets).
    pub env: &'a [(String, String)],
    /// The program that runs `run --inject`.
    pub program: &'a str,
}

/// Wraps one JSON server entry: `scope` holds its command (under
/// `command_key`), `args` and `env`; `args_for` makes the new arguments
/// from the old command and arguments.
pub(crate) fn wrap_json_entry(
    name: &str,
    scope: &mut Map<String, Value>,
    command_key: &str,
    wrap: &EntryWrap<'_>,
    args_for: impl FnOnce(&str, &[String]) -> Vec<String>,
) -> Result<(), String> {
    let command = scope
        .get(command_key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| no_command(name))?;
    let args = strings(scope.get("args")).ok_or_else(|| not_strings(name))?;
    if let Some(Value::Object(env)) = scope.get_mut("env") {
        for key in wrap.keys {
            env.shift_remove(key);
        }
        for (key, value) in wrap.env {
            env.insert(key.clone(), Value::String(value.clone()));
        }
        if env.is_empty() {
            scope.shift_remove("env");
        }
    }
    scope.insert(command_key.into(), Value::String(wrap.program.to_owned()));
    let args = args_for(&command, &args)
        .into_iter()
        .map(Value::String)
        .collect();
    scope.insert("args".into(), Value::Array(args));
    Ok(())
}

/// Wraps one TOML server entry (Codex's `[mcp_servers.NAME]`), as
/// [`wrap_json_entry`] does.
pub(crate) fn wrap_toml_entry(
    name: &str,
    server: &mut dyn toml_edit::TableLike,
    wrap: &EntryWrap<'_>,
    args_for: impl FnOnce(&str, &[String]) -> Vec<String>,
) -> Result<(), String> {
    let command = server
        .get("command")
        .and_then(|c| c.as_str())
        .map(str::to_owned)
        .ok_or_else(|| no_command(name))?;
    let args: Vec<String> = match server.get("args") {
        None => Vec::new(),
        Some(item) => item
            .as_array()
            .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| not_strings(name))?,
    };
    if let Some(env) = server.get_mut("env").and_then(|e| e.as_table_like_mut()) {
        for key in wrap.keys {
            env.remove(key);
        }
        for (key, value) in wrap.env {
            env.insert(key, toml_edit::value(value.as_str()));
        }
    }
    server.insert("command", toml_edit::value(wrap.program));
    let wrapped: toml_edit::Array = args_for(&command, &args).into_iter().collect();
    server.insert("args", toml_edit::value(wrapped));
    Ok(())
}

fn no_command(name: &str) -> String {
    format!(
        "MCP server {name} takes its key in env but has no command to wrap (a remote server?); edit it by hand"
    )
}

fn not_strings(name: &str) -> String {
    format!("MCP server {name}: args is not a list of strings")
}

/// A TOML document to edit. `toml_edit` 0.23 panics on some malformed
/// documents (found by the migrate_rewrite fuzz target), so the `toml`
/// parser sees it first. The error says where and what, never the line's
/// text (it may hold the key).
pub(crate) fn toml_document(text: &str) -> Result<toml_edit::DocumentMut, String> {
    text.parse::<toml::Table>()
        .map_err(|e| toml_error(text, e.message(), e.span()))?;
    text.parse::<toml_edit::DocumentMut>()
        .map_err(|e| toml_error(text, e.message(), e.span()))
}

/// A TOML parse error by line and message, without the parser's excerpt
/// of the offending line.
pub(crate) fn toml_error(
    text: &str,
    message: &str,
    span: Option<std::ops::Range<usize>>,
) -> String {
    let line = span
        .and_then(|s| text.get(..s.start))
        .map(|before| before.matches('\n').count() + 1);
    match line {
        Some(line) => format!("not valid TOML (line {line}: {message})"),
        None => format!("not valid TOML ({message})"),
    }
}

/// The `env` keys of a JSON server entry whose values hold the secret.
fn keys_holding(env: Option<&Value>, secret: &str) -> Vec<String> {
    env.and_then(Value::as_object)
        .map(|env| {
            env.iter()
                .filter(|(_, v)| v.as_str().is_some_and(|v| v.contains(secret)))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Rewrites one JSON server entry if its `env` holds the secret.
fn rewrite_json_server(
    name: &str,
    server: &mut Map<String, Value>,
    secret: &str,
    wrapper: &Wrapper,
    changes: &mut Vec<String>,
) -> Result<(), String> {
    let keys = keys_holding(server.get("env"), secret);
    if keys.is_empty() {
        return Ok(());
    }
    let wrap = EntryWrap {
        keys: &keys,
        env: &wrapper.env,
        program: &wrapper.program,
    };
    wrap_json_entry(name, server, "command", &wrap, |command, args| {
        wrapped_args(wrapper, name, command, args)
    })?;
    changes.push(format!(
        "MCP server {name}: {} removed from env, command wrapped in mayfly run --inject {}",
        keys.join(", "),
        wrapper.entry
    ));
    Ok(())
}

/// Finds server maps (`mcpServers`, `servers`) anywhere in the document.
fn visit(
    value: &mut Value,
    secret: &str,
    wrapper: &Wrapper,
    changes: &mut Vec<String>,
) -> Result<(), String> {
    let Value::Object(object) = value else {
        return Ok(());
    };
    for (key, child) in object.iter_mut() {
        if (key == "mcpServers" || key == "servers")
            && let Value::Object(servers) = child
        {
            for (name, server) in servers.iter_mut() {
                if let Value::Object(server) = server {
                    rewrite_json_server(name, server, secret, wrapper, changes)?;
                }
            }
        } else {
            visit(child, secret, wrapper, changes)?;
        }
    }
    Ok(())
}

/// Rewrites an MCP client's JSON configuration.
pub(crate) fn rewrite_json(text: &str, secret: &str, wrapper: &Wrapper) -> Result<Rewrite, String> {
    let mut document: Value = serde_json::from_str(text).map_err(|e| {
        format!("not plain JSON ({e}; comments?), so not edited safely; edit it by hand")
    })?;
    let mut changes = Vec::new();
    visit(&mut document, secret, wrapper, &mut changes)?;
    if changes.is_empty() {
        return Err("the secret is not in an MCP server's env; edit it by hand".into());
    }
    let mut text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(Rewrite { text, changes })
}

/// Rewrites Codex's `config.toml` (`[mcp_servers.NAME]`).
pub(crate) fn rewrite_toml(text: &str, secret: &str, wrapper: &Wrapper) -> Result<Rewrite, String> {
    let mut document = toml_document(text).map_err(|e| format!("{e}; edit it by hand"))?;
    let mut changes = Vec::new();
    let Some(servers) = document
        .get_mut("mcp_servers")
        .and_then(|s| s.as_table_like_mut())
    else {
        return Err("no [mcp_servers] here; edit it by hand".into());
    };
    for (name, server) in servers.iter_mut() {
        let Some(server) = server.as_table_like_mut() else {
            continue;
        };
        let Some(env) = server.get_mut("env").and_then(|e| e.as_table_like_mut()) else {
            continue;
        };
        let keys: Vec<String> = env
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(|v| v.contains(secret)))
            .map(|(k, _)| k.to_owned())
            .collect();
        if keys.is_empty() {
            continue;
        }
        let wrap = EntryWrap {
            keys: &keys,
            env: &wrapper.env,
            program: &wrapper.program,
        };
        wrap_toml_entry(&name, server, &wrap, |command, args| {
            wrapped_args(wrapper, &name, command, args)
        })?;
        changes.push(format!(
            "MCP server {name}: {} removed from env, command wrapped in mayfly run --inject {}",
            keys.join(", "),
            wrapper.entry
        ));
    }
    if changes.is_empty() {
        return Err("the secret is not in an MCP server's env; edit it by hand".into());
    }
    Ok(Rewrite {
        text: document.to_string(),
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapper() -> Wrapper {
        Wrapper {
            entry: "github".into(),
            program: "mayfly".into(),
            owner: "team-ml".into(),
            env: vec![("MAYFLY_SERVER".into(), "http://127.0.0.1:8710".into())],
        }
    }

    #[test]
    fn claude_desktop_servers_are_wrapped_in_key_order() {
        let text = r#"{
  "globalShortcut": "",
  "mcpServers": {
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_secret", "LOG": "1"}
    },
    "fs": {"command": "npx", "args": ["server-filesystem"]}
  }
}"#;
        let out = rewrite_json(text, "ghp_secret", &wrapper()).unwrap();
        let value: Value = serde_json::from_str(&out.text).unwrap();
        let github = &value["mcpServers"]["github"];
        assert_eq!(github["command"], "mayfly");
        assert_eq!(
            github["args"],
            serde_json::json!([
                "run",
                "--inject",
                "github",
                "--purpose",
                "mcp server github",
                "--owner",
                "team-ml",
                "--",
                "npx",
                "-y",
                "@modelcontextprotocol/server-github"
            ])
        );
        assert_eq!(
            github["env"],
            serde_json::json!({"LOG": "1", "MAYFLY_SERVER": "http://127.0.0.1:8710"})
        );
        assert_eq!(value["mcpServers"]["fs"]["command"], "npx");
        assert!(out.text.find("globalShortcut") < out.text.find("mcpServers"));
    }

    #[test]
    fn vs_code_servers_and_nested_projects_are_found() {
        let vscode = r#"{"servers": {"gh": {"type": "stdio", "command": "gh-mcp", "env": {"GITHUB_TOKEN": "ghp_secret"}}}}"#;
        assert!(rewrite_json(vscode, "ghp_secret", &wrapper()).is_ok());
        let claude_code = r#"{"projects": {"/src/app": {"mcpServers": {"gh": {"command": "gh-mcp", "env": {"T": "ghp_secret"}}}}}}"#;
        let out = rewrite_json(claude_code, "ghp_secret", &wrapper()).unwrap();
        assert!(!out.text.contains("ghp_secret"));
    }

    #[test]
    fn remote_servers_and_comments_are_left_to_people() {
        let remote = r#"{"mcpServers": {"gh": {"url": "https://x", "env": {"T": "ghp_secret"}}}}"#;
        assert!(
            rewrite_json(remote, "ghp_secret", &wrapper())
                .unwrap_err()
                .contains("no command")
        );
        let jsonc = "{\n // mine\n \"servers\": {}\n}";
        assert!(
            rewrite_json(jsonc, "ghp_secret", &wrapper())
                .unwrap_err()
                .contains("comments")
        );
    }

    #[test]
    fn codex_toml_keeps_its_comments() {
        let text = "# my codex\nmodel = \"o3\"\n\n[mcp_servers.github]\ncommand = \"npx\" # runs it\nargs = [\"-y\", \"server-github\"]\n\n[mcp_servers.github.env]\nGITHUB_TOKEN = \"ghp_secret\"\n";
        let out = rewrite_toml(text, "ghp_secret", &wrapper()).unwrap();
        assert!(
            out.text.starts_with("# my codex\nmodel = \"o3\""),
            "{}",
            out.text
        );
        assert!(!out.text.contains("ghp_secret"));
        let value: toml_edit::DocumentMut = out.text.parse().unwrap();
        let server = &value["mcp_servers"]["github"];
        assert_eq!(server["command"].as_str(), Some("mayfly"));
        assert_eq!(server["args"].as_array().unwrap().len(), 11);
        assert_eq!(
            server["env"]["MAYFLY_SERVER"].as_str(),
            Some("http://127.0.0.1:8710")
        );
    }

    #[test]
    fn malformed_toml_that_panicked_toml_edit_is_refused() {
        // fuzz/artifacts/migrate_rewrite/crash-711afb8e..., with the
        // fuzz target's secret spliced in.
        let text =
            "==6\r\n.=[@@@[@@@f{{.@f{{{\u{0}\u{e}{{".replacen("@@", "sk-proj-FUZZSECRET0123", 2);
        let wrapper = Wrapper {
            entry: "openai".into(),
            program: "mayfly".into(),
            owner: "team".into(),
            env: vec![],
        };
        let err = rewrite_toml(&text, "sk-proj-FUZZSECRET0123", &wrapper).unwrap_err();
        assert!(err.contains("not valid TOML"), "{err}");
        assert!(!err.contains("sk-proj-FUZZSECRET0123"), "{err}");
    }

    #[test]
    fn toml_errors_name_the_line_but_never_show_it() {
        let text = "[mcp_servers.gh]\ncommand = \"x\"\n[mcp_servers.gh.env]\nGITHUB_TOKEN = ghp_UNQUOTEDSECRET0123\n";
        let err = toml_document(text).unwrap_err();
        assert!(err.contains("line 4"), "{err}");
        assert!(!err.contains("ghp_UNQUOTEDSECRET0123"), "{err}");
        let err =
            crate::servers::read_servers(std::path::Path::new("config.toml"), text).unwrap_err();
        assert!(!err.contains("ghp_UNQUOTEDSECRET0123"), "{err}");
    }
}
