//! The broker end to end through the real binary: `mayfly serve` on its
//! embedded defaults, `identity mint`, `task`, `token`, `run`, `policy`,
//! `audit`, on SQLite and PostgreSQL.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;

use crate::common::{Workspace, json_of, stdout_of};
use crate::server::{Server, client, free_port, get, mint, serve, serve_configured, serve_on};

/// Starts the README's task (deploy, team-platform, api.example) with
/// `client`; its id, once it is live.
pub(crate) fn deploy_task(mut client: assert_cmd::Command) -> String {
    let (code, task) = json_of(client.args([
        "task",
        "start",
        "--purpose",
        "deploy",
        "--owner",
        "team-platform",
        "--audience",
        "https://api.example",
    ]));
    assert_eq!(code, 0, "{task}");
    assert_eq!(task["state"], "live");
    task["id"].as_str().unwrap().to_owned()
}

/// `mayfly token exchange` for the README's task and audience with
/// `client`: its exit code and JSON answer.
fn exchange_for(mut client: assert_cmd::Command, task: &str) -> (i32, serde_json::Value) {
    json_of(client.args([
        "token",
        "exchange",
        "--task",
        task,
        "--audience",
        "https://api.example",
    ]))
}

fn the_readme_flow(ws: &Workspace, server: &Server) {
    mint(ws, "local:acme/app");
    let id = deploy_task(client(ws, server));

    let (code, token) = exchange_for(client(ws, server), &id);
    assert_eq!(code, 0);
    assert_eq!(token["token_type"], "Bearer");
    let access = token["access_token"].as_str().unwrap().to_owned();
    let (code, raw, _) = stdout_of(client(ws, server).args([
        "token",
        "exchange",
        "--task",
        &id,
        "--audience",
        "https://api.example",
        "--raw",
    ]));
    assert_eq!(code, 0);
    assert_eq!(raw.trim().split('.').count(), 3, "{raw}");

    let (code, answer) = json_of(
        client(ws, server)
            .args(["token", "introspect", "-"])
            .write_stdin(access.clone()),
    );
    assert_eq!(code, 0, "active");
    assert_eq!(answer["task"], id.as_str());

    let (code, ended) = json_of(client(ws, server).args(["task", "end", &id]));
    assert_eq!(code, 0);
    assert_eq!(ended["revoked"], 2);
    let (code, answer) = json_of(
        client(ws, server)
            .args(["token", "introspect", "-"])
            .write_stdin(access),
    );
    assert_eq!(code, 1, "inactive after the task ended");
    assert_eq!(answer, serde_json::json!({"active": false}));

    // `mayfly run` hands CMD a credential and ends the task after it.
    let (code, out, err) = stdout_of(client(ws, server).args([
        "run", "--purpose", "smoke", "--owner", "team-platform", "--audience", "https://api.example", "--",
        "sh", "-c", "test -n \"$MAYFLY_TOKEN\" && test \"$(cat \"$MAYFLY_TOKEN_FILE\")\" = \"$MAYFLY_TOKEN\" && echo \"task=$MAYFLY_TASK_ID\"; exit 7",
    ]));
    assert_eq!(code, 7, "CMD's exit code: {err}");
    assert!(out.starts_with("task="), "{out}");
    assert!(err.contains("ended (1 credentials revoked)"), "{err}");
}

#[test]
fn serve_task_token_and_run_on_sqlite() {
    let ws = Workspace::new();
    let server = serve(&ws, None);
    the_readme_flow(&ws, &server);
    let (code, out, _) = stdout_of(ws.mayfly().args(["audit", "verify"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("audit chain intact"), "{out}");
    let (code, events) = json_of(
        ws.mayfly()
            .args(["audit", "tail", "-n", "50", "--format", "json"]),
    );
    assert_eq!(code, 0);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "key.rotate",
        "policy.load",
        "task.start",
        "token.issue",
        "task.end",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    // No token in the audit log.
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("eyJ"), "{text}");
}

/// `[retention]` through the real sweeper: what is over is deleted, and
/// `audit verify` checks the chain from its anchor.
#[test]
fn retention_deletes_what_is_over_and_the_chain_still_verifies() {
    let ws = Workspace::new();
    let server = serve_configured(&ws, "[retention]\nclosed_seconds = 1\naudit_seconds = 1\n");
    mint(&ws, "local:acme/app");
    let id = deploy_task(client(&ws, &server));
    let (code, _) = exchange_for(client(&ws, &server), &id);
    assert_eq!(code, 0);
    let (code, _) = json_of(client(&ws, &server).args(["task", "end", &id]));
    assert_eq!(code, 0);
    // The sweeper runs every 250 ms; what closed more than a second ago goes.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, err) = stdout_of(client(&ws, &server).args(["task", "show", &id]));
        if code != 0 {
            assert!(
                err.contains("404") || err.contains("not found"),
                "{out}{err}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task still kept: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, _) = stdout_of(ws.mayfly().args(["audit", "verify"]));
        assert_eq!(code, 0, "{out}");
        if out.contains("from event") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event deleted: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, events) = json_of(
        ws.mayfly()
            .args(["audit", "tail", "-n", "1", "--format", "json"]),
    );
    assert_eq!(code, 0);
    assert_eq!(events[0]["kind"], "audit.prune", "{events}");
    drop(server);
}

#[test]
fn serve_on_postgres() {
    let (url, _db) = crate::inventory::postgres_database();
    let ws = Workspace::new();
    let server = serve(&ws, Some(&url));
    the_readme_flow(&ws, &server);
    let (code, out, _) = stdout_of(ws.mayfly().args(["audit", "verify", "--db", &url]));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn run_forwards_signals_and_still_ends_the_task() {
    let ws = Workspace::new();
    let server = serve(&ws, None);
    mint(&ws, "svc:signals");
    let mut cmd = StdCommand::cargo_bin("mayfly").unwrap();
    let mut child = cmd
        .args([
            "run",
            "--purpose",
            "long job",
            "--owner",
            "team-a",
            "--audience",
            "https://api.example",
            "--",
            "sh",
            "-c",
            "trap 'exit 9' TERM; echo ready; while true; do sleep 0.05; done",
        ])
        .env("MAYFLY_HOME", ws.dir.path().join("home"))
        .env("MAYFLY_SERVER", &server.url)
        .env(
            "MAYFLY_IDENTITY_TOKEN_FILE",
            ws.dir.path().join("identity.jwt"),
        )
        .env_remove("XDG_DATA_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let status = StdCommand::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(9), "the trap's exit code");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("ended (1 credentials revoked)"), "{err}");
}

#[test]
fn policy_check_validates_a_directory() {
    let ws = Workspace::new();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let (code, out, _) = stdout_of(ws.mayfly().args(["policy", "check"]).arg(&examples));
    assert_eq!(code, 0);
    assert!(
        out.contains("policies valid") && out.contains("ci-no-pull-requests"),
        "{out}"
    );

    let bad = ws.dir.path().join("bad-policies");
    std::fs::create_dir_all(&bad).unwrap();
    let mut file = std::fs::File::create(bad.join("typo.cedar")).unwrap();
    writeln!(
        file,
        "permit (principal, action == Action::\"exchnage\", resource);"
    )
    .unwrap();
    let (code, _, err) = stdout_of(ws.mayfly().args(["policy", "check"]).arg(&bad));
    assert_eq!(code, 2);
    assert!(err.contains("exchnage"), "{err}");
}

#[test]
fn clients_explain_what_is_missing() {
    let ws = Workspace::new();
    let (code, _, err) = stdout_of(
        ws.mayfly()
            .args([
                "task",
                "start",
                "--purpose",
                "p",
                "--owner",
                "o",
                "--audience",
                "a",
            ])
            .env_remove("MAYFLY_IDENTITY_TOKEN_FILE")
            .env_remove("MAYFLY_IDENTITY_TOKEN")
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("no identity token"), "{err}");
    std::fs::write(ws.dir.path().join("identity.jwt"), "x.y.z").unwrap();
    let (code, _, err) = stdout_of(
        ws.mayfly()
            .args([
                "task",
                "start",
                "--purpose",
                "p",
                "--owner",
                "o",
                "--audience",
                "a",
            ])
            .env("MAYFLY_SERVER", format!("http://127.0.0.1:{}", free_port()))
            .env(
                "MAYFLY_IDENTITY_TOKEN_FILE",
                ws.dir.path().join("identity.jwt"),
            ),
    );
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach the broker"), "{err}");
}

#[test]
fn a_killed_server_loses_no_lease_and_keeps_its_keys() {
    let ws = Workspace::new();
    mint(&ws, "svc:durable");
    let first = serve(&ws, None);
    let (_, task) = json_of(client(&ws, &first).args([
        "task",
        "start",
        "--purpose",
        "p",
        "--owner",
        "team-a",
        "--audience",
        "https://api.example",
    ]));
    let id = task["id"].as_str().unwrap().to_owned();
    let (code, token, _) = stdout_of(client(&ws, &first).args([
        "token",
        "exchange",
        "--task",
        &id,
        "--audience",
        "https://api.example",
        "--raw",
    ]));
    assert_eq!(code, 0);
    // SIGKILL: no shutdown path runs. The restart keeps the address, so
    // the token's issuer is the same.
    let port: u16 = first.url.rsplit(':').next().unwrap().parse().unwrap();
    drop(first);

    let second = serve_on(&ws, None, port);
    let (code, answer) = json_of(
        client(&ws, &second)
            .args(["token", "introspect", "-"])
            .write_stdin(token.trim().to_owned()),
    );
    assert_eq!(
        code, 0,
        "the lease survived and the sealed key still verifies: {answer}"
    );
    let (code, _) = json_of(client(&ws, &second).args(["task", "end", &id]));
    assert_eq!(code, 0);
    let (code, _) = json_of(
        client(&ws, &second)
            .args(["token", "introspect", "-"])
            .write_stdin(token.trim().to_owned()),
    );
    assert_eq!(code, 1);
}

#[test]
fn cmd_never_sees_the_callers_identity_and_its_folder_is_private() {
    let ws = Workspace::new();
    let server = serve(&ws, None);
    mint(&ws, "svc:env");
    let (code, out, err) = stdout_of(
        client(&ws, &server)
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", "http://127.0.0.1:9/token")
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-secret")
            .args([
                "run",
                "--purpose",
                "env",
                "--owner",
                "team-a",
                "--audience",
                "https://api.example",
                "--",
                "sh",
                "-c",
                "env; stat -c 'folder=%a' \"$(dirname \"$MAYFLY_TOKEN_FILE\")\"",
            ]),
    );
    assert_eq!(code, 0, "{err}");
    for name in [
        "MAYFLY_IDENTITY_TOKEN",
        "MAYFLY_IDENTITY_TOKEN_FILE",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ] {
        assert!(
            !out.lines().any(|l| l.starts_with(&format!("{name}="))),
            "CMD saw {name}: {out}"
        );
    }
    assert!(out.contains("MAYFLY_TOKEN="), "{out}");
    assert!(out.contains("folder=700"), "{out}");
}

#[test]
fn an_interrupted_run_leaves_no_live_task_or_folder() {
    let ws = Workspace::new();
    let server = serve(&ws, None);
    mint(&ws, "svc:interrupted");
    let tmp = ws.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    for delay_ms in [0u64, 2, 5, 10, 20, 40, 80, 160] {
        let mut child = StdCommand::cargo_bin("mayfly")
            .unwrap()
            .args([
                "run",
                "--purpose",
                "p",
                "--owner",
                "team-a",
                "--audience",
                "https://api.example",
                "--",
                "sh",
                "-c",
                "sleep 30",
            ])
            .env("MAYFLY_HOME", ws.dir.path().join("home"))
            .env("MAYFLY_SERVER", &server.url)
            .env(
                "MAYFLY_IDENTITY_TOKEN_FILE",
                ws.dir.path().join("identity.jwt"),
            )
            .env("TMPDIR", &tmp)
            .env_remove("XDG_DATA_HOME")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        StdCommand::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
    }
    let (code, live) = json_of(client(&ws, &server).args(["task", "list", "--live"]));
    assert_eq!(code, 0);
    assert_eq!(live, serde_json::json!([]), "tasks left live: {live}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "folders left behind: {left:?}");
}

#[cfg(unix)]
#[test]
fn the_data_directory_and_the_store_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let ws = Workspace::new();
    let server = serve(&ws, None);
    mint(&ws, "svc:files");
    let (code, _) = json_of(client(&ws, &server).args([
        "task",
        "start",
        "--purpose",
        "p",
        "--owner",
        "o",
        "--audience",
        "https://api.example",
    ]));
    assert_eq!(code, 0);
    let home = ws.dir.path().join("home");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700);
    for file in [
        "mayfly.db",
        "mayfly.db-wal",
        "mayfly.db-shm",
        "admin-token",
        "broker-master.key",
    ] {
        assert_eq!(mode(&home.join(file)), 0o600, "{file}");
    }
    drop(server);
}

#[test]
fn health_and_readiness_say_what_holds_and_what_does_not() {
    // SQLite: live and ready, each check saying what it found.
    let ws = Workspace::new();
    let server = serve(&ws, None);
    assert_eq!(
        get(&format!("{}/healthz", server.url)),
        (200, serde_json::json!({"status": "ok"}))
    );
    let (status, body) = get(&format!("{}/readyz", server.url));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    for check in ["store", "keys", "policies"] {
        assert_eq!(body["checks"][check]["ok"], true, "{body}");
    }
    assert!(
        body["checks"]["keys"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("EdDSA signing key ")
    );

    // /metrics: exchanges issued and refused, their latency, the writer,
    // the live leases, in the Prometheus text format.
    mint(&ws, "local:acme/app");
    let id = deploy_task(client(&ws, &server));
    for audience in [
        "https://api.example",
        "https://api.example",
        "https://elsewhere.example",
    ] {
        let _ = stdout_of(client(&ws, &server).args([
            "token",
            "exchange",
            "--task",
            &id,
            "--audience",
            audience,
        ]));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let mut response = agent
        .get(&format!("{}/metrics", server.url))
        .call()
        .unwrap();
    let kind = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = response.body_mut().read_to_string().unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
    };
    assert_eq!(
        value("mayfly_exchanges_total{outcome=\"issued\",error=\"\"}"),
        2.0
    );
    assert!(
        text.contains("mayfly_exchanges_total{outcome=\"refused\",error=\""),
        "{text}"
    );
    assert_eq!(value("mayfly_exchange_duration_seconds_count"), 3.0);
    assert_eq!(value("mayfly_live_leases"), 2.0);
    assert!(
        value("mayfly_writer_commits_total") >= 3.0,
        "task and two leases"
    );
    assert_eq!(value("mayfly_writer_queue_depth"), 0.0);
    drop(server);

    // PostgreSQL, then the database goes away: still live, not ready, and
    // the answer names the failing check without the store's URL.
    let ws = Workspace::new();
    let (url, _drop) = crate::inventory::postgres_database();
    let server = serve(&ws, Some(&url));
    assert_eq!(get(&format!("{}/readyz", server.url)).0, 200);
    let name = url.rsplit('/').next().unwrap();
    let dropped = StdCommand::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c"])
        .arg(format!("DROP DATABASE {name} WITH (FORCE)"))
        .status()
        .unwrap();
    assert!(dropped.success());
    let (status, body) = get(&format!("{}/readyz", server.url));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["checks"]["store"]["ok"], false);
    assert_eq!(body["checks"]["keys"]["ok"], true);
    assert!(!body.to_string().contains("postgres://"), "{body}");
    assert_eq!(get(&format!("{}/healthz", server.url)).0, 200);
}
