//! History, staged changes and the workstation, through the binary.

use std::path::Path;
use std::process::Command;

use crate::common::{GITHUB, OPENAI, STRIPE, Workspace, json_of, stdout_of};

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Bob Ops",
            "-c",
            "user.email=bob@acme.test",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn history_reports_removed_secrets_with_their_commit() {
    let ws = Workspace::new();
    let repo = ws.repo();
    git(&repo, &["init", "-q"]);
    ws.write("deploy.sh", &format!("export GH_TOKEN={GITHUB}\n"));
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "deploy script"]);
    ws.write(
        "deploy.sh",
        "export GH_TOKEN=$(vault read -field=token gh)\n",
    );
    git(&repo, &["commit", "-q", "-am", "use vault"]);

    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", "."]));
    assert_eq!(code, 0);
    assert!(
        err.contains("--git"),
        "the working-tree scan should point at history: {err}"
    );

    let (code, json) = json_of(ws.mayfly().args(["scan", "--git", ".", "--format", "json"]));
    assert_eq!(code, 1);
    let location = &json["secrets"][0]["locations"][0];
    assert_eq!(location["path"], "deploy.sh");
    assert_eq!(location["present_at_head"], false);
    assert_eq!(location["commit"]["author"], "Bob Ops");
    let (_, text, _) = stdout_of(ws.mayfly().args(["scan", "--git", "."]));
    assert!(
        text.contains("removed from HEAD, live until rotated") && text.contains("Bob Ops"),
        "{text}"
    );

    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", ".", "--range", "nope..main"]));
    assert_eq!(code, 2);
    assert!(err.contains("nope..main"), "{err}");
}

#[test]
fn staged_scan_for_pre_commit() {
    let ws = Workspace::new();
    let repo = ws.repo();
    git(&repo, &["init", "-q"]);
    ws.write("app.py", &format!("KEY = '{STRIPE}'\n"));
    git(&repo, &["add", "app.py"]);
    let (code, out, _) = stdout_of(ws.mayfly().args(["scan", "--staged"]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("app.py:1:8"), "{out}");
    git(&repo, &["rm", "-q", "--cached", "app.py"]);
    assert_eq!(stdout_of(ws.mayfly().args(["scan", "--staged"])).0, 0);
}

#[test]
fn workstation_scan_names_tools() {
    let ws = Workspace::new();
    let home = ws.dir.path().join("fake-home");
    std::fs::create_dir_all(home.join(".cursor")).unwrap();
    std::fs::write(
        home.join(".cursor/mcp.json"),
        format!("{{\"mcpServers\": {{\"openai\": {{\"env\": {{\"OPENAI_API_KEY\": \"{OPENAI}\"}}}}}}}}\n"),
    )
    .unwrap();
    let (code, json) = json_of(
        ws.mayfly()
            .args(["scan", "--host", "--format", "json", "--home"])
            .arg(&home),
    );
    assert_eq!(code, 1);
    let location = &json["secrets"][0]["locations"][0];
    assert_eq!(location["tool"], "Cursor");
    assert_eq!(location["surface"], "mcp-config");
}

/// A home file the user cannot read is reported, and the rest is scanned.
/// Root reads everything, so as root the scan runs as `nobody` (setpriv),
/// from a copy of the binary that `nobody` can reach.
#[test]
fn workstation_scan_reports_unreadable_files_and_goes_on() {
    use std::fs::{Permissions, set_permissions};
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    let ws = Workspace::new();
    let root = ws.dir.path();
    let home = root.join("fake-home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".npmrc"),
        format!("//registry.npmjs.org/:_authToken={GITHUB}\n"),
    )
    .unwrap();
    let unreadable = home.join(".aws/credentials");
    std::fs::write(&unreadable, format!("stripe = {STRIPE}\n")).unwrap();
    set_permissions(&unreadable, Permissions::from_mode(0o000)).unwrap();

    let as_root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut cmd = if as_root {
        for dir in [root, &home, &home.join(".aws"), &ws.repo()] {
            set_permissions(dir, Permissions::from_mode(0o755)).unwrap();
        }
        set_permissions(root.join("home"), Permissions::from_mode(0o777)).unwrap();
        set_permissions(home.join(".npmrc"), Permissions::from_mode(0o644)).unwrap();
        set_permissions(root.join("fingerprint.key"), Permissions::from_mode(0o644)).unwrap();
        let bin = root.join("mayfly");
        std::fs::copy(assert_cmd::cargo::cargo_bin("mayfly"), &bin).unwrap();
        set_permissions(&bin, Permissions::from_mode(0o755)).unwrap();
        let mut cmd = ws.mayfly();
        let envs: Vec<_> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect();
        cmd = assert_cmd::Command::new("setpriv");
        cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&bin)
            .current_dir(ws.repo())
            .envs(envs);
        cmd
    } else {
        ws.mayfly()
    };
    let (code, json) = json_of(
        cmd.args(["scan", "--host", "--format", "json", "--home"])
            .arg(&home),
    );
    assert_eq!(code, 1, "{json}");
    let secrets = json["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 1, "{json}");
    assert_eq!(secrets[0]["locations"][0]["tool"], "npm");
    let errors = json["coverage"]["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["path"]
            .as_str()
            .is_some_and(|p| p.ends_with(".aws/credentials"))
            && e["error"].as_str().is_some_and(|m| m.contains("denied"))),
        "{json}"
    );
    assert!(!json.to_string().contains(STRIPE));
}

#[test]
fn the_pre_commit_hook_stops_a_commit_that_adds_a_secret() {
    let ws = Workspace::new();
    let repo = ws.repo();
    git(&repo, &["init", "-q"]);
    ws.write("README.md", "hello\n");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "start"]);
    // The hook as pre-commit installs it from this checkout, with the
    // `mayfly` under test first on PATH.
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let binary = assert_cmd::cargo::cargo_bin("mayfly");
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let try_repo = |expect_clean: bool| {
        let output = Command::new("pre-commit")
            .current_dir(&repo)
            .args(["try-repo"])
            .arg(&checkout)
            .args(["mayfly", "--verbose"])
            .env("PATH", &path)
            .env("PRE_COMMIT_HOME", ws.dir.path().join("pre-commit-cache"))
            .env("MAYFLY_HOME", ws.dir.path().join("home"))
            .env(
                "MAYFLY_FINGERPRINT_KEY_FILE",
                ws.dir.path().join("fingerprint.key"),
            )
            .env("GIT_AUTHOR_NAME", "Bob Ops")
            .env("GIT_AUTHOR_EMAIL", "bob@acme.test")
            .env("GIT_COMMITTER_NAME", "Bob Ops")
            .env("GIT_COMMITTER_EMAIL", "bob@acme.test")
            .output()
            .expect("pre-commit (scripts/test installs it: pip install pre-commit)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.status.success(), expect_clean, "{text}");
        text
    };
    ws.write("notes.txt", "nothing to see\n");
    git(&repo, &["add", "notes.txt"]);
    let clean = try_repo(true);
    assert!(clean.contains("Passed"), "{clean}");

    ws.write("deploy.sh", &format!("export GH_TOKEN={GITHUB}\n"));
    git(&repo, &["add", "deploy.sh"]);
    let refused = try_repo(false);
    assert!(
        refused.contains("Failed")
            && refused.contains("github-pat-classic")
            && refused.contains("deploy.sh"),
        "{refused}"
    );
    assert!(
        !refused.contains(GITHUB),
        "the hook never prints the secret"
    );
}

#[test]
fn git_scans_history_and_what_is_not_committed_yet() {
    let ws = Workspace::new();
    let repo = ws.repo();
    git(&repo, &["init", "-q"]);
    ws.write(".gitignore", ".env\n");
    ws.write("deploy.sh", &format!("export GH_TOKEN={GITHUB}\n"));
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "deploy"]);
    // Not in history: an ignored .env, and a change not committed yet.
    ws.write(".env", &format!("OPENAI_API_KEY={OPENAI}\n"));
    ws.write(
        "deploy.sh",
        &format!("export GH_TOKEN={GITHUB}\nexport STRIPE={STRIPE}\n"),
    );
    let (code, report) = json_of(ws.mayfly().args(["scan", "--git", ".", "--format", "json"]));
    assert_eq!(code, 1);
    let copies: Vec<(String, String, bool, bool)> = report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            let rule = s["rule"]["id"].as_str().unwrap().to_owned();
            s["locations"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |c| {
                    (
                        rule.clone(),
                        c["path"].as_str().unwrap().to_owned(),
                        c["commit"].is_object(),
                        c["uncommitted"] == true,
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let has = |rule: &str, path: &str, committed: bool, uncommitted: bool| {
        copies
            .iter()
            .any(|c| c.0 == rule && c.1.ends_with(path) && c.2 == committed && c.3 == uncommitted)
    };
    assert!(
        has("github-pat-classic", "deploy.sh", true, false),
        "{copies:?}"
    );
    assert!(has("openai-project-key", ".env", false, true), "{copies:?}");
    assert!(
        has("stripe-live-secret-key", "deploy.sh", false, true),
        "{copies:?}"
    );
    let (_, text, _) = stdout_of(ws.mayfly().args(["scan", "--git", "."]));
    assert!(text.contains("(uncommitted)"), "{text}");
}
