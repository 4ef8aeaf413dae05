//! The workstation: the places where AI and developer tools keep
//! credentials and transcripts on a user's machine (Linux and macOS).

use std::path::{Path, PathBuf};

use crate::scan::{Progress, ScanReport, Scanner};

/// A path under the home directory (file or directory) and the tool that owns it.
pub const HOST_LOCATIONS: &[(&str, &str)] = &[
    // MCP clients and AI coding tools.
    (
        ".config/Claude/claude_desktop_config.json",
        "Claude Desktop",
    ),
    (
        "Library/Application Support/Claude/claude_desktop_config.json",
        "Claude Desktop",
    ),
    (".claude.json", "Claude Code"),
    (".claude/settings.json", "Claude Code"),
    (".claude/settings.local.json", "Claude Code"),
    (".claude/.credentials.json", "Claude Code"),
    (".mcp.json", "Claude Code"),
    (".claude/projects", "Claude Code"),
    (".cursor/mcp.json", "Cursor"),
    (".config/Cursor/User/settings.json", "Cursor"),
    (".config/Cursor/User/globalStorage/state.vscdb", "Cursor"),
    (
        "Library/Application Support/Cursor/User/settings.json",
        "Cursor",
    ),
    (
        "Library/Application Support/Cursor/User/globalStorage/state.vscdb",
        "Cursor",
    ),
    (".config/Code/User/settings.json", "VS Code"),
    (".config/Code/User/mcp.json", "VS Code"),
    (".config/Code/User/globalStorage/state.vscdb", "VS Code"),
    (
        "Library/Application Support/Code/User/settings.json",
        "VS Code",
    ),
    ("Library/Application Support/Code/User/mcp.json", "VS Code"),
    (
        "Library/Application Support/Code/User/globalStorage/state.vscdb",
        "VS Code",
    ),
    (
        ".config/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
        "Cline",
    ),
    (
        "Library/Application Support/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
        "Cline",
    ),
    (".codeium/windsurf/mcp_config.json", "Windsurf"),
    (".config/zed/settings.json", "Zed"),
    (".codex/config.toml", "Codex"),
    (".codex/auth.json", "Codex"),
    (".codex/history.jsonl", "Codex"),
    (".codex/sessions", "Codex"),
    (".continue/config.json", "Continue"),
    (".continue/config.yaml", "Continue"),
    (".aider.chat.history.md", "Aider"),
    (".aider.input.history", "Aider"),
    // Shells and REPLs.
    (".bash_history", "bash"),
    (".zsh_history", "zsh"),
    (".local/share/fish/fish_history", "fish"),
    (".python_history", "Python"),
    (".psql_history", "psql"),
    (".mysql_history", "MySQL client"),
    (".node_repl_history", "Node.js"),
    // Developer credential files.
    (".npmrc", "npm"),
    (".yarnrc.yml", "Yarn"),
    (".pypirc", "PyPI"),
    (".config/pip/pip.conf", "pip"),
    (".docker/config.json", "Docker"),
    (".aws/credentials", "AWS CLI"),
    (".aws/config", "AWS CLI"),
    (".config/gh/hosts.yml", "GitHub CLI"),
    (
        ".config/gcloud/application_default_credentials.json",
        "Google Cloud SDK",
    ),
    (".config/gcloud/credentials.db", "Google Cloud SDK"),
    (".config/gcloud/access_tokens.db", "Google Cloud SDK"),
    (".azure/msal_token_cache.json", "Azure CLI"),
    (".kube/config", "kubectl"),
    (".netrc", "netrc"),
    (".git-credentials", "git"),
    (".terraform.d/credentials.tfrc.json", "Terraform"),
    (".cargo/credentials.toml", "Cargo"),
    (".gem/credentials", "RubyGems"),
    (".config/hub", "hub"),
    (".env", "dotenv"),
];

/// A location that exists under `home`, and its tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTarget {
    /// The file or directory.
    pub path: PathBuf,
    /// The tool that keeps it.
    pub tool: &'static str,
}

/// The known locations that exist under `home`.
pub fn host_targets(home: &Path) -> Vec<HostTarget> {
    HOST_LOCATIONS
        .iter()
        .map(|(relative, tool)| HostTarget {
            path: home.join(relative),
            tool,
        })
        .filter(|target| std::fs::symlink_metadata(&target.path).is_ok())
        .collect()
}

impl Scanner {
    /// Scans the known credential and transcript locations under `home`;
    /// each copy names the tool that owns its file.
    pub fn scan_host(&self, home: &Path, progress: &dyn Progress) -> ScanReport {
        let targets = host_targets(home);
        let paths: Vec<PathBuf> = targets.iter().map(|t| t.path.clone()).collect();
        let mut report = if paths.is_empty() {
            ScanReport::default()
        } else {
            self.scan_paths(&paths, progress)
        };
        for finding in &mut report.findings {
            let path = Path::new(&finding.location.path);
            finding.location.tool = targets
                .iter()
                .filter(|t| path.starts_with(&t.path))
                .max_by_key(|t| t.path.as_os_str().len())
                .map(|t| t.tool.to_owned());
        }
        report
    }
}
