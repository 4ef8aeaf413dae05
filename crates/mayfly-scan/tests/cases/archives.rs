//! Inside zip, tar and tar.gz packages, nested, with bombs and corruption.

use std::fs;
use std::io::Write as _;

use mayfly_scan::scan::{NoProgress, ScanOptions};

use crate::common::{GITHUB, OPENAI, SLACK, scanner, scanner_with};

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(content).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn tar_gz_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (name, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *content).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn zip_tgz_and_nested_archives() {
    let dir = tempfile::tempdir().unwrap();
    let env = format!("# prod\nOPENAI_API_KEY={OPENAI}\n");
    fs::write(
        dir.path().join("dist.zip"),
        zip_of(&[("config/.env", env.as_bytes()), ("img.png", b"\x89PNG\0\0")]),
    )
    .unwrap();
    let js = format!("module.exports = {{ token: '{GITHUB}' }};\n");
    fs::write(
        dir.path().join("pkg-1.0.0.tgz"),
        tar_gz_of(&[("package/lib/index.js", js.as_bytes())]),
    )
    .unwrap();
    let inner = zip_of(&[(".env", format!("SLACK={SLACK}\n").as_bytes())]);
    fs::write(
        dir.path().join("outer.tar.gz"),
        tar_gz_of(&[("inner.jar", &inner)]),
    )
    .unwrap();

    let report = scanner().scan_paths(&[dir.path().to_path_buf()], &NoProgress);
    let prefix = format!("{}/", dir.path().display());
    let mut found: Vec<(String, &str, u64)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.location.path.strip_prefix(&prefix).unwrap().to_owned(),
                f.rule.id.as_str(),
                f.location.line,
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("dist.zip!config/.env".into(), "openai-project-key", 2),
            ("outer.tar.gz!inner.jar!.env".into(), "slack-bot-token", 1),
            (
                "pkg-1.0.0.tgz!package/lib/index.js".into(),
                "github-pat-classic",
                1
            ),
        ]
    );
    let env_finding = report
        .findings
        .iter()
        .find(|f| f.rule.id == "openai-project-key")
        .unwrap();
    assert_eq!(
        env_finding.location.surface,
        mayfly_scan::surface::Surface::Env
    );
    assert_eq!(report.stats.archives_scanned, 4);
    assert_eq!(report.stats.skipped_binary, 1);
}

#[test]
fn bombs_depth_and_corruption_are_bounded_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = vec![b'a'; 3 * 1024 * 1024];
    fs::write(dir.path().join("bomb.zip"), zip_of(&[("big.txt", &zeros)])).unwrap();
    let mut nested = zip_of(&[(".env", format!("T={GITHUB}\n").as_bytes())]);
    for level in 0..6 {
        nested = zip_of(&[(&format!("level{level}.zip"), &nested)]);
    }
    fs::write(dir.path().join("deep.zip"), nested).unwrap();
    let mut corrupt = zip_of(&[("a.txt", b"hello")]);
    corrupt.truncate(corrupt.len() / 2);
    fs::write(dir.path().join("corrupt.zip"), corrupt).unwrap();
    fs::write(dir.path().join("corrupt.tgz"), [0x1F, 0x8B, 8, 0, 1, 2, 3]).unwrap();

    let options = ScanOptions {
        max_file_size: 1024 * 1024,
        ..ScanOptions::default()
    };
    let report = scanner_with(options).scan_paths(&[dir.path().to_path_buf()], &NoProgress);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(
        report.stats.skipped_too_large.len(),
        1,
        "{:?}",
        report.stats.skipped_too_large
    );
    assert!(
        report.stats.skipped_too_large[0]
            .path
            .ends_with("bomb.zip!big.txt (decompressed)")
    );
    let errors: Vec<&str> = report
        .stats
        .errors
        .iter()
        .map(|e| e.error.as_str())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("nested more than")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("corrupt zip")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("gzip")), "{errors:?}");
}
