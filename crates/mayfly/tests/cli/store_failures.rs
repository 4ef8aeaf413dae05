//! The store failing under a running broker: PostgreSQL going away and
//! coming back, a full disk under SQLite. Requests fail cleanly with 503,
//! nothing is corrupted or lost, and service resumes without a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Workspace, stdout_of};
use crate::crash::{AUDIENCE, agent, send};
use crate::server::{Server, free_port, mint, serve_with};

/// The broker's API as a workload and an admin call it, over HTTP.
struct Api {
    agent: ureq::Agent,
    url: String,
    identity: String,
    admin: String,
}

impl Api {
    /// With a freshly minted identity and the workspace's admin token.
    fn new(ws: &Workspace, server: &Server) -> Api {
        mint(ws, "svc:store-failures");
        let read = |path: &str| {
            std::fs::read_to_string(ws.dir.path().join(path))
                .unwrap()
                .trim()
                .to_owned()
        };
        Api {
            agent: agent(),
            url: server.url.clone(),
            identity: read("identity.jwt"),
            admin: read("home/admin-token"),
        }
    }

    fn start(&self) -> (u16, serde_json::Value) {
        send(
            &self.agent,
            &format!("{}/v1/tasks", self.url),
            &self.identity,
            None,
            Some(serde_json::json!({"purpose": "store failures", "owner": "team-a", "audiences": [AUDIENCE]})),
        )
        .unwrap()
    }

    fn exchange(&self, task: &str) -> (u16, serde_json::Value) {
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", self.identity.as_str()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", AUDIENCE),
            ("task_id", task),
        ];
        send(
            &self.agent,
            &format!("{}/oauth2/token", self.url),
            "",
            Some(&form),
            None,
        )
        .unwrap()
    }

    fn introspect(&self, token: &str) -> (u16, serde_json::Value) {
        send(
            &self.agent,
            &format!("{}/oauth2/introspect", self.url),
            &self.admin,
            Some(&[("token", token)]),
            None,
        )
        .unwrap()
    }
}

/// A TCP relay to the PostgreSQL server that can be cut (every connection
/// closed, new ones closed as they come) and restored: the server going
/// away and coming back, as a network or a failover makes it.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn to_postgres() -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (cut_seen, open_kept) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut_seen.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = std::net::TcpStream::connect("127.0.0.1:5432") else {
                    continue;
                };
                let mut kept = open_kept.lock().unwrap();
                kept.push(client.try_clone().unwrap());
                kept.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// PostgreSQL goes away under a running broker: requests fail promptly
/// with 503 and an OAuth error, readiness says the store does not answer;
/// when it comes back, the broker serves again without a restart and
/// nothing it issued before is lost.
#[test]
fn postgres_going_away_and_coming_back_needs_no_restart() {
    let (url, _db) = crate::inventory::postgres_database();
    let relay = Relay::to_postgres();
    let through_relay = url.replace(":5432/", &format!(":{}/", relay.port));
    let ws = Workspace::new();
    let server = serve_with(&ws, Some(&through_relay), free_port(), &[]);
    let api = Api::new(&ws, &server);
    let ready = || crate::server::get(&format!("{}/readyz", server.url));

    let (status, task) = api.start();
    assert_eq!(status, 201, "{task}");
    let task = task["id"].as_str().unwrap().to_owned();
    let (status, token) = api.exchange(&task);
    assert_eq!(status, 200, "{token}");
    let before = token["access_token"].as_str().unwrap().to_owned();

    relay.cut();
    for _ in 0..3 {
        let asked = Instant::now();
        let (status, answer) = api.exchange(&task);
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"], "temporarily_unavailable", "{answer}");
        assert!(
            asked.elapsed() < Duration::from_secs(8),
            "a refusal took {:?}",
            asked.elapsed()
        );
        let (status, answer) = api.start();
        assert_eq!(status, 503, "{answer}");
    }
    let (status, readiness) = ready();
    assert_eq!(status, 503, "{readiness}");
    assert_eq!(readiness["checks"]["store"]["ok"], false, "{readiness}");

    relay.restore();
    // The first request after the server returns is served: lost
    // connections are replaced as they are found.
    let (status, token) = api.exchange(&task);
    assert_eq!(status, 200, "{token}");
    let after = token["access_token"].as_str().unwrap().to_owned();
    for token in [&before, &after] {
        let (status, answer) = api.introspect(token);
        assert_eq!(
            (status, &answer["active"]),
            (200, &serde_json::json!(true)),
            "{answer}"
        );
    }
    assert_eq!(ready().0, 200);
    let (status, answer) = api.start();
    assert_eq!(status, 201, "{answer}");
}

/// A small filesystem of its own (tmpfs), unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// Mounts `megabytes` of tmpfs at `path`; `None` when this process may
    /// not mount (not root).
    fn mount(path: &std::path::Path, megabytes: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0700")])
            .arg("tmpfs")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk {
            path: path.to_owned(),
        })
    }

    /// Fills what space is left with a file; removing it gives the space
    /// back.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // Whatever is left is smaller than a chunk: take it too.
        let mut byte = [0u8; 1];
        while file.write(&byte).is_ok_and(|n| n == 1) {
            byte[0] = 1;
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// The disk under a SQLite store fills up: issuance fails with a clear 503
/// (no panic, no corrupted store, the server keeps running), and resumes
/// when space returns, with every token issued before still active.
#[test]
fn a_full_disk_fails_issuance_cleanly_and_it_resumes_when_space_returns() {
    let ws = Workspace::new();
    let Some(disk) = SmallDisk::mount(&ws.dir.path().join("disk"), 8) else {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    };
    let db = disk.path.join("mayfly.db");
    let db = db.to_str().unwrap();
    let port = free_port();
    let server = serve_with(&ws, Some(db), port, &[]);
    let api = Api::new(&ws, &server);
    let (status, task) = api.start();
    assert_eq!(status, 201, "{task}");
    let task = task["id"].as_str().unwrap().to_owned();
    let mut issued = Vec::new();
    let mut exchange = || -> (u16, serde_json::Value) {
        let (status, answer) = api.exchange(&task);
        if status == 200 {
            issued.push(answer["access_token"].as_str().unwrap().to_owned());
        }
        (status, answer)
    };
    assert_eq!(exchange().0, 200);

    let filler = disk.fill();
    // The log may still have room for a few commits; past it, each
    // exchange is refused.
    let refusal = (0..5000)
        .map(|_| exchange())
        .find(|(status, _)| *status != 200)
        .expect("issuance went on with the disk full");
    let (status, answer) = refusal;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "temporarily_unavailable", "{answer}");
    let description = answer["error_description"].as_str().unwrap();
    assert!(description.contains("full"), "{description}");
    assert!(!description.contains(db), "{description}");
    for _ in 0..3 {
        assert_eq!(exchange().0, 503);
    }
    assert_eq!(
        crate::server::get(&format!("{}/healthz", server.url)).0,
        200
    );

    std::fs::remove_file(filler).unwrap();
    let (status, answer) = exchange();
    assert_eq!(status, 200, "{answer}");
    for token in &issued {
        let (status, answer) = api.introspect(token);
        assert_eq!((status, &answer["active"]), (200, &serde_json::json!(true)));
    }
    // After a restart, the store is whole and holds every token.
    drop(server);
    let (code, out, err) = stdout_of(ws.mayfly().args(["audit", "verify", "--db", db]));
    assert_eq!(code, 0, "{out}{err}");
    let server = serve_with(&ws, Some(db), port, &[]);
    for token in &issued {
        let (status, answer) = api.introspect(token);
        assert_eq!((status, &answer["active"]), (200, &serde_json::json!(true)));
    }
    drop(server);
}
