//! Databases, streams, large files and bad input.

use std::fs;
use std::io::{Seek as _, SeekFrom, Write as _};

use mayfly_scan::scan::{NoProgress, ScanOptions};
use mayfly_scan::source::{CHUNK, OVERLAP};
use mayfly_scan::surface::Surface;

use crate::common::{GITHUB, OPENAI, SLACK, STRIPE, ids, scanner, scanner_with};

#[test]
fn sqlite_text_cells_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wizard.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE connectors (id INTEGER PRIMARY KEY, name TEXT, config TEXT, blob BLOB);
         CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO connectors (id, name, config, blob) VALUES (7, 'slack', ?1, ?2)",
        (
            format!("{{\n  \"token\": \"{SLACK}\"\n}}"),
            format!("stripe={STRIPE}").into_bytes(),
        ),
    )
    .unwrap();
    conn.execute("INSERT INTO kv VALUES ('openai', ?1)", [OPENAI])
        .unwrap();
    drop(conn);
    let report = scanner().scan_paths(&[dir.path().to_path_buf()], &NoProgress);
    assert_eq!(report.stats.databases_scanned, 1);
    let mut cells: Vec<(String, String, i64, u64)> = report
        .findings
        .iter()
        .map(|f| {
            assert_eq!(f.location.surface, Surface::Database);
            let cell = f.location.cell.as_ref().unwrap();
            (
                cell.table.clone(),
                cell.column.clone(),
                cell.row,
                f.location.line,
            )
        })
        .collect();
    cells.sort();
    assert_eq!(
        cells,
        vec![
            ("connectors".into(), "blob".into(), 7, 1),
            ("connectors".into(), "config".into(), 7, 2),
            ("kv".into(), "v".into(), 1, 1),
        ]
    );
}

#[test]
fn corrupt_database_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 4096));
    fs::write(dir.path().join("broken.db"), bytes).unwrap();
    fs::write(dir.path().join("ok.txt"), format!("t={GITHUB}\n")).unwrap();
    let report = scanner().scan_paths(&[dir.path().to_path_buf()], &NoProgress);
    assert_eq!(ids(&report.findings), vec!["github-pat-classic"]);
    assert_eq!(report.stats.errors.len(), 1, "{:?}", report.stats.errors);
    assert!(report.stats.errors[0].path.ends_with("broken.db"));
}

#[test]
fn chunked_reading_keeps_lines_and_boundary_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.log");
    let mut file = fs::File::create(&path).unwrap();
    let line = "2024-05-01T00:00:00Z INFO request served in 12ms from cache node\n";
    let mut written = 0usize;
    let mut lines = 0u64;
    // Put a secret so that it straddles the first chunk boundary.
    while written + line.len() < CHUNK - 20 {
        file.write_all(line.as_bytes()).unwrap();
        written += line.len();
        lines += 1;
    }
    let boundary_line = format!("{}token={GITHUB}\n", " ".repeat(CHUNK - 20 - written - 6));
    file.write_all(boundary_line.as_bytes()).unwrap();
    lines += 1;
    let boundary_line_no = lines;
    for _ in 0..(40 * 1024 * 1024 / line.len()) {
        file.write_all(line.as_bytes()).unwrap();
        lines += 1;
    }
    file.write_all(format!("key={OPENAI}\n").as_bytes())
        .unwrap();
    lines += 1;
    drop(file);
    assert!(fs::metadata(&path).unwrap().len() > (CHUNK * 4 + OVERLAP) as u64);
    let report = scanner().scan_paths(&[path], &NoProgress);
    let found: Vec<(&str, u64)> = report
        .findings
        .iter()
        .map(|f| (f.rule.id.as_str(), f.location.line))
        .collect();
    assert_eq!(
        found,
        vec![
            ("github-pat-classic", boundary_line_no),
            ("openai-project-key", lines)
        ]
    );
}

#[test]
fn huge_sparse_file_is_skipped_by_size_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let mut file = fs::File::create(&path).unwrap();
    file.seek(SeekFrom::Start(5 * 1024 * 1024 * 1024)).unwrap();
    file.write_all(b"\n").unwrap();
    drop(file);
    let report = scanner().scan_paths(&[dir.path().to_path_buf()], &NoProgress);
    assert_eq!(report.stats.skipped_too_large.len(), 1);
    assert!(report.stats.skipped_too_large[0].size > 5 * 1024 * 1024 * 1024);
    // Raising the limit streams it in bounded memory; zeros are binary.
    let options = ScanOptions {
        max_file_size: u64::MAX,
        ..ScanOptions::default()
    };
    let report = scanner_with(options).scan_paths(&[dir.path().to_path_buf()], &NoProgress);
    assert_eq!(report.stats.skipped_binary, 1);
}

#[test]
fn invalid_utf8_utf16_missing_paths_and_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut latin1 = b"caf\xe9 \xff\xfe token=".to_vec();
    latin1.extend_from_slice(GITHUB.as_bytes());
    latin1.push(b'\n');
    fs::write(root.join("latin1.txt"), latin1).unwrap();
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in format!("SLACK={SLACK}\r\n").encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    fs::write(root.join("windows.ini"), utf16).unwrap();
    fs::write(root.join("image.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(root, root.join("loop")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("dangling")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let missing = root.join("does-not-exist");
    let options = ScanOptions {
        follow_symlinks: true,
        ..ScanOptions::default()
    };
    let report = scanner_with(options).scan_paths(&[root.to_path_buf(), missing], &NoProgress);
    let mut found = ids(&report.findings);
    found.sort();
    assert_eq!(found, vec!["github-pat-classic", "slack-bot-token"]);
    assert_eq!(report.stats.skipped_binary, 1);
    assert_eq!(report.stats.missing.len(), 1);
    #[cfg(unix)]
    {
        assert_eq!(report.stats.skipped_special, 1, "{:?}", report.stats);
        // The loop and the dangling link are reported, the scan goes on.
        assert!(report.stats.errors.len() >= 2, "{:?}", report.stats.errors);
    }
}

#[test]
fn stdin_like_streams_are_scanned() {
    let text = format!("line\nexport STRIPE={STRIPE}\n");
    let report = scanner().scan_reader("-", &mut text.as_bytes());
    assert_eq!(ids(&report.findings), vec!["stripe-live-secret-key"]);
    assert_eq!(report.findings[0].location.line, 2);
    assert_eq!(report.findings[0].location.path, "-");
}
