//! SARIF 2.1.0 output for GitHub code scanning and other SARIF consumers:
//! one result per copy, the secret's fingerprint in `partialFingerprints`.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::RunInfo;
use crate::finding::{FoundBy, Location, SecretGroup};
use crate::rule::{RuleInfo, Severity};

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// GitHub ranks security results by this score (0.0 to 10.0).
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}

/// A URI reference for a path: relative paths stay relative (resolved
/// against the repository root by consumers), absolute ones become `file://`.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.replace('\\', "/").bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.starts_with('/') {
        format!("file://{out}")
    } else {
        out
    }
}

fn rule_descriptor(rule: &RuleInfo) -> Value {
    let mut tags = vec!["security".to_owned(), "secret".to_owned()];
    tags.extend(rule.nhi.iter().map(|n| format!("owasp-nhi/{n:?}")));
    let nhi: Vec<String> = rule
        .nhi
        .iter()
        .map(|n| format!("{n:?} {}", n.title()))
        .collect();
    json!({
        "id": rule.id,
        "name": rule.name,
        "shortDescription": { "text": rule.name },
        "fullDescription": { "text": rule.description },
        "help": {
            "text": format!("{} Rotate or revoke the credential at {}, then remove every copy; OWASP NHI Top 10: {}.", rule.description, rule.provider, nhi.join(", ")),
            "markdown": format!("{}\n\nRotate or revoke the credential at **{}**, then remove every copy.\n\nOWASP NHI Top 10: {}.", rule.description, rule.provider, nhi.join(", ")),
        },
        "defaultConfiguration": { "level": level(rule.severity) },
        "properties": {
            "tags": tags,
            "precision": "high",
            "problem.severity": level(rule.severity),
            "security-severity": security_severity(rule.severity),
            "provider": rule.provider,
        },
    })
}

fn physical_location(location: &Location) -> Value {
    let artifact = json!({ "uri": uri(&location.path) });
    // A copy inside a database cell has no line in the file itself.
    if location.cell.is_some() {
        json!({ "artifactLocation": artifact })
    } else {
        json!({
            "artifactLocation": artifact,
            "region": { "startLine": location.line, "startColumn": location.column },
        })
    }
}

pub(super) fn write(
    groups: &[SecretGroup<'_>],
    run: &RunInfo,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut rule_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rules = Vec::new();
    for group in groups {
        if !rule_index.contains_key(group.rule.id.as_str()) {
            rule_index.insert(&group.rule.id, rules.len());
            rules.push(rule_descriptor(group.rule));
        }
    }
    let mut results = Vec::new();
    for group in groups {
        let copies = group.locations.len();
        for (n, location) in group.locations.iter().enumerate() {
            let mut text = format!(
                "{} {} (copy {} of {}, fingerprint {})",
                group.rule.name,
                group.preview,
                n + 1,
                copies,
                group.fingerprint.short()
            );
            if let Some(cell) = &location.cell {
                text.push_str(&format!(
                    " in table {}, column {}, row {}",
                    cell.table, cell.column, cell.row
                ));
            }
            let copy_id: String = Sha256::digest(
                format!("{}\0{}", group.fingerprint.to_hex(), location.path).as_bytes(),
            )
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
            let mut properties = serde_json::Map::new();
            properties.insert("surface".into(), json!(location.surface.as_str()));
            properties.insert("copies".into(), json!(copies));
            properties.insert("provider".into(), json!(group.rule.provider));
            if let Some(commit) = &location.commit {
                properties.insert(
                    "commit".into(),
                    json!({ "id": commit.id, "author": commit.author, "email": commit.email, "date": commit.date }),
                );
            }
            if let Some(present) = location.present_at_head {
                properties.insert("presentAtHead".into(), json!(present));
            }
            if let Some(tool) = &location.tool {
                properties.insert("tool".into(), json!(tool));
            }
            if let Some(decoder) = location.decoder {
                properties.insert("decoder".into(), json!(decoder.as_str()));
            }
            if location.found_by != FoundBy::Rule {
                properties.insert("foundBy".into(), json!(location.found_by.as_str()));
            }
            if let Some(v) = group.validation {
                properties.insert(
                    "validation".into(),
                    json!({ "status": v.status.as_str(), "verifier": v.verifier, "host": v.host, "checkedAt": v.checked_at, "reason": v.reason }),
                );
            }
            if let Some(custody) = group.custody {
                properties.insert("custodyEntry".into(), json!(custody));
            }
            if let Some(secret) = group.secret {
                properties.insert("secret".into(), json!(secret));
            }
            results.push(json!({
                "ruleId": group.rule.id,
                "ruleIndex": rule_index.get(group.rule.id.as_str()).copied().unwrap_or(0),
                "level": level(group.rule.severity),
                "message": { "text": text },
                "locations": [{ "physicalLocation": physical_location(location) }],
                "partialFingerprints": {
                    "mayfly/secret/v1": group.fingerprint.to_hex(),
                    "mayfly/copy/v1": copy_id,
                },
                "properties": properties,
            }));
        }
    }
    let document = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "mayfly",
                    "version": run.version,
                    "semanticVersion": run.version,
                    "informationUri": "https://example.invalid/mayfly",
                    "rules": rules,
                }
            },
            "results": results,
            "properties": { "fingerprintKeyId": run.key_id },
        }],
    });
    serde_json::to_writer_pretty(&mut *out, &document).map_err(io::Error::other)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn uris() {
        assert_eq!(uri("src/a b.py"), "src/a%20b.py");
        assert_eq!(uri("/home/u/.env"), "file:///home/u/.env");
        assert_eq!(uri("dir\\x#1"), "dir/x%231");
    }
}
