//! `mayfly revoke` and `mayfly govern apply` against local stand-ins of the
//! providers' documented revocation APIs: every built-in revoker, and
//! secrets already revoked, refused, rate limited, or without an API.

use std::collections::BTreeMap;

use mayfly_providers::revoke::Revokers;
use mayfly_scan::rule::RuleSet;

use crate::common::{OPENAI, Workspace, stdout_of};
use crate::validation::FakeProviders;

/// One found secret: its rule, value and fingerprint.
struct Found {
    rule: String,
    value: String,
    fingerprint: String,
}

/// `mayfly scan TARGET --save` into `db`, with the values shown: its JSON
/// report (it must find something).
fn scan_and_save(ws: &Workspace, target: &[&str], db: &str) -> serde_json::Value {
    let (code, out, err) = stdout_of(ws.mayfly().arg("scan").args(target).args([
        "--format",
        "json",
        "--show-secrets",
        "--save",
        "--db",
        db,
    ]));
    assert_eq!(code, 1, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn revocation(db: &str) {
    let ws = Workspace::new();
    // The first example of the first rule of every revoker.
    let rules = RuleSet::builtin().unwrap();
    let revokers = Revokers::builtin().unwrap();
    let mut planted: BTreeMap<String, String> = BTreeMap::new();
    for rule in rules.rules() {
        if let Some(revoker) = &rule.spec.revoke
            && !planted.values().any(|r| r == revoker)
        {
            let example = rule.spec.examples.first().unwrap();
            ws.write(
                &format!("plants/{}.txt", rule.spec.id),
                &format!("{example}\n"),
            );
            planted.insert(rule.spec.id.clone(), revoker.clone());
        }
    }
    assert_eq!(planted.len(), revokers.iter().count());
    ws.write("plants/openai.env", &format!("OPENAI_API_KEY={OPENAI}\n"));
    let json = scan_and_save(&ws, &["."], db);
    let found: Vec<Found> = json["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Found {
            rule: s["rule"]["id"].as_str().unwrap().to_owned(),
            value: s["secret"].as_str().unwrap().to_owned(),
            fingerprint: s["fingerprint"].as_str().unwrap().to_owned(),
        })
        .collect();
    let of = |rule: &str| {
        found
            .iter()
            .find(|f| f.rule == rule)
            .unwrap_or_else(|| panic!("{rule} not found"))
    };
    // Special cases, each on one provider; all the others are live.
    let (already, denied, limited) = (
        of("npm-access-token"),
        of("sendgrid-api-key"),
        of("linear-oauth-token"),
    );
    let live: Vec<&str> = found
        .iter()
        .filter(|f| ![&already.rule, &denied.rule].contains(&&f.rule))
        .map(|f| f.value.as_str())
        .collect();
    let fake = FakeProviders::start(
        ws.dir.path(),
        serde_json::json!({
            "live": live, "deny_revoke": [denied.value], "rate_limited": [limited.value],
        }),
    );
    let revoke = |fingerprint: &str, extra: &[&str]| {
        stdout_of(
            ws.mayfly()
                .args(["revoke", &fingerprint[..16], "--db", db, "--by", "alice"])
                .args(extra)
                .env("MAYFLY_PROVIDER_ENDPOINTS", fake.endpoints()),
        )
    };

    // Without a terminal and without --yes, nothing happens.
    let github = of("github-pat-classic");
    let (code, out, err) = revoke(&github.fingerprint, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("POST https://api.github.com/credentials/revoke") && err.contains("--yes"),
        "{out}{err}"
    );

    // Each revoker, through its provider's API.
    for (rule, revoker) in &planted {
        let secret = of(rule);
        if [&already.rule, &denied.rule, &limited.rule].contains(&rule) {
            continue;
        }
        let (code, out, err) = revoke(&secret.fingerprint, &["--yes"]);
        assert_eq!(code, 0, "{rule} ({revoker}): {out}{err}");
        assert!(
            out.contains("REVOKED at") && out.contains("by alice"),
            "{out}"
        );
        assert!(!out.contains(&secret.value) && !err.contains(&secret.value));
    }
    // Already inactive: recorded as revoked all the same.
    let (code, out, _) = revoke(&already.fingerprint, &["--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("already inactive at npm (status 401)"),
        "{out}"
    );
    // Refused: the key may not delete itself; the owner's steps are shown.
    let (code, out, _) = revoke(&denied.fingerprint, &["--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not revoked: Twilio SendGrid refused (status 403")
            && out.contains("someone with the rights"),
        "{out}"
    );
    // Rate limited past the retries: nothing recorded.
    let (code, out, _) = revoke(&limited.fingerprint, &["--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not revoked: rate limited (429); nothing was recorded"),
        "{out}"
    );
    // No API: the provider's manual steps.
    let openai = of("openai-project-key");
    let (code, out, _) = revoke(&openai.fingerprint, &["--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "no revocation API; by hand: Delete the key at https://platform.openai.com/api-keys"
        ),
        "{out}"
    );

    // The inventory says who revoked what, and when.
    let (_, out, _) =
        stdout_of(
            ws.mayfly()
                .args(["inventory", "show", &github.fingerprint[..16], "--db", db]),
        );
    assert!(
        out.contains("revoked")
            && out.contains("by alice with mayfly revoke (github-credentials-revoke)"),
        "{out}"
    );
    // A revoked key is dead at its provider from now on.
    let (_, out, _) = stdout_of(
        ws.mayfly()
            .args([
                "scan",
                "plants/github-pat-classic.txt",
                "--format",
                "json",
                "--validate",
            ])
            .env("MAYFLY_PROVIDER_ENDPOINTS", fake.endpoints()),
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["secrets"][0]["validation"]["status"], "dead", "{out}");

    // govern apply: what is left to revoke (ownership unclear), shown, then done.
    let (code, out, err) = stdout_of(
        ws.mayfly()
            .args(["govern", "apply", "--yes", "--db", db, "--by", "bob"])
            .env("MAYFLY_PROVIDER_ENDPOINTS", fake.endpoints()),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("the plan revokes 3 secrets"), "{out}");
    assert!(out.contains("by hand (no revocation API)"), "{out}");
    assert!(out.contains("mayfly: 0 revoked, 3 left"), "{out}");
}

#[test]
fn revocation_at_the_provider_on_sqlite() {
    let ws = Workspace::new();
    let db = ws.dir.path().join("inventory.db");
    revocation(db.to_str().unwrap());
}

#[test]
fn revocation_at_the_provider_on_postgres() {
    let (url, _drop) = crate::inventory::postgres_database();
    revocation(&url);
}

#[test]
fn a_secret_left_only_in_history_is_revoked_from_the_commit_that_holds_it() {
    let ws = Workspace::new();
    let repo = ws.repo();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .current_dir(&repo)
            .args(["-c", "user.name=Bob Ops", "-c", "user.email=bob@acme.test"])
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    // A Vercel token committed, then deleted: only history holds it.
    let rules = RuleSet::builtin().unwrap();
    let example = rules
        .rules()
        .iter()
        .find(|r| r.spec.id == "vercel-token")
        .and_then(|r| r.spec.examples.first().cloned())
        .unwrap();
    git(&["init", "-q"]);
    ws.write("deploy/.env", &format!("{example}\n"));
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "deploy settings"]);
    std::fs::remove_file(repo.join("deploy/.env")).unwrap();
    git(&["commit", "-q", "-am", "remove the settings"]);
    let db = ws.dir.path().join("inventory.db");
    let db = db.to_str().unwrap();
    let json = scan_and_save(&ws, &["--git", "."], db);
    let secret = &json["secrets"][0];
    assert_eq!(secret["rule"]["id"], "vercel-token");
    assert_eq!(secret["locations"][0]["present_at_head"], false);
    let value = secret["secret"].as_str().unwrap();
    let fingerprint = secret["fingerprint"].as_str().unwrap();

    let fake = FakeProviders::start(ws.dir.path(), serde_json::json!({ "live": [value] }));
    let log = fake.log.clone();
    let (code, out, err) = stdout_of(
        ws.mayfly()
            .args(["revoke", &fingerprint[..16], "--yes", "--db", db])
            .env("MAYFLY_PROVIDER_ENDPOINTS", fake.endpoints()),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("REVOKED at Vercel"), "{out}");
    assert!(std::fs::read_to_string(&log).unwrap().contains(value));
}
