//! `mayfly mcp list | wrap | unwrap` on a fake home with Claude Desktop,
//! Cursor, Claude Code and VS Code configurations holding keys: the wrapped
//! servers (real MCP servers built with the official Python SDK, local and
//! remote, started by the official SDK's stdio client exactly as the
//! configuration says) still work, with the key only in custody; the MCP
//! gates; on SQLite and PostgreSQL.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{GITHUB, OPENAI, Workspace, json_of, stdout_of};
use crate::inject::{FakeApi, require_sdks};
use crate::server::{Server, attested_client, free_port, serve_with};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/mcp")
        .join(name)
}

fn require_mcp() {
    let ok = StdCommand::new("python3")
        .args(["-c", "import mcp"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the mcp Python package is missing: run scripts/test (it installs it)"
    );
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The fake home: Claude Desktop and Cursor run the assistant server with
/// the OpenAI key in env; Claude Desktop also has a remote server with a
/// token in a header; VS Code's JSONC file holds a key too.
fn fake_home(home: &Path, api_port: u16, ca: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let server = data("assistant_server.py");
    let assistant = json!({
        "command": "python3",
        "args": [server],
        "env": {
            "OPENAI_API_KEY": OPENAI,
            "OPENAI_BASE_URL": format!("https://localhost:{api_port}/v1"),
            "SSL_CERT_FILE": ca,
        }
    });
    let claude = home.join(".config/Claude/claude_desktop_config.json");
    write(
        &claude,
        &serde_json::to_string_pretty(&json!({"mcpServers": {
            "assistant": assistant,
            "github": {"url": "https://api.githubcopilot.com/mcp/", "headers": {"Authorization": format!("Bearer {GITHUB}")}},
            "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]}
        }}))
        .unwrap(),
    );
    let cursor = home.join(".cursor/mcp.json");
    write(
        &cursor,
        &serde_json::to_string_pretty(&json!({"mcpServers": {"assistant": assistant}})).unwrap(),
    );
    let vscode = home.join(".config/Code/User/mcp.json");
    write(
        &vscode,
        &format!(
            "{{\n  // my servers\n  \"servers\": {{\n    \"gh\": {{\"type\": \"stdio\", \"command\": \"gh-mcp\", \"env\": {{\"GITHUB_TOKEN\": \"{GITHUB}\"}},}},\n  }},\n}}\n"
        ),
    );
    (claude, cursor, vscode)
}

/// The assistant's `ask` tool through the official SDK's stdio client.
fn ask(config: &Path, home: &Path) -> Value {
    let output = StdCommand::new("python3")
        .arg(data("stdio_client.py"))
        .arg(config)
        .args(["mcpServers", "assistant", "ask", r#"{"question": "hi"}"#])
        .env("HOME", home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `mayfly mcp wrap --owner me` with `extra`, applied or not: code,
/// stdout, stderr.
fn wrap_as_me(
    ws: &Workspace,
    server: &Server,
    home: &Path,
    extra: &[&str],
    apply: bool,
) -> (i32, String, String) {
    let mut cmd = mcp(ws, server, "wrap", home);
    cmd.args(["--owner", "me"]).args(extra);
    if apply {
        cmd.arg("--apply");
    }
    stdout_of(&mut cmd)
}

/// The broker's custody entries, by name.
fn custody_entries(ws: &Workspace, server: &Server) -> Vec<Value> {
    let (code, entries) = json_of(
        ws.mayfly()
            .env("MAYFLY_SERVER", &server.url)
            .env_remove("MAYFLY_ADMIN_TOKEN")
            .args(["custody", "list", "--json"]),
    );
    assert_eq!(code, 0, "{entries}");
    let mut entries = entries.as_array().unwrap().clone();
    entries.sort_by_key(|e| e["name"].as_str().unwrap().to_owned());
    entries
}

fn mcp(ws: &Workspace, server: &Server, command: &str, home: &Path) -> assert_cmd::Command {
    let mut cmd = attested_client(ws, server);
    cmd.args(["mcp", command, "--home"]).arg(home);
    cmd
}

fn wrap_and_unwrap(db: Option<&str>) {
    require_sdks();
    require_mcp();
    let ws = Workspace::new();
    let certs = ws.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let api = FakeApi::start(&certs);
    let ca = certs.join("ca.pem");
    let mut extra = vec!["--proxy-ca-file", ca.to_str().unwrap()];
    if let Some(db) = db {
        extra.extend(["--db", db]);
    }
    let server = serve_with(&ws, None, free_port(), &extra);
    let home = ws.dir.path().join("fakehome");
    let (claude, cursor, vscode) = fake_home(&home, api.port, &ca);
    let originals: Vec<String> = [&claude, &cursor, &vscode]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();

    // Before: the server works with the key in its config.
    let before = ask(&claude, &home);
    assert_eq!(
        before["result"],
        format!("Hello from the real key | {}", &OPENAI[..13])
    );

    // list: every server, credentials by fingerprint, never the value.
    let (code, out, err) = stdout_of(mcp(&ws, &server, "list", &home).args(["--json"]));
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(OPENAI) && !out.contains(GITHUB), "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let files = listed.as_array().unwrap();
    assert_eq!(files.len(), 3, "{listed}");
    let claude_file = files
        .iter()
        .find(|f| f["client"] == "Claude Desktop")
        .unwrap();
    let servers = claude_file["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    let assistant = servers.iter().find(|s| s["name"] == "assistant").unwrap();
    assert_eq!(assistant["transport"]["kind"], "stdio");
    assert_eq!(
        assistant["credentials"][0]["place"],
        json!({"in": "env", "name": "OPENAI_API_KEY"})
    );
    let github = servers.iter().find(|s| s["name"] == "github").unwrap();
    assert_eq!(github["transport"]["kind"], "remote");
    assert_eq!(github["credentials"][0]["place"]["in"], "header");
    let files_server = servers.iter().find(|s| s["name"] == "files").unwrap();
    assert!(files_server["credentials"].as_array().unwrap().is_empty());
    let vscode_file = files.iter().find(|f| f["client"] == "VS Code").unwrap();
    assert_eq!(
        vscode_file["servers"][0]["credentials"][0]["provider"], "GitHub",
        "{vscode_file}"
    );
    let (code, text, _) = stdout_of(&mut mcp(&ws, &server, "list", &home));
    assert_eq!(code, 0);
    assert!(
        text.contains("Cursor") && text.contains("env OPENAI_API_KEY") && !text.contains(OPENAI),
        "{text}"
    );

    let upstream = format!("openai=https://localhost:{}", api.port);
    let wrap = |apply: bool| wrap_as_me(&ws, &server, &home, &["--upstream", &upstream], apply);
    // A dry run shows the change, redacted, and writes nothing.
    let (code, out, err) = wrap(false);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("mayfly run --inject") && !out.contains(OPENAI),
        "{out}"
    );
    assert!(
        out.contains("mayfly mcp connect") && out.contains("JSONC"),
        "{out}"
    );
    assert!(err.contains("dry run"), "{err}");
    assert_eq!(std::fs::read_to_string(&claude).unwrap(), originals[0]);

    let (code, out, err) = wrap(true);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(!out.contains(OPENAI) && !err.contains(OPENAI));
    for (path, original) in [(&claude, &originals[0]), (&cursor, &originals[1])] {
        let now = std::fs::read_to_string(path).unwrap();
        assert!(!now.contains(OPENAI), "{now}");
        let backup = PathBuf::from(format!("{}.mayfly-wrap", path.display()));
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let kept: Value = serde_json::from_str(&std::fs::read_to_string(&backup).unwrap()).unwrap();
        assert_eq!(&kept["original"], original.as_str());
    }
    // The JSONC file is left as it was; the remote server's header went too.
    assert_eq!(std::fs::read_to_string(&vscode).unwrap(), originals[2]);
    assert!(!std::fs::read_to_string(&claude).unwrap().contains(GITHUB));
    // One key in two files is one custody entry; the remote server's key
    // is another, for its origin.
    let entries = custody_entries(&ws, &server);
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{entries:?}");
    assert!(
        names[0].starts_with("github-api.githubcopilot.com-"),
        "{names:?}"
    );
    assert!(names[1].starts_with("openai-"), "{names:?}");

    // After: both clients still work, the server never holds the key.
    for config in [&claude, &cursor] {
        let after = ask(config, &home);
        assert_eq!(
            after["result"], "Hello from the real key | mayfly-relay-",
            "{after}"
        );
        assert_eq!(after["tools"], json!(["ask"]));
    }
    let requests = api.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests.iter().all(|r| r["real_key"] == true));
    // Wrapping again changes nothing.
    let (code, out, _) = wrap(false);
    assert_eq!(code, 0);
    assert!(out.contains("already wrapped"), "{out}");

    // unwrap restores the files exactly.
    let (code, out, err) = stdout_of(mcp(&ws, &server, "unwrap", &home).args(["--apply"]));
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(OPENAI), "{out}");
    for (path, original) in [(&claude, &originals[0]), (&cursor, &originals[1])] {
        assert_eq!(&std::fs::read_to_string(path).unwrap(), original);
        assert!(!PathBuf::from(format!("{}.mayfly-wrap", path.display())).exists());
    }
}

#[test]
fn wrapped_mcp_servers_keep_working_without_their_keys_on_sqlite() {
    wrap_and_unwrap(None);
}

#[test]
fn wrapped_mcp_servers_keep_working_without_their_keys_on_postgres() {
    let (url, _db) = crate::inventory::postgres_database();
    wrap_and_unwrap(Some(&url));
}

/// A configuration changed after wrap is not overwritten by unwrap.
#[test]
fn unwrap_leaves_a_file_edited_since() {
    let ws = Workspace::new();
    let server = serve_with(&ws, None, free_port(), &[]);
    let home = ws.dir.path().join("fakehome");
    let cursor = home.join(".cursor/mcp.json");
    write(&cursor, "{\"mcpServers\": {}}\n");
    write(
        &PathBuf::from(format!("{}.mayfly-wrap", cursor.display())),
        &json!({"original": "{}", "wrapped_sha256": "00"}).to_string(),
    );
    let (code, out, _) = stdout_of(mcp(&ws, &server, "unwrap", &home).args(["--apply"]));
    assert_eq!(code, 0);
    assert!(out.contains("changed since mayfly mcp wrap"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&cursor).unwrap(),
        "{\"mcpServers\": {}}\n"
    );
}

/// Policies for the gate tests: the defaults' task, exchange and custody
/// use permits, every MCP call, except deleting repositories on the github
/// server.
fn gate_policy(server: &str) -> String {
    format!(
        r#"
@id("start") permit (principal, action == Action::"start_task", resource);
@id("exchange") permit (principal, action == Action::"exchange", resource)
when {{ context.audiences.contains(context.audience) }};
@id("use") permit (principal, action == Action::"use", resource);
@id("mcp-calls") permit (principal, action == Action::"mcp", resource);
@id("no-repository-deletes")
forbid (principal, action == Action::"mcp", resource == McpServer::"{server}")
when {{ context.method == "tools/call" && context.tool == "delete_repository" }};
"#
    )
}

fn gated_broker(ws: &Workspace, db: Option<&str>) -> Server {
    gated_broker_for(ws, db, "urn:mayfly:mcp:github")
}

fn gated_broker_for(ws: &Workspace, db: Option<&str>, server: &str) -> Server {
    let policies = ws.dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("gate.cedar"), gate_policy(server)).unwrap();
    let config = ws.dir.path().join("mayfly.toml");
    std::fs::write(
        &config,
        format!("[policy]\ndir = {:?}\n", policies.display().to_string()),
    )
    .unwrap();
    let mut extra = vec!["--config".to_owned(), config.display().to_string()];
    if let Some(db) = db {
        extra.extend(["--db".to_owned(), db.to_owned()]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    serve_with(ws, None, free_port(), &extra)
}

/// The stdio gate with the official SDK's client and server: denied tools
/// are not listed and their calls get an error; every call is audited
/// without its arguments.
fn gate(db: Option<&str>) {
    require_mcp();
    let ws = Workspace::new();
    let server = gated_broker(&ws, db);
    let mayfly = assert_cmd::cargo::cargo_bin("mayfly");
    let entry = json!({
        "command": mayfly,
        "args": ["run", "--mcp-gate", "github", "--purpose", "triage", "--owner", "me", "--",
                 "python3", data("issues_server.py")],
        "env": {
            "MAYFLY_SERVER": server.url,
            "MAYFLY_LOCAL_SOCKET": ws.dir.path().join("home/workload.sock"),
            "MAYFLY_HOME": ws.dir.path().join("home"),
        }
    });
    let output = StdCommand::new("python3")
        .arg(data("gate_client.py"))
        .arg(entry.to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["tools"], json!(["search_issues"]), "{seen}");
    assert_eq!(
        seen["search_issues"]["text"], "3 issues match bug",
        "{seen}"
    );
    let denied = seen["delete_repository"]["error"].as_str().unwrap();
    assert!(
        denied.contains("Mayfly policy denies tools/call delete_repository")
            && denied.contains("no-repository-deletes"),
        "{denied}"
    );
    assert_eq!(seen["search_again"]["text"], "3 issues match flaky");

    // One audit event per call: tool and decision, never the arguments.
    let (code, events) = json_of(
        ws.mayfly()
            .args(["audit", "tail", "-n", "50", "--format", "json"])
            .args(db.map(|d| vec!["--db", d]).unwrap_or_default()),
    );
    assert_eq!(code, 0, "{events}");
    let calls: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "mcp.call")
        .collect();
    let tool_calls: Vec<(&str, &str)> = calls
        .iter()
        .filter(|e| e["data"]["method"] == "tools/call")
        .map(|e| {
            (
                e["data"]["tool"].as_str().unwrap(),
                e["data"]["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tool_calls,
        vec![
            ("search_issues", "allowed"),
            ("delete_repository", "denied"),
            ("search_issues", "allowed")
        ],
        "{calls:?}"
    );
    assert!(calls.iter().any(|e| e["data"]["method"] == "tools/list"));
    let text = events.to_string();
    assert!(
        !text.contains("flaky") && !text.contains("\"web\""),
        "{text}"
    );
    assert!(
        calls
            .iter()
            .all(|e| e["data"]["server"] == "urn:mayfly:mcp:github")
    );
}

#[test]
fn the_mcp_gate_decides_each_call_on_sqlite() {
    gate(None);
}

#[test]
fn the_mcp_gate_decides_each_call_on_postgres() {
    let (url, _db) = crate::inventory::postgres_database();
    gate(Some(&url));
}

/// A line that is not JSON-RPC gets a parse error, and the gate goes on.
#[test]
fn the_mcp_gate_answers_garbage_with_a_parse_error() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let ws = Workspace::new();
    let server = gated_broker(&ws, None);
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("mayfly"))
        .args([
            "run",
            "--mcp-gate",
            "github",
            "--purpose",
            "p",
            "--owner",
            "me",
            "--",
        ])
        .args([
            "python3",
            "-c",
            "import sys\nfor line in sys.stdin: print(line.strip(), flush=True)",
        ])
        .env("MAYFLY_SERVER", &server.url)
        .env("MAYFLY_HOME", ws.dir.path().join("home"))
        .env_remove("MAYFLY_IDENTITY_TOKEN_FILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"this is not json\n").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let error: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(error["error"]["code"], -32700, "{line}");
    // A notification goes through to the (echoing) server untouched.
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("notifications/initialized"), "{line}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// A child process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// The HTTP gate in front of a streamable-HTTP server built with the
/// official SDK, called by the SDK's client with a Mayfly token for the
/// gate's resource: RFC 9728 metadata, 401 without a token, denied tools
/// hidden and refused, calls audited.
fn http_gate(db: Option<&str>) {
    require_mcp();
    let ws = Workspace::new();
    let (upstream_port, gate_port) = (free_port(), free_port());
    let resource = format!("http://127.0.0.1:{gate_port}/mcp");
    let server = gated_broker_for(&ws, db, &resource);
    let _upstream = Killed(
        StdCommand::new("python3")
            .arg(data("issues_server.py"))
            .args(["http", &upstream_port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(upstream_port);
    let _gate = Killed(
        StdCommand::new(assert_cmd::cargo::cargo_bin("mayfly"))
            .args(["mcp", "gate", "--upstream"])
            .arg(format!("http://127.0.0.1:{upstream_port}/mcp"))
            .args(["--listen", &format!("127.0.0.1:{gate_port}")])
            .env("MAYFLY_SERVER", &server.url)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(gate_port);

    // RFC 9728: the resource and its authorization server.
    let metadata: Value = ureq_get(&format!(
        "http://127.0.0.1:{gate_port}/.well-known/oauth-protected-resource"
    ));
    assert_eq!(metadata["resource"], resource);
    assert_eq!(metadata["authorization_servers"], json!([server.url]));

    // A token for the gate's resource, from the local socket's identity.
    let bare = || attested_client(&ws, &server);
    let (code, task, err) = stdout_of(bare().args([
        "task",
        "start",
        "--purpose",
        "triage",
        "--owner",
        "me",
        "--audience",
        &resource,
        "--raw",
    ]));
    assert_eq!(code, 0, "{err}");
    let (code, token, err) = stdout_of(bare().args([
        "token",
        "exchange",
        "--task",
        task.trim(),
        "--audience",
        &resource,
        "--raw",
    ]));
    assert_eq!(code, 0, "{err}");

    let output = StdCommand::new("python3")
        .arg(data("http_client.py"))
        .arg(&resource)
        .arg(token.trim())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["tools"], json!(["search_issues"]), "{seen}");
    assert_eq!(
        seen["search_issues"]["text"], "3 issues match bug",
        "{seen}"
    );
    let denied = seen["delete_repository"]["error"].as_str().unwrap();
    assert!(
        denied.contains("Mayfly policy denies tools/call delete_repository"),
        "{denied}"
    );

    // No token, or a token for another audience: 401 with the challenge.
    let answer = raw_post(gate_port, None);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("resource_metadata=\""), "{answer}");
    let (code, other, _) = stdout_of(bare().args([
        "task",
        "start",
        "--purpose",
        "x",
        "--owner",
        "me",
        "--audience",
        "urn:other",
        "--raw",
    ]));
    assert_eq!(code, 0);
    let (_, other_token, _) = stdout_of(bare().args([
        "token",
        "exchange",
        "--task",
        other.trim(),
        "--audience",
        "urn:other",
        "--raw",
    ]));
    let answer = raw_post(gate_port, Some(other_token.trim()));
    assert!(
        answer.starts_with("HTTP/1.1 401") && answer.contains("invalid_token"),
        "{answer}"
    );

    // The calls are audited (records go out off the request path).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, events) = json_of(
        ws.mayfly()
            .args(["audit", "tail", "-n", "50", "--format", "json"])
            .args(db.map(|d| vec!["--db", d]).unwrap_or_default()),
    );
    assert_eq!(code, 0);
    let decisions: Vec<(String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "mcp.call" && e["data"]["method"] == "tools/call")
        .map(|e| {
            (
                e["data"]["tool"].as_str().unwrap().to_owned(),
                e["data"]["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        decisions.contains(&("delete_repository".into(), "denied".into())),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&("search_issues".into(), "allowed".into())),
        "{decisions:?}"
    );
}

fn ureq_get(url: &str) -> Value {
    let output = StdCommand::new("curl").args(["-sf", url]).output().unwrap();
    assert!(output.status.success(), "GET {url}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A tools/list POST with or without a token; the raw HTTP answer head.
fn raw_post(port: u16, token: Option<&str>) -> String {
    use std::io::{Read as _, Write as _};
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn the_http_mcp_gate_decides_each_call_on_sqlite() {
    http_gate(None);
}

#[test]
fn the_http_mcp_gate_decides_each_call_on_postgres() {
    let (url, _db) = crate::inventory::postgres_database();
    http_gate(Some(&url));
}

/// A remote MCP server that wants the GitHub key as a bearer token
/// (`remote_server.py`), killed on drop.
struct RemoteServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RemoteServer {
    fn start(dir: &Path, transport: &str) -> RemoteServer {
        let port = free_port();
        let log = dir.join(format!("remote-{transport}-{port}.jsonl"));
        let child = StdCommand::new("python3")
            .arg(data("remote_server.py"))
            .arg(port.to_string())
            .arg(GITHUB)
            .arg(&log)
            .args((transport == "sse").then_some("sse"))
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the remote MCP server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        RemoteServer { child, port, log }
    }

    /// The requests it saw.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// One tool call through the official SDK's stdio client, started as the
/// configuration's `github` entry says.
fn call_configured(config: &Path, home: &Path, tool: &str, arguments: &str) -> Value {
    let output = StdCommand::new("python3")
        .arg(data("stdio_client.py"))
        .arg(config)
        .args(["mcpServers", "github", tool, arguments])
        .env("HOME", home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains(GITHUB), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Remote servers with the key in a header: Cursor over streamable HTTP
/// (with a second header that is not a credential), Claude Code over the
/// 2024-11-05 SSE transport; and Windsurf with the key in the URL. After `wrap --apply` both are stdio servers
/// (`mayfly mcp connect` under `mayfly run --inject --mcp-gate`): their
/// calls reach the server with the key the broker adds, policy hides and
/// refuses `delete_repository`, no file holds the key, and unwrap puts
/// the files back.
fn wrap_remote(db: Option<&str>) {
    require_mcp();
    let ws = Workspace::new();
    let streamable = RemoteServer::start(ws.dir.path(), "streamable");
    let legacy = RemoteServer::start(ws.dir.path(), "sse");
    let by_query = RemoteServer::start(ws.dir.path(), "streamable");
    let server = gated_broker(&ws, db);
    let home = ws.dir.path().join("fakehome");
    let cursor = home.join(".cursor/mcp.json");
    write(
        &cursor,
        &serde_json::to_string_pretty(&json!({"mcpServers": {"github": {
            "url": format!("http://127.0.0.1:{}/mcp", streamable.port),
            "headers": {"Authorization": format!("Bearer {GITHUB}"), "X-MCP-Toolsets": "issues"}
        }}}))
        .unwrap(),
    );
    let claude_code = home.join(".claude.json");
    write(
        &claude_code,
        &serde_json::to_string_pretty(&json!({"numStartups": 3, "mcpServers": {"github": {
            "type": "sse",
            "url": format!("http://127.0.0.1:{}/sse", legacy.port),
            "headers": {"Authorization": format!("Bearer {GITHUB}")}
        }}}))
        .unwrap(),
    );
    let windsurf = home.join(".codeium/windsurf/mcp_config.json");
    write(
        &windsurf,
        &serde_json::to_string_pretty(&json!({"mcpServers": {"github": {
            "serverUrl": format!("http://127.0.0.1:{}/mcp?api_key={GITHUB}&team=web", by_query.port)
        }}}))
        .unwrap(),
    );
    let configs = [&cursor, &claude_code, &windsurf];
    let originals: Vec<String> = configs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();

    // Listed by fingerprint: the key in Windsurf's URL is not shown.
    for json in [false, true] {
        let mut list = mcp(&ws, &server, "list", &home);
        if json {
            list.arg("--json");
        }
        let (code, out, err) = stdout_of(&mut list);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("api_key") && !out.contains(GITHUB), "{out}");
    }

    let wrap = |apply: bool| wrap_as_me(&ws, &server, &home, &[], apply);
    let (code, out, err) = wrap(false);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("mayfly mcp connect") && !out.contains(GITHUB),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&cursor).unwrap(), originals[0]);
    let (code, out, err) = wrap(true);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(!out.contains(GITHUB) && !err.contains(GITHUB));
    for path in configs {
        let now = std::fs::read_to_string(path).unwrap();
        assert!(!now.contains(GITHUB), "{now}");
        let entry: Value = serde_json::from_str(&now).unwrap();
        let entry = &entry["mcpServers"]["github"];
        assert!(entry.get("url").is_none() && entry.get("headers").is_none());
        assert!(entry.get("serverUrl").is_none());
        assert!(
            entry["args"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "connect"),
            "{entry}"
        );
    }
    let claude_entry: Value =
        serde_json::from_str(&std::fs::read_to_string(&claude_code).unwrap()).unwrap();
    assert_eq!(claude_entry["mcpServers"]["github"]["type"], "stdio");
    assert_eq!(claude_entry["numStartups"], 3);
    let windsurf_args = serde_json::from_str::<Value>(&std::fs::read_to_string(&windsurf).unwrap())
        .unwrap()["mcpServers"]["github"]["args"]
        .clone();
    assert!(
        windsurf_args.as_array().unwrap().contains(&json!(format!(
            "http://127.0.0.1:{}/mcp?team=web",
            by_query.port
        ))),
        "{windsurf_args}"
    );
    // One entry per server's origin, each injecting the key where it was.
    let entries = custody_entries(&ws, &server);
    assert_eq!(entries.len(), 3, "{entries:?}");
    let by_query_entry = entries
        .iter()
        .find(|e| e["upstreams"] == json!([format!("http://127.0.0.1:{}", by_query.port)]))
        .unwrap();
    assert!(
        by_query_entry["injection"].to_string().contains("api_key"),
        "{by_query_entry}"
    );
    for port in [streamable.port, legacy.port] {
        let prefix = format!("github-127.0.0.1-{port}-");
        let entry = entries
            .iter()
            .find(|e| e["name"].as_str().unwrap().starts_with(&prefix))
            .unwrap_or_else(|| panic!("{entries:?}"));
        assert_eq!(
            entry["upstreams"],
            json!([format!("http://127.0.0.1:{port}")])
        );
        assert!(
            entry["injection"].to_string().contains("Bearer {secret}"),
            "{entry}"
        );
    }

    // Both clients reach their server, which gets the real key and
    // never the relay's; policy hides and refuses the destructive tool.
    for (config, remote) in [
        (&cursor, &streamable),
        (&claude_code, &legacy),
        (&windsurf, &by_query),
    ] {
        let found = call_configured(config, &home, "search_issues", r#"{"query": "bug"}"#);
        assert_eq!(found["result"], "3 issues match bug", "{found}");
        assert_eq!(found["error"], false);
        assert_eq!(found["tools"], json!(["search_issues"]), "{found}");
        let denied = call_configured(config, &home, "delete_repository", r#"{"name": "web"}"#);
        assert_eq!(denied["error"], true, "{denied}");
        assert!(
            denied["result"]
                .as_str()
                .unwrap()
                .contains("no-repository-deletes"),
            "{denied}"
        );
        let requests = remote.requests();
        assert!(requests.len() >= 4, "{requests:?}");
        assert!(
            requests
                .iter()
                .all(|r| r["key_ok"] == true && r["relay_key_seen"] == false),
            "{requests:?}"
        );
    }
    assert!(
        streamable
            .requests()
            .iter()
            .filter(|r| r["method"] == "POST")
            .all(|r| r["toolsets"] == "issues")
    );
    // The audit names each call at the gate, never its arguments.
    let (code, events) = json_of(
        ws.mayfly()
            .args(["audit", "tail", "-n", "200", "--format", "json"])
            .args(db.map(|d| vec!["--db", d]).unwrap_or_default()),
    );
    assert_eq!(code, 0, "{events}");
    let denied_calls = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "mcp.call" && e["data"]["tool"] == "delete_repository")
        .count();
    assert_eq!(denied_calls, 3, "{events}");
    assert!(!events.to_string().contains(GITHUB));

    let (code, out, err) = wrap(false);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already wrapped"), "{out}");
    let (code, _, err) = stdout_of(mcp(&ws, &server, "unwrap", &home).args(["--apply"]));
    assert_eq!(code, 0, "{err}");
    for (path, original) in configs.iter().zip(&originals) {
        assert_eq!(&std::fs::read_to_string(path).unwrap(), original);
    }
}

#[test]
fn wrapped_remote_mcp_servers_work_without_their_keys_on_sqlite() {
    wrap_remote(None);
}

#[test]
fn wrapped_remote_mcp_servers_work_without_their_keys_on_postgres() {
    let (url, _db) = crate::inventory::postgres_database();
    wrap_remote(Some(&url));
}

/// `mayfly mcp connect` refuses what it cannot use, with the fix, and
/// never repeats a value that may be a key.
#[test]
fn mcp_connect_refuses_bad_arguments_clearly() {
    let ws = Workspace::new();
    let (code, _, err) = stdout_of(
        ws.mayfly()
            .args([
                "mcp",
                "connect",
                "http://127.0.0.1:9/mcp",
                "--through",
                "gh",
            ])
            .env_remove("MAYFLY_PROXY_URL")
            .env_remove("MAYFLY_PROXY_KEY"),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("MAYFLY_PROXY_URL") && err.contains("mayfly run --inject gh"),
        "{err}"
    );
    for args in [
        vec!["http://127.0.0.1:9/mcp", "--header", GITHUB],
        vec![&format!("https://me:{GITHUB}@mcp.example/mcp")],
    ] {
        let (code, _, err) = stdout_of(ws.mayfly().args(["mcp", "connect"]).args(&args));
        assert_ne!(code, 0);
        assert!(!err.contains(GITHUB) && !err.is_empty(), "{err}");
    }
}
