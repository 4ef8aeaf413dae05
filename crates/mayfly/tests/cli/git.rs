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
