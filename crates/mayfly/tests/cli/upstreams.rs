//! `mayfly run --inject pg:NAME`: a script gets a PostgreSQL role that
//! exists only while it runs, through the real binary, `psql` as the
//! client and the real server on 127.0.0.1:5432.

use std::process::Command as StdCommand;

use crate::common::{Workspace, stdout_of};
use crate::server::{client, mint, serve_configured};

pub(crate) fn psql(db: &str, sql: &str) -> String {
    let out = StdCommand::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A database with a table, a reading group role and a management role.
struct Target {
    db: String,
}

/// The marker roles of the brokers a test ran (their members are gone).
fn drop_markers(db: &str) {
    psql(
        db,
        "DO $$ DECLARE r text; BEGIN FOR r IN SELECT g.rolname FROM pg_roles g \
         WHERE g.rolname LIKE 'mayfly\\_marker\\_%' AND NOT EXISTS \
         (SELECT 1 FROM pg_auth_members m WHERE m.roleid = g.oid) \
         AND shobj_description(g.oid, 'pg_authid') LIKE '%upstream app-cli' \
         LOOP EXECUTE format('DROP ROLE %I', r); END LOOP; END $$",
    );
}

impl Target {
    fn new() -> Target {
        let db = format!("mft_cli_{}", std::process::id());
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        );
        psql("postgres", &format!("CREATE DATABASE {db}"));
        psql(
            &db,
            &format!(
                "DROP ROLE IF EXISTS {db}_mgr; DROP ROLE IF EXISTS {db}_read;
                 CREATE ROLE {db}_mgr LOGIN CREATEROLE; CREATE ROLE {db}_read NOLOGIN;
                 GRANT {db}_read TO {db}_mgr WITH ADMIN OPTION;
                 CREATE TABLE notes (body text); INSERT INTO notes VALUES ('hello from the table');
                 GRANT SELECT ON notes TO {db}_read;"
            ),
        );
        Target { db }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let db = &self.db;
        // One statement per call: DROP DATABASE cannot share a transaction.
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {db}_mgr"),
            format!("DROP ROLE IF EXISTS {db}_read"),
        ] {
            let _ = StdCommand::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
                .arg(sql)
                .output();
        }
    }
}

#[test]
fn a_script_gets_a_postgres_role_that_lives_only_while_it_runs() {
    let target = Target::new();
    let db = &target.db;
    let ws = Workspace::new();
    let server = serve_configured(
        &ws,
        &format!(
            r#"[[upstream.postgres]]
name = "app-cli"
url = "postgres://{db}_mgr@127.0.0.1:5432/{db}"
[upstream.postgres.levels]
read = ["GRANT {db}_read TO {{{{role}}}}"]
"#
        ),
    );
    mint(&ws, "local:acme/report");
    let (code, out, err) = stdout_of(client(&ws, &server).args([
        "run",
        "--inject",
        "pg:app-cli",
        "--purpose",
        "nightly report",
        "--owner",
        "team-data",
        "--",
        "sh",
        "-c",
        r#"psql "$DATABASE_URL" -Atc 'select current_user' && psql -Atc 'select body from notes' && echo "$PGUSER""#,
    ]));
    assert_eq!(code, 0, "{err}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("mayfly_"), "{out}");
    assert_eq!(lines[1], "hello from the table");
    assert_eq!(lines[2], lines[0]);
    assert!(err.contains("pg:app-cli for this task"), "{err}");
    let role = lines[0];
    // The task ended with the script: the role is gone within a second or so.
    let mut left = String::from("?");
    for _ in 0..100 {
        left = psql(
            db,
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
        );
        if left == "0" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(left, "0", "the role outlived its task");

    // A level the upstream lacks is refused before anything runs.
    let (code, _, err) = stdout_of(client(&ws, &server).args([
        "run",
        "--inject",
        "pg:app-cli:write",
        "--purpose",
        "x",
        "--owner",
        "o",
        "--",
        "true",
    ]));
    assert_ne!(code, 0);
    assert!(
        err.contains("no level \"write\"") && err.contains("read"),
        "{err}"
    );
    drop(server);
    drop_markers(db);
}
