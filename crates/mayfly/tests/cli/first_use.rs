//! What got in the way of a new user: errors that lost their cause,
//! values that silently matched nothing, terminal output, configuration
//! found where the user keeps it.

use std::io::{BufRead, BufReader};
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::cargo::CommandCargoExt;

use crate::common::{GITHUB, OPENAI, Workspace, stdout_of};

#[test]
fn errors_keep_their_cause_and_unknown_values_are_refused() {
    let ws = Workspace::new();
    // PostgreSQL says what is wrong; a URL without a password shows none.
    let url = "postgres://postgres@127.0.0.1:5432/mayfly_no_such_database";
    let (code, _, err) = stdout_of(ws.mayfly().args(["inventory", "list", "--db", url]));
    assert_eq!(code, 2);
    assert!(
        err.contains("database \"mayfly_no_such_database\" does not exist"),
        "{err}"
    );
    assert!(!err.contains(":***"), "{err}");

    // A store in a folder that does not exist is refused, and not made.
    let missing = ws.dir.path().join("no/such/folder/inv.db");
    let (code, _, err) = stdout_of(
        ws.mayfly()
            .args(["inventory", "list", "--db"])
            .arg(&missing),
    );
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!ws.dir.path().join("no").exists());

    // An empty store says how to fill it.
    let db = ws.dir.path().join("inv.db");
    let db = db.to_str().unwrap();
    let (code, out, _) = stdout_of(ws.mayfly().args(["inventory", "list", "--db", db]));
    assert_eq!(code, 0);
    assert!(
        out.contains("the inventory is empty") && out.contains("--save"),
        "{out}"
    );

    // Unknown surfaces and providers are refused with the valid ones.
    let (code, _, err) =
        stdout_of(
            ws.mayfly()
                .args(["inventory", "list", "--surface", "mcp", "--db", db]),
        );
    assert_eq!(code, 2);
    assert!(
        err.contains("mcp-config") && err.contains("prompt-log"),
        "{err}"
    );
    let (code, _, err) =
        stdout_of(
            ws.mayfly()
                .args(["inventory", "list", "--provider", "Opnai", "--db", db]),
        );
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown provider \"Opnai\"") && err.contains("OpenAI"),
        "{err}"
    );
    let (code, _, _) =
        stdout_of(
            ws.mayfly()
                .args(["inventory", "list", "--provider", "openai", "--db", db]),
        );
    assert_eq!(code, 0, "providers are case-insensitive");

    // A mistyped severity in the governance rules is refused, not ignored.
    ws.write(
        ".mayfly/governance.toml",
        "[max_age_days_by_severity]\ncritcal = 10\n",
    );
    let (code, _, err) = stdout_of(ws.mayfly().args(["govern", "plan", "--db", db]));
    assert_eq!(code, 2);
    assert!(err.contains("critcal") && err.contains("critical"), "{err}");
}

#[test]
fn terminal_output_is_what_a_person_expects() {
    let ws = Workspace::new();
    ws.write(".env", &format!("OPENAI_API_KEY={OPENAI}\n"));

    // A closed pipe ends the command quietly.
    let mut child = StdCommand::cargo_bin("mayfly")
        .unwrap()
        .args(["rules", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!first.is_empty());
    assert_eq!(output.status.code(), Some(0));
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Plurals, and a one-line summary on stderr when the report goes to a file.
    let (code, out, _) = stdout_of(ws.mayfly().args(["scan", "."]));
    assert_eq!(code, 1);
    assert!(out.starts_with("mayfly: 1 secret in 1 copy"), "{out}");
    let (code, out, err) =
        stdout_of(
            ws.mayfly()
                .args(["scan", ".", "-f", "json", "-o", "report.json"]),
        );
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("1 secret in 1 copy; json report written to report.json"),
        "{err}"
    );

    // Writing a baseline does not print the report.
    let (code, out, err) =
        stdout_of(
            ws.mayfly()
                .args(["scan", ".", "--write-baseline", "base.json"]),
        );
    assert_eq!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("wrote a baseline of 1 secret"), "{err}");

    // A path that does not exist is not "no secrets found".
    let (code, out, _) = stdout_of(ws.mayfly().args(["scan", "/nonexistent/mayfly"]));
    assert_eq!(code, 2);
    assert!(!out.contains("no secrets found"), "{out}");
    assert!(
        out.contains("nothing scanned") && out.contains("not found"),
        "{out}"
    );

    // `git diff --cached | mayfly scan -` names the files of the diff.
    let diff = format!(
        "diff --git a/deploy.sh b/deploy.sh\nindex 1..2 100644\n--- a/deploy.sh\n+++ b/deploy.sh\n@@ -10,2 +10,3 @@\n echo start\n+export GH_TOKEN={GITHUB}\n echo done\n"
    );
    let (code, out, _) = stdout_of(ws.mayfly().args(["scan", "-"]).write_stdin(diff));
    assert_eq!(code, 1);
    assert!(out.contains("deploy.sh:11:"), "{out}");

    // The inventory listing has a header and aligned columns.
    let db = ws.dir.path().join("inv.db");
    stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db"]).arg(&db));
    let (_, list, _) = stdout_of(ws.mayfly().args(["inventory", "list", "--db"]).arg(&db));
    let header = list.lines().next().unwrap();
    assert!(
        header.starts_with("FINGERPRINT") && header.contains("SEVERITY"),
        "{list}"
    );
    let row = list.lines().nth(1).unwrap();
    assert_eq!(
        header.find("RULE"),
        row.find("openai-project-key"),
        "{list}"
    );
    assert!(list.ends_with("1 secret\n"), "{list}");
}

#[test]
fn near_misses_completions_and_the_manual() {
    let ws = Workspace::new();
    // A GitHub-shaped token whose checksum is wrong: not a finding, but
    // `--verbose` says why.
    let mut typo = GITHUB.to_owned();
    typo.pop();
    typo.push(if GITHUB.ends_with('A') { 'B' } else { 'A' });
    ws.write("notes.txt", &format!("token {typo}\n"));
    let (code, out, _) = stdout_of(ws.mayfly().args(["scan", "."]));
    assert_eq!(code, 0);
    assert!(!out.contains("near miss"), "{out}");
    let (code, out, _) = stdout_of(ws.mayfly().args(["scan", ".", "--verbose"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("near miss: notes.txt:1") && out.contains("checksum is wrong"),
        "{out}"
    );
    assert!(!out.contains(&typo), "near misses are redacted too");

    let (code, script, _) = stdout_of(ws.mayfly().args(["completions", "bash"]));
    assert_eq!(code, 0);
    assert!(
        script.contains("_mayfly") && script.contains("inventory"),
        "{script}"
    );
    let (code, page, _) = stdout_of(ws.mayfly().arg("man"));
    assert_eq!(code, 0);
    assert!(page.contains(".TH") && page.contains("mayfly"), "{page}");
}

#[test]
fn each_scanned_root_brings_its_configuration() {
    let ws = Workspace::new();
    ws.write(
        "tests/fixtures/key.env",
        &format!("OPENAI_API_KEY={OPENAI}\n"),
    );
    ws.write(
        ".mayfly.toml",
        "[[scan.path_rules]]\npaths = [\"tests/fixtures/**\"]\ndisable = [\"*\"]\n",
    );
    // Scanned from its parent: the repository's own configuration applies.
    let (code, out, _) = stdout_of(
        ws.mayfly()
            .current_dir(ws.dir.path())
            .args(["scan", "repo"]),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration: repo/.mayfly.toml"), "{out}");
    // A typo in it is an error that names the file, not a silent default.
    ws.write(".mayfly.toml", "[scan]\nmax_filesize = \"1M\"\n");
    let (code, _, err) = stdout_of(
        ws.mayfly()
            .current_dir(ws.dir.path())
            .args(["scan", "repo"]),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("repo/.mayfly.toml") && err.contains("max_filesize"),
        "{err}"
    );
}
