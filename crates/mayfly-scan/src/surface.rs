//! Where a copy lives: the surface classifier.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::rule::UnknownValue;

/// The kind of place a blob comes from. Governance rules forbid secrets on
/// some surfaces (prompt logs, MCP configs, chat exports) outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Surface {
    /// Source code and anything not classified more precisely.
    Code,
    /// `.env` files and their variants.
    Env,
    /// MCP client configuration (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf, Zed, Codex, Cline, Continue).
    McpConfig,
    /// CI pipeline definitions (GitHub Actions, GitLab CI, Jenkins, CircleCI, Azure Pipelines...).
    Ci,
    /// Configuration shared between people or machines: compose, Kubernetes, Terraform, Helm, ini/properties, credential files.
    SharedConfig,
    /// Agent transcripts and prompt histories.
    PromptLog,
    /// Jupyter notebooks.
    Notebook,
    /// Chat exports (Slack, Teams, ChatGPT).
    ChatExport,
    /// Shell and REPL histories.
    ShellHistory,
    /// SQLite database files.
    Database,
}

impl Surface {
    /// Every surface, in display order.
    pub const ALL: [Surface; 10] = [
        Surface::Code,
        Surface::Env,
        Surface::McpConfig,
        Surface::Ci,
        Surface::SharedConfig,
        Surface::PromptLog,
        Surface::Notebook,
        Surface::ChatExport,
        Surface::ShellHistory,
        Surface::Database,
    ];

    /// The kebab-case name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Code => "code",
            Surface::Env => "env",
            Surface::McpConfig => "mcp-config",
            Surface::Ci => "ci",
            Surface::SharedConfig => "shared-config",
            Surface::PromptLog => "prompt-log",
            Surface::Notebook => "notebook",
            Surface::ChatExport => "chat-export",
            Surface::ShellHistory => "shell-history",
            Surface::Database => "database",
        }
    }
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Surface {
    type Err = UnknownValue;

    fn from_str(text: &str) -> Result<Surface, UnknownValue> {
        Surface::ALL
            .into_iter()
            .find(|s| s.as_str() == text.trim())
            .ok_or_else(|| UnknownValue {
                what: "surface",
                given: text.to_owned(),
                valid: Surface::ALL.map(Surface::as_str).join(", "),
            })
    }
}

const SHELL_HISTORIES: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".zhistory",
    ".history",
    ".sh_history",
    "fish_history",
    ".python_history",
    ".psql_history",
    ".mysql_history",
    ".node_repl_history",
    ".sqlite_history",
    ".irb_history",
    ".rediscli_history",
    ".lesshst",
    ".mongosh_history",
];

const MCP_FILES: &[&str] = &[
    "claude_desktop_config.json",
    ".mcp.json",
    "mcp.json",
    "mcp_config.json",
    "mcp_settings.json",
    "cline_mcp_settings.json",
    ".claude.json",
    "mcp-servers.json",
];

const CI_FILES: &[&str] = &[
    ".gitlab-ci.yml",
    ".gitlab-ci.yaml",
    "jenkinsfile",
    "azure-pipelines.yml",
    "azure-pipelines.yaml",
    ".travis.yml",
    "bitbucket-pipelines.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "cloudbuild.yml",
    "buildspec.yml",
    "appveyor.yml",
    ".woodpecker.yml",
    "codemagic.yaml",
];

const SHARED_CONFIG_FILES: &[&str] = &[
    ".npmrc",
    ".pypirc",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".dockercfg",
    ".yarnrc",
    ".yarnrc.yml",
    ".gem/credentials",
    "credentials",
    "kubeconfig",
    "hosts.yml",
    "settings.xml",
    ".s3cfg",
    ".boto",
    "terraform.rc",
    ".terraformrc",
    "credentials.tfrc.json",
    "pip.conf",
];

const SHARED_CONFIG_EXTENSIONS: &[&str] = &[
    "tfvars",
    "tfstate",
    "properties",
    "ini",
    "cfg",
    "conf",
    "hcl",
    "backup",
];

fn contains(head: &[u8], needle: &str) -> bool {
    memchr::memmem::find(head, needle.as_bytes()).is_some()
}

/// Labels a blob from its path and the first bytes of its content.
pub fn classify(path: &Path, head: &[u8]) -> Surface {
    if head.starts_with(b"SQLite format 3\0") {
        return Surface::Database;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let full = path
        .to_string_lossy()
        .replace('\\', "/")
        .to_ascii_lowercase();
    let parent = path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();

    if name == ".env"
        || name.starts_with(".env.")
        || name.ends_with(".env")
        || name == ".envrc"
        || name == ".flaskenv"
        || name == ".dev.vars"
    {
        return Surface::Env;
    }
    if SHELL_HISTORIES.contains(&name.as_str()) || full.ends_with("/fish/fish_history") {
        return Surface::ShellHistory;
    }
    if ext == "ipynb" {
        return Surface::Notebook;
    }
    let in_dir =
        |dir: &str| full.contains(&format!("/{dir}/")) || full.starts_with(&format!("{dir}/"));
    if MCP_FILES.contains(&name.as_str())
        || (parent == ".codex" && name == "config.toml")
        || ((parent == ".zed" || parent == "zed") && name == "settings.json")
        || (parent == ".continue" && name.starts_with("config."))
        || (in_dir(".codeium/windsurf") && name.ends_with(".json"))
        || ((ext == "json" || ext == "jsonc") && contains(head, "\"mcpServers\""))
        || (ext == "json" && parent == ".vscode" && contains(head, "\"mcp\""))
        || (ext == "toml" && contains(head, "[mcp_servers"))
    {
        return Surface::McpConfig;
    }
    if (ext == "jsonl" || ext == "ndjson")
        && (in_dir(".claude")
            || in_dir(".codex")
            || in_dir("sessions")
            || looks_like_transcript(head))
    {
        return Surface::PromptLog;
    }
    if name.starts_with(".aider.") && (name.contains("history") || name.contains("chat")) {
        return Surface::PromptLog;
    }
    if ext == "json" && looks_like_chat_export(head) {
        return Surface::ChatExport;
    }
    if in_dir(".github/workflows")
        || in_dir(".circleci")
        || in_dir(".buildkite")
        || in_dir(".gitlab/ci")
        || CI_FILES.contains(&name.as_str())
        || name.starts_with("jenkinsfile")
    {
        return Surface::Ci;
    }
    let yaml = ext == "yml" || ext == "yaml";
    if SHARED_CONFIG_FILES.contains(&name.as_str())
        || SHARED_CONFIG_EXTENSIONS.contains(&ext.as_str())
        || name.ends_with(".tfvars.json")
        || (yaml
            && (name.starts_with("docker-compose")
                || name.starts_with("compose")
                || name.starts_with("values")))
        || (yaml && contains(head, "apiVersion:") && contains(head, "kind:"))
        || (parent == ".docker" && name == "config.json")
        || (parent == ".kube" && name == "config")
        || name.starts_with("appsettings")
        || name.starts_with("application") && (yaml || ext == "properties")
    {
        return Surface::SharedConfig;
    }
    if ext == "jsonl" && looks_like_transcript(head) {
        return Surface::PromptLog;
    }
    Surface::Code
}

fn looks_like_transcript(head: &[u8]) -> bool {
    (contains(head, "\"role\"")
        || contains(head, "\"type\":\"user\"")
        || contains(head, "\"type\": \"user\""))
        && (contains(head, "\"content\"") || contains(head, "\"message\""))
}

fn looks_like_chat_export(head: &[u8]) -> bool {
    // Slack: arrays of {"type": "message", "user": ..., "text": ..., "ts": ...}
    let slack = contains(head, "\"ts\"") && contains(head, "\"text\"") && contains(head, "\"user");
    // Teams / Graph: {"messageType": ..., "body": {"content": ...}, "from": ...}
    let teams = contains(head, "\"messageType\"")
        || (contains(head, "\"createdDateTime\"") && contains(head, "\"body\""));
    // ChatGPT export: conversations with a "mapping" of messages with "author".
    let chatgpt = contains(head, "\"mapping\"") && contains(head, "\"author\"");
    slack || teams || chatgpt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_path() {
        let cases = [
            ("app/.env", Surface::Env),
            ("app/.env.production", Surface::Env),
            ("deploy/prod.env", Surface::Env),
            ("src/main.rs", Surface::Code),
            (".cursor/mcp.json", Surface::McpConfig),
            (
                "Library/Application Support/Claude/claude_desktop_config.json",
                Surface::McpConfig,
            ),
            (".codex/config.toml", Surface::McpConfig),
            (".zed/settings.json", Surface::McpConfig),
            (".codeium/windsurf/mcp_config.json", Surface::McpConfig),
            (".github/workflows/ci.yml", Surface::Ci),
            (".gitlab-ci.yml", Surface::Ci),
            ("Jenkinsfile", Surface::Ci),
            (".circleci/config.yml", Surface::Ci),
            ("azure-pipelines.yml", Surface::Ci),
            ("docker-compose.yml", Surface::SharedConfig),
            ("infra/prod.tfvars", Surface::SharedConfig),
            ("terraform.tfstate", Surface::SharedConfig),
            ("chart/values.yaml", Surface::SharedConfig),
            ("conf/app.properties", Surface::SharedConfig),
            ("notebooks/explore.ipynb", Surface::Notebook),
            ("home/.bash_history", Surface::ShellHistory),
            (".claude/projects/x/session.jsonl", Surface::PromptLog),
            (".aider.chat.history.md", Surface::PromptLog),
        ];
        for (path, surface) in cases {
            assert_eq!(classify(Path::new(path), b""), surface, "{path}");
        }
    }

    #[test]
    fn classifies_by_content() {
        assert_eq!(
            classify(Path::new("x.db"), b"SQLite format 3\0rest"),
            Surface::Database
        );
        assert_eq!(
            classify(
                Path::new("k8s/secret.yaml"),
                b"apiVersion: v1\nkind: Secret\n"
            ),
            Surface::SharedConfig
        );
        assert_eq!(
            classify(
                Path::new("export/general/2024-01-02.json"),
                br#"[{"type": "message", "user": "U1", "text": "hi", "ts": "1"}]"#
            ),
            Surface::ChatExport
        );
        assert_eq!(
            classify(
                Path::new("logs/run.jsonl"),
                br#"{"role":"user","content":"hello"}"#
            ),
            Surface::PromptLog
        );
        assert_eq!(
            classify(Path::new("settings.json"), br#"{"mcpServers": {"x": {}}}"#),
            Surface::McpConfig
        );
    }
}
