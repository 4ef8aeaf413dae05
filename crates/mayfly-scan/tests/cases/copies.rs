//! The copies pass: once a confident rule has found a secret, every other
//! occurrence of its value is a copy, wherever it stands; custody values
//! are searched the same way.

use std::path::Path;

use base64::Engine as _;
use mayfly_scan::copies::{CUSTODY_RULE_ID, CopySearch, CustodySecret, SecretBytes};
use mayfly_scan::finding::{FoundBy, group};
use mayfly_scan::scan::{NoProgress, ScanReport, Scanner};

use crate::common::{GITHUB, OPENAI, key, scanner};

/// Both passes over `root`, as `mayfly scan` runs them.
fn scan_with_copies(scanner: &mut Scanner, root: &Path, custody: Vec<CustodySecret>) -> ScanReport {
    let mut report = scanner.scan_paths(&[root.to_path_buf()], &NoProgress);
    let search = CopySearch::new(&report.findings, custody, &key()).unwrap();
    if let Some(search) = search {
        scanner.set_copy_search(Some(search));
        let again = scanner.scan_paths(&[root.to_path_buf()], &NoProgress);
        let search = scanner.set_copy_search(None).unwrap();
        search.merge(&mut report.findings, again.findings);
    }
    report
}

fn write(root: &Path, name: &str, text: &str) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn every_occurrence_of_a_found_value_is_a_copy_of_one_secret() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Found by its rule here...
    write(root, ".env", &format!("GITHUB_TOKEN={GITHUB}\n"));
    // ...and standing where no rule would match: prose, a log line, a CSV
    // cell, base64 at every alignment, a URL's query, an escaped JSON string.
    write(
        root,
        "notes/chat.md",
        &format!("ok so I pasted{GITHUB}into the box\n"),
    );
    let log_line = format!("2026-12-01 auth ok user=ci cred={GITHUB}x\n");
    write(root, "logs/app.log", &log_line);
    write(root, "data/export.csv", &format!("id,value\n7,{GITHUB}\n"));
    for (i, prefix) in ["", "a", "ab"].iter().enumerate() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{GITHUB}"));
        write(
            root,
            &format!("blob{i}.txt"),
            &format!("payload {encoded}\n"),
        );
    }
    let mut scanner = scanner();
    let report = scan_with_copies(&mut scanner, root, Vec::new());
    let github: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.rule.id == "github-pat-classic")
        .collect();
    let paths: Vec<&str> = github.iter().map(|f| f.location.path.as_str()).collect();
    for expected in [
        ".env",
        "chat.md",
        "app.log",
        "export.csv",
        "blob0.txt",
        "blob1.txt",
        "blob2.txt",
    ] {
        assert!(
            paths.iter().any(|p| p.ends_with(expected)),
            "{expected} missing from {paths:?}"
        );
    }
    // One secret, one fingerprint; the rule's match is not repeated.
    assert!(
        github
            .iter()
            .all(|f| f.fingerprint == github[0].fingerprint)
    );
    assert_eq!(github.len(), 7, "{paths:?}");
    let env = github
        .iter()
        .find(|f| f.location.path.ends_with(".env"))
        .unwrap();
    assert_eq!(env.location.found_by, FoundBy::Rule);
    let log = github
        .iter()
        .find(|f| f.location.path.ends_with("app.log"))
        .unwrap();
    assert_eq!(log.location.found_by, FoundBy::Copy);
    let column = log_line.find(GITHUB).unwrap() as u64 + 1;
    assert_eq!((log.location.line, log.location.column), (1, column));
    let groups = group(&report.findings);
    let secret = groups
        .iter()
        .find(|g| g.rule.id == "github-pat-classic")
        .unwrap();
    assert_eq!(secret.locations.len(), 7);
    // No plaintext anywhere in what a report shows.
    let shown = format!("{:?}", report.findings);
    assert!(
        !shown.contains(GITHUB),
        "a finding's Debug shows the secret"
    );
}

#[test]
fn custody_values_are_found_even_where_no_rule_matches() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A value with no recognisable format, held in custody.
    let value = "q7Vd2LmZx9TfR4wKp8sYb3Nc"; // mayfly:allow (test fixture)
    write(
        root,
        "transcript.jsonl",
        &format!("{{\"role\":\"user\",\"content\":\"use this for staging: {value}\"}}\n"),
    );
    // A migrated key pasted again, which its rule finds too.
    write(root, "app/.env", &format!("OPENAI_API_KEY={OPENAI}\n"));
    let custody = vec![
        CustodySecret {
            name: "billing-api".into(),
            provider: "Acme".into(),
            value: SecretBytes::new(value.as_bytes().to_vec()),
        },
        CustodySecret {
            name: "openai".into(),
            provider: "OpenAI".into(),
            value: SecretBytes::new(OPENAI.as_bytes().to_vec()),
        },
    ];
    let mut scanner = scanner();
    let report = scan_with_copies(&mut scanner, root, custody);
    assert_eq!(report.findings.len(), 2, "{:?}", report.findings);
    let acme = report
        .findings
        .iter()
        .find(|f| f.location.path.ends_with("transcript.jsonl"))
        .unwrap();
    assert_eq!(acme.rule.id, CUSTODY_RULE_ID);
    assert_eq!(acme.rule.provider, "Acme");
    assert_eq!(acme.custody.as_deref(), Some("billing-api"));
    assert_eq!(acme.location.found_by, FoundBy::Copy);
    let openai = report
        .findings
        .iter()
        .find(|f| f.location.path.ends_with(".env"))
        .unwrap();
    assert_eq!(openai.rule.id, "openai-project-key");
    assert_eq!(openai.custody.as_deref(), Some("openai"));
    assert_eq!(openai.location.found_by, FoundBy::Rule);
}

#[test]
fn inline_allows_and_short_values_hold_in_the_copies_pass() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a.env", &format!("GITHUB_TOKEN={GITHUB}\n"));
    write(
        root,
        "b.txt",
        &format!("reviewed: {GITHUB} # mayfly:allow (rotated)\n"),
    );
    let custody = vec![CustodySecret {
        name: "pin".into(),
        provider: "Acme".into(),
        value: SecretBytes::new(b"1234".to_vec()),
    }];
    write(root, "c.txt", "code 1234 and 1234\n");
    let mut scanner = scanner();
    let report = scan_with_copies(&mut scanner, root, custody);
    let paths: Vec<&str> = report
        .findings
        .iter()
        .map(|f| f.location.path.as_str())
        .collect();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(paths[0].ends_with("a.env"));
    // Counted once, by the first pass.
    assert_eq!(report.stats.suppressed.inline, 1);
}
