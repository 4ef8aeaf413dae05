//! `mayfly serve` as a child process for end-to-end tests, and a client
//! of it with a minted local identity.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

use crate::common::{Workspace, stdout_of};

/// A `mayfly serve` process, stopped on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn serve(ws: &Workspace, db: Option<&str>) -> Server {
    serve_on(ws, db, free_port())
}

pub fn serve_on(ws: &Workspace, db: Option<&str>, port: u16) -> Server {
    serve_with(ws, db, port, &[])
}

/// `mayfly serve --config` on SQLite, with `config` written to the
/// workspace's `mayfly.toml`.
pub fn serve_configured(ws: &Workspace, config: &str) -> Server {
    let path = ws.dir.path().join("mayfly.toml");
    std::fs::write(&path, config).unwrap();
    serve_with(ws, None, free_port(), &["--config", path.to_str().unwrap()])
}

/// `mayfly serve` with more arguments.
pub fn serve_with(ws: &Workspace, db: Option<&str>, port: u16, extra: &[&str]) -> Server {
    let mut cmd = StdCommand::cargo_bin("mayfly").unwrap();
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("MAYFLY_HOME", ws.dir.path().join("home"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("MAYFLY_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(db) = db {
        cmd.args(["--db", db]);
    }
    let mut child = cmd.spawn().unwrap();
    // Ready when it says where the admin token is.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = Vec::new();
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => {
                let ready = line.contains("admin token in");
                said.push(line);
                if ready {
                    break;
                }
            }
            _ => panic!("mayfly serve stopped: {said:?}"),
        }
    }
    assert!(said.iter().any(|l| l.contains("listening on")), "{said:?}");
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// `mayfly` as a client of `server`, with the minted identity.
pub fn client(ws: &Workspace, server: &Server) -> assert_cmd::Command {
    let mut cmd = ws.mayfly();
    cmd.env("MAYFLY_SERVER", &server.url)
        .env(
            "MAYFLY_IDENTITY_TOKEN_FILE",
            ws.dir.path().join("identity.jwt"),
        )
        .env_remove("MAYFLY_IDENTITY_TOKEN")
        .env_remove("MAYFLY_ADMIN_TOKEN")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL");
    cmd
}

/// `mayfly` as a client of `server` given no identity token: the local
/// socket of the workspace's `mayfly serve` attests it.
pub fn attested_client(ws: &Workspace, server: &Server) -> assert_cmd::Command {
    let mut cmd = ws.mayfly();
    cmd.env("MAYFLY_SERVER", &server.url)
        .env_remove("MAYFLY_IDENTITY_TOKEN_FILE")
        .env_remove("MAYFLY_IDENTITY_TOKEN")
        .env_remove("MAYFLY_LOCAL_SOCKET")
        .env_remove("MAYFLY_ADMIN_TOKEN")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL");
    cmd
}

pub fn mint(ws: &Workspace, sub: &str) {
    let (code, jwt, err) = stdout_of(ws.mayfly().args(["identity", "mint", "--sub", sub]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(jwt.trim().split('.').count(), 3);
    std::fs::write(ws.dir.path().join("identity.jwt"), jwt.trim()).unwrap();
}

/// `GET url`: the status and the body.
pub fn get(url: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(url).call().unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}
