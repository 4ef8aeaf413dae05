//! Baselines, ignore files and inline allows suppress by the secret, so
//! moving or copying a line neither resurfaces nor hides anything else.

use std::fs;

use crate::common::{GITHUB, OPENAI, STRIPE, Workspace, json_of, stdout_of};

fn rules_found(json: &serde_json::Value) -> Vec<String> {
    json["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rule"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn baseline_survives_moves_and_copies() {
    let ws = Workspace::new();
    ws.write("config/app.env", &format!("OPENAI_API_KEY={OPENAI}\n"));
    let baseline = ws.dir.path().join("baseline.json");
    let (code, _, err) = stdout_of(
        ws.mayfly()
            .args(["scan", ".", "--write-baseline"])
            .arg(&baseline),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!fs::read_to_string(&baseline).unwrap().contains(OPENAI));

    // Move the secret to another line of another file and copy it again.
    fs::remove_file(ws.repo().join("config/app.env")).unwrap();
    ws.write(
        "deploy/prod.env",
        &format!("# moved\n\nOPENAI_API_KEY={OPENAI}\n"),
    );
    ws.write("src/client.py", &format!("KEY = '{OPENAI}'\n"));
    let (code, json) = json_of(
        ws.mayfly()
            .args(["scan", ".", "--format", "json", "--baseline"])
            .arg(&baseline),
    );
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["coverage"]["suppressed"]["baseline"], 2);

    // A new secret still surfaces.
    ws.write("src/pay.py", &format!("STRIPE = '{STRIPE}'\n"));
    let (code, json) = json_of(
        ws.mayfly()
            .args(["scan", ".", "--format", "json", "--baseline"])
            .arg(&baseline),
    );
    assert_eq!(code, 1);
    assert_eq!(rules_found(&json), vec!["stripe-live-secret-key"]);

    // A baseline written under another key is refused, not silently ignored.
    let other_key = ws.dir.path().join("other.key");
    fs::write(&other_key, "ffeeddccbbaa99887766554433221100").unwrap();
    let (code, _, err) = stdout_of(
        ws.mayfly()
            .args(["scan", ".", "--baseline"])
            .arg(&baseline)
            .arg("--fingerprint-key")
            .arg(&other_key),
    );
    assert_eq!(code, 2);
    assert!(err.contains("fingerprint key"), "{err}");
}

#[test]
fn ignore_file_by_fingerprint_with_reason() {
    let ws = Workspace::new();
    ws.write("a.py", &format!("A = '{OPENAI}'\nB = '{GITHUB}'\n"));
    let (_, json) = json_of(ws.mayfly().args(["scan", ".", "--format", "json"]));
    let openai = json["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["rule"]["id"] == "openai-project-key")
        .unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.write(
        ".mayflyignore",
        &format!(
            "# reviewed by security\n{} revoked on 2026-11-01, kept as a test fixture\n",
            &openai[..16]
        ),
    );
    let (code, json) = json_of(ws.mayfly().args(["scan", ".", "--format", "json"]));
    assert_eq!(code, 1);
    assert_eq!(rules_found(&json), vec!["github-pat-classic"]);
    assert_eq!(json["coverage"]["suppressed"]["ignore_file"], 1);

    ws.write(".mayflyignore", &format!("{openai}\n"));
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", "."]));
    assert_eq!(code, 2);
    assert!(
        err.contains(".mayflyignore:1") && err.contains("why"),
        "{err}"
    );
}

#[test]
fn inline_allow_suppresses_one_line_only() {
    let ws = Workspace::new();
    ws.write(
        "t.py",
        &format!("A = '{GITHUB}'  # mayfly:allow test fixture\nB = '{STRIPE}'\n"),
    );
    let (code, json) = json_of(ws.mayfly().args(["scan", ".", "--format", "json"]));
    assert_eq!(code, 1);
    assert_eq!(rules_found(&json), vec!["stripe-live-secret-key"]);
    assert_eq!(json["coverage"]["suppressed"]["inline"], 1);
}
