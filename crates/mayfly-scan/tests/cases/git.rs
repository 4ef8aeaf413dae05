//! Git history, staged changes and ranges, on real repositories made with git.

use std::fs;
use std::path::Path;
use std::process::Command;

use mayfly_scan::git::GitSelection;
use mayfly_scan::scan::NoProgress;

use crate::common::{GITHUB, OPENAI, SLACK, STRIPE, scanner};

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Alice Dev",
            "-c",
            "user.email=alice@acme.test",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_AUTHOR_DATE", "2024-03-01T10:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-03-01T10:00:00Z")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn commit_file(dir: &Path, path: &str, content: &str, message: &str) -> String {
    let full = dir.join(path);
    fs::create_dir_all(full.parent().unwrap()).unwrap();
    fs::write(full, content).unwrap();
    git(dir, &["add", path]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// main: add token, add .env, remove token; tag; a merged feature branch; a stash.
fn history_repo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    let introduced = commit_file(
        repo,
        "app/config.py",
        &format!("DEBUG = False\nTOKEN = \"{GITHUB}\"\n"),
        "add config",
    );
    commit_file(
        repo,
        ".env",
        &format!("OPENAI_API_KEY={OPENAI}\n"),
        "add env",
    );
    git(repo, &["tag", "v1"]);
    commit_file(
        repo,
        "app/config.py",
        "DEBUG = False\nTOKEN = os.environ['TOKEN']\n",
        "remove token",
    );
    git(repo, &["checkout", "-q", "-b", "feature"]);
    commit_file(
        repo,
        "pay/stripe.py",
        &format!("KEY = '{STRIPE}'\n"),
        "payments",
    );
    git(repo, &["checkout", "-q", "main"]);
    commit_file(repo, "README.md", "hello\n", "readme");
    git(
        repo,
        &["merge", "-q", "--no-ff", "-m", "merge feature", "feature"],
    );
    fs::write(repo.join("README.md"), format!("hello\nslack {SLACK}\n")).unwrap();
    git(repo, &["stash", "-q"]);
    (dir, introduced)
}

#[test]
fn history_finds_removed_merged_tagged_and_stashed_secrets() {
    let (dir, introduced) = history_repo();
    let report = scanner()
        .scan_git(dir.path(), &GitSelection::default(), &NoProgress)
        .unwrap();
    let mut found: Vec<(&str, &str, bool)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.rule.id.as_str(),
                f.location.path.as_str(),
                f.location.present_at_head.unwrap(),
            )
        })
        .collect();
    found.sort();
    let expected_prefix = format!("{}/", dir.path().display());
    let strip = |p: &str| p.strip_prefix(&expected_prefix).unwrap_or(p).to_owned();
    let found: Vec<(String, String, bool)> = found
        .into_iter()
        .map(|(r, p, h)| (r.to_owned(), strip(p), h))
        .collect();
    assert_eq!(
        found,
        vec![
            ("github-pat-classic".into(), "app/config.py".into(), false),
            ("openai-project-key".into(), ".env".into(), true),
            ("slack-bot-token".into(), "README.md".into(), false),
            (
                "stripe-live-secret-key".into(),
                "pay/stripe.py".into(),
                true
            ),
        ]
    );
    let github = report
        .findings
        .iter()
        .find(|f| f.rule.id == "github-pat-classic")
        .unwrap();
    let commit = github.location.commit.as_ref().unwrap();
    assert_eq!(commit.id, introduced);
    assert_eq!(commit.author, "Alice Dev");
    assert_eq!(commit.email, "alice@acme.test");
    assert_eq!(commit.date, "2024-03-01T10:00:00Z");
    assert_eq!(github.location.line, 2);
}

#[test]
fn bare_mirrors_ranges_branches_and_limits() {
    let (dir, _) = history_repo();
    let bare = tempfile::tempdir().unwrap();
    git(
        bare.path(),
        &[
            "clone",
            "-q",
            "--mirror",
            dir.path().to_str().unwrap(),
            "mirror.git",
        ],
    );
    let mirror = bare.path().join("mirror.git");
    let report = scanner()
        .scan_git(&mirror, &GitSelection::default(), &NoProgress)
        .unwrap();
    // A mirror copies every ref, the stash included.
    assert_eq!(report.findings.len(), 4, "{:?}", report.findings);

    let last = GitSelection {
        range: Some("v1..main".into()),
        ..GitSelection::default()
    };
    let report = scanner().scan_git(&mirror, &last, &NoProgress).unwrap();
    let ids: Vec<&str> = report.findings.iter().map(|f| f.rule.id.as_str()).collect();
    assert_eq!(ids, vec!["stripe-live-secret-key"]);

    let only_v1 = GitSelection {
        branches: vec!["v1".into()],
        ..GitSelection::default()
    };
    let report = scanner().scan_git(&mirror, &only_v1, &NoProgress).unwrap();
    assert_eq!(report.findings.len(), 2);

    let one = GitSelection {
        max_commits: Some(1),
        branches: vec!["main".into()],
        ..GitSelection::default()
    };
    // The newest commit of main is the merge: it brings the feature's file.
    let report = scanner().scan_git(&mirror, &one, &NoProgress).unwrap();
    let ids: Vec<&str> = report.findings.iter().map(|f| f.rule.id.as_str()).collect();
    assert_eq!(ids, vec!["stripe-live-secret-key"]);
    let later = GitSelection {
        since: Some(1_900_000_000),
        ..GitSelection::default()
    };
    assert!(
        scanner()
            .scan_git(&mirror, &later, &NoProgress)
            .unwrap()
            .findings
            .is_empty()
    );
    let bad = GitSelection {
        branches: branch_missing(),
        ..GitSelection::default()
    };
    let err = scanner().scan_git(&mirror, &bad, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("no-such-branch"), "{err}");
}

fn branch_missing() -> Vec<String> {
    vec!["no-such-branch".into()]
}

#[test]
fn shallow_clones_scan_what_they_have() {
    let (dir, _) = history_repo();
    let clones = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    git(
        clones.path(),
        &["clone", "-q", "--depth", "1", &url, "shallow"],
    );
    let report = scanner()
        .scan_git(
            &clones.path().join("shallow"),
            &GitSelection::default(),
            &NoProgress,
        )
        .unwrap();
    let mut ids: Vec<&str> = report.findings.iter().map(|f| f.rule.id.as_str()).collect();
    ids.sort();
    // The removed token's commits were not fetched; what HEAD holds is found.
    assert_eq!(ids, vec!["openai-project-key", "stripe-live-secret-key"]);
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.location.present_at_head == Some(true))
    );
}

#[test]
fn staged_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    commit_file(
        repo,
        "old.py",
        &format!("T = '{GITHUB}'\n"),
        "old secret, already committed",
    );
    fs::write(repo.join("new.py"), format!("\nKEY = '{STRIPE}'\n")).unwrap();
    git(repo, &["add", "new.py"]);
    fs::write(repo.join("unstaged.py"), format!("K = '{OPENAI}'\n")).unwrap();
    let report = scanner().scan_staged(repo).unwrap();
    let found: Vec<(&str, &str, u64)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.rule.id.as_str(),
                f.location.path.rsplit('/').next().unwrap(),
                f.location.line,
            )
        })
        .collect();
    assert_eq!(found, vec![("stripe-live-secret-key", "new.py", 2)]);
}

#[test]
fn broken_repositories_are_errors_or_reports_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        scanner()
            .scan_git(dir.path(), &GitSelection::default(), &NoProgress)
            .is_err()
    );
    // An empty repository has no history.
    git(dir.path(), &["init", "-q"]);
    assert!(
        scanner()
            .scan_git(dir.path(), &GitSelection::default(), &NoProgress)
            .unwrap()
            .findings
            .is_empty()
    );
    // A missing blob is reported and the rest is scanned.
    commit_file(dir.path(), "a.py", &format!("T = '{GITHUB}'\n"), "a");
    commit_file(dir.path(), "b.py", &format!("K = '{STRIPE}'\n"), "b");
    let blob = git(dir.path(), &["rev-parse", "HEAD:a.py"]);
    let object = dir
        .path()
        .join(".git/objects")
        .join(&blob[..2])
        .join(&blob[2..]);
    fs::remove_file(object).unwrap();
    let report = scanner()
        .scan_git(dir.path(), &GitSelection::default(), &NoProgress)
        .unwrap();
    let ids: Vec<&str> = report.findings.iter().map(|f| f.rule.id.as_str()).collect();
    assert_eq!(ids, vec!["stripe-live-secret-key"]);
    assert_eq!(report.stats.errors.len(), 1, "{:?}", report.stats.errors);
}

#[test]
fn archives_committed_to_history_are_opened() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    commit_file(repo, "README.md", "# app\n", "start");
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file("config/.env", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut writer, format!("OPENAI_API_KEY={OPENAI}\n").as_bytes())
        .unwrap();
    let zip = writer.finish().unwrap().into_inner();
    fs::write(repo.join("dist.zip"), zip).unwrap();
    git(repo, &["add", "dist.zip"]);
    git(repo, &["commit", "-q", "-m", "ship a build"]);
    let introduced = git(repo, &["rev-parse", "HEAD"]);
    git(repo, &["rm", "-q", "dist.zip"]);
    git(repo, &["commit", "-q", "-m", "remove the build"]);

    let report = scanner()
        .scan_git(repo, &GitSelection::default(), &NoProgress)
        .unwrap();
    assert_eq!(report.findings.len(), 1, "{:?}", report.stats.errors);
    let finding = &report.findings[0];
    assert_eq!(finding.rule.id, "openai-project-key");
    assert!(
        finding.location.path.ends_with("dist.zip!config/.env"),
        "{}",
        finding.location.path
    );
    assert_eq!(finding.location.line, 1);
    assert_eq!(finding.location.commit.as_ref().unwrap().id, introduced);
    assert_eq!(finding.location.present_at_head, Some(false));
    assert_eq!(report.stats.archives_scanned, 1);
}

/// The copies pass over a history reads again the blobs the first pass's
/// walk found (without walking commits and trees again) and attributes each
/// copy to the commit that introduced its blob, as one secret with the
/// finding its rule made.
#[test]
fn copies_in_history_are_found_and_attributed() {
    use mayfly_scan::copies::CopySearch;
    use mayfly_scan::finding::FoundBy;

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    commit_file(repo, ".env", &format!("GITHUB_TOKEN={GITHUB}\n"), "env");
    let pasted = commit_file(
        repo,
        "notes/chat.md",
        &format!("ok so I pasted{GITHUB}into the box\n"),
        "notes",
    );
    commit_file(repo, "notes/chat.md", "nothing to see\n", "clean up");
    let mut scanner = scanner();
    let selection = GitSelection::default();
    let mut report = scanner.scan_git(repo, &selection, &NoProgress).unwrap();
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let search = CopySearch::new(&report.findings, Vec::new(), &crate::common::key())
        .unwrap()
        .unwrap();
    scanner.set_copy_search(Some(search));
    let again = scanner.scan_git(repo, &selection, &NoProgress).unwrap();
    let search = scanner.set_copy_search(None).unwrap();
    search.merge(&mut report.findings, again.findings);
    let copy = report
        .findings
        .iter()
        .find(|f| f.location.path.ends_with("notes/chat.md"))
        .expect("the pasted copy is found");
    assert_eq!(copy.location.found_by, FoundBy::Copy);
    assert_eq!(copy.location.commit.as_ref().unwrap().id, pasted);
    assert_eq!(copy.fingerprint, report.findings[0].fingerprint);
    // A second copies pass, with no walk kept, walks again and finds the same.
    let search = CopySearch::new(&report.findings, Vec::new(), &crate::common::key())
        .unwrap()
        .unwrap();
    scanner.set_copy_search(Some(search));
    let walked = scanner.scan_git(repo, &selection, &NoProgress).unwrap();
    assert_eq!(walked.findings.len(), 2, "{:?}", walked.findings);
}

/// With a sketch kept by the first pass, the copies pass over a history
/// reads only the blobs of paths that may hold a copy, and finds what
/// reading every blob again finds (in prose, base64, a committed archive).
#[test]
fn a_sketched_history_copies_pass_reads_only_the_paths_that_may_hold_a_copy() {
    use base64::Engine as _;
    use mayfly_scan::copies::CopySearch;
    use mayfly_scan::scan::ScanOptions;

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    commit_file(repo, ".env", &format!("GITHUB_TOKEN={GITHUB}\n"), "env");
    commit_file(
        repo,
        "notes/chat.md",
        &format!("pasted{GITHUB}here\n"),
        "notes",
    );
    commit_file(repo, "notes/chat.md", "nothing to see\n", "clean up");
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ab{GITHUB}"));
    commit_file(repo, "blob.txt", &format!("payload {encoded}\n"), "encoded");
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file("notes.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut writer, format!("see {GITHUB}").as_bytes()).unwrap();
    fs::write(repo.join("dist.zip"), writer.finish().unwrap().into_inner()).unwrap();
    git(repo, &["add", "dist.zip"]);
    git(repo, &["commit", "-q", "-m", "ship"]);
    // Many versions of files that hold long tokens but no copy.
    for i in 0..30 {
        commit_file(
            repo,
            &format!("src/lib{}.rs", i % 5),
            &format!(
                "// sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8{i:02}\nfn f() {{}}\n"
            ),
            "edit",
        );
    }
    let selection = GitSelection::default();
    let copies_pass = |sketch: bool| {
        let mut scanner = crate::common::scanner_with(ScanOptions {
            sketch,
            ..ScanOptions::default()
        });
        let first = scanner.scan_git(repo, &selection, &NoProgress).unwrap();
        let search = CopySearch::new(&first.findings, Vec::new(), &crate::common::key())
            .unwrap()
            .unwrap();
        scanner.set_copy_search(Some(search));
        scanner.scan_git(repo, &selection, &NoProgress).unwrap()
    };
    let everything = copies_pass(false);
    let sketched = copies_pass(true);
    let places = |r: &mayfly_scan::scan::ScanReport| -> Vec<String> {
        r.findings
            .iter()
            .map(|f| format!("{:?} {} {}", f.location, f.rule.id, f.fingerprint))
            .collect()
    };
    assert_eq!(places(&sketched), places(&everything));
    let paths: Vec<&str> = sketched
        .findings
        .iter()
        .map(|f| f.location.path.as_str())
        .collect();
    for expected in [".env", "notes/chat.md", "blob.txt", "dist.zip!notes.txt"] {
        assert!(
            paths.iter().any(|p| p.ends_with(expected)),
            "{expected} missing from {paths:?}"
        );
    }
    // Every blob read again without the sketch (35); with it, only those
    // of the paths with a copy (both versions of the notes), the archive.
    assert_eq!(everything.stats.files_scanned, 35);
    assert_eq!(sketched.stats.files_scanned, 5, "{:?}", sketched.stats);
}
