//! Private keys as the tools make them: `ssh-keygen`, `openssl` and `gpg`
//! run at test time, and every key they write is found, in a file of its
//! own, in a YAML block scalar and in a string literal.

use std::path::Path;
use std::process::Command;

use mayfly_scan::scan::NoProgress;

use crate::common::{ids, scanner};

fn run(program: &str, args: &[&str], dir: &Path) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GNUPGHOME", dir.join("gnupg"))
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for this test: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// (what, expected rule, PEM text) for each key the tools make.
fn real_keys(dir: &Path) -> Vec<(&'static str, &'static str, String)> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let mut keys = Vec::new();
    for (kind, bits) in [
        ("ed25519", None),
        ("rsa", Some("3072")),
        ("ecdsa", Some("256")),
    ] {
        let file = format!("id_{kind}");
        let mut args = vec!["-q", "-t", kind, "-N", "", "-C", "", "-f", &file];
        if let Some(bits) = bits {
            args.extend(["-b", bits]);
        }
        run("ssh-keygen", &args, dir);
        keys.push((kind, "private-key-openssh", read(&file)));
    }
    // A passphrase-protected OpenSSH key is still a copy worth finding.
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "a passphrase",
            "-f",
            "id_protected",
        ],
        dir,
    );
    keys.push(("ssh protected", "private-key-openssh", read("id_protected")));
    let openssl = |args: &[&str]| String::from_utf8(run("openssl", args, dir)).unwrap();
    keys.push((
        "openssl rsa",
        "private-key-rsa",
        openssl(&["genrsa", "-traditional", "2048"]),
    ));
    keys.push((
        "openssl ec",
        "private-key-ec",
        openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout"]),
    ));
    run("openssl", &["dsaparam", "-out", "dsa.params", "1024"], dir);
    run(
        "openssl",
        &["gendsa", "-out", "dsa.pkcs8", "dsa.params"],
        dir,
    );
    keys.push((
        "openssl dsa",
        "private-key-dsa",
        openssl(&["dsa", "-in", "dsa.pkcs8"]),
    ));
    keys.push((
        "openssl pkcs8",
        "private-key-pkcs8",
        openssl(&[
            "genpkey",
            "-algorithm",
            "rsa",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ]),
    ));
    keys.push((
        "openssl pkcs8 encrypted",
        "private-key-encrypted",
        openssl(&[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-aes256",
            "-pass",
            "pass:a passphrase",
        ]),
    ));
    std::fs::create_dir_all(dir.join("gnupg")).unwrap();
    run(
        "gpg",
        &[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Test <t@mayfly.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
        dir,
    );
    keys.push((
        "gpg",
        "private-key-pgp",
        String::from_utf8(run(
            "gpg",
            &["--batch", "--armor", "--export-secret-keys"],
            dir,
        ))
        .unwrap(),
    ));
    keys
}

#[test]
fn keys_made_by_ssh_keygen_openssl_and_gpg_are_found_wherever_they_are_pasted() {
    let dir = tempfile::tempdir().unwrap();
    let keys = real_keys(dir.path());
    let scanner = scanner();
    for (what, rule, pem) in &keys {
        let pem = pem.trim_end();
        let yaml = format!(
            "deploy:\n  ssh_key: |\n{}\n  user: git\n",
            pem.lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let literal = format!("KEY = \"{}\"\nconnect(KEY)\n", pem.replace('\n', "\\n"));
        let lines: Vec<&str> = pem.lines().collect();
        let joined = |each: &dyn Fn(&str) -> String, sep: &str| {
            lines.iter().map(|l| each(l)).collect::<Vec<_>>().join(sep)
        };
        // A notebook cell's source: one JSON string per line.
        let notebook = format!(
            "{{\"cells\": [{{\"cell_type\": \"code\", \"source\": [\n    \"import paramiko\\n\",\n{}\n   ]}}]}}\n",
            joined(&|l| format!("    \"{l}\\n\""), ",\n")
        );
        let commented = format!(
            "def connect():\n    pass\n\n{}\n\nconnect()\n",
            joined(&|l| format!("# {l}"), "\n")
        );
        let quoted = format!(
            "Here is the deploy key:\n\n{}\n",
            joined(&|l| format!("> {l}"), "\n")
        );
        let concatenated = format!(
            "const key =\n{};\n",
            joined(&|l| format!("  \"{l}\\n\""), " +\n")
        );
        let filler: String = (0..300)
            .map(|i| format!("fn step_{i}(x: u32) -> u32 {{ x.wrapping_mul({i}) }}\n"))
            .collect();
        let inside = format!("{filler}const KEY: &str = r\"{pem}\";\n{filler}");
        let mut fingerprints = Vec::new();
        for (shape, text) in [
            ("file", format!("{pem}\n")),
            ("yaml", yaml),
            ("string literal", literal),
            ("notebook source", notebook),
            ("commented block", commented),
            ("markdown quote", quoted),
            ("concatenated string", concatenated),
            ("larger file", inside),
        ] {
            let findings = scanner.scan_bytes("key.txt", text.as_bytes());
            let found = ids(&findings);
            assert!(
                found.contains(rule),
                "{what} as a {shape}: expected {rule}, found {found:?}\n{text}"
            );
            assert_eq!(findings.len(), 1, "{what} as a {shape}: {found:?}");
            fingerprints.push((shape, findings[0].fingerprint));
        }
        // Wherever it is pasted, it is the same secret.
        let (_, first) = fingerprints[0];
        for (shape, fingerprint) in &fingerprints {
            assert_eq!(
                *fingerprint, first,
                "{what} as a {shape} fingerprints differently"
            );
        }
    }
    // Through a directory walk too, as `~/.ssh` holds them.
    let ssh = dir.path().join("home/.ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::copy(dir.path().join("id_ed25519"), ssh.join("id_ed25519")).unwrap();
    let report = scanner.scan_paths(&[dir.path().join("home")], &NoProgress);
    assert_eq!(ids(&report.findings), vec!["private-key-openssh"]);
}
