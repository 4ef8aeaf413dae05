//! `scan --save` and `mayfly inventory`, on a SQLite file and on PostgreSQL.

use crate::common::{GITHUB, OPENAI, Workspace, stdout_of};

pub fn postgres_database() -> (String, impl Drop) {
    struct Dropper(String);
    impl Drop for Dropper {
        fn drop(&mut self) {
            let _ = std::process::Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
                .output();
        }
    }
    let name = format!(
        "mayfly_cli_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let status = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "PostgreSQL on 127.0.0.1:5432 is needed (.ci/run starts it)"
    );
    (
        format!("postgres://postgres@127.0.0.1:5432/{name}"),
        Dropper(name),
    )
}

fn lifecycle(db: &str) {
    let ws = Workspace::new();
    ws.write(".env", &format!("OPENAI_API_KEY={OPENAI}\nGH={GITHUB}\n"));
    ws.write("src/app.py", &format!("KEY = '{OPENAI}'\n"));
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db", db]));
    assert_eq!(code, 1);
    assert!(
        err.contains("2 new and 0 known secrets, 3 new locations"),
        "{err}"
    );

    let (code, out, _) = stdout_of(ws.mayfly().args(["inventory", "list", "--db", db]));
    assert_eq!(code, 0);
    assert!(
        out.contains("2 secrets")
            && out.contains("openai-project-key")
            && out.contains("(unclear)"),
        "{out}"
    );
    assert!(!out.contains(OPENAI) && !out.contains(GITHUB));
    let openai = out
        .lines()
        .find(|l| l.contains("openai-project-key"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    let (code, _, _) =
        stdout_of(
            ws.mayfly()
                .args(["inventory", "owner", "set", &openai, "team-ml", "--db", db]),
        );
    assert_eq!(code, 0);
    let (_, out, _) = stdout_of(
        ws.mayfly()
            .args(["inventory", "list", "--unclear", "--db", db]),
    );
    assert!(
        out.contains("1 secret") && out.contains("github-pat-classic"),
        "{out}"
    );

    // Remove one copy and rescan: it is marked gone, not deleted.
    std::fs::remove_file(ws.repo().join("src/app.py")).unwrap();
    let (_, _, err) = stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db", db]));
    assert!(
        err.contains("0 new and 2 known secrets, 0 new locations, 1 gone"),
        "{err}"
    );
    let (_, out, _) = stdout_of(ws.mayfly().args(["inventory", "show", &openai, "--db", db]));
    assert!(
        out.contains("team-ml (explicit)") && out.contains("gone since"),
        "{out}"
    );

    let (code, out, _) = stdout_of(ws.mayfly().args([
        "inventory",
        "resolve",
        &openai,
        "--rotated",
        "--note",
        "rotated by ml-oncall",
        "--db",
        db,
    ]));
    assert_eq!(code, 0, "{out}");
    let (_, _, err) = stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db", db]));
    assert!(err.contains("REOPENED"), "{err}");
    let (_, out, _) = stdout_of(ws.mayfly().args(["inventory", "show", &openai, "--db", db]));
    assert!(
        out.contains("reopened") && out.contains("rotated by ml-oncall"),
        "{out}"
    );

    let (code, _, err) = stdout_of(
        ws.mayfly()
            .args(["inventory", "show", "00000000", "--db", db]),
    );
    assert_eq!(code, 2);
    assert!(err.contains("no secret"), "{err}");

    // A second repository and a workstation merge into the same inventory.
    let other = ws.dir.path().join("other-repo");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("deploy.sh"),
        format!("export OPENAI_API_KEY={OPENAI}\n"),
    )
    .unwrap();
    let home = ws.dir.path().join("fake-home");
    std::fs::create_dir_all(home.join(".cursor")).unwrap();
    std::fs::write(
        home.join(".cursor/mcp.json"),
        format!("{{\"mcpServers\": {{\"openai\": {{\"env\": {{\"OPENAI_API_KEY\": \"{OPENAI}\"}}}}}}}}\n"),
    )
    .unwrap();
    let (_, _, err) = stdout_of(ws.mayfly().args(["scan", "--save", "--db", db]).arg(&other));
    assert!(
        err.contains("0 new and 1 known secret, 1 new location, 0 gone"),
        "{err}"
    );
    let (_, _, err) = stdout_of(
        ws.mayfly()
            .args(["scan", "--host", "--save", "--db", db, "--home"])
            .arg(&home),
    );
    assert!(
        err.contains("0 new and 1 known secret, 1 new location, 0 gone"),
        "{err}"
    );
    let (_, out, _) =
        stdout_of(
            ws.mayfly()
                .args(["inventory", "list", "--surface", "mcp-config", "--db", db]),
        );
    // One secret, three live copies: the COPIES column of its row.
    let row = out
        .lines()
        .find(|l| l.contains("openai-project-key"))
        .unwrap();
    assert!(out.contains("1 secret") && row.contains("  3  "), "{out}");
    let (_, md, _) = stdout_of(ws.mayfly().args(["report", "-f", "md", "--db", db]));
    assert!(md.contains("open secrets in **4** copies"), "{md}");
    assert!(!md.contains(OPENAI) && !md.contains(GITHUB));
}

#[test]
fn inventory_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    lifecycle(&dir.path().join("inventory.db").to_string_lossy());
}

#[test]
fn inventory_on_postgres() {
    let (url, _guard) = postgres_database();
    lifecycle(&url);
}

#[test]
fn foreign_database_is_refused() {
    let ws = Workspace::new();
    let path = ws.write(
        "notes.db",
        "plain text, not SQLite at all, long enough for a header page",
    );
    let (code, _, err) = stdout_of(ws.mayfly().args(["inventory", "list", "--db"]).arg(&path));
    assert_eq!(code, 2);
    assert!(
        err.contains("not a Mayfly store") || err.contains("cannot open the store"),
        "{err}"
    );
}

fn governance(db: &str) {
    let ws = Workspace::new();
    ws.write(
        ".mayfly/owners.toml",
        "[[owners]]\nteam = \"team-ml\"\npaths = [\"ml/**\"]\n",
    );
    ws.write("ml/train.py", &format!("KEY = '{OPENAI}'\n"));
    ws.write(
        "notes/session.jsonl",
        &format!("{{\"role\":\"user\",\"content\":\"token {GITHUB}\"}}\n"),
    );
    ws.write(
        ".mayfly/governance.toml",
        "max_copies = 5\nforbidden_surfaces = [\"prompt-log\"]\n",
    );
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db", db]));
    assert_eq!(code, 1, "{err}");

    let (code, out, err) = stdout_of(
        ws.mayfly()
            .args(["govern", "plan", "--format", "json", "--db", db]),
    );
    assert_eq!(code, 1, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["schema"], "mayfly.plan/v1");
    assert_eq!(plan["secrets_with_actions"], 1, "{out}");
    let github = &plan["plan"][0];
    assert_eq!(github["rule_id"], "github-pat-classic");
    let actions: Vec<&str> = github["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["rotate-or-revoke", "delete-copy"]);
    // The plan names each copy by its absolute path: an action to take
    // wherever the command runs.
    let copy = ws
        .repo()
        .canonicalize()
        .unwrap()
        .join("notes/session.jsonl");
    assert_eq!(
        github["actions"][1]["copy"],
        format!("{}:1", copy.display()).as_str()
    );

    let (_, text, _) = stdout_of(ws.mayfly().args(["govern", "plan", "--db", db]));
    assert!(
        text.contains("ROTATE OR REVOKE")
            && text.contains(&format!("DELETE COPY {}:1", copy.display())),
        "{text}"
    );
    let fingerprint = github["fingerprint"].as_str().unwrap().to_owned();
    stdout_of(ws.mayfly().args([
        "inventory",
        "resolve",
        &fingerprint,
        "--revoked",
        "--note",
        "revoked at GitHub",
        "--db",
        db,
    ]));
    let (code, out, _) = stdout_of(ws.mayfly().args(["govern", "plan", "--db", db]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 of 1 open secrets need action"), "{out}");
    // The streamed JSON document is whole with no entry too.
    let (code, out, _) = stdout_of(
        ws.mayfly()
            .args(["govern", "plan", "--format", "json", "--db", db]),
    );
    assert_eq!(code, 0, "{out}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["plan"], serde_json::json!([]), "{out}");
    assert_eq!(
        (&plan["secrets_considered"], &plan["secrets_with_actions"]),
        (&serde_json::json!(1), &serde_json::json!(0))
    );

    ws.write(".mayfly/governance.toml", "max_copiez = 5\n");
    let (code, _, err) = stdout_of(ws.mayfly().args(["govern", "plan", "--db", db]));
    assert_eq!(code, 2);
    assert!(err.contains("max_copiez"), "{err}");
}

#[test]
fn governance_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    governance(&dir.path().join("inventory.db").to_string_lossy());
}

#[test]
fn governance_on_postgres() {
    let (url, _guard) = postgres_database();
    governance(&url);
}

/// Renders a page in headless Chromium at a window width and returns the
/// DOM it built.
fn chromium_dom(page: &std::path::Path, profile: &std::path::Path, width: u32) -> String {
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--window-size={width},900"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("Chromium (Debian package `chromium`; scripts/test installs it)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn report_renders_in_a_real_browser() {
    let ws = Workspace::new();
    let db = ws
        .dir
        .path()
        .join("inventory.db")
        .to_string_lossy()
        .into_owned();
    ws.write(
        ".mayfly/owners.toml",
        "[[owners]]\nteam = \"team-ml\"\npaths = [\"ml/**\"]\n",
    );
    ws.write("ml/train.py", &format!("KEY = '{OPENAI}'\n"));
    ws.write(".env", &format!("GH={GITHUB}\n"));
    ws.write("deploy/.env", &format!("GH={GITHUB}\n"));
    ws.write(
        "notes/<b>session</b>.jsonl",
        &format!("{{\"role\":\"user\",\"content\":\"token {GITHUB}\"}}\n"),
    );
    stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db", &db]));
    let page = ws.dir.path().join("report.html");
    let (code, _, err) = stdout_of(ws.mayfly().args(["report", "--db", &db, "-o"]).arg(&page));
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains(GITHUB) && !html.contains(OPENAI),
        "the report must not hold secrets"
    );
    assert!(!html.contains("<b>session</b>"), "paths must be escaped");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must need no network"
    );

    let (_, plan, _) = stdout_of(
        ws.mayfly()
            .args(["govern", "plan", "-f", "json", "--db", &db]),
    );
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let planned_nhi: std::collections::BTreeSet<String> = plan["plan"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["actions"].as_array().unwrap().clone())
        .flat_map(|a| a["nhi"].as_array().unwrap().clone())
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    assert!(!planned_nhi.is_empty());
    for width in [1280, 420] {
        let dom = chromium_dom(&page, &ws.dir.path().join(format!("chrome-{width}")), width);
        let after = |id: &str| -> &str {
            let start = dom
                .find(&format!("id=\"{id}\""))
                .unwrap_or_else(|| panic!("no {id} in the page rendered {width} wide"));
            &dom[start..]
        };
        let card = |id: &str| -> String {
            let rest = after(id);
            let b = rest.find("<b>").unwrap() + 3;
            rest[b..b + rest[b..].find("</b>").unwrap()].to_owned()
        };
        assert_eq!(card("total-secrets"), "2");
        assert_eq!(card("total-copies"), "4");
        assert_eq!(card("total-unclear"), "1");
        assert_eq!(card("total-critical"), "0");
        // Totals by severity, and a badge on every secret shown.
        let by_severity = &after("by-severity")[..after("by-severity").find("</table>").unwrap()];
        assert!(
            by_severity.contains("<td>high</td><td>2</td>"),
            "{by_severity}"
        );
        assert!(dom.contains("class=\"sev sev-high\""), "severity badges");
        // Each secret's actions are listed, not only counted.
        let plan_section = &after("plan")[..after("plan").find("</div>").unwrap()];
        assert!(
            plan_section.contains("rotate or revoke") && plan_section.contains("delete copy"),
            "{plan_section}"
        );
        // The NHI table counts what the plan tags, not only the rules.
        let nhi = &after("nhi")[..after("nhi").find("</table>").unwrap()];
        for item in &planned_nhi {
            let row = nhi.find(&format!("<td>{item}</td>")).unwrap();
            let count: String = nhi[row..]
                .split("</td><td>")
                .nth(2)
                .unwrap()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            assert_ne!(count, "0", "{item} is in the plan: {nhi}");
        }
        // Copy labels are whole: the path and its line number.
        for copy in [
            ".env:1",
            "deploy/.env:1",
            "notes/&lt;b&gt;session&lt;/b&gt;.jsonl:1",
        ] {
            assert!(dom.contains(copy), "{copy} at {width}: {dom}");
        }
        assert!(
            dom.contains("NHI2") && dom.contains("ID.AM") && dom.contains("GV.RR"),
            "mappings missing"
        );
        assert!(dom.contains("class=\"graph\""), "copy graphs missing");
    }

    let (_, md, _) = stdout_of(ws.mayfly().args(["report", "-f", "md", "--db", &db]));
    assert!(md.contains("**2** open secrets in **4** copies"), "{md}");
}

#[test]
fn one_tree_saved_three_ways_is_one_set_of_copies() {
    let ws = Workspace::new();
    ws.write(".env", &format!("OPENAI_API_KEY={OPENAI}\n"));
    let db = ws.dir.path().join("inv.db");
    let db = db.to_str().unwrap();
    let save = |cmd: &mut assert_cmd::Command| {
        let (_, _, err) = stdout_of(cmd.args(["--save", "--host-id", "laptop-7", "--db", db]));
        err
    };
    let first = save(
        ws.mayfly()
            .current_dir(ws.dir.path())
            .args(["scan", "repo"]),
    );
    assert!(
        first.contains("1 new and 0 known secret, 1 new location, 0 gone"),
        "{first}"
    );
    for again in [
        save(ws.mayfly().args(["scan", "."])),
        save(
            ws.mayfly()
                .arg("scan")
                .arg(ws.repo().canonicalize().unwrap()),
        ),
        save(
            ws.mayfly()
                .current_dir(ws.dir.path())
                .args(["scan", "./repo/"]),
        ),
    ] {
        assert!(
            again.contains("0 new and 1 known secret, 0 new locations, 0 gone"),
            "{again}"
        );
    }
    let (_, list, _) = stdout_of(ws.mayfly().args(["inventory", "list", "--db", db]));
    let fingerprint = list
        .lines()
        .nth(1)
        .and_then(|row| row.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (_, show, _) = stdout_of(
        ws.mayfly()
            .args(["inventory", "show", &fingerprint, "--db", db]),
    );
    let root = ws.repo().canonicalize().unwrap();
    assert!(
        show.contains(&format!("copies on laptop-7 under {}:", root.display())),
        "{show}"
    );
    assert!(show.contains("  .env:1:"), "paths from the root: {show}");
    assert!(!show.contains("gone since"), "{show}");
    assert!(show.contains("1 live copy"), "{show}");
}

#[test]
fn plans_and_lists_put_the_most_harmful_secrets_first() {
    let ws = Workspace::new();
    ws.standard();
    ws.write("ci.sh", &format!("export GH={GITHUB}\n"));
    let db = ws.dir.path().join("inv.db");
    let db = db.to_str().unwrap();
    stdout_of(ws.mayfly().args(["scan", ".", "--save", "--db", db]));
    let rank = |s: &str| {
        ["critical", "high", "medium", "low"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    let (_, plan, _) = stdout_of(
        ws.mayfly()
            .args(["govern", "plan", "-f", "json", "--db", db]),
    );
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let order: Vec<(usize, i64)> = plan["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                rank(p["severity"].as_str().unwrap()),
                -p["copies"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(order.len() >= 3, "{plan}");
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "not most urgent first: {order:?}"
    );
    assert!(
        order.first().unwrap().0 < order.last().unwrap().0,
        "mixed severities: {order:?}"
    );
    let (_, list, _) = stdout_of(ws.mayfly().args(["inventory", "list", "--db", db]));
    let listed: Vec<usize> = list
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|s| {
            ["critical", "high", "medium", "low"]
                .iter()
                .position(|x| *x == s)
        })
        .collect();
    assert!(listed.windows(2).all(|w| w[0] <= w[1]), "{list}");
}
