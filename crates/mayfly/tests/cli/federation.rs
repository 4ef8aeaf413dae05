//! `mayfly run --federate`: Mayfly as the OpenID provider a cloud trusts.
//! A stand-in for AWS STS (`tests/data/federation/fake_sts.py`) discovers
//! the broker as an issuer and verifies its ID tokens with a third-party
//! library (joserfc), as STS does, then answers with credentials.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};

use crate::common::{Workspace, stdout_of};
use crate::server::{Server, client, free_port, mint, serve_with};

const ROLE: &str = "arn:aws:iam::123456789012:role/deploy";

struct FakeSts {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fake_sts(dir: &Path, issuer: &str, allowed_sub: &str) -> FakeSts {
    stand_in(dir, "fake_sts.py", &[issuer, ROLE, allowed_sub])
}

/// One of the Python stand-ins of `tests/data/federation`, with its log.
fn stand_in(dir: &Path, script: &str, args: &[&str]) -> FakeSts {
    let ok = StdCommand::new("python3")
        .args(["-c", "import joserfc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the joserfc Python package is missing: run scripts/test (it installs it)"
    );
    let log = dir.join(format!("{script}.jsonl"));
    let mut child = StdCommand::new("python3")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/federation")
                .join(script),
        )
        .args(args)
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    FakeSts {
        child,
        url: format!("http://127.0.0.1:{}/", line.trim()),
        log,
    }
}

fn federating_broker(ws: &Workspace) -> Server {
    let config = ws.dir.path().join("mayfly.toml");
    std::fs::write(&config, "[federation]\nenabled = true\n").unwrap();
    let server = serve_with(
        ws,
        None,
        free_port(),
        &["--config", config.to_str().unwrap()],
    );
    mint(ws, "local:acme/deploy");
    server
}

#[test]
fn a_job_gets_aws_credentials_through_federation() {
    let ws = Workspace::new();
    let server = federating_broker(&ws);
    let sts = fake_sts(ws.dir.path(), &server.url, "local:acme/deploy");
    let (code, out, err) = stdout_of(
        client(&ws, &server)
            .args([
                "run",
                "--federate",
                &format!("aws:{ROLE}"),
                "--purpose",
                "deploy",
                "--owner",
                "team-infra",
                "--",
                "sh",
                "-c",
                "echo $AWS_ACCESS_KEY_ID $AWS_SECRET_ACCESS_KEY ${AWS_SESSION_TOKEN%%-*}",
            ])
            .env("MAYFLY_AWS_STS_URL", &sts.url),
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert_eq!(
        out.trim(),
        "ASIAMAYFLYTEST000001 fake/secret/for/the/test session"
    );
    let calls = std::fs::read_to_string(&sts.log).unwrap();
    let call: serde_json::Value = serde_json::from_str(calls.lines().next().unwrap()).unwrap();
    assert_eq!(call["sub"], "local:acme/deploy");
    assert_eq!(call["owner"], "team-infra");
    assert!(
        call["session"].as_str().unwrap().starts_with("mayfly-"),
        "{call}"
    );

    // The SDK's own way: a token file and the role, which curl trades here
    // as an SDK would.
    let (code, out, err) = stdout_of(
        client(&ws, &server).args([
            "run",
            "--federate",
            &format!("aws-sdk:{ROLE}"),
            "--purpose",
            "deploy",
            "--owner",
            "team-infra",
            "--",
            "sh",
            "-c",
            &format!(
                "curl -s {} -d Action=AssumeRoleWithWebIdentity -d Version=2011-06-15 -d RoleArn=$AWS_ROLE_ARN -d RoleSessionName=$AWS_ROLE_SESSION_NAME -d DurationSeconds=900 --data-urlencode WebIdentityToken@$AWS_WEB_IDENTITY_TOKEN_FILE",
                sts.url
            ),
        ]),
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(
        out.contains("<AccessKeyId>ASIAMAYFLYTEST000001</AccessKeyId>"),
        "{out}"
    );
}

#[test]
fn the_official_anthropic_sdk_federates_with_no_key() {
    let ok = StdCommand::new("python3")
        .args(["-c", "import anthropic"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the anthropic Python package is missing: run scripts/test (it installs it)"
    );
    let ws = Workspace::new();
    let server = federating_broker(&ws);
    let claude = stand_in(
        ws.dir.path(),
        "fake_anthropic.py",
        &[
            &server.url,
            "org-acme",
            "fdrl_deploy",
            "svac_agent",
            "local:acme/deploy",
        ],
    );
    let base = claude.url.trim_end_matches('/').to_owned();
    let script = "import anthropic\nm = anthropic.Anthropic(max_retries=0).messages.create(model='claude-test', max_tokens=8, messages=[{'role': 'user', 'content': 'hi'}])\nprint(m.content[0].text)";
    let (code, out, err) = stdout_of(
        client(&ws, &server)
            .args([
                "run",
                "--federate",
                "anthropic:org-acme:fdrl_deploy:svac_agent",
                "--purpose",
                "agent",
                "--owner",
                "team-ml",
                "--",
                "python3",
                "-c",
                script,
            ])
            .env("ANTHROPIC_BASE_URL", &base)
            // A key in the caller's environment must not reach CMD.
            .env("ANTHROPIC_API_KEY", "sk-ant-api03-not-for-the-command"), // mayfly:allow (test fixture)
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert_eq!(out.trim(), "Hello through federation");
    let calls = std::fs::read_to_string(&claude.log).unwrap();
    assert!(calls.contains("\"sub\": \"local:acme/deploy\""), "{calls}");
}

#[test]
fn a_role_that_does_not_trust_the_workload_says_so() {
    let ws = Workspace::new();
    let server = federating_broker(&ws);
    let sts = fake_sts(ws.dir.path(), &server.url, "local:acme/someone-else");
    let (code, out, err) = stdout_of(
        client(&ws, &server)
            .args([
                "run",
                "--federate",
                &format!("aws:{ROLE}"),
                "--purpose",
                "deploy",
                "--owner",
                "o",
                "--",
                "echo",
                "ran",
            ])
            .env("MAYFLY_AWS_STS_URL", &sts.url),
    );
    assert_ne!(code, 0);
    assert!(!out.contains("ran"), "{out}");
    assert!(
        err.contains("AccessDenied") && err.contains("trust policy"),
        "{err}"
    );

    // A broker that does not federate refuses, and says how to turn it on.
    let plain = serve_with(&ws, None, free_port(), &[]);
    let (code, _, err) = stdout_of(client(&ws, &plain).args([
        "run",
        "--federate",
        &format!("aws:{ROLE}"),
        "--purpose",
        "deploy",
        "--owner",
        "o",
        "--",
        "true",
    ]));
    assert_ne!(code, 0);
    assert!(err.contains("[federation] enabled = true"), "{err}");
}
