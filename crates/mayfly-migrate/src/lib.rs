//! Rewrites copies of a secret that moved into custody, so they no longer
//! hold it: a `.env` line becomes a note, an MCP client's server entry
//! loses the key from its `env` and runs its command under
//! `mayfly run --inject` (Claude Desktop, Claude Code, Cursor, Windsurf and
//! VS Code JSON, Codex TOML), a compose or Kubernetes value becomes a note.
//! Pure functions over text: reading, writing, backups and the inventory
//! are the caller's. What cannot be edited safely says why.

mod env_file;
mod mcp;
mod patch;
pub mod servers;

use std::path::Path;

pub use self::patch::{patch, redact};

/// How a wrapped MCP server command is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapper {
    /// The custody entry the secret moved to.
    pub entry: String,
    /// The program that runs `run --inject` (`mayfly`, or its full path).
    pub program: String,
    /// Who answers for the tasks the wrapped servers start.
    pub owner: String,
    /// Variables the wrapped server needs to reach the broker (its URL,
    /// where its identity token is): names and values, never secrets.
    pub env: Vec<(String, String)>,
}

/// A file rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The new text.
    pub text: String,
    /// What changed, for people (`OPENAI_API_KEY line`, `MCP server github`).
    pub changes: Vec<String>,
}

/// Why a copy is not edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {why}")]
pub struct NotEditable {
    /// The file.
    pub path: String,
    /// Why (what to do instead).
    pub why: String,
}

/// The kinds of file Mayfly edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `.env`, `.env.local`, `prod.env`.
    DotEnv,
    /// JSON: an MCP client's configuration.
    Json,
    /// TOML: Codex's `config.toml`.
    Toml,
    /// YAML: compose files, Kubernetes manifests.
    Yaml,
}

impl FileKind {
    /// The kind of `path`, by its name; `None` for files Mayfly does not
    /// edit.
    pub fn of(path: &Path) -> Option<FileKind> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name == ".env" || name.starts_with(".env.") || name.ends_with(".env") {
            return Some(FileKind::DotEnv);
        }
        match name.rsplit_once('.')?.1 {
            "json" => Some(FileKind::Json),
            "toml" => Some(FileKind::Toml),
            "yml" | "yaml" => Some(FileKind::Yaml),
            _ => None,
        }
    }
}

/// Rewrites `text`, the content of `path`, so it no longer holds `secret`.
pub fn rewrite(
    path: &Path,
    text: &str,
    secret: &str,
    wrapper: &Wrapper,
) -> Result<Rewrite, NotEditable> {
    let not_editable = |why: &str| NotEditable {
        path: path.display().to_string(),
        why: why.to_owned(),
    };
    if secret.is_empty() || !text.contains(secret) {
        return Err(not_editable("the secret is no longer in this file"));
    }
    let rewrite = match FileKind::of(path) {
        Some(FileKind::DotEnv) => env_file::rewrite(text, secret, &wrapper.entry),
        Some(FileKind::Json) => mcp::rewrite_json(text, secret, wrapper),
        Some(FileKind::Toml) => mcp::rewrite_toml(text, secret, wrapper),
        Some(FileKind::Yaml) => Ok(yaml_note(text, secret, &wrapper.entry)),
        None => Err(
            "Mayfly edits .env, MCP client (JSON, Codex TOML) and compose/Kubernetes (YAML) files only; delete this copy by hand"
                .to_owned(),
        ),
    }
    .map_err(|why| not_editable(&why))?;
    if rewrite.text.contains(secret) {
        return Err(not_editable(
            "the secret also appears where Mayfly cannot replace it safely; delete it by hand",
        ));
    }
    Ok(rewrite)
}

/// The note that replaces a value in YAML: a plain scalar that says where
/// the secret went.
fn yaml_note(text: &str, secret: &str, entry: &str) -> Rewrite {
    let count = text.matches(secret).count();
    Rewrite {
        text: text.replace(secret, &format!("moved-to-mayfly-custody:{entry}")),
        changes: vec![format!(
            "{count} value{} replaced by a note (moved-to-mayfly-custody:{entry})",
            if count == 1 { "" } else { "s" }
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapper() -> Wrapper {
        Wrapper {
            entry: "openai".into(),
            program: "mayfly".into(),
            owner: "team-ml".into(),
            env: vec![],
        }
    }

    #[test]
    fn kinds_follow_names() {
        assert_eq!(FileKind::of(Path::new("app/.env")), Some(FileKind::DotEnv));
        assert_eq!(
            FileKind::of(Path::new(".env.production")),
            Some(FileKind::DotEnv)
        );
        assert_eq!(
            FileKind::of(Path::new("claude_desktop_config.json")),
            Some(FileKind::Json)
        );
        assert_eq!(
            FileKind::of(Path::new(".codex/config.toml")),
            Some(FileKind::Toml)
        );
        assert_eq!(
            FileKind::of(Path::new("compose.yaml")),
            Some(FileKind::Yaml)
        );
        assert_eq!(FileKind::of(Path::new("main.py")), None);
    }

    #[test]
    fn files_it_does_not_edit_say_so() {
        let err = rewrite(Path::new("main.py"), "KEY = 'sk-1'", "sk-1", &wrapper()).unwrap_err();
        assert!(err.why.contains("by hand"), "{err}");
    }

    #[test]
    fn yaml_values_become_notes() {
        let text = "services:\n  app:\n    environment:\n      - OPENAI_API_KEY=sk-proj-abc\n";
        let out = rewrite(Path::new("compose.yaml"), text, "sk-proj-abc", &wrapper()).unwrap();
        assert!(
            out.text
                .contains("OPENAI_API_KEY=moved-to-mayfly-custody:openai")
        );
    }
}
