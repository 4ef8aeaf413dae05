//! Each surface, recognised and scanned through a real directory walk.

use std::fs;

use mayfly_scan::scan::NoProgress;
use mayfly_scan::surface::Surface;

use crate::common::{ANTHROPIC, AWS_ID, AWS_SECRET, GITHUB, OPENAI, SLACK, scanner};

#[test]
fn every_surface_is_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let files: Vec<(&str, String, Surface)> = vec![
        (
            "src/app.py",
            format!("client = Client(token=\"{GITHUB}\")\n"),
            Surface::Code,
        ),
        (".env", format!("OPENAI_API_KEY={OPENAI}\n"), Surface::Env),
        (
            ".cursor/mcp.json",
            format!(
                "{{\"mcpServers\": {{\"gh\": {{\"env\": {{\"GITHUB_TOKEN\": \"{GITHUB}\"}}}}}}}}\n"
            ),
            Surface::McpConfig,
        ),
        (
            ".github/workflows/deploy.yml",
            format!("jobs:\n  deploy:\n    env:\n      SLACK_TOKEN: {SLACK}\n"),
            Surface::Ci,
        ),
        (
            "docker-compose.yml",
            format!("services:\n  app:\n    environment:\n      - ANTHROPIC_API_KEY={ANTHROPIC}\n"),
            Surface::SharedConfig,
        ),
        (
            ".claude/projects/app/1.jsonl",
            format!(
                "{{\"type\":\"user\",\"message\":{{\"role\":\"user\",\"content\":\"use \\\"{OPENAI}\\\" please\"}}}}\n"
            ),
            Surface::PromptLog,
        ),
        (
            "analysis.ipynb",
            format!("{{\"cells\": [{{\"source\": [\"key = \\\"{ANTHROPIC}\\\"\\n\"]}}]}}\n"),
            Surface::Notebook,
        ),
        (
            "slack-export/general/2024-05-01.json",
            format!(
                "[{{\"type\": \"message\", \"user\": \"U1\", \"text\": \"here is the token {SLACK}\", \"ts\": \"1714550000.1\"}}]\n"
            ),
            Surface::ChatExport,
        ),
        (
            ".bash_history",
            format!("export GH_TOKEN={GITHUB}\n"),
            Surface::ShellHistory,
        ),
        (
            "infra/prod.tfvars",
            format!("aws_access_key_id = \"{AWS_ID}\"\naws_secret_access_key = \"{AWS_SECRET}\"\n"),
            Surface::SharedConfig,
        ),
    ];
    for (path, content, _) in &files {
        let full = root.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content).unwrap();
    }
    let report = scanner().scan_paths(&[root.to_path_buf()], &NoProgress);
    for (path, _, surface) in &files {
        let hit = report
            .findings
            .iter()
            .find(|f| f.location.path.ends_with(path))
            .unwrap_or_else(|| panic!("nothing found in {path}: {:?}", report.findings));
        assert_eq!(hit.location.surface, *surface, "{path}");
    }
    assert_eq!(report.stats.files_scanned, files.len() as u64);
}

#[test]
fn dotfiles_ignored_and_vendored_files_are_scanned_but_git_internals_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join(".gitignore"), "secret.txt\nvendor/\n").unwrap();
    fs::write(root.join("secret.txt"), format!("token: {GITHUB}\n")).unwrap();
    fs::create_dir_all(root.join("vendor/lib")).unwrap();
    fs::write(
        root.join("vendor/lib/config.js"),
        format!("const k = '{OPENAI}';\n"),
    )
    .unwrap();
    fs::create_dir_all(root.join(".git/objects")).unwrap();
    fs::write(
        root.join(".git/config"),
        format!("url = https://x:{GITHUB}@github.com/o/r\n"),
    )
    .unwrap();
    let report = scanner().scan_paths(&[root.to_path_buf()], &NoProgress);
    let paths: Vec<&str> = report
        .findings
        .iter()
        .map(|f| f.location.path.as_str())
        .collect();
    assert!(paths.iter().any(|p| p.ends_with("secret.txt")), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.ends_with("vendor/lib/config.js")),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p.contains(".git/")), "{paths:?}");
}
