//! A fixture workspace and a `mayfly` command bound to it.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub const GITHUB: &str = "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"; // mayfly:allow (test fixture)
pub const OPENAI: &str = "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"; // mayfly:allow (test fixture)
pub const STRIPE: &str = "sk_live_eajJdMkbjg4UrICTEDdQXcM7"; // mayfly:allow (test fixture)
pub const SLACK: &str = "xoxb-101504307929-4398728033150-9ESnrPgulbClFpLAnC3NZ4Sk"; // mayfly:allow (test fixture)

/// A temporary directory with a fixed fingerprint key and a private MAYFLY_HOME.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("home")).unwrap();
        fs::create_dir_all(dir.path().join("repo")).unwrap();
        fs::write(
            dir.path().join("fingerprint.key"),
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0\n",
        )
        .unwrap();
        Workspace { dir }
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.repo().join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }

    /// `mayfly` run in the repository, with the fixed key and no timing.
    pub fn mayfly(&self) -> Command {
        let mut cmd = Command::cargo_bin("mayfly").unwrap();
        cmd.current_dir(self.repo())
            .env("MAYFLY_HOME", self.dir.path().join("home"))
            .env(
                "MAYFLY_FINGERPRINT_KEY_FILE",
                self.dir.path().join("fingerprint.key"),
            )
            .env("MAYFLY_NO_TIMING", "1")
            .env_remove("XDG_DATA_HOME");
        cmd
    }

    /// The standard fixture: three secrets, one of them copied three times.
    pub fn standard(&self) {
        self.write(
            ".env",
            &format!("OPENAI_API_KEY={OPENAI}\nSTRIPE_SECRET_KEY={STRIPE}\n"),
        );
        self.write(
            "src/settings.py",
            &format!("import os\n\nOPENAI_API_KEY = \"{OPENAI}\"\nDEBUG = True\n"),
        );
        self.write(
            ".cursor/mcp.json",
            &format!("{{\n  \"mcpServers\": {{\n    \"openai\": {{\"env\": {{\"OPENAI_API_KEY\": \"{OPENAI}\"}}}},\n    \"slack\": {{\"env\": {{\"SLACK_BOT_TOKEN\": \"{SLACK}\"}}}}\n  }}\n}}\n"),
        );
        self.write(
            "README.md",
            "Set OPENAI_API_KEY=your-api-key-here and AKIAIOSFODNN7EXAMPLE.\n",
        );
    }
}

pub fn stdout_of(cmd: &mut Command) -> (i32, String, String) {
    let output = cmd.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

pub fn json_of(cmd: &mut Command) -> (i32, serde_json::Value) {
    let (code, out, err) = stdout_of(cmd);
    let value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}\nstderr: {err}"));
    (code, value)
}

#[allow(dead_code, reason = "used by some test modules only")]
pub fn exists(path: &Path) -> bool {
    path.exists()
}
