//! Crash safety as a test: `mayfly serve` killed with SIGKILL at random
//! moments while clients start tasks, exchange, revoke and end, then
//! restarted; afterwards every answer a client received still holds.
//!
//! `MAYFLY_CRASH_KILLS` sets how many kills (20 by default; the bench
//! script `bench/run_crash.sh` runs 100).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{Workspace, stdout_of};
use crate::server::{Server, free_port, mint, serve_with};

pub(crate) const AUDIENCE: &str = "https://api.example";

/// A fresh random number (std's per-map random keys; no dependency).
fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// What a client was told, and so what must still hold after any crash.
#[derive(Default)]
struct Received {
    /// Tasks the broker answered 201 for: (id, ended, end in doubt).
    tasks: Vec<(String, bool, bool)>,
    /// Tokens it issued: (token, its task's index, expiry in Unix seconds,
    /// revoked, revocation in doubt).
    tokens: Vec<(String, usize, u64, bool, bool)>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends one request; `None` when no answer came (the server died or is
/// restarting): the client cannot know what happened.
pub(crate) fn send(
    agent: &ureq::Agent,
    url: &str,
    bearer: &str,
    form: Option<&[(&str, &str)]>,
    json: Option<serde_json::Value>,
) -> Option<(u16, serde_json::Value)> {
    let authorization = format!("Bearer {bearer}");
    let result = match (form, json) {
        (Some(form), _) => agent
            .post(url)
            .header("Authorization", &authorization)
            .send_form(form.iter().copied()),
        (None, Some(json)) => agent
            .post(url)
            .header("Authorization", &authorization)
            .header("Content-Type", "application/json")
            .send(json.to_string()),
        (None, None) => agent
            .get(url)
            .header("Authorization", &authorization)
            .call(),
    };
    let mut response = result.ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or_default()))
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// One client's loop until `stop`: a task, two tokens, then at random a
/// revocation and an end. Only answers received are recorded; a request
/// cut off by a crash leaves its outcome in doubt.
fn load(url: &str, identity: &str, admin: &str, stop: &AtomicBool, received: &Mutex<Received>) {
    let agent = agent();
    let start = serde_json::json!({"purpose": "crash", "owner": "team-a", "audiences": [AUDIENCE]});
    while !stop.load(Ordering::Relaxed) {
        let Some((201, task)) = send(
            &agent,
            &format!("{url}/v1/tasks"),
            identity,
            None,
            Some(start.clone()),
        ) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let id = task["id"].as_str().unwrap().to_owned();
        let task_index = {
            let mut r = received.lock().unwrap();
            r.tasks.push((id.clone(), false, false));
            r.tasks.len() - 1
        };
        let mut issued = Vec::new();
        for _ in 0..2 {
            let form = [
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", identity),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("audience", AUDIENCE),
                ("task_id", id.as_str()),
            ];
            if let Some((200, token)) = send(
                &agent,
                &format!("{url}/oauth2/token"),
                identity,
                Some(&form),
                None,
            ) {
                let access = token["access_token"].as_str().unwrap().to_owned();
                let expires = now_unix() + token["expires_in"].as_u64().unwrap();
                let mut r = received.lock().unwrap();
                r.tokens
                    .push((access.clone(), task_index, expires, false, false));
                issued.push((r.tokens.len() - 1, access));
            }
        }
        let roll = random();
        if let Some((index, access)) = issued.first().filter(|_| roll.is_multiple_of(3)) {
            let outcome = send(
                &agent,
                &format!("{url}/oauth2/revoke"),
                admin,
                Some(&[("token", access.as_str())]),
                None,
            );
            let mut r = received.lock().unwrap();
            match outcome {
                Some((200, _)) => r.tokens[*index].3 = true,
                Some((status, body)) => panic!("revoke answered {status}: {body}"),
                None => r.tokens[*index].4 = true,
            }
        }
        if roll % 4 == 1 {
            let outcome = send(
                &agent,
                &format!("{url}/v1/tasks/{id}/end"),
                identity,
                Some(&[]),
                None,
            );
            let mut r = received.lock().unwrap();
            match outcome {
                Some((200, _)) => r.tasks[task_index].1 = true,
                Some((status, body)) => panic!("ending a task answered {status}: {body}"),
                None => r.tasks[task_index].2 = true,
            }
        }
    }
}

/// Kills the broker `kills` times under load from four clients, then
/// checks every task and token any client was told about, and the audit
/// chain.
fn crash_under_load(ws: &Workspace, db: Option<&str>) {
    let kills: usize = std::env::var("MAYFLY_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let config = ws.dir.path().join("crash.toml");
    std::fs::write(
        &config,
        "[limits]\nmax_live_tasks_per_workload = 1000000\nexchanges_per_second_per_workload = 0\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let port = free_port();
    let start = || serve_with(ws, db, port, &["--config", &config]);
    let mut server: Server = start();
    mint(ws, "svc:crash");
    let identity = std::fs::read_to_string(ws.dir.path().join("identity.jwt")).unwrap();
    let admin = std::fs::read_to_string(ws.dir.path().join("home/admin-token")).unwrap();
    let url = server.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(Mutex::new(Received::default()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, identity, admin) = (url.clone(), identity.clone(), admin.trim().to_owned());
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || load(&url, &identity, &admin, &stop, &received))
        })
        .collect();
    let started = Instant::now();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(50 + random() % 350));
        drop(server); // SIGKILL: no shutdown path runs.
        server = start();
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let elapsed = started.elapsed();

    // One more crash with nothing in flight, so the checks read what the
    // store kept, not what a process held.
    drop(server);
    let server = start();
    let agent = agent();
    let admin = admin.trim();
    let received = received.lock().unwrap();
    assert!(
        received.tasks.len() >= kills,
        "the load made {} tasks over {kills} kills",
        received.tasks.len()
    );
    for (id, ended, in_doubt) in &received.tasks {
        let (status, task) = send(
            &agent,
            &format!("{}/v1/tasks/{id}", server.url),
            admin,
            None,
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "task {id} was lost: {task}");
        if !in_doubt {
            let expected = if *ended { "ended" } else { "live" };
            assert_eq!(task["state"], expected, "task {id}: {task}");
        }
    }
    let (mut active, mut inactive) = (0, 0);
    for (token, task, expires, revoked, in_doubt) in &received.tokens {
        let (task_id, ended, end_in_doubt) = &received.tasks[*task];
        let (status, answer) = send(
            &agent,
            &format!("{}/oauth2/introspect", server.url),
            admin,
            Some(&[("token", token.as_str())]),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{answer}");
        let is_active = answer["active"] == true;
        if *revoked || *ended {
            assert!(!is_active, "a revoked token (task {task_id}) came back");
        } else if !in_doubt && !end_in_doubt && *expires > now_unix() + 1 {
            assert!(is_active, "a token of task {task_id} was lost: {answer}");
        }
        if is_active {
            active += 1;
        } else {
            inactive += 1;
        }
    }
    let mut verify = ws.mayfly();
    verify.args(["audit", "verify"]);
    if let Some(db) = db {
        verify.args(["--db", db]);
    }
    let (code, out, err) = stdout_of(&mut verify);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("audit chain intact"), "{out}");
    eprintln!(
        "crash harness ({}): {kills} SIGKILLs in {:.1} s; {} tasks and {} tokens received, \
         all accounted for ({active} active, {inactive} revoked, ended or expired); {}",
        if db.is_some() { "PostgreSQL" } else { "SQLite" },
        elapsed.as_secs_f64(),
        received.tasks.len(),
        received.tokens.len(),
        out.trim()
    );
}

#[test]
fn sigkill_under_load_loses_nothing_on_sqlite() {
    crash_under_load(&Workspace::new(), None);
}

#[test]
fn sigkill_under_load_loses_nothing_on_postgres() {
    let (url, _db) = crate::inventory::postgres_database();
    crash_under_load(&Workspace::new(), Some(&url));
}
