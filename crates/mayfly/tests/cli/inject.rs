//! Custody, `mayfly run --inject` and `mayfly migrate` end to end through
//! the real binary: the official OpenAI and Anthropic Python SDKs, plain
//! and streaming, reach a local TLS server that speaks those APIs and
//! accepts only the real keys, while the tool they run in holds neither.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};

use serde_json::Value;

use crate::common::{OPENAI, Workspace, json_of, stdout_of};
use crate::server::{Server, attested_client, client, free_port, mint, serve_with};

const ANTHROPIC: &str = "sk-ant-api03-Zq8XgT1mB4vR7nK2pL9wY6sD3fH5jC0aE8uI1oN4tQ7rV2xM9bG6kW3yP5zJ8hF1cL4nT7qR0vX3mB6sK9dA2g-5QwErTAA"; // mayfly:allow (test fixture)

/// What the migrated MCP server prints: the start of the key it got and of
/// its base URL.
const SHOW_ENV: &str =
    "import os; print(os.environ['OPENAI_API_KEY'][:13], os.environ['OPENAI_BASE_URL'][:16])";

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sdk")
        .join(name)
}

/// The SDKs are installed by `scripts/test`; without them this test
/// cannot say anything, so it fails and says how to get them.
pub fn require_sdks() {
    let ok = StdCommand::new("python3")
        .args(["-c", "import openai, anthropic"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the openai and anthropic Python packages are missing: run scripts/test (it installs them)"
    );
}

/// The fake provider API, killed on drop.
pub struct FakeApi {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeApi {
    pub fn start(dir: &Path) -> FakeApi {
        let status = StdCommand::new(data("make-test-ca.sh"))
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "openssl could not make the test CA");
        let log = dir.join("requests.jsonl");
        let mut child = StdCommand::new("python3")
            .arg(data("fake_provider_api.py"))
            .args([dir.join("server.pem"), dir.join("server.key"), log.clone()])
            .args([OPENAI, ANTHROPIC])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        FakeApi {
            child,
            port: line.trim().parse().expect("the fake API prints its port"),
            log,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A broker trusting the fake API's CA, with the minted identity.
fn broker_for(ws: &Workspace, certs: &Path) -> Server {
    let ca = certs.join("ca.pem");
    let server = serve_with(
        ws,
        None,
        free_port(),
        &["--proxy-ca-file", ca.to_str().unwrap()],
    );
    mint(ws, "local:acme/agent");
    server
}

#[test]
fn unmodified_sdks_use_keys_they_never_hold() {
    require_sdks();
    let ws = Workspace::new();
    let certs = ws.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let api = FakeApi::start(&certs);
    let server = broker_for(&ws, &certs);
    let upstream = format!("https://localhost:{}", api.port);

    // A secret on the command line is refused, and nothing is added.
    let (code, _, err) = stdout_of(client(&ws, &server).args([
        "custody",
        "add",
        "openai",
        "--provider",
        "openai",
        "--owner",
        "team-ml",
        "--upstream",
        &upstream,
        OPENAI,
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--from-env") && !err.contains(OPENAI), "{err}");
    let (code, _, err) = stdout_of(client(&ws, &server).args(["custody", "list"]));
    assert_eq!(code, 0);
    assert!(err.contains("nothing in custody"), "{err}");

    let (code, out, err) = stdout_of(
        client(&ws, &server)
            .args([
                "custody",
                "add",
                "openai",
                "--provider",
                "openai",
                "--owner",
                "team-ml",
                "--upstream",
                &upstream,
                "--from-env",
                "REAL_OPENAI_KEY",
            ])
            .env("REAL_OPENAI_KEY", OPENAI),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("header authorization: Bearer {secret}") && !out.contains(OPENAI),
        "{out}"
    );
    let (code, _, err) = stdout_of(
        client(&ws, &server)
            .args([
                "custody",
                "add",
                "anthropic",
                "--provider",
                "anthropic",
                "--owner",
                "team-ml",
                "--upstream",
                &upstream,
                "--stdin",
            ])
            .write_stdin(format!("{ANTHROPIC}\n")),
    );
    assert_eq!(code, 0, "{err}");
    let (_, list, _) = stdout_of(client(&ws, &server).args(["custody", "list"]));
    assert!(
        list.contains("anthropic") && list.contains("Anthropic") && list.contains("openai"),
        "{list}"
    );

    let (code, out, err) = stdout_of(client(&ws, &server).args([
        "run",
        "--inject",
        "openai,anthropic",
        "--purpose",
        "sdk test",
        "--owner",
        "team-ml",
        "--",
        "python3",
        data("sdk_client.py").to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}\n{out}");
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["openai"], "Hello from the real key");
    assert_eq!(got["openai_stream"].as_array().unwrap().len(), 5);
    assert_eq!(got["anthropic"], "Hello from Claude's real key");
    assert_eq!(got["anthropic_stream"].as_array().unwrap().len(), 5);
    // The tool held only the relay's key, never a provider's.
    let held = got["openai_key_var"].as_str().unwrap();
    assert!(held.starts_with("mayfly-relay-"), "{held}");
    assert_ne!(held, OPENAI);
    assert!(
        got["openai_base_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert!(!out.contains(OPENAI) && !out.contains(ANTHROPIC) && !err.contains(OPENAI));
    assert!(err.contains("ended"), "{err}");
    // Four calls reached the API, each with the real key and nothing of Mayfly's.
    let requests = api.requests();
    assert_eq!(requests.len(), 4, "{requests:?}");
    for request in &requests {
        assert_eq!(request["real_key"], true, "{request}");
        assert_eq!(request["saw_mayfly_credential"], false, "{request}");
    }
    assert_eq!(requests.iter().filter(|r| r["stream"] == true).count(), 2);
    // The task's counters, and the task is over.
    let task = got["task"].as_str().unwrap();
    let (code, shown) = json_of(client(&ws, &server).args(["task", "show", task, "--admin"]));
    assert_eq!(code, 0);
    assert_eq!(shown["state"], "ended");
    let usage = shown["proxy_usage"].as_array().unwrap();
    assert_eq!(usage.len(), 2);
    assert!(usage.iter().all(|u| u["requests"] == 2), "{usage:?}");
}

/// The README's migration: a key in `.env`, a Cursor MCP config and a
/// note, scanned and saved; `migrate` shows the patch, `--apply` takes it
/// into custody and edits what it can; a rescan sees those copies gone.
#[test]
fn migrate_moves_a_found_key_into_custody_and_out_of_its_copies() {
    let ws = Workspace::new();
    let server = serve_with(&ws, None, free_port(), &[]);
    mint(&ws, "local:acme/agent");
    let env = ws.write(".env", &format!("DEBUG=1\nOPENAI_API_KEY={OPENAI}\n"));
    let mcp = ws.write(
        ".cursor/mcp.json",
        &format!(r#"{{"mcpServers": {{"docs": {{"command": "python3", "args": ["-c", "{SHOW_ENV}"], "env": {{"OPENAI_API_KEY": "{OPENAI}", "LOG": "1"}}}}}}}}"#),
    );
    let note = ws.write("notes/setup.md", &format!("the key is {OPENAI}\n"));
    let db = ws.dir.path().join("inventory.db");
    let db = db.to_str().unwrap();
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db", db]));
    assert_eq!(code, 1, "{err}");
    let (_, plan) = json_of(
        ws.mayfly()
            .args(["govern", "plan", "--format", "json", "--db", db]),
    );
    let fingerprint = plan["plan"][0]["fingerprint"].as_str().unwrap().to_owned();

    // A dry run shows the patch, never the key, and writes nothing.
    let migrate = |extra: &[&str]| {
        let mut cmd = client(&ws, &server);
        cmd.args(["migrate", &fingerprint, "--name", "openai", "--db", db])
            .args(extra);
        stdout_of(&mut cmd)
    };
    // Nobody owns it yet: custody needs an owner.
    let (code, _, err) = migrate(&[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--owner") && err.contains("inventory owner set"),
        "{err}"
    );
    stdout_of(ws.mayfly().args([
        "inventory",
        "owner",
        "set",
        &fingerprint,
        "team-ml",
        "--db",
        db,
    ]));
    let (code, out, err) = migrate(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("-OPENAI_API_KEY=sk-p…(redacted)"), "{out}");
    assert!(
        out.contains("+# OPENAI_API_KEY moved into Mayfly custody as \"openai\""),
        "{out}"
    );
    assert!(
        out.contains("MCP server docs: OPENAI_API_KEY removed from env"),
        "{out}"
    );
    assert!(
        out.contains("delete by hand")
            && out.contains("setup.md")
            && out.contains("exposed: rotate"),
        "{out}"
    );
    assert!(!out.contains(OPENAI) && !err.contains(OPENAI));
    assert!(err.contains("dry run"), "{err}");
    assert!(std::fs::read_to_string(&env).unwrap().contains(OPENAI));

    let (code, out, err) = migrate(&["--apply"]);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(!std::fs::read_to_string(&env).unwrap().contains(OPENAI));
    let config: Value = serde_json::from_str(&std::fs::read_to_string(&mcp).unwrap()).unwrap();
    let docs = &config["mcpServers"]["docs"];
    assert!(
        docs["command"].as_str().unwrap().ends_with("mayfly"),
        "{docs}"
    );
    assert_eq!(docs["args"][1], "--inject");
    assert_eq!(docs["args"][2], "openai");
    assert_eq!(docs["args"][8], "python3");
    assert_eq!(docs["env"]["LOG"], "1");
    assert!(docs["env"].get("OPENAI_API_KEY").is_none());
    // The server runs as an MCP client would start it: its command, its
    // arguments, its env, and little else.
    let mut wrapped = StdCommand::new(docs["command"].as_str().unwrap());
    wrapped
        .args(
            docs["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap()),
        )
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("MAYFLY_HOME", ws.dir.path().join("home"));
    for (name, value) in docs["env"].as_object().unwrap() {
        wrapped.env(name, value.as_str().unwrap());
    }
    let output = wrapped.output().unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        shown.starts_with("mayfly-relay- http://127.0.0.1"),
        "{shown}"
    );
    assert!(
        std::fs::read_to_string(&note).unwrap().contains(OPENAI),
        "notes are not edited"
    );
    let backup = PathBuf::from(format!("{}.mayfly-backup", env.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let (_, shown) = json_of(client(&ws, &server).args(["custody", "show", "openai", "--json"]));
    assert_eq!(shown["fingerprint"], fingerprint.as_str());
    assert_eq!(shown["owner"], "team-ml");
    assert_eq!(shown["provider"], "OpenAI");

    // The backups hold the old value: the user deletes them, then rescans.
    std::fs::remove_file(&backup).unwrap();
    std::fs::remove_file(format!("{}.mayfly-backup", mcp.display())).unwrap();
    stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db", db]));
    let (_, detail, _) =
        stdout_of(
            ws.mayfly()
                .args(["inventory", "show", &fingerprint, "--db", db]),
        );
    assert!(detail.contains("in-custody"), "{detail}");
    let (_, text, _) = stdout_of(ws.mayfly().args(["govern", "plan", "--db", db]));
    assert!(
        text.contains("ROTATE, THEN CUSTODY ROTATE")
            && text.contains("mayfly custody rotate openai"),
        "{text}"
    );
    // Once the last copy is gone, nothing is left to do.
    std::fs::remove_file(&note).unwrap();
    stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db", db]));
    let (_, text, _) = stdout_of(ws.mayfly().args(["govern", "plan", "--db", db]));
    assert!(!text.contains("CUSTODY ROTATE"), "{text}");
}

/// `--intercept`, for a tool that cannot change its base URL: curl asks
/// for the API's own address through HTTPS_PROXY; the relay answers TLS
/// for that host under Mayfly's local CA and adds the key on the way.
/// Another host is tunnelled untouched.
#[test]
fn intercept_serves_tools_that_keep_their_base_url() {
    let ws = Workspace::new();
    let certs = ws.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let api = FakeApi::start(&certs);
    let server = broker_for(&ws, &certs);
    let upstream = format!("https://localhost:{}", api.port);
    let (code, _, err) = stdout_of(
        client(&ws, &server)
            .args([
                "custody",
                "add",
                "openai",
                "--provider",
                "openai",
                "--owner",
                "team-ml",
                "--upstream",
                &upstream,
                "--from-env",
                "REAL_OPENAI_KEY",
            ])
            .env("REAL_OPENAI_KEY", OPENAI),
    );
    assert_eq!(code, 0, "{err}");
    let script = format!(
        r#"curl -sS --fail-with-body {upstream}/v1/chat/completions -H "Authorization: Bearer $OPENAI_API_KEY" -H 'content-type: application/json' -d '{{"model": "gpt-4o-mini", "messages": []}}'; echo; test -z "$OPENAI_BASE_URL" && echo no-base-url; curl -sS -o /dev/null -w '%{{http_code}}' --cacert {ca} https://127.0.0.1:{port}/v1/chat/completions -d '{{}}'"#,
        ca = certs.join("ca.pem").display(),
        port = api.port,
    );
    let (code, out, err) = stdout_of(client(&ws, &server).args([
        "run",
        "--inject",
        "openai",
        "--intercept",
        "--purpose",
        "curl",
        "--owner",
        "team-ml",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("Hello from the real key"), "{out}\n{err}");
    assert!(out.contains("no-base-url"), "{out}");
    assert!(
        out.trim_end().ends_with("401"),
        "the other host is tunnelled, nothing added: {out}"
    );
    let requests = api.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0]["real_key"], true);
    assert_eq!(requests[0]["saw_mayfly_credential"], false);
    assert_eq!(requests[1]["real_key"], false);
    // The CA: printed on demand, its key private.
    let (code, pem, _) = stdout_of(client(&ws, &server).args(["custody", "ca"]));
    assert_eq!(code, 0);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = ws.dir.path().join("home/intercept-ca-key.pem");
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

/// A command that runs longer than one access token keeps working (the
/// relay replaces the token before it expires); once `mayfly run` has
/// ended, what the command held opens nothing.
#[test]
fn a_long_command_outlives_its_tokens_but_not_its_task() {
    require_sdks();
    let ws = Workspace::new();
    let certs = ws.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let api = FakeApi::start(&certs);
    let server = broker_for(&ws, &certs);
    let upstream = format!("https://localhost:{}", api.port);
    let (code, _, err) = stdout_of(
        client(&ws, &server)
            .args([
                "custody",
                "add",
                "openai",
                "--provider",
                "openai",
                "--owner",
                "team-ml",
                "--upstream",
                &upstream,
                "--from-env",
                "REAL_OPENAI_KEY",
            ])
            .env("REAL_OPENAI_KEY", OPENAI),
    );
    assert_eq!(code, 0, "{err}");
    let held = ws.dir.path().join("held.txt");
    let script = format!(
        r#"
import os, time, openai
open({held:?}, "w").write(os.environ["OPENAI_BASE_URL"] + " " + os.environ["OPENAI_API_KEY"])
client = openai.OpenAI(max_retries=0)
ask = lambda: client.chat.completions.create(model="m", messages=[{{"role": "user", "content": "hi"}}]).choices[0].message.content
first = ask()
time.sleep(4.5)  # past the first token's 3 s
print(first, "|", ask())
"#,
        held = held.display().to_string()
    );
    let (code, out, err) = stdout_of(client(&ws, &server).args([
        "run",
        "--inject",
        "openai",
        "--token-ttl",
        "3",
        "--purpose",
        "long",
        "--owner",
        "team-ml",
        "--",
        "python3",
        "-c",
        &script,
    ]));
    assert_eq!(code, 0, "{err}\n{out}");
    assert_eq!(
        out.trim(),
        "Hello from the real key | Hello from the real key"
    );
    // The task has ended: the base URL and key the command held lead nowhere.
    let held = std::fs::read_to_string(held).unwrap();
    let (base, key) = held.split_once(' ').unwrap();
    let after = StdCommand::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .arg(format!("{base}/models"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&after.stdout),
        "000",
        "the relay is gone"
    );
    assert_eq!(api.requests().len(), 2);
}

/// On a workstation with no issuer set up: `mayfly serve`, a key taken
/// into custody, and `mayfly run --inject` with no identity token given
/// (the local socket attests it); the official SDK gets its answer and
/// never the key.
#[test]
fn a_workstation_injects_with_no_issuer_and_no_token() {
    require_sdks();
    let ws = Workspace::new();
    let certs = ws.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let api = FakeApi::start(&certs);
    let ca = certs.join("ca.pem");
    let server = serve_with(
        &ws,
        None,
        free_port(),
        &["--proxy-ca-file", ca.to_str().unwrap()],
    );
    let upstream = format!("https://localhost:{}", api.port);
    let bare = || attested_client(&ws, &server);
    let (code, _, err) = stdout_of(
        bare()
            .args([
                "custody",
                "add",
                "openai",
                "--provider",
                "openai",
                "--owner",
                "me",
            ])
            .args(["--upstream", &upstream, "--from-env", "REAL_OPENAI_KEY"])
            .env("REAL_OPENAI_KEY", OPENAI),
    );
    assert_eq!(code, 0, "{err}");
    let agent = "import openai, os; \
        r = openai.OpenAI(max_retries=0).chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}]); \
        print(r.choices[0].message.content, '|', os.environ['OPENAI_API_KEY'][:13])";
    let (code, out, err) = stdout_of(bare().args([
        "run",
        "--inject",
        "openai",
        "--purpose",
        "agent",
        "--owner",
        "me",
        "--",
        "python3",
        "-c",
        agent,
    ]));
    assert_eq!(code, 0, "{err}\n{out}");
    assert_eq!(out.trim(), "Hello from the real key | mayfly-relay-");
    assert!(!out.contains(OPENAI) && !err.contains(OPENAI));
    let requests = api.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["real_key"], true);
}
