//! The copies pass: once a confident rule has found a secret, every other
//! occurrence of its value is a copy, wherever it stands; custody values
//! are searched the same way.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use mayfly_scan::copies::{CUSTODY_RULE_ID, CopySearch, CustodySecret, SecretBytes};
use mayfly_scan::finding::{FoundBy, group};
use mayfly_scan::scan::{NoProgress, ScanReport, Scanner};

use crate::common::{AWS_SECRET, GITHUB, OPENAI, STRIPE, key, scanner};

/// Both passes over `root`, as `mayfly scan` runs them: the copies pass
/// reads only the files the first read's sketch cannot rule out. It must
/// find what reading every file again finds.
fn scan_with_copies(scanner: &mut Scanner, root: &Path, custody: Vec<CustodySecret>) -> ScanReport {
    let (report, _) = scan_both_ways(scanner, root, custody);
    report
}

/// [`scan_with_copies`], checked against the copies pass over every file;
/// also returns the files the sketch left to read (`None`: all of them).
fn scan_both_ways(
    scanner: &mut Scanner,
    root: &Path,
    custody: Vec<CustodySecret>,
) -> (ScanReport, Option<Vec<PathBuf>>) {
    let roots = [root.to_path_buf()];
    let (mut report, sketch) = scanner.scan_paths_sketched(&roots, &NoProgress);
    let Some(search) = CopySearch::new(&report.findings, custody, &key()).unwrap() else {
        return (report, Some(Vec::new()));
    };
    let to_read = sketch.files_to_read(&search);
    scanner.set_copy_search(Some(search));
    let everything = scanner.scan_paths(&roots, &NoProgress);
    let sketched = match &to_read {
        Some(files) => scanner.scan_files(files),
        None => scanner.scan_paths(&roots, &NoProgress),
    };
    let search = scanner.set_copy_search(None).unwrap();
    let places = |r: &ScanReport| -> Vec<String> {
        r.findings
            .iter()
            .map(|f| format!("{:?} {} {}", f.location, f.rule.id, f.fingerprint))
            .collect()
    };
    assert_eq!(places(&sketched), places(&everything));
    search.merge(&mut report.findings, sketched.findings);
    (report, to_read)
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

#[test]
fn the_copies_pass_reads_again_only_the_files_that_may_hold_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "app/.env",
        &format!("GITHUB_TOKEN={GITHUB}\nSTRIPE_KEY={STRIPE}\n"),
    );
    // Copies where no rule matches: a sentence, an escaped JSON string, a
    // URL's query, base64, inside a zip, in a SQLite cell, in UTF-16.
    write(root, "notes/a.md", &format!("staging uses{GITHUB}today\n"));
    write(
        root,
        "notes/b.json",
        &format!("{{\"k\":\"{}\"}}\n", AWS_SECRET.replace('/', "\\/")),
    );
    write(
        root,
        "app/.aws",
        &format!("aws_secret_access_key = {AWS_SECRET}\n"),
    );
    write(
        root,
        "logs/c.log",
        &format!("GET /cb?token={} 200\n", AWS_SECRET.replace('/', "%2F")),
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("x{STRIPE}"));
    write(root, "d.txt", &format!("blob: {encoded}\n"));
    // A custody value has no format a rule knows: only the copies pass
    // finds it inside the zip, the database and the UTF-16 file.
    let held = "q7Vd2LmZx9TfR4wKp8sYb3Nc"; // mayfly:allow (test fixture)
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("inner/readme.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, format!("pasted {held} here").as_bytes()).unwrap();
    std::fs::write(root.join("e.zip"), zip.finish().unwrap().into_inner()).unwrap();
    let db = rusqlite::Connection::open(root.join("f.db")).unwrap();
    db.execute_batch(&format!(
        "CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('see {held} above');"
    ))
    .unwrap();
    drop(db);
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            format!("use {held}\r\n")
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    std::fs::write(root.join("g.txt"), utf16).unwrap();
    // Files that cannot hold a copy, long tokens and all.
    for i in 0..40 {
        write(
            root,
            &format!("src/m{i}.rs"),
            &format!(
                "// sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85{i}\nfn f{i}() -> u32 {{ {i} }}\n"
            ),
        );
    }
    let custody = vec![CustodySecret {
        name: "billing-api".into(),
        provider: "Acme".into(),
        value: SecretBytes::new(held.as_bytes().to_vec()),
    }];
    let mut scanner = scanner();
    let (report, to_read) = scan_both_ways(&mut scanner, root, custody);
    let mut to_read: Vec<String> = to_read
        .expect("every form can be ruled out by a sketch")
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    to_read.sort();
    assert_eq!(
        to_read,
        [
            "app/.aws",
            "app/.env",
            "d.txt",
            "e.zip",
            "f.db",
            "g.txt",
            "logs/c.log",
            "notes/a.md",
            "notes/b.json"
        ]
    );
    // Found by the copies pass (or, where a decoder lets a rule see the
    // value, by the first).
    let found: Vec<String> = report
        .findings
        .iter()
        .map(|f| f.location.path.clone())
        .collect();
    for expected in [
        "notes/a.md",
        "notes/b.json",
        "logs/c.log",
        "d.txt",
        "e.zip!inner/readme.txt",
        "f.db",
        "g.txt",
    ] {
        assert!(
            found.iter().any(|c| c.ends_with(expected)),
            "{expected} missing from {found:?}"
        );
    }
    for held_in in ["e.zip!inner/readme.txt", "f.db", "g.txt"] {
        let copy = report
            .findings
            .iter()
            .find(|f| f.location.path.ends_with(held_in))
            .unwrap();
        assert_eq!(copy.location.found_by, FoundBy::Copy);
        assert_eq!(copy.custody.as_deref(), Some("billing-api"));
    }
}

#[test]
fn a_value_the_sketch_cannot_rule_out_has_every_file_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // No 16 token characters in a row: `:` and `@` every few bytes.
    let value = "pw:9xQ@v7:Lm2@Zt4:Rw8@Vb1:Kq5@"; // mayfly:allow (test fixture)
    write(
        root,
        "a.txt",
        &format!("the vault note says {value} yesterday\n"),
    );
    write(root, "b.rs", "fn main() {}\n");
    let custody = vec![CustodySecret {
        name: "vault".into(),
        provider: "Acme".into(),
        value: SecretBytes::new(value.as_bytes().to_vec()),
    }];
    let mut scanner = scanner();
    let (report, to_read) = scan_both_ways(&mut scanner, root, custody);
    assert!(to_read.is_none());
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].rule.id, CUSTODY_RULE_ID);
}
