//! Replicas: several `mayfly serve` processes on one PostgreSQL database
//! behave as one broker.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::broker::deploy_task;
use crate::common::{Workspace, json_of, stdout_of};
use crate::server::{Server, client, free_port, mint, serve_with};

const AUDIENCE: &str = "https://api.example";

/// The broker's embedded default policies, which a policy directory starts
/// from here.
const DEFAULT_POLICIES: &str = include_str!("../../../mayfly-broker/policies/default.cedar");

/// An admin API call to `server`: `PUT` of `body` as JSON, or a `POST`
/// with no body when there is none. The status and the JSON answer.
fn admin(ws: &Workspace, server: &Server, path: &str, body: Option<Value>) -> (u16, Value) {
    let token = std::fs::read_to_string(ws.dir.path().join("home/admin-token")).unwrap();
    let agent = crate::crash::agent();
    let url = format!("{}{path}", server.url);
    let bearer = format!("Bearer {}", token.trim());
    let mut response = match body {
        Some(body) => agent
            .put(&url)
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .send(body.to_string()),
        None => agent
            .post(&url)
            .header("Authorization", &bearer)
            .send_empty(),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A replica on the PostgreSQL database `url`, with the config every
/// replica gets: the public URL they share behind one load balancer (the
/// tokens' issuer), and its own policy directory `policies-NAME` when it
/// is given `name`.
fn replica(ws: &Workspace, url: &str, name: Option<&str>) -> Server {
    let mut config = "[server]\npublic_url = \"https://mayfly.acme.test\"\n".to_owned();
    if let Some(name) = name {
        let dir = ws.dir.path().join(format!("policies-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("default.cedar"), DEFAULT_POLICIES).unwrap();
        config += &format!("[policy]\ndir = {:?}\n", dir.to_str().unwrap());
    }
    let file = ws
        .dir
        .path()
        .join(format!("replica-{}.toml", name.unwrap_or("shared")));
    std::fs::write(&file, config).unwrap();
    serve_with(
        ws,
        Some(url),
        free_port(),
        &["--config", file.to_str().unwrap()],
    )
}

/// `mayfly token exchange` for `task` through `server`.
fn exchange(ws: &Workspace, server: &Server, task: &str) -> (i32, String, String) {
    stdout_of(client(ws, server).args([
        "token",
        "exchange",
        "--task",
        task,
        "--audience",
        AUDIENCE,
    ]))
}

/// The access token an exchange through `server` issues for `task`.
fn issued(ws: &Workspace, server: &Server, task: &str) -> String {
    let (code, out, err) = exchange(ws, server, task);
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

/// `mayfly token introspect` of `token` through `server`.
fn introspect(ws: &Workspace, server: &Server, token: &str) -> (i32, Value) {
    json_of(
        client(ws, server)
            .args(["token", "introspect", "-"])
            .write_stdin(token.to_owned()),
    )
}

/// Two `mayfly serve` replicas on one PostgreSQL database: what one
/// issues, revokes or ends holds on the other at once.
#[test]
fn two_replicas_on_one_postgres_database_agree() {
    let (url, _db) = crate::inventory::postgres_database();
    let ws = Workspace::new();
    let a = replica(&ws, &url, None);
    let b = replica(&ws, &url, None);
    mint(&ws, "local:acme/app");
    let id = deploy_task(client(&ws, &a));
    // Issued by A, active on B.
    let first = issued(&ws, &a, &id);
    let (code, answer) = introspect(&ws, &b, &first);
    assert_eq!(code, 0, "{answer}");
    // Issued by B for A's task.
    let second = issued(&ws, &b, &id);
    // Revoked through A: inactive on B within a second.
    let (code, _, err) = stdout_of(
        client(&ws, &a)
            .args(["token", "revoke", "-"])
            .write_stdin(first.clone()),
    );
    assert_eq!(code, 0, "{err}");
    // The very next question to B already has the answer: no delay to
    // wait out.
    assert_eq!(
        introspect(&ws, &b, &first),
        (1, serde_json::json!({"active": false}))
    );
    // The task ended through B: A neither honours its credentials nor
    // issues new ones.
    let (code, ended) = json_of(client(&ws, &b).args(["task", "end", &id]));
    assert_eq!(code, 0, "{ended}");
    assert_eq!(introspect(&ws, &a, &second).0, 1);
    let (code, _, err) = exchange(&ws, &a, &id);
    assert_ne!(code, 0);
    assert!(err.contains("has ended"), "{err}");
}

/// Waits up to `limit` for `done`; how long it took.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A policy set loaded through one replica is in force on every replica
/// (and written to each one's policy directory), its re-evaluation runs
/// once, and a signing key rotated through one replica signs on all.
#[test]
fn a_policy_change_and_a_key_rotation_reach_every_replica() {
    let (url, _db) = crate::inventory::postgres_database();
    let ws = Workspace::new();
    let a = replica(&ws, &url, Some("a"));
    let b = replica(&ws, &url, Some("b"));
    mint(&ws, "local:acme/app");
    let id = deploy_task(client(&ws, &a));
    let token = issued(&ws, &b, &id);

    // Through A: a set that forbids the audience B issued for.
    let forbidding = format!(
        "{DEFAULT_POLICIES}\n@id(\"no-api-example\")\nforbid (principal, action == Action::\"exchange\", resource)\nwhen {{ context.audience == \"https://api.example\" }};\n"
    );
    let (status, answer) = admin(
        &ws,
        &a,
        "/v1/admin/policies",
        Some(json!({"policies": {"default.cedar": forbidding}})),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["revoked"], 1, "{answer}");
    // B: the credential it issued is inactive, and it issues no new one,
    // from the very next request.
    assert_eq!(introspect(&ws, &b, &token), (1, json!({"active": false})));
    let (code, _, err) = exchange(&ws, &b, &id);
    assert_ne!(code, 0);
    assert!(err.contains("no-api-example"), "{err}");
    // B keeps the set for its next start, within a second.
    let b_file = ws.dir.path().join("policies-b/default.cedar");
    let written = within(Duration::from_secs(1), || {
        std::fs::read_to_string(&b_file).unwrap() == forbidding
    });
    assert!(written.is_some(), "B's policy directory was not updated");

    // The re-evaluation ran once, on A: one event for the set, and none on
    // B even after it followed.
    std::thread::sleep(Duration::from_millis(1200));
    let (code, events) = json_of(ws.mayfly().args([
        "audit", "tail", "-n", "200", "--format", "json", "--db", &url,
    ]));
    assert_eq!(code, 0, "{events}");
    let events = events.as_array().unwrap();
    let reevaluations: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "policy.reevaluate")
        .collect();
    // One for the set A loaded at start (B found it on the store), one for
    // the new set.
    assert_eq!(reevaluations.len(), 2, "{reevaluations:?}");
    assert_eq!(
        reevaluations[1]["data"]["generation"], 2,
        "{reevaluations:?}"
    );
    assert_eq!(reevaluations[1]["data"]["revoked"], 1, "{reevaluations:?}");

    // Back to the defaults, through B this time: A issues again at once.
    let (status, answer) = admin(
        &ws,
        &b,
        "/v1/admin/policies",
        Some(json!({"policies": {"default.cedar": DEFAULT_POLICIES}})),
    );
    assert_eq!(status, 200, "{answer}");
    issued(&ws, &a, &id);

    // A signing key rotated through A signs on B within a second.
    let (status, rotated) = admin(&ws, &a, "/v1/admin/keys/rotate", None);
    assert_eq!(status, 200, "{rotated}");
    let kid = rotated["keys"][0]["kid"].as_str().unwrap().to_owned();
    let signed_by = |server: &Server| {
        let token = issued(&ws, server, &id);
        let header = token.split('.').next().unwrap();
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    let took = within(Duration::from_secs(1), || signed_by(&b) == kid);
    assert!(took.is_some(), "B still signs with its old key");
    assert_eq!(signed_by(&a), kid);
    let (_, jwks) = crate::server::get(&format!("{}/.well-known/jwks.json", b.url));
    assert!(jwks.to_string().contains(&kid), "{jwks}");
}

/// A replica killed with SIGKILL (whatever it held: the sweeper's lock is
/// a transaction's, so it goes with the dead connection): the other goes on
/// serving what the dead one issued and sweeps the tasks that expire
/// afterwards.
#[test]
fn a_killed_replica_leaves_the_others_serving_and_sweeping() {
    let (url, _db) = crate::inventory::postgres_database();
    let ws = Workspace::new();
    let mut a = replica(&ws, &url, None);
    let b = replica(&ws, &url, None);
    mint(&ws, "local:acme/app");
    let (code, task) = json_of(client(&ws, &a).args([
        "task",
        "start",
        "--purpose",
        "short",
        "--owner",
        "team-platform",
        "--audience",
        AUDIENCE,
        "--ttl",
        "2",
    ]));
    assert_eq!(code, 0, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let token = issued(&ws, &a, &id);
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // B answers for A's credential...
    let (code, active) = introspect(&ws, &b, &token);
    assert_eq!((code, &active["active"]), (0, &json!(true)), "{active}");
    // ...and its sweeper records the task's expiry, A being gone.
    let database = url.rsplit('/').next().unwrap();
    let ended = || {
        crate::upstreams::psql(
            database,
            &format!("SELECT end_reason FROM broker_tasks WHERE id = '{id}'"),
        ) == "expired"
    };
    assert!(
        within(Duration::from_secs(6), ended).is_some(),
        "no replica swept the expired task"
    );
    assert_eq!(
        introspect(&ws, &b, &token).0,
        1,
        "the expired task's credential is inactive"
    );
}
