//! Exit codes, inputs, rules and configuration through the binary.

use std::fs;

use crate::common::{GITHUB, OPENAI, STRIPE, Workspace, json_of, stdout_of};

#[test]
fn exit_codes() {
    let ws = Workspace::new();
    ws.write("clean.txt", "nothing to see\n");
    let (code, out, _) = stdout_of(ws.mayfly().args(["scan", "."]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no secrets found"));
    ws.write("dirty.txt", &format!("t={GITHUB}\n"));
    assert_eq!(stdout_of(ws.mayfly().args(["scan", "."])).0, 1);
    let (code, out, _) = stdout_of(ws.mayfly().args(["scan", "clean.txt", "missing-dir"]));
    assert_eq!(code, 2);
    assert!(out.contains("not found: missing-dir"), "{out}");
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", "--format", "xml"]));
    assert_eq!(code, 2);
    assert!(err.contains("unknown format"), "{err}");
}

#[test]
fn stdin_is_scanned() {
    let ws = Workspace::new();
    let (code, json) = json_of(
        ws.mayfly()
            .args(["scan", "-", "--format", "json"])
            .write_stdin(format!("x\nSTRIPE={STRIPE}\n")),
    );
    assert_eq!(code, 1);
    let location = &json["secrets"][0]["locations"][0];
    assert_eq!(location["path"], "-");
    assert_eq!(location["line"], 2);
}

#[test]
fn fingerprint_key_is_created_once_per_installation() {
    let ws = Workspace::new();
    ws.write("a.txt", &format!("t={GITHUB}\n"));
    let run = || {
        let mut cmd = ws.mayfly();
        cmd.env_remove("MAYFLY_FINGERPRINT_KEY_FILE")
            .args(["scan", ".", "--format", "json"]);
        json_of(&mut cmd).1["secrets"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = run();
    assert_eq!(first, run());
    let key = ws.dir.path().join("home/fingerprint.key");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The shared key gives another fingerprint than the installation key.
    let (_, shared) = json_of(ws.mayfly().args(["scan", ".", "--format", "json"]));
    assert_ne!(shared["secrets"][0]["fingerprint"].as_str().unwrap(), first);
}

#[test]
fn user_rules_and_rule_checks() {
    let ws = Workspace::new();
    let rules = r#"
[[rules]]
id = "acme-internal-token"
name = "ACME internal token"
provider = "ACME"
description = "Token of ACME's internal API gateway."
keywords = ["acme_tk_"]
pattern = '''\b(?P<secret>acme_tk_[a-z0-9]{24})\b'''
severity = "high"
nhi = ["NHI2", "NHI7"]
examples = ["ACME=acme_tk_q8d7w2m4x9c1v6b3n5z0p2l7"]
negative_examples = ["acme_tk_short"]
"#;
    let path = ws.write("acme-rules.toml", rules);
    ws.write(
        "app.cfg",
        "gateway_token = acme_tk_q8d7w2m4x9c1v6b3n5z0p2l7\n", // mayfly:allow (test fixture)
    );
    let (code, json) = json_of(
        ws.mayfly()
            .args(["scan", "app.cfg", "--format", "json", "--rules"])
            .arg(&path),
    );
    assert_eq!(code, 1);
    assert_eq!(json["secrets"][0]["rule"]["id"], "acme-internal-token");
    let (code, out, _) = stdout_of(ws.mayfly().args(["rules", "check"]).arg(&path));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 rules, 0 failing examples"), "{out}");

    let broken = ws.write("broken.toml", &rules.replace("(?P<secret>", "(?P<secret"));
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", ".", "--rules"]).arg(&broken));
    assert_eq!(code, 2);
    assert!(
        err.contains("acme-internal-token") && err.contains("pattern"),
        "{err}"
    );
    let failing = ws.write(
        "failing.toml",
        &rules.replace(
            "negative_examples = [\"acme_tk_short\"]",
            "negative_examples = [\"acme_tk_aaaa1111bbbb2222cccc3333\"]",
        ),
    );
    let (code, out, _) = stdout_of(ws.mayfly().args(["rules", "check"]).arg(&failing));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("negative example 1 yields a finding"), "{out}");
}

#[test]
fn builtin_rules_listed_and_checked() {
    let ws = Workspace::new();
    let (code, out, _) = stdout_of(ws.mayfly().args(["rules", "list"]));
    assert_eq!(code, 0);
    let count: usize = out
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 120, "{count}");
    assert!(out.contains("github-pat-classic") && out.contains("NHI2"));
    let (code, out, _) = stdout_of(ws.mayfly().args(["rules", "check"]));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn config_disables_rules_by_path_and_rejects_typos() {
    let ws = Workspace::new();
    ws.write("src/app.py", &format!("OPENAI = \"{OPENAI}\"\n"));
    ws.write(
        "tests/fixtures/app.py",
        &format!("OPENAI = \"{OPENAI}\"\nT = \"{GITHUB}\"\n"),
    );
    ws.write(
        ".mayfly.toml",
        "[scan]\nmax_file_size = \"1M\"\n\n[[scan.path_rules]]\npaths = [\"tests/fixtures/**\"]\ndisable = [\"openai-*\"]\n",
    );
    let (code, json) = json_of(ws.mayfly().args(["scan", ".", "--format", "json"]));
    assert_eq!(code, 1);
    let paths: Vec<&str> = json["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["locations"].as_array().unwrap())
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths.iter().filter(|p| p.starts_with("tests/")).count(),
        1,
        "{paths:?}"
    );
    assert!(paths.contains(&"src/app.py"));
    assert_eq!(json["coverage"]["suppressed"]["path_rule"], 1);

    ws.write(".mayfly.toml", "[scan]\nmax_filesize = \"1M\"\n");
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", "."]));
    assert_eq!(code, 2);
    assert!(
        err.contains("max_filesize") && err.contains(".mayfly.toml"),
        "{err}"
    );
}

#[test]
fn oversized_files_are_reported() {
    let ws = Workspace::new();
    ws.write("big.txt", &format!("{}\nT={GITHUB}\n", "x".repeat(4096)));
    let (code, out, _) = stdout_of(ws.mayfly().args(["scan", ".", "--max-file-size", "1K"]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 file over the size limit") && out.contains("too large: big.txt"),
        "{out}"
    );
}

#[test]
fn mayflys_own_repository_scans_clean_with_its_config() {
    // The first command of the README, on Mayfly's own sources: the rule
    // files' examples are covered by .mayfly.toml, test fixtures by
    // `mayfly:allow`, so nothing is reported (target/ is left out: it holds
    // build output, not sources).
    let ws = Workspace::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (code, out, err) = stdout_of(ws.mayfly().current_dir(&root).args([
        "scan",
        "crates",
        "docs",
        "examples",
        "bench",
        "scripts",
        "fuzz/fuzz_targets",
        "README.md",
        "mayfly.example.toml",
        "--no-progress",
    ]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("no secrets found"), "{out}");
    assert!(out.contains("by path rules"), "{out}");
}

/// A value with no recognisable format, as a partner's API key looks.
const ACME: &str = "q7Vd2LmZx9TfR4wKp8sYb3Nc"; // mayfly:allow (test fixture)

fn add_custody(
    ws: &Workspace,
    server: &crate::server::Server,
    name: &str,
    provider: &str,
    value: &str,
) {
    let (code, _, err) = stdout_of(
        crate::server::client(ws, server)
            .args([
                "custody",
                "add",
                name,
                "--provider",
                provider,
                "--owner",
                "team-billing",
            ])
            .args(["--upstream", "https://api.acme.test", "--stdin"])
            .write_stdin(format!("{value}\n")),
    );
    assert_eq!(code, 0, "{err}");
}

/// Copies of found secrets and of custody values, on one store backend.
fn copies_and_custody(db: Option<&str>) {
    let ws = Workspace::new();
    let scan = |extra: &[&str]| {
        let mut cmd = ws.mayfly();
        cmd.args(["scan", "."]).args(extra);
        if let Some(db) = db {
            cmd.args(["--db", db]);
        }
        stdout_of(&mut cmd)
    };
    ws.write("app/.env", &format!("OPENAI_API_KEY={OPENAI}\n"));
    ws.write(
        "logs/run.log",
        &format!("retrying with key{OPENAI}, attempt 2\n"),
    );
    ws.write(
        "notes/handoff.md",
        &format!("use this for staging: {ACME}\n"),
    );

    // Before anything is in custody: the log's copy is found as a copy,
    // the partner key (no rule) is not found at all, and no store is made.
    let (code, out, err) = scan(&["--format", "json"]);
    assert_eq!(code, 1, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["summary"]["secrets"], 1, "{out}");
    let locations = json["secrets"][0]["locations"].as_array().unwrap();
    assert_eq!(locations.len(), 2, "{out}");
    let log = locations
        .iter()
        .find(|l| l["path"] == "logs/run.log")
        .unwrap();
    assert_eq!(log["found_by"], "copy");
    assert_eq!(log["column"], 18);
    if db.is_none() {
        assert!(
            !ws.dir.path().join("home/mayfly.db").exists(),
            "a scan made a store"
        );
    }

    let server = crate::server::serve(&ws, db);
    add_custody(&ws, &server, "openai", "openai", OPENAI);
    add_custody(&ws, &server, "acme-billing", "acme", ACME);
    drop(server);

    let (code, out, err) = scan(&["--format", "json"]);
    assert_eq!(code, 1, "{err}");
    assert!(!out.contains(OPENAI) && !out.contains(ACME) && !err.contains(ACME));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secrets = json["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2, "{out}");
    let openai = secrets.iter().find(|s| s["custody"] == "openai").unwrap();
    assert_eq!(openai["rule"]["id"], "openai-project-key");
    assert_eq!(openai["locations"].as_array().unwrap().len(), 2);
    let acme = secrets
        .iter()
        .find(|s| s["custody"] == "acme-billing")
        .unwrap();
    assert_eq!(acme["rule"]["id"], "custody-key-exposed");
    assert_eq!(acme["rule"]["provider"], "acme");
    assert_eq!(acme["locations"][0]["path"], "notes/handoff.md");
    assert_eq!(acme["locations"][0]["found_by"], "copy");

    let (_, text, _) = scan(&[]);
    assert!(
        text.contains("CUSTODY KEY EXPOSED: this value is held in custody as acme-billing")
            && text.contains("(copy: the value, where no rule matches)"),
        "{text}"
    );
    let (_, csv, _) = scan(&["--format", "csv"]);
    assert!(
        csv.lines().any(|l| l.ends_with(",copy,acme-billing,,")),
        "{csv}"
    );

    // --no-copies reports only what rules match.
    let (_, out, _) = scan(&["--format", "json", "--no-copies"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["summary"]["copies"], 1, "{out}");

    // Without the master key the values cannot be searched: said, not fatal.
    let key = ws.dir.path().join("home/broker-master.key");
    std::fs::rename(&key, ws.dir.path().join("moved.key")).unwrap();
    let (code, out, err) = scan(&["--format", "json"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("custody values not searched: 2 secrets in custody, but the master key is not readable here"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["summary"]["secrets"], 1, "{out}");
}

#[test]
fn copies_and_custody_keys_exposed_on_sqlite() {
    copies_and_custody(None);
}

#[test]
fn copies_and_custody_keys_exposed_on_postgres() {
    let (url, _drop) = crate::inventory::postgres_database();
    copies_and_custody(Some(&url));
}
