//! The broker's OpenAPI document against a live `mayfly serve`:
//! schemathesis (PyPI) generates requests for every operation from the
//! document the server itself serves at `/openapi.json`, with real
//! credentials for each security scheme, and checks that no answer is a
//! server error or departs from the document (status, content type,
//! headers, body schema), and that no operation answers without its
//! credentials.

use std::process::Command as StdCommand;

use crate::common::{OPENAI, Workspace, stdout_of};
use crate::server::{client, free_port, get, mint, serve_with};

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,ignored_auth";

fn require_schemathesis() {
    let found = StdCommand::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "schemathesis is needed: python3 -m pip install schemathesis (scripts/test installs it)"
    );
}

fn document_holds_against_a_live_broker(db: Option<&str>) {
    require_schemathesis();
    let ws = Workspace::new();
    let dir = ws.dir.path();
    std::fs::write(dir.join("rs.secret"), "rs-secret-0123456789abcdef\n").unwrap();
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[[resource_server]]\nclient_id = \"api\"\naudiences = [\"https://api.example\"]\nsecret_file = \"{}\"\n",
            dir.join("rs.secret").display()
        ),
    )
    .unwrap();
    let server = serve_with(
        &ws,
        db,
        free_port(),
        &["--config", config.to_str().unwrap()],
    );
    mint(&ws, "local:acme/app");

    // Something for each operation to find: a live task, a credential of
    // it, and a secret in custody.
    let task = crate::broker::deploy_task(client(&ws, &server));
    let (code, access, err) = stdout_of(client(&ws, &server).args([
        "token",
        "exchange",
        "--task",
        &task,
        "--audience",
        "https://api.example",
        "--raw",
    ]));
    assert_eq!(code, 0, "{err}");
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
            ])
            .args(["--from-env", "OPENAI_API_KEY"])
            .env("OPENAI_API_KEY", OPENAI),
    );
    assert_eq!(code, 0, "{err}");

    let identity = std::fs::read_to_string(dir.join("identity.jwt")).unwrap();
    let admin = std::fs::read_to_string(dir.join("home/admin-token")).unwrap();
    let settings = dir.join("schemathesis.toml");
    std::fs::write(
        &settings,
        format!(
            "[auth.openapi]\n\
             adminToken = {{ bearer = \"{admin}\" }}\n\
             workloadIdentity = {{ bearer = \"{identity}\" }}\n\
             resourceServerBasic = {{ username = \"api\", password = \"rs-secret-0123456789abcdef\" }}\n\
             accessToken = {{ bearer = \"{access}\" }}\n\
             [parameters]\n\
             \"path.id\" = \"{task}\"\n\
             \"path.name\" = \"openai\"\n\
             \"path.entry\" = \"openai\"\n",
            admin = admin.trim(),
            identity = identity.trim(),
            access = access.trim(),
        ),
    )
    .unwrap();
    // The document the server serves, as schemathesis reads it (from a
    // URL it would skip the operation that serves the document itself).
    let (status, document) = get(&format!("{}/openapi.json", server.url));
    assert_eq!(status, 200);
    let document_file = dir.join("openapi.json");
    std::fs::write(&document_file, document.to_string()).unwrap();
    let output = StdCommand::new("python3")
        .current_dir(dir)
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(&settings)
        .arg("run")
        .arg(&document_file)
        .args(["--url", &server.url])
        .args(["--checks", CHECKS, "--phases", "examples,coverage,fuzzing"])
        // One worker: with two threads, hypothesis parses source files
        // concurrently, and CPython 3.11's parser can then fail with "AST
        // constructor recursion depth mismatch", a tool error that says
        // nothing about the server.
        .args([
            "--max-examples",
            "20",
            "--workers",
            "1",
            "--request-timeout",
            "20",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    let operations = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().keys())
        .filter(|key| ["get", "post", "put", "patch", "delete"].contains(&key.as_str()))
        .count();
    assert!(
        report.contains(&format!("Tested: {operations}")),
        "every one of the {operations} operations is tested: {report}"
    );
}

#[test]
fn schemathesis_finds_the_document_true_on_sqlite() {
    document_holds_against_a_live_broker(None);
}

#[test]
fn schemathesis_finds_the_document_true_on_postgres() {
    let (url, _db) = crate::inventory::postgres_database();
    document_holds_against_a_live_broker(Some(&url));
}
