//! What several commands share: the store, Mayfly's data directory, the
//! clock, printing JSON.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use mayfly_scan::fingerprint;
use mayfly_store::Store;

/// `println!` that returns the write's error instead of panicking, so a
/// closed pipe (`mayfly inventory list | head -1`) ends the command quietly
/// (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

/// A text or JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TextOrJson {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// Where providers' requests go (`scan --validate`, `revoke`).
#[derive(Debug, Args)]
pub struct ProviderEndpointArgs {
    /// Send a provider's requests to another base URL (ORIGIN=URL,
    /// repeatable): a proxy, or a local test server.
    #[arg(
        long,
        value_name = "ORIGIN=URL",
        env = "MAYFLY_PROVIDER_ENDPOINTS",
        value_delimiter = ','
    )]
    pub provider_endpoint: Vec<String>,
}

impl ProviderEndpointArgs {
    /// The overrides, checked.
    pub fn endpoints(&self) -> anyhow::Result<mayfly_providers::http::Endpoints> {
        let mut endpoints = mayfly_providers::http::Endpoints::default();
        for endpoint in &self.provider_endpoint {
            endpoints.add(endpoint)?;
        }
        Ok(endpoints)
    }
}

/// Where the store is.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The store: a SQLite file or a postgres:// URL [default: mayfly.db in Mayfly's data directory].
    #[arg(long, value_name = "PATH|URL", env = "MAYFLY_DB", global = true)]
    pub db: Option<String>,
}

impl DbArgs {
    /// The store's path or URL: `--db`, `MAYFLY_DB`, or `mayfly.db` in the
    /// data directory (created, mode 0700, if needed).
    pub fn target(&self) -> anyhow::Result<String> {
        match &self.db {
            Some(target) => Ok(target.clone()),
            None => Ok(data_dir()?.join("mayfly.db").to_string_lossy().into_owned()),
        }
    }

    /// Opens (and migrates) the store.
    pub fn open(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.target()?)?)
    }
}

/// Mayfly's data directory (`$MAYFLY_HOME`, else `$XDG_DATA_HOME/mayfly`,
/// else `~/.local/share/mayfly`), created readable by its owner only. One
/// that others can read (made by hand, or by an older Mayfly) is closed to
/// them: it holds the store, the master key and the admin token.
pub fn data_dir() -> anyhow::Result<PathBuf> {
    let dir = fingerprint::data_dir()?;
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(&dir)
        && metadata.is_dir()
    {
        use std::os::unix::fs::PermissionsExt as _;
        if metadata.permissions().mode() & 0o077 != 0 {
            // Not fatal: a directory owned by someone else stays as it is.
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    if !dir.is_dir() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder
            .create(&dir)
            .with_context(|| format!("cannot create Mayfly's data directory {}", dir.display()))?;
    }
    Ok(dir)
}

/// Seconds since the epoch, read once per command.
pub fn now() -> i64 {
    use mayfly_broker::Clock as _;
    mayfly_broker::SystemClock.now()
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The async runtime of `serve` and `run`.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// A Unix time as `2026-11-30 18:00 UTC`.
pub fn date(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| seconds.to_string())
}
