//! `mayfly scan --validate` against local stand-ins of the providers'
//! documented identity endpoints: every built-in verifier, live and dead
//! keys, rate limits, slow and broken answers, and the per-host limits.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};

use mayfly_providers::verifier::Verifiers;
use mayfly_scan::rule::RuleSet;

use crate::common::{Workspace, stdout_of};

const MARKER: &str = "provider-body-marker-7f3a";

/// The fake providers' server, stopped on drop.
pub struct FakeProviders {
    child: Child,
    pub port: u16,
    /// The request log: one JSON line per request received.
    pub log: PathBuf,
}

impl Drop for FakeProviders {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeProviders {
    /// Starts them with `settings` (which keys are live, slow, rate
    /// limited...), writing their config and request log in `dir`.
    pub fn start(dir: &Path, mut settings: serde_json::Value) -> FakeProviders {
        let log = dir.join("requests.jsonl");
        let config = dir.join("fake.json");
        settings["log"] = serde_json::json!(log);
        std::fs::write(&config, settings.to_string()).unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/providers/fake_providers.py");
        let mut child = StdCommand::new("python3")
            .arg(script)
            .arg(&config)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .expect("the fake providers print their port");
        FakeProviders { child, port, log }
    }

    /// `--provider-endpoint` values sending every verifier's origin here.
    pub fn endpoints(&self) -> String {
        let verifiers = Verifiers::builtin().unwrap();
        let mut origins: Vec<(String, String)> = verifiers
            .iter()
            .map(|v| (v.origin.clone(), v.host.clone()))
            .chain(
                mayfly_providers::revoke::Revokers::builtin()
                    .unwrap()
                    .iter()
                    .flat_map(|r| r.origins()),
            )
            .collect();
        origins.sort();
        origins.dedup();
        origins
            .iter()
            .map(|(origin, host)| format!("{origin}=http://127.0.0.1:{}/{host}", self.port))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A random OpenAI project key in the documented format.
fn openai_key(n: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (n as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut part = |len: usize| -> String {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize] as char
            })
            .collect()
    };
    format!("sk-proj-{}T3BlbkFJ{}", part(40), part(40)) // mayfly:allow (test fixture)
}

#[test]
fn every_verifier_asks_its_provider_once_per_secret_within_the_limits() {
    let ws = Workspace::new();
    // The first example of every rule with a verifier, one file each.
    let rules = RuleSet::builtin().unwrap();
    let mut planted = Vec::new();
    // AWS keys are signed with a pair: their own test below.
    for rule in rules
        .rules()
        .iter()
        .filter(|r| r.spec.verify.as_deref().is_some_and(|v| v != "aws-sts"))
    {
        let example = rule.spec.examples.first().unwrap();
        ws.write(
            &format!("plants/{}.txt", rule.spec.id),
            &format!("{example}\n"),
        );
        planted.push(rule.spec.id.clone());
    }
    // Many keys of one provider, to load one host; one of them copied twice.
    let openai: Vec<String> = (0..12).map(openai_key).collect();
    for (i, key) in openai.iter().enumerate() {
        ws.write(&format!("many/{i}.env"), &format!("OPENAI_API_KEY={key}\n"));
    }
    ws.write("many/copy.py", &format!("key = '{}'\n", openai[0]));

    // What was found, with its value, to tell the fake which keys are live.
    let (code, out, err) = stdout_of(ws.mayfly().args([
        "scan",
        ".",
        "--format",
        "json",
        "--show-secrets",
        "--no-copies",
    ]));
    assert_eq!(code, 1, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut by_rule: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for secret in json["secrets"].as_array().unwrap() {
        let path = secret["locations"][0]["path"].as_str().unwrap();
        if !path.starts_with("plants/") {
            continue;
        }
        by_rule
            .entry(secret["rule"]["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(secret["secret"].as_str().unwrap().to_owned());
    }
    let value = |rule: &str| by_rule[rule][0].clone();
    for rule in &planted {
        assert!(by_rule.contains_key(rule), "{rule}'s example was not found");
    }
    // Failure paths, each on one provider; every other key alternates
    // between live and dead.
    let special: HashMap<&str, &str> = [
        ("gitlab-pat", "rate_limited"),
        ("mistral-api-key", "slow"),
        ("npm-access-token", "server_error"),
        ("slack-bot-token", "garbage"),
        ("notion-integration-token", "flaky"),
    ]
    .into_iter()
    .collect();
    let mut lists: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut expected: HashMap<String, &str> = HashMap::new();
    for (i, rule) in planted.iter().enumerate() {
        let secret = value(rule);
        let (list, verdict) = match special.get(rule.as_str()) {
            Some(&"flaky") => ("flaky", "live"),
            Some(&other) => (other, "unknown"),
            None if i % 2 == 0 => ("live", "live"),
            None => ("dead", "dead"),
        };
        lists.entry(list).or_default().push(secret.clone());
        expected.insert(secret, verdict);
    }
    for (i, key) in openai.iter().enumerate() {
        let verdict = if i % 3 == 0 { "dead" } else { "live" };
        if verdict == "live" {
            lists.entry("live").or_default().push(key.clone());
        }
        expected.insert(key.clone(), verdict);
    }
    let fake = FakeProviders::start(
        ws.dir.path(),
        serde_json::json!({
            "slow_seconds": 10,
            "live": lists["live"], "rate_limited": lists["rate_limited"], "slow": lists["slow"],
            "server_error": lists["server_error"], "garbage": lists["garbage"], "flaky": lists["flaky"],
        }),
    );
    let log = fake.log.clone();

    let (code, out, err) = stdout_of(
        ws.mayfly()
            .args([
                "scan",
                ".",
                "--format",
                "json",
                "--show-secrets",
                "--validate",
            ])
            .args([
                "--validate-per-host",
                "2",
                "--validate-rate",
                "50",
                "--validate-timeout",
                "3",
            ])
            .env("MAYFLY_PROVIDER_ENDPOINTS", fake.endpoints()),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        !out.contains(MARKER) && !err.contains(MARKER),
        "a provider's answer leaked"
    );
    assert!(
        err.contains("--validate asks ")
            && err.contains("api.github.com (")
            && err.contains("api.openai.com ("),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut seen = 0;
    for secret in json["secrets"].as_array().unwrap() {
        let value = secret["secret"].as_str().unwrap();
        let Some(verdict) = expected.get(value) else {
            continue;
        };
        seen += 1;
        let validation = &secret["validation"];
        let rule = secret["rule"]["id"].as_str().unwrap();
        assert_eq!(validation["status"], *verdict, "{rule}: {validation}");
        assert!(validation["checked_at"].as_str().unwrap().ends_with('Z'));
        let reason = validation["reason"].as_str().unwrap_or_default();
        match special.get(rule) {
            Some(&"rate_limited") => assert!(reason.contains("rate limited"), "{reason}"),
            Some(&"slow") => assert_eq!(reason, "timed out"),
            Some(&"server_error") => assert_eq!(reason, "server error (503)"),
            Some(&"garbage") => assert_eq!(reason, "an answer without /ok"),
            _ => {}
        }
    }
    assert_eq!(seen, expected.len(), "{out}");
    // Live secrets come first.
    let statuses: Vec<&str> = json["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["validation"]["status"].as_str().unwrap_or("none"))
        .collect();
    let first_other = statuses.iter().position(|s| *s != "live").unwrap();
    assert!(
        statuses[first_other..].iter().all(|s| *s != "live"),
        "{statuses:?}"
    );

    // The fake saw each secret once (a copy is not asked again; retries
    // only where the answer asked for one), and never more than two
    // requests at once to one host.
    let requests: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut asked: HashMap<String, usize> = HashMap::new();
    for r in &requests {
        if let Some(c) = r["credential"].as_str() {
            *asked.entry(c.to_owned()).or_default() += 1;
        }
    }
    for (secret, n) in &asked {
        let retried = lists["rate_limited"].contains(secret)
            || lists["server_error"].contains(secret)
            || lists["slow"].contains(secret)
            || lists["flaky"].contains(secret);
        if retried {
            assert!(*n >= 2 && *n <= 3, "{n} requests for a retried secret");
        } else {
            assert_eq!(*n, 1, "a secret was asked {n} times");
        }
    }
    assert_eq!(asked.get(&openai[0]), Some(&1));
    let mut by_host: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &requests {
        by_host
            .entry(r["host"].as_str().unwrap())
            .or_default()
            .push((r["start"].as_f64().unwrap(), r["end"].as_f64().unwrap()));
    }
    for (host, spans) in &by_host {
        for (start, _) in spans {
            let open = spans
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count();
            assert!(open <= 2, "{open} requests at once to {host}");
        }
    }
    let mut starts: Vec<f64> = by_host["api.openai.com"].iter().map(|(s, _)| *s).collect();
    starts.sort_by(f64::total_cmp);
    let span = starts.last().unwrap() - starts.first().unwrap();
    assert!(
        span >= 11.0 / 50.0 * 0.9,
        "12 requests at 50/s took only {span} s"
    );

    // --only-live keeps only what the providers accepted.
    let (_, out, _) = stdout_of(
        ws.mayfly()
            .args(["scan", ".", "--format", "json", "--validate", "--only-live"])
            .args(["--validate-timeout", "3"])
            .env("MAYFLY_PROVIDER_ENDPOINTS", fake.endpoints()),
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secrets = json["secrets"].as_array().unwrap();
    assert!(!secrets.is_empty());
    assert!(
        secrets.iter().all(|s| s["validation"]["status"] == "live"),
        "{out}"
    );
}

#[test]
fn validation_is_opt_in_and_never_runs_on_staged_changes() {
    let ws = Workspace::new();
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", "--staged", "--validate"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("--validate") && err.contains("--staged"),
        "{err}"
    );
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", ".", "--only-live"]));
    assert_eq!(code, 2);
    assert!(err.contains("--validate"), "{err}");
    let (code, _, err) = stdout_of(ws.mayfly().args([
        "scan",
        ".",
        "--validate",
        "--provider-endpoint",
        "api.github.com",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad endpoint override"), "{err}");
    let (code, out, _) = stdout_of(ws.mayfly().args(["rules", "providers"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("aws-sts")
            && out.contains("rules: github-pat-classic")
            && out.contains("github-credentials-revoke")
            && out.contains("DELETE https://api.vercel.com/v3/user/tokens/current"),
        "{out}"
    );
    ws.write("clean.txt", "nothing\n");
    let (code, _, err) = stdout_of(ws.mayfly().args(["scan", ".", "--validate"]));
    assert_eq!(code, 0);
    assert!(err.contains("nothing was sent"), "{err}");
}

/// Verdicts kept in the inventory, and the plan that puts a live key on a
/// forbidden surface first, on one store backend.
fn verdicts_in_the_inventory(db: &str) {
    let ws = Workspace::new();
    let (live, dead) = (openai_key(101), openai_key(102));
    ws.write(
        ".claude/projects/app/session.jsonl",
        &format!("{{\"type\":\"user\",\"message\":{{\"content\":\"OPENAI_API_KEY={dead}\"}}}}\n{{\"type\":\"user\",\"message\":{{\"content\":\"OPENAI_API_KEY={live}\"}}}}\n"),
    );
    let fake = FakeProviders::start(ws.dir.path(), serde_json::json!({ "live": [live] }));
    let (code, _, err) = stdout_of(
        ws.mayfly()
            .args(["scan", ".", "--validate", "--save", "--db", db])
            .env("MAYFLY_PROVIDER_ENDPOINTS", fake.endpoints()),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("1 live, 1 dead, 0 unknown"), "{err}");
    let (code, out, err) = stdout_of(
        ws.mayfly()
            .args(["govern", "plan", "--format", "json", "--db", db]),
    );
    assert_eq!(code, 1, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let plan = plan["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 2, "{out}");
    assert_eq!(plan[0]["urgent"], true, "the live key comes first: {out}");
    assert!(plan[0]["validation"].as_str().unwrap().starts_with("live "));
    assert_eq!(plan[1]["urgent"], false);
    assert!(plan[1]["validation"].as_str().unwrap().starts_with("dead "));
    let (_, list, _) = stdout_of(ws.mayfly().args(["inventory", "list", "--db", db]));
    assert!(
        list.contains("open, live ") && list.contains("open, dead "),
        "{list}"
    );
    let fingerprint = plan[0]["fingerprint"].as_str().unwrap();
    let (_, show, _) =
        stdout_of(
            ws.mayfly()
                .args(["inventory", "show", &fingerprint[..16], "--db", db]),
        );
    assert!(show.contains("validated  live on "), "{show}");
    let (_, text, _) = stdout_of(ws.mayfly().args(["govern", "plan", "--db", db]));
    assert!(
        text.contains("URGENT: its provider accepted it (live "),
        "{text}"
    );
}

#[test]
fn verdicts_in_the_inventory_on_sqlite() {
    let ws = Workspace::new();
    let db = ws.dir.path().join("inventory.db");
    verdicts_in_the_inventory(db.to_str().unwrap());
}

#[test]
fn verdicts_in_the_inventory_on_postgres() {
    let (url, _drop) = crate::inventory::postgres_database();
    verdicts_in_the_inventory(&url);
}

/// An AWS access key id of `account`, as AWS encodes it.
fn aws_key_id(account: u64, salt: u64) -> String {
    let z = (account << 7) | (salt & 0x7f);
    let mut bytes = z.to_be_bytes()[2..8].to_vec();
    bytes.extend_from_slice(&(salt as u32 ^ 0x5a5a_1234).to_be_bytes());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits = bytes
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let body: String = (0..16)
        .rev()
        .map(|i| alphabet[((bits >> (i * 5)) & 31) as usize] as char)
        .collect();
    format!("AKIA{body}")
}

fn aws_secret(n: u64) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+";
    let mut state = 0x2545_f491_4f6c_dd1d_u64.wrapping_mul(n + 1);
    (0..40)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            alphabet[(state % 64) as usize] as char
        })
        .collect()
}

#[test]
fn aws_keys_are_checked_with_a_signed_sts_call_and_canaries_are_never_called() {
    let ws = Workspace::new();
    let live = (aws_key_id(123_456_789_012, 11), aws_secret(1));
    let dead = (aws_key_id(210_987_654_321, 22), aws_secret(2));
    let wrong = (aws_key_id(123_456_789_012, 33), aws_secret(3));
    let canary = (aws_key_id(171_436_882_533, 44), aws_secret(4));
    let pair = |(id, secret): &(String, String)| {
        format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n")
    };
    ws.write("live/credentials", &pair(&live));
    ws.write("dead/credentials", &pair(&dead));
    ws.write(
        "wrong/credentials",
        &pair(&(wrong.0.clone(), aws_secret(9))),
    );
    ws.write("canary/credentials", &pair(&canary));
    let lone = aws_key_id(123_456_789_012, 55);
    ws.write("lone.md", &format!("the key id was {lone}\n"));
    let keys = serde_json::json!({ live.0.clone(): live.1, wrong.0.clone(): wrong.1, canary.0.clone(): canary.1 });
    let fake = FakeProviders::start(ws.dir.path(), serde_json::json!({ "aws": keys }));
    let log = fake.log.clone();
    let (code, out, err) = stdout_of(
        ws.mayfly()
            .args([
                "scan",
                ".",
                "--format",
                "json",
                "--show-secrets",
                "--validate",
            ])
            .env("MAYFLY_PROVIDER_ENDPOINTS", fake.endpoints()),
    );
    assert_eq!(code, 1, "{err}");
    assert!(!out.contains(MARKER), "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let verdict = |id: &str| {
        let secret = json["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["secret"] == id)
            .unwrap_or_else(|| panic!("{id} not found: {out}"));
        (
            secret["validation"]["status"].as_str().unwrap().to_owned(),
            secret["validation"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    assert_eq!(verdict(&live.0).0, "live");
    assert_eq!(verdict(&dead.0), ("dead".into(), "status 403".into()));
    assert_eq!(
        verdict(&wrong.0).0,
        "dead",
        "a signature made with another secret"
    );
    let (status, reason) = verdict(&canary.0);
    assert_eq!(status, "unknown");
    assert!(
        reason.contains("canary token (AWS account 171436882533)"),
        "{reason}"
    );
    let (status, reason) = verdict(&lone);
    assert_eq!(status, "unknown");
    assert!(
        reason.contains("no aws-secret-access-key beside it"),
        "{reason}"
    );
    let requests = std::fs::read_to_string(&log).unwrap();
    assert!(
        !requests.contains(&canary.0),
        "the canary was called: {requests}"
    );
    assert_eq!(requests.lines().count(), 3, "{requests}");
}
