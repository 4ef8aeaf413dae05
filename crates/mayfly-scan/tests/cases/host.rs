//! A fake home directory laid out like a developer's workstation.

use std::fs;

use mayfly_scan::scan::NoProgress;
use mayfly_scan::surface::Surface;

use crate::common::{ANTHROPIC, AWS_ID, AWS_SECRET, GITHUB, OPENAI, SLACK, STRIPE, scanner};

#[test]
fn workstation_locations_name_their_tools() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let files: Vec<(&str, String)> = vec![
        (
            ".config/Claude/claude_desktop_config.json",
            format!(
                "{{\"mcpServers\": {{\"github\": {{\"command\": \"npx\", \"env\": {{\"GITHUB_PERSONAL_ACCESS_TOKEN\": \"{GITHUB}\"}}}}}}}}\n"
            ),
        ),
        (
            ".claude/projects/-home-dev-app/8c1e.jsonl",
            format!(
                "{{\"type\":\"user\",\"message\":{{\"role\":\"user\",\"content\":\"my key is {ANTHROPIC}\"}}}}\n"
            ),
        ),
        (
            ".codex/config.toml",
            format!(
                "[mcp_servers.stripe]\ncommand = \"npx\"\nenv = {{ STRIPE_SECRET_KEY = \"{STRIPE}\" }}\n"
            ),
        ),
        (
            ".bash_history",
            format!("ls\nexport OPENAI_API_KEY={OPENAI}\n"),
        ),
        (
            ".aws/credentials",
            format!(
                "[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n"
            ),
        ),
        (
            ".config/Code/User/mcp.json",
            format!(
                "{{\"servers\": {{\"slack\": {{\"env\": {{\"SLACK_BOT_TOKEN\": \"{SLACK}\"}}}}}}}}\n"
            ),
        ),
        ("projects/app/src/main.py", format!("T = '{GITHUB}'\n")),
    ];
    for (path, content) in &files {
        let full = home.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content).unwrap();
    }
    let report = scanner().scan_host(home, &NoProgress);
    let prefix = format!("{}/", home.display());
    let mut found: Vec<(String, String, Surface)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.location.path.strip_prefix(&prefix).unwrap().to_owned(),
                f.location.tool.clone().unwrap(),
                f.location.surface,
            )
        })
        .collect();
    found.sort();
    found.dedup();
    assert_eq!(
        found,
        vec![
            (
                ".aws/credentials".into(),
                "AWS CLI".into(),
                Surface::SharedConfig
            ),
            (".bash_history".into(), "bash".into(), Surface::ShellHistory),
            (
                ".claude/projects/-home-dev-app/8c1e.jsonl".into(),
                "Claude Code".into(),
                Surface::PromptLog
            ),
            (
                ".codex/config.toml".into(),
                "Codex".into(),
                Surface::McpConfig
            ),
            (
                ".config/Claude/claude_desktop_config.json".into(),
                "Claude Desktop".into(),
                Surface::McpConfig
            ),
            (
                ".config/Code/User/mcp.json".into(),
                "VS Code".into(),
                Surface::McpConfig
            ),
        ]
    );
    // Projects under home are not part of the workstation scan.
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.location.path.contains("projects/app"))
    );
}
