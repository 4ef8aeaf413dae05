//! Every output format, as snapshots, and SARIF against the official schema.

use std::process::Command as Process;

use crate::common::{OPENAI, SLACK, STRIPE, Workspace, stdout_of};

fn run(format: &str) -> (i32, String) {
    let ws = Workspace::new();
    ws.standard();
    let (code, out, _) =
        stdout_of(
            ws.mayfly()
                .args(["scan", ".", "--no-progress", "--format", format]),
        );
    for secret in [OPENAI, SLACK, STRIPE] {
        assert!(!out.contains(secret), "{format} output leaks a secret");
    }
    (code, out)
}

#[test]
fn text_report_groups_copies() {
    let (code, out) = run("text");
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn json_report() {
    let (code, out) = run("json");
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn csv_report() {
    let (code, out) = run("csv");
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn sarif_report_is_valid() {
    let (code, out) = run("sarif");
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.sarif");
    std::fs::write(&report, &out).unwrap();
    let schema =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif-schema-2.1.0.json");
    let check = "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 jsonschema.validate(json.load(open(sys.argv[2])), schema, cls=jsonschema.Draft7Validator)\n\
                 print('valid')\n";
    let output = Process::new("python3")
        .arg("-c")
        .arg(check)
        .arg(&schema)
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "SARIF does not validate (scripts/test installs jsonschema):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn show_secrets_prints_plaintext_only_when_asked() {
    let ws = Workspace::new();
    ws.standard();
    for format in ["text", "json", "sarif", "csv"] {
        let (_, out, _) =
            stdout_of(
                ws.mayfly()
                    .args(["scan", ".", "--show-secrets", "--format", format]),
            );
        assert!(
            out.contains(OPENAI) && out.contains(SLACK),
            "{format} does not show secrets"
        );
    }
}
