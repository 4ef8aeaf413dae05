//! Secrets hidden by encodings are found, and reported where the encoded text is.

use base64::Engine as _;
use mayfly_scan::decode::Decoder;

use crate::common::{AWS_ID, GITHUB, OPENAI, ids, scanner};

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn kubernetes_secret_data_is_base64_decoded() {
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ndata:\n  GITHUB_TOKEN: {}\n  OPENAI_API_KEY: {}\n",
        b64(GITHUB),
        b64(OPENAI)
    );
    let findings = scanner().scan_bytes("k8s/secret.yaml", manifest.as_bytes());
    assert_eq!(
        ids(&findings),
        vec!["github-pat-classic", "openai-project-key"]
    );
    assert!(
        findings
            .iter()
            .all(|f| f.location.decoder == Some(Decoder::Base64))
    );
    assert_eq!(
        (findings[0].location.line, findings[0].location.column),
        (6, 17)
    );
    assert_eq!(
        findings[0].location.surface,
        mayfly_scan::surface::Surface::SharedConfig
    );
}

#[test]
fn basic_auth_header_is_decoded_by_its_validator() {
    let header = format!(
        "curl -H 'Authorization: Basic {}' https://ci.corp/api\n",
        b64("deploy:Zk29xq!Lm4pT")
    );
    let findings = scanner().scan_bytes("notes.md", header.as_bytes());
    assert_eq!(ids(&findings), vec!["http-basic-auth-header"]);
    let weak = format!("Authorization: Basic {}\n", b64("user:password"));
    assert!(scanner().scan_bytes("notes.md", weak.as_bytes()).is_empty());
}

#[test]
fn json_escaped_private_key_in_a_transcript() {
    // A real key, as `openssl` writes it.
    let pem = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl is needed for this test");
    let pem = String::from_utf8(pem.stdout).unwrap();
    let mut body = String::new();
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        body.push_str(line);
        body.push_str("\\n");
    }
    let line = format!(
        "{{\"type\":\"tool_result\",\"content\":\"{{\\\"private_key\\\": \\\"-----BEGIN RSA PRIVATE KEY-----\\\\n{body}-----END RSA PRIVATE KEY-----\\\\n\\\"}}\"}}\n"
    );
    let text = format!("{{\"type\":\"user\",\"message\":\"hi\"}}\n{line}");
    let findings = scanner().scan_bytes("session.jsonl", text.as_bytes());
    assert_eq!(ids(&findings), vec!["private-key-rsa"], "{findings:?}");
    assert_eq!(findings[0].location.line, 2);
    // The same key as a plain PEM file is the same secret.
    let plain = format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}-----END RSA PRIVATE KEY-----\n",
        body.replace("\\n", "\n")
    );
    let file = scanner().scan_bytes("id_rsa", plain.as_bytes());
    assert_eq!(ids(&file), vec!["private-key-rsa"]);
    assert_eq!(file[0].fingerprint, findings[0].fingerprint);
}

#[test]
fn url_encoded_connection_string() {
    let text =
        "jdbc_url=postgresql%3A%2F%2Fbilling%3AQz7%21kLp2xVr9%40db.internal%3A5432%2Fbilling\n"; // mayfly:allow (test fixture)
    let findings = scanner().scan_bytes("app.properties", text.as_bytes());
    assert_eq!(
        ids(&findings),
        vec!["postgres-url-password"],
        "{findings:?}"
    );
    assert_eq!(findings[0].location.decoder, Some(Decoder::Percent));
}

#[test]
fn same_secret_in_several_encodings_is_one_fingerprint() {
    let text = format!(
        "a = \"{AWS_ID}\"\nb: {}\n{{\"aws\": \"{AWS_ID}\"}}\n",
        b64(AWS_ID)
    );
    let findings = scanner().scan_bytes("mixed.txt", text.as_bytes());
    assert_eq!(findings.len(), 3, "{findings:?}");
    assert!(
        findings
            .iter()
            .all(|f| f.fingerprint == findings[0].fingerprint)
    );
    let lines: Vec<u64> = findings.iter().map(|f| f.location.line).collect();
    assert_eq!(lines, vec![1, 2, 3]);
}
