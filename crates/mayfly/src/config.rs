//! The configuration file (`.mayfly.toml`): parsed strictly, so a typo is
//! an error rather than a silently ignored setting.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The default configuration file, looked up in the current directory.
pub const DEFAULT_CONFIG: &str = ".mayfly.toml";

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Settings of `mayfly scan`.
    #[serde(default)]
    pub scan: ScanSection,
}

/// `[scan]`: defaults for `mayfly scan`; command-line flags win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSection {
    /// Skip files larger than this (`100M`, `2G`).
    pub max_file_size: Option<String>,
    /// Follow symbolic links.
    pub follow_symlinks: Option<bool>,
    /// Rule id globs to disable everywhere.
    #[serde(default)]
    pub disable_rules: Vec<String>,
    /// Extra rule files, relative to the configuration file.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Ignore files, relative to the configuration file.
    #[serde(default)]
    pub ignore_files: Vec<PathBuf>,
    /// Rules enabled or disabled under path globs; later entries win.
    #[serde(default)]
    pub path_rules: Vec<PathRuleSection>,
}

/// `[[scan.path_rules]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRuleSection {
    /// Path globs (a glob without `/` matches at any depth).
    pub paths: Vec<String>,
    /// Rule id globs turned on under these paths.
    #[serde(default)]
    pub enable: Vec<String>,
    /// Rule id globs turned off under these paths.
    #[serde(default)]
    pub disable: Vec<String>,
}

/// A loaded configuration and the directory its relative paths start from.
pub struct Loaded {
    /// The settings.
    pub file: ConfigFile,
    /// The configuration file's directory.
    pub base: PathBuf,
    /// The file, if one was read.
    pub path: Option<PathBuf>,
    /// How findings' paths begin under the scanned root this file belongs
    /// to (`repo/`); empty for the current directory's or an explicit one.
    pub scope: String,
}

impl Loaded {
    /// The file's name for messages.
    pub fn origin(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "the defaults".to_owned(), |p| p.display().to_string())
    }

    /// Resolves a path written in the configuration file.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base.join(path)
        }
    }
}

/// Loads `explicit`, or `.mayfly.toml` from the current directory if it
/// exists, or the defaults.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<Loaded> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None if Path::new(DEFAULT_CONFIG).is_file() => PathBuf::from(DEFAULT_CONFIG),
        None => {
            return Ok(Loaded {
                file: ConfigFile::default(),
                base: PathBuf::from("."),
                path: None,
                scope: String::new(),
            });
        }
    };
    read(path, String::new())
}

fn read(path: PathBuf, scope: String) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read configuration {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text)
        .with_context(|| format!("invalid configuration {}", path.display()))?;
    let base = path
        .parent()
        .map(Path::to_owned)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Loaded {
        file,
        base,
        path: Some(path),
        scope,
    })
}

/// The configuration of a scan: `explicit` (or the current directory's
/// `.mayfly.toml`), then the `.mayfly.toml` of each scanned directory that
/// has one, each file once. A scanned root's file applies under that root
/// only.
pub fn load_all(explicit: Option<&Path>, roots: &[PathBuf]) -> anyhow::Result<Vec<Loaded>> {
    let first = load(explicit)?;
    let mut seen: Vec<PathBuf> = first
        .path
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let mut all = vec![first];
    for root in roots.iter().filter(|r| r.is_dir()) {
        let path = root.join(DEFAULT_CONFIG);
        let Ok(canonical) = path.canonicalize() else {
            continue;
        };
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        let shown = root.to_string_lossy();
        let shown = shown.trim_end_matches('/');
        let scope = if shown == "." || shown.is_empty() {
            String::new()
        } else {
            format!("{shown}/")
        };
        all.push(read(path, scope)?);
    }
    Ok(all)
}

/// Parses a size: bytes, or a number with K, M, G or T (powers of 1024,
/// optionally followed by `B` or `iB`). A clap value parser.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let unit_start = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_start);
    let shift = match unit.trim().trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => bail!("size {trimmed:?}: unknown unit; write e.g. 500K, 100M or 2G"),
    };
    let value: u64 = number
        .parse()
        .with_context(|| format!("size {trimmed:?}: expected a number such as 100M"))?;
    value
        .checked_mul(1u64 << shift)
        .with_context(|| format!("size {trimmed:?} is too large"))
}

/// Parses a date: `YYYY-MM-DD` (UTC midnight, a real calendar date) or
/// seconds since the epoch. A clap value parser.
pub fn parse_date(text: &str) -> anyhow::Result<i64> {
    let trimmed = text.trim();
    if let Ok(seconds) = trimmed.parse::<i64>() {
        return Ok(seconds);
    }
    let date: jiff::civil::Date = trimmed.parse().with_context(|| {
        format!("date {trimmed:?}: write a calendar date as YYYY-MM-DD, or seconds since the epoch")
    })?;
    Ok(date
        .to_zoned(jiff::tz::TimeZone::UTC)
        .with_context(|| format!("date {trimmed:?} is out of range"))?
        .timestamp()
        .as_second())
}

#[cfg(test)]
mod tests {
    use super::{parse_date, parse_size};

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2023-11-14").unwrap(), 1_699_920_000);
        assert_eq!(parse_date("2000-03-01").unwrap(), 951_868_800);
        assert_eq!(parse_date("1700000000").unwrap(), 1_700_000_000);
        assert!(parse_date("yesterday").is_err());
        assert!(parse_date("2024-13-01").is_err());
        assert!(parse_date("2024-02-31").is_err(), "no such day");
        assert!(parse_date("2023-02-29").is_err(), "not a leap year");
        assert_eq!(parse_date("2024-02-29").unwrap(), 1_709_164_800);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("100M").unwrap(), 100 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1gb").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
