//! Local attestation through the real binary, with no issuer set up:
//! `mayfly serve` attests processes on its unix socket, `mayfly task` and
//! `mayfly run` use it when given no token, Cedar decides on what the
//! kernel reported, and the PyPI `spiffe` client speaks the SPIFFE Workload
//! API to it. On SQLite and on PostgreSQL.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::common::{Workspace, json_of, stdout_of};
use crate::server::{attested_client, free_port, serve, serve_configured};

fn socket(ws: &Workspace) -> PathBuf {
    ws.dir.path().join("home").join("workload.sock")
}

fn mayfly_binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("mayfly")
}

fn sha256_of(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    // The test's own files are its uid's.
    std::fs::metadata(std::env::current_exe().unwrap())
        .unwrap()
        .uid()
}

fn require_spiffe() {
    let ok = StdCommand::new("python3")
        .args(["-c", "import spiffe, grpc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the spiffe Python package is missing: run scripts/test (it installs it)"
    );
}

fn workstation(db: Option<&str>) {
    let ws = Workspace::new();
    let server = serve(&ws, db);
    let sock = socket(&ws);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is private");

    // What the kernel says about `mayfly identity attest` itself.
    let (code, attested) = json_of(attested_client(&ws, &server).args(["identity", "attest"]));
    assert_eq!(code, 0, "{attested}");
    let exe = mayfly_binary();
    let exe = exe.canonicalize().unwrap();
    assert_eq!(
        attested["workload"],
        format!("local:uid:{}:exe:{}", uid(), exe.display())
    );
    assert_eq!(attested["facts"]["exe_sha256"], sha256_of(&exe));
    assert_eq!(attested["facts"]["uid"], uid());
    // Its parent is this test.
    let parent = std::env::current_exe().unwrap().canonicalize().unwrap();
    assert_eq!(
        attested["facts"]["ancestors"][0]["exe"],
        parent.display().to_string()
    );
    assert!(attested.get("identity_token").is_none());

    // A task and a credential with no issuer set up and no token given.
    let (code, task) = json_of(attested_client(&ws, &server).args([
        "task",
        "start",
        "--purpose",
        "local agent",
        "--owner",
        "me",
        "--audience",
        "urn:demo",
    ]));
    assert_eq!(code, 0, "{task}");
    assert_eq!(task["workload"], attested["workload"], "{task}");
    let id = task["id"].as_str().unwrap();
    let (code, token, err) = stdout_of(attested_client(&ws, &server).args([
        "token",
        "exchange",
        "--task",
        id,
        "--audience",
        "urn:demo",
        "--raw",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(token.trim().split('.').count(), 3);

    // `mayfly run` the same way: CMD gets a credential, the task ends.
    let (code, out, err) = stdout_of(attested_client(&ws, &server).args([
        "run",
        "--audience",
        "urn:demo",
        "--purpose",
        "local run",
        "--owner",
        "me",
        "--",
        "sh",
        "-c",
        "test -n \"$MAYFLY_TOKEN\" && echo has-token",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "has-token");

    // The SPIFFE client: a JWT-SVID for the python process, validated on
    // the server and against the bundle, and accepted as an identity.
    require_spiffe();
    let svid_file = ws.dir.path().join("svid.jwt");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spiffe/workload_api_client.py");
    let output = StdCommand::new("python3")
        .arg(&script)
        .arg(&sock)
        .arg("mayfly")
        .arg(&svid_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    let spiffe_id = seen["spiffe_id"].as_str().unwrap();
    let prefix = format!("spiffe://mayfly.local/local/uid/{}/exe/", uid());
    assert!(spiffe_id.starts_with(&prefix), "{seen}");
    assert!(spiffe_id.contains("python"), "{seen}");
    assert_eq!(seen["locally_validated"], spiffe_id);
    assert_eq!(seen["server_validated"], true);
    assert_eq!(seen["bundle_keys"], 1);
    assert_eq!(
        seen["after_bad_input"], spiffe_id,
        "the server kept serving"
    );
    let errors = &seen["errors"];
    for bad in ["forged", "wrong_audience", "other_subject", "x509"] {
        assert!(errors[bad].is_string(), "{bad} must fail: {seen}");
    }
    assert!(
        errors["forged"]
            .as_str()
            .unwrap()
            .contains("INVALID_ARGUMENT"),
        "{seen}"
    );
    assert!(
        errors["other_subject"]
            .as_str()
            .unwrap()
            .contains("PERMISSION_DENIED"),
        "{seen}"
    );
    assert!(
        errors["x509"].as_str().unwrap().contains("UNIMPLEMENTED"),
        "{seen}"
    );
    assert!(
        seen["garbage_frame"]
            .as_str()
            .unwrap()
            .starts_with("INVALID_ARGUMENT"),
        "{seen}"
    );
    assert!(
        seen["no_security_header"]
            .as_str()
            .unwrap()
            .contains("security header"),
        "{seen}"
    );
    let (code, task) = json_of(
        attested_client(&ws, &server)
            .args([
                "task",
                "start",
                "--purpose",
                "svid",
                "--owner",
                "me",
                "--audience",
                "urn:demo",
            ])
            .arg("--identity-token-file")
            .arg(&svid_file),
    );
    assert_eq!(code, 0, "{task}");
    assert_eq!(task["workload"], spiffe_id);

    // Garbage on the socket does not stop it.
    {
        use std::io::{Read as _, Write as _};
        let mut raw = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        raw.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
    }
    let (code, again) = json_of(attested_client(&ws, &server).args(["identity", "attest"]));
    assert_eq!(code, 0, "{again}");
}

#[test]
fn a_workstation_needs_no_issuer_on_sqlite() {
    workstation(None);
}

#[test]
fn a_workstation_needs_no_issuer_on_postgres() {
    let (url, _db) = crate::inventory::postgres_database();
    workstation(Some(&url));
}

/// Policy decides on the attested facts: only the mayfly executable (by
/// its SHA-256) may start tasks; the python SPIFFE client may not.
#[test]
fn policy_decides_on_the_executable_the_kernel_reports() {
    require_spiffe();
    let ws = Workspace::new();
    let policies = ws.dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let hash = sha256_of(&mayfly_binary().canonicalize().unwrap());
    std::fs::write(
        policies.join("local.cedar"),
        format!(
            r#"@id("only-the-mayfly-binary")
permit (principal, action == Action::"start_task", resource)
when {{ principal.hasTag("exe_sha256") && principal.getTag("exe_sha256") == "{hash}" }};
"#
        ),
    )
    .unwrap();
    let server = serve_configured(
        &ws,
        &format!("[policy]\ndir = {:?}\n", policies.display().to_string()),
    );
    let start = [
        "task",
        "start",
        "--purpose",
        "p",
        "--owner",
        "me",
        "--audience",
        "urn:demo",
    ];
    let (code, task) = json_of(attested_client(&ws, &server).args(start));
    assert_eq!(code, 0, "{task}");

    let svid_file = ws.dir.path().join("svid.jwt");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spiffe/workload_api_client.py");
    let status = StdCommand::new("python3")
        .arg(&script)
        .arg(socket(&ws))
        .arg("mayfly")
        .arg(&svid_file)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _, err) = stdout_of(
        attested_client(&ws, &server)
            .args(start)
            .arg("--identity-token-file")
            .arg(&svid_file),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("denied") || err.contains("not allowed"),
        "{err}"
    );
}

/// A socket another user could replace, or one already served, is refused
/// at start with what to do.
#[test]
fn unsafe_or_busy_sockets_are_refused_at_start() {
    let ws = Workspace::new();
    let open_dir = ws.dir.path().join("shared");
    std::fs::create_dir_all(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = ws.dir.path().join("mayfly.toml");
    std::fs::write(
        &config,
        format!(
            "[local]\nsocket = {:?}\n",
            open_dir.join("w.sock").display().to_string()
        ),
    )
    .unwrap();
    let port = free_port();
    let (code, _, err) = stdout_of(ws.mayfly().args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_ne!(code, 0);
    assert!(
        err.contains("writable by other users") && err.contains("chmod go-w"),
        "{err}"
    );
    assert!(!open_dir.join("w.sock").exists());

    // A second broker on the same data directory serves without the
    // socket when attestation is on by default, and refuses to start when
    // it was asked for.
    let _first = serve(&ws, None);
    let _second = serve(&ws, None);
    std::fs::write(&config, "[local]\nenabled = true\n").unwrap();
    let (code, _, err) = stdout_of(ws.mayfly().args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_ne!(code, 0);
    assert!(err.contains("already listens"), "{err}");
}

/// With `[local] group`, members of that group may connect too: the socket
/// is mode 0660 and owned by the group, named by name or by gid.
#[test]
fn a_group_socket_is_shared_with_that_group_only() {
    use std::os::unix::fs::MetadataExt as _;
    let ws = Workspace::new();
    let dir = ws.dir.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.join("w.sock");
    // A group in /etc/group by name (Debian's `daemon`, gid 1), else by gid.
    let named = std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid: u32 = f.nth(1)?.parse().ok()?;
            (name == "daemon").then(|| (name.to_owned(), gid))
        });
    let (group, gid) = named.unwrap_or_else(|| {
        let gid = std::fs::metadata(ws.dir.path()).unwrap().gid();
        (gid.to_string(), gid)
    });
    let _server = serve_configured(
        &ws,
        &format!(
            "[local]\nsocket = {:?}\ngroup = {group:?}\n",
            socket.display().to_string()
        ),
    );
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);

    // An unknown group is refused at start, with the setting named.
    let config = ws.dir.path().join("mayfly.toml");
    std::fs::write(
        &config,
        format!(
            "[local]\nsocket = {:?}\ngroup = \"no-such-group-here\"\n",
            dir.join("x.sock").display().to_string()
        ),
    )
    .unwrap();
    let (code, _, err) = stdout_of(ws.mayfly().args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_ne!(code, 0);
    assert!(
        err.contains("[local] group") && err.contains("no-such-group-here"),
        "{err}"
    );
}
