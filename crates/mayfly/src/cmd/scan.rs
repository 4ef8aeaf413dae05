//! `mayfly scan`: flags and `.mayfly.toml` become one checked [`ScanPlan`],
//! which then runs.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;
use globset::{Glob, GlobSet, GlobSetBuilder};
use mayfly_broker::custody;
use mayfly_broker::keys::MasterKey;
use mayfly_providers::validate::{ValidateOptions, Validator};
use mayfly_providers::verifier::Verifiers;
use mayfly_scan::copies::{CopySearch, CustodySecret, SecretBytes};
use mayfly_scan::finding::{Finding, Liveness};
use mayfly_scan::fingerprint::FingerprintKey;
use mayfly_scan::git::GitSelection;
use mayfly_scan::output::{self, Format, RunInfo};
use mayfly_scan::rule::RuleSet;
use mayfly_scan::scan::{
    DEFAULT_MAX_FILE_SIZE, NoProgress, Progress, ScanOptions, ScanReport, Scanner,
};
use mayfly_scan::sketch::ReadSketch;
use mayfly_scan::suppress::{self, Baseline, IgnoreList, PathRules};

use crate::cmd::inventory;
use crate::common::{DbArgs, ProviderEndpointArgs};
use crate::config::{self, Loaded};
use crate::progress::Bar;
use crate::{EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS};

/// The name of the ignore file read from scanned directories.
const IGNORE_FILE: &str = ".mayflyignore";

/// Options of `mayfly scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and directories to scan; `-` reads standard input [default: . unless --host].
    pub paths: Vec<PathBuf>,

    /// Output format: text, json, sarif or csv.
    #[arg(long, short = 'f', default_value = "text")]
    pub format: Format,

    /// Write the report to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Configuration file (default: .mayfly.toml in the current directory, if any).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Add the rules of a TOML rule file (repeatable).
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,

    /// Disable rules whose id matches GLOB (repeatable), e.g. 'generic-*'.
    #[arg(long, value_name = "GLOB")]
    pub disable_rule: Vec<String>,

    /// Run only rules whose id matches GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub only_rule: Vec<String>,

    /// Report only secrets that are not in this baseline.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Write every secret found to FILE as a baseline, then exit 0.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,

    /// Ignore file of reviewed fingerprints (repeatable; .mayflyignore in the
    /// current directory and in each scanned directory is read too).
    #[arg(long, value_name = "FILE")]
    pub ignore_file: Vec<PathBuf>,

    /// Fingerprint key file shared across an organisation (default: a key
    /// created on first use in Mayfly's data directory).
    #[arg(long, value_name = "FILE", env = "MAYFLY_FINGERPRINT_KEY_FILE")]
    pub fingerprint_key: Option<PathBuf>,

    /// Print the plaintext of each secret found.
    #[arg(long)]
    pub show_secrets: bool,

    /// Skip (and report) files larger than SIZE, e.g. 500K, 100M, 2G [default: 100M].
    #[arg(long, value_name = "SIZE", value_parser = config::parse_size)]
    pub max_file_size: Option<u64>,

    /// Follow symbolic links (loops are detected and reported).
    #[arg(long)]
    pub follow_symlinks: bool,

    /// Worker threads [default: all cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub threads: Option<usize>,

    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Also list near misses: candidates shaped like a checksummed token
    /// (GitHub, npm) whose checksum is wrong (typos, truncations, fakes).
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// Skip the copies pass: report a secret only where a rule matches,
    /// not every other place its value (or a custody value) stands.
    #[arg(long)]
    pub no_copies: bool,

    /// Ask each distinct secret's provider whether it is live (read-only
    /// identity endpoints; the hosts are named before anything is sent).
    #[arg(long, help_heading = "Validation")]
    pub validate: bool,

    /// Report only secrets their provider accepted.
    #[arg(long, help_heading = "Validation", requires = "validate")]
    pub only_live: bool,

    #[command(flatten, next_help_heading = "Validation")]
    pub endpoints: ProviderEndpointArgs,

    /// Requests per second to one provider host.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20.0,
        help_heading = "Validation"
    )]
    pub validate_rate: f64,

    /// Requests in flight at once to one provider host.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4,
        help_heading = "Validation"
    )]
    pub validate_per_host: usize,

    /// Seconds allowed for one validation request.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        help_heading = "Validation"
    )]
    pub validate_timeout: f64,

    /// Scan the git history of each PATH (every blob reachable from every
    /// branch, tag and stash, once) and its uncommitted files (untracked,
    /// ignored, modified or staged; marked "uncommitted"). Files committed
    /// as they are in the working tree are covered by history.
    #[arg(long, help_heading = "Git")]
    pub git: bool,

    /// Scan only what is staged for the next commit (pre-commit hook).
    #[arg(long, help_heading = "Git", conflicts_with_all = ["git", "range", "validate"])]
    pub staged: bool,

    /// Scan only the commits of a revision range, e.g. origin/main..HEAD (implies --git).
    #[arg(long, value_name = "A..B", help_heading = "Git")]
    pub range: Option<String>,

    /// Scan only commits reachable from this branch or revision (repeatable; implies --git).
    #[arg(long, value_name = "NAME", help_heading = "Git")]
    pub branch: Vec<String>,

    /// Scan only commits made on or after DATE (YYYY-MM-DD or seconds since the epoch; implies --git).
    #[arg(long, value_name = "DATE", help_heading = "Git", value_parser = config::parse_date)]
    pub since: Option<i64>,

    /// Scan at most N commits, newest first (implies --git).
    #[arg(long, value_name = "N", help_heading = "Git")]
    pub max_commits: Option<usize>,

    /// Scan this workstation: MCP configs, agent transcripts, shell
    /// histories and credential files of AI and developer tools under the
    /// home directory (PATHs are scanned too when given).
    #[arg(long, help_heading = "Workstation")]
    pub host: bool,

    /// The home directory for --host [default: $HOME].
    #[arg(
        long,
        value_name = "DIR",
        help_heading = "Workstation",
        requires = "host"
    )]
    pub home: Option<PathBuf>,

    /// Merge the results into the inventory (see `mayfly inventory`).
    #[arg(long, help_heading = "Inventory")]
    pub save: bool,

    /// The machine's name in the inventory [default: its hostname].
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "Inventory",
        requires = "save"
    )]
    pub host_id: Option<String>,

    #[command(flatten)]
    pub db: DbArgs,
}

/// What a scan reads.
#[derive(Debug)]
pub enum ScanMode {
    /// Files and directory trees (and `-`, standard input).
    Files(Vec<PathBuf>),
    /// The git history of repositories.
    Git(Vec<PathBuf>, GitSelection),
    /// What is staged in repositories.
    Staged(Vec<PathBuf>),
    /// A workstation's known files under `home`, then `paths`.
    Host {
        /// The home directory.
        home: PathBuf,
        /// More paths to scan.
        paths: Vec<PathBuf>,
    },
}

impl ScanMode {
    /// The kind of source, as the inventory records it.
    fn kind(&self) -> &'static str {
        match self {
            ScanMode::Files(_) => "files",
            ScanMode::Git(..) => "git",
            ScanMode::Staged(_) => "staged",
            ScanMode::Host { .. } => "host",
        }
    }

    /// Every root the scan covered.
    fn roots(&self) -> Vec<PathBuf> {
        match self {
            ScanMode::Files(paths) | ScanMode::Git(paths, _) | ScanMode::Staged(paths) => {
                paths.clone()
            }
            ScanMode::Host { home, paths } => {
                let mut roots = paths.clone();
                roots.push(home.clone());
                roots
            }
        }
    }
}

/// A scan, decided once from flags and `.mayfly.toml`: everything the run
/// needs, checked.
pub struct ScanPlan {
    /// What to read.
    pub mode: ScanMode,
    /// The scanner: rules, fingerprint key, options.
    pub scanner: Scanner,
    /// Secrets to leave out of the report.
    pub baseline: Option<Baseline>,
    /// Reviewed fingerprints to leave out.
    pub ignore: IgnoreList,
    /// The report's format.
    pub format: Format,
    /// Where the report goes (standard output if `None`).
    pub output: Option<PathBuf>,
    /// Where to write a baseline of what was found.
    pub write_baseline: Option<PathBuf>,
    /// The store to merge into, if any, and the machine's name there.
    pub save: Option<(DbArgs, String)>,
    /// Whether a progress bar may be shown.
    pub progress: bool,
    /// Whether to run the copies pass.
    pub copies: bool,
    /// Asks providers whether found secrets are live (`--validate`), and
    /// whether to report only those.
    pub validator: Option<(Validator, bool)>,
    /// The store whose custody values the copies pass searches for:
    /// `--db`, or the default store when it exists.
    pub custody_db: Option<DbArgs>,
    /// The configuration files read.
    pub configs: Vec<PathBuf>,
}

fn glob_set(globs: &[String], what: &str) -> anyhow::Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(Glob::new(glob).with_context(|| format!("{what}: bad glob {glob:?}"))?);
    }
    builder
        .build()
        .with_context(|| format!("{what}: bad globs"))
}

fn load_rules(configs: &[Loaded], args: &ScanArgs) -> anyhow::Result<RuleSet> {
    let mut rules = RuleSet::builtin()?;
    let mut disabled_globs = Vec::new();
    for config in configs {
        for file in &config.file.scan.rules {
            rules.add_file(&config.resolve(file))?;
        }
        disabled_globs.extend(config.file.scan.disable_rules.iter().cloned());
    }
    for file in &args.rule_files {
        rules.add_file(file)?;
    }
    disabled_globs.extend(args.disable_rule.iter().cloned());
    let disabled = glob_set(&disabled_globs, "--disable-rule")?;
    let only = glob_set(&args.only_rule, "--only-rule")?;
    rules.retain(|rule| {
        !disabled.is_match(&rule.spec.id)
            && (args.only_rule.is_empty() || only.is_match(&rule.spec.id))
    });
    if rules.is_empty() {
        bail!(
            "no rule is left to run after --only-rule and --disable-rule; see `mayfly rules list`"
        );
    }
    Ok(rules)
}

fn load_key(explicit: Option<&Path>) -> anyhow::Result<FingerprintKey> {
    Ok(match explicit {
        Some(path) => FingerprintKey::from_file(path)?,
        None => FingerprintKey::load_or_create(&FingerprintKey::default_path()?)?,
    })
}

fn load_ignore_list(configs: &[Loaded], args: &ScanArgs) -> anyhow::Result<IgnoreList> {
    let mut list = IgnoreList::default();
    let mut files: Vec<PathBuf> = configs
        .iter()
        .flat_map(|c| c.file.scan.ignore_files.iter().map(|f| c.resolve(f)))
        .collect();
    files.extend(args.ignore_file.iter().cloned());
    // Implicit ignore files: the current directory's and each scanned directory's.
    let mut implicit = vec![PathBuf::from(IGNORE_FILE)];
    implicit.extend(
        args.paths
            .iter()
            .filter(|p| p.is_dir())
            .map(|p| p.join(IGNORE_FILE)),
    );
    let mut seen = Vec::new();
    for path in implicit {
        if let Ok(canonical) = path.canonicalize()
            && !seen.contains(&canonical)
        {
            seen.push(canonical);
            files.push(path);
        }
    }
    for file in files {
        list.add_file(&file)?;
    }
    Ok(list)
}

fn options(configs: &[Loaded], args: &ScanArgs) -> anyhow::Result<ScanOptions> {
    // Settings: the flag, else the first file that sets it.
    let max_file_size = match args.max_file_size {
        Some(size) => size,
        None => match configs
            .iter()
            .find_map(|c| Some((c, c.file.scan.max_file_size.as_ref()?)))
        {
            Some((config, text)) => config::parse_size(text)
                .with_context(|| format!("{}: [scan] max_file_size", config.origin()))?,
            None => DEFAULT_MAX_FILE_SIZE,
        },
    };
    let follow_symlinks = args.follow_symlinks
        || configs
            .iter()
            .find_map(|c| c.file.scan.follow_symlinks)
            .unwrap_or(false);
    // A root's path rules apply under that root: its globs are anchored there.
    let mut path_rules = PathRules::default();
    for config in configs {
        for entry in &config.file.scan.path_rules {
            let paths: Vec<String> = entry
                .paths
                .iter()
                .map(|p| match (config.scope.is_empty(), p.contains('/')) {
                    (true, _) => p.clone(),
                    (false, true) => format!("{}{}", config.scope, p.trim_start_matches("./")),
                    (false, false) => format!("{}**/{p}", config.scope),
                })
                .collect();
            path_rules.push(&paths, &entry.enable, &entry.disable)?;
        }
    }
    Ok(ScanOptions {
        max_file_size,
        follow_symlinks,
        threads: args.threads.unwrap_or(0),
        reveal_secrets: args.show_secrets,
        path_rules,
        explain: args.verbose,
        sketch: !args.no_copies,
    })
}

fn mode(args: &ScanArgs) -> anyhow::Result<ScanMode> {
    let mut paths = args.paths.clone();
    if args.host {
        let home = match args
            .home
            .clone()
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        {
            Some(home) => home,
            None => bail!("--host needs a home directory: set HOME or pass --home DIR"),
        };
        return Ok(ScanMode::Host { home, paths });
    }
    if paths.is_empty() {
        paths.push(PathBuf::from("."));
    }
    if args.staged {
        return Ok(ScanMode::Staged(paths));
    }
    let history = args.git
        || args.range.is_some()
        || !args.branch.is_empty()
        || args.since.is_some()
        || args.max_commits.is_some();
    if history {
        let selection = GitSelection {
            branches: args.branch.clone(),
            since: args.since,
            max_commits: args.max_commits,
            range: args.range.clone(),
        };
        return Ok(ScanMode::Git(paths, selection));
    }
    Ok(ScanMode::Files(paths))
}

impl ScanPlan {
    /// Checks the flags and the configuration and loads what the scan needs.
    pub fn new(args: ScanArgs) -> anyhow::Result<ScanPlan> {
        let configs = config::load_all(args.config.as_deref(), &args.paths)?;
        let rules = load_rules(&configs, &args)?;
        let key = load_key(args.fingerprint_key.as_deref())?;
        let baseline = args
            .baseline
            .as_deref()
            .map(|path| Baseline::read(path, &key))
            .transpose()?;
        let ignore = load_ignore_list(&configs, &args)?;
        let scanner = Scanner::new(rules, key, options(&configs, &args)?)?;
        let configs = configs.iter().filter_map(|c| c.path.clone()).collect();
        let custody_db = custody_store(&args.db);
        let validator = if args.validate {
            Some((validator(&args, scanner.rules())?, args.only_live))
        } else {
            None
        };
        Ok(ScanPlan {
            validator,
            copies: !args.no_copies,
            custody_db,
            mode: mode(&args)?,
            scanner,
            baseline,
            ignore,
            format: args.format,
            output: args.output,
            write_baseline: args.write_baseline,
            configs,
            save: args.save.then(|| {
                let host = args.host_id.clone().unwrap_or_else(inventory::hostname);
                (args.db, host)
            }),
            progress: !args.no_progress,
        })
    }

    /// Reads what the mode says, with a progress bar when one fits. The
    /// copies pass (`again`) reads the same inputs, bar standard input
    /// (read once), without a bar or notes; over files and trees, only
    /// those the first read's `sketch` cannot rule out.
    fn read(&self, again: bool, sketch: &mut Option<ReadSketch>) -> anyhow::Result<ScanReport> {
        let bar = Bar::stderr(!self.progress || again);
        let progress: &dyn Progress = match &bar {
            Some(bar) => bar,
            None => &NoProgress,
        };
        let scanner = &self.scanner;
        let mut report = ScanReport::default();
        match &self.mode {
            ScanMode::Host { home, paths } => {
                report.merge(scanner.scan_host(home, progress));
                if !paths.is_empty() {
                    report.merge(scanner.scan_paths(paths, progress));
                }
            }
            ScanMode::Staged(paths) => {
                for path in paths {
                    report.merge(scanner.scan_staged(path)?);
                }
            }
            ScanMode::Git(paths, selection) => {
                for path in paths {
                    report.merge(scanner.scan_git(path, selection, progress)?);
                    // What history does not hold yet: only for a scan of the
                    // whole history, not of a range or a branch.
                    if selection.range.is_none() && selection.branches.is_empty() {
                        let files = mayfly_scan::git::uncommitted_files(path)?;
                        if !files.is_empty() {
                            let mut uncommitted = scanner.scan_paths(&files, progress);
                            for finding in &mut uncommitted.findings {
                                finding.location.uncommitted = true;
                            }
                            report.merge(uncommitted);
                        }
                    }
                }
            }
            ScanMode::Files(paths) if again => {
                let must_read = scanner
                    .copy_search()
                    .zip(sketch.as_ref())
                    .and_then(|(search, sketch)| sketch.files_to_read(search));
                if let Some(files) = must_read {
                    report = scanner.scan_files(&files);
                } else {
                    let files: Vec<PathBuf> = paths
                        .iter()
                        .filter(|p| *p != Path::new("-"))
                        .cloned()
                        .collect();
                    if !files.is_empty() {
                        report = scanner.scan_paths(&files, progress);
                    }
                }
            }
            ScanMode::Files(paths) if self.copies => {
                let (read, kept) = scanner.scan_paths_sketched(paths, progress);
                report = read;
                *sketch = Some(kept);
                Self::note_git_repositories(paths);
            }
            ScanMode::Files(paths) => {
                report = scanner.scan_paths(paths, progress);
                Self::note_git_repositories(paths);
            }
        }
        if let Some(bar) = &bar {
            bar.finish();
        }
        Ok(report)
    }

    /// Says where a scanned directory is a git repository whose history a
    /// tree scan leaves out.
    fn note_git_repositories(paths: &[PathBuf]) {
        for path in paths.iter().filter(|p| p.join(".git").exists()) {
            eprintln!(
                "mayfly: note: {} is a git repository; `mayfly scan --git {}` scans its history too (secrets deleted from the tree stay valid until rotated)",
                path.display(),
                path.display()
            );
        }
    }

    /// The copies pass: every other place the value of a secret found by
    /// a confident rule, or of a secret in custody, stands.
    fn find_copies(
        &mut self,
        report: &mut ScanReport,
        sketch: &mut Option<ReadSketch>,
    ) -> anyhow::Result<()> {
        if !self.copies {
            return Ok(());
        }
        let held = match &self.custody_db {
            Some(db) => custody_values(db, &mut report.findings),
            None => Vec::new(),
        };
        let Some(search) = CopySearch::new(&report.findings, held, self.scanner.key())? else {
            return Ok(());
        };
        self.scanner.set_copy_search(Some(search));
        let copies = self.read(true, sketch);
        if let Some(search) = self.scanner.set_copy_search(None) {
            search.merge(&mut report.findings, copies?.findings);
        }
        Ok(())
    }

    /// Runs the scan; returns the exit code.
    pub fn run(mut self) -> anyhow::Result<u8> {
        let started = Instant::now();
        let mut sketch = None;
        let mut report = self.read(false, &mut sketch)?;
        self.find_copies(&mut report, &mut sketch)?;
        let elapsed = started.elapsed();
        suppress::apply(
            &mut report.findings,
            self.baseline.as_ref(),
            &self.ignore,
            &mut report.stats.suppressed,
        );
        if let Some((validator, only_live)) = &self.validator {
            validate(validator, &mut report.findings)?;
            if *only_live {
                report.findings.retain(|f| {
                    f.validation
                        .as_ref()
                        .is_some_and(|v| v.status == Liveness::Live)
                });
            }
        }
        if let Some((db, host)) = &self.save {
            inventory::save(&report, self.mode.kind(), host, &self.mode.roots(), db)?;
            if self.validator.is_some() {
                record_validations(&report.findings, db)?;
            }
        }
        if let Some(path) = &self.write_baseline {
            let baseline = Baseline::from_findings(&report.findings, self.scanner.key());
            baseline.write(path)?;
            eprintln!(
                "mayfly: wrote a baseline of {} secrets to {}",
                baseline.secrets.len(),
                path.display()
            );
        }
        let run = RunInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            key_id: self.scanner.key().key_id(),
            elapsed: (std::env::var_os("MAYFLY_NO_TIMING").is_none()).then_some(elapsed),
            configs: self
                .configs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        };
        // A baseline run writes the baseline; the report only when asked
        // for with -o.
        if self.write_baseline.is_none() || self.output.is_some() {
            write_report(self.format, &report, &run, self.output.as_deref())?;
        }
        if let Some(path) = &self.output {
            let secrets = crate::cmd::inventory::plural(
                output::group_count(&report.findings),
                "secret",
                "secrets",
            );
            let copies = crate::cmd::inventory::plural(report.findings.len(), "copy", "copies");
            eprintln!(
                "mayfly: {secrets} in {copies}; {} report written to {}",
                self.format.as_str(),
                path.display()
            );
        }
        Ok(if self.write_baseline.is_some() {
            EXIT_CLEAN
        } else if !report.findings.is_empty() {
            EXIT_FINDINGS
        } else if !report.stats.missing.is_empty() {
            EXIT_ERROR
        } else {
            EXIT_CLEAN
        })
    }
}

fn write_report(
    format: Format,
    report: &ScanReport,
    run: &RunInfo,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let result = match output {
        Some(path) => {
            let file = File::create(path)
                .with_context(|| format!("cannot write report to {}", path.display()))?;
            let mut out = BufWriter::new(file);
            output::write(format, report, run, &mut out).and_then(|()| out.flush())
        }
        None => {
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            output::write(format, report, run, &mut out).and_then(|()| out.flush())
        }
    };
    match result {
        // A closed pipe (`mayfly scan | head`) is the reader's choice, not an error.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write the report"),
    }
}

/// The validator `--validate` asks for, its settings checked.
fn validator(args: &ScanArgs, rules: &RuleSet) -> anyhow::Result<Validator> {
    let verifiers = Verifiers::builtin()?;
    verifiers.check_rules(rules)?;
    let endpoints = args.endpoints.endpoints()?;
    if !(args.validate_rate.is_finite() && args.validate_rate > 0.0) {
        bail!("--validate-rate must be a positive number of requests per second");
    }
    if !(args.validate_timeout.is_finite() && args.validate_timeout > 0.0) {
        bail!("--validate-timeout must be a positive number of seconds");
    }
    Ok(Validator::new(
        verifiers,
        ValidateOptions {
            per_host: args.validate_per_host.max(1),
            rate: args.validate_rate,
            timeout: std::time::Duration::from_secs_f64(args.validate_timeout),
            endpoints,
            ..ValidateOptions::default()
        },
    ))
}

/// Validates the secrets of `findings`, saying first which hosts it
/// contacts, then what they said.
fn validate(validator: &Validator, findings: &mut [Finding]) -> anyhow::Result<()> {
    let hosts = validator.hosts(findings);
    if hosts.is_empty() {
        eprintln!("mayfly: --validate: no secret found has a verifier; nothing was sent");
        return Ok(());
    }
    let secrets: usize = hosts.values().sum();
    let named: Vec<String> = hosts
        .iter()
        .map(|(host, n)| format!("{host} ({n})"))
        .collect();
    eprintln!(
        "mayfly: --validate asks {} about {}: {}",
        inventory::plural(hosts.len(), "host", "hosts"),
        inventory::plural(secrets, "secret", "secrets"),
        named.join(", ")
    );
    let summary = validator.validate(findings, crate::common::now());
    eprintln!(
        "mayfly: validation: {} live, {} dead, {} unknown ({} requests)",
        summary.live, summary.dead, summary.unknown, summary.requests
    );
    Ok(())
}

/// Keeps each validated secret's verdict, and when, in the inventory.
fn record_validations(findings: &[Finding], db: &DbArgs) -> anyhow::Result<()> {
    let mut verdicts: Vec<(String, String, i64)> = findings
        .iter()
        .filter_map(|f| {
            let v = f.validation.as_ref()?;
            Some((f.fingerprint.to_hex(), v.status.as_str().to_owned(), v.at))
        })
        .collect();
    verdicts.sort();
    verdicts.dedup_by(|a, b| a.0 == b.0);
    if !verdicts.is_empty() {
        db.open()?.record_validations(&verdicts)?;
    }
    Ok(())
}

/// The store holding custody, if one is here: `--db`, or the default
/// store when its file exists (a scan never creates one).
fn custody_store(db: &DbArgs) -> Option<DbArgs> {
    if db.db.is_some() {
        return Some(DbArgs { db: db.db.clone() });
    }
    let path = crate::common::data_dir().ok()?.join("mayfly.db");
    path.is_file().then(|| DbArgs {
        db: Some(path.to_string_lossy().into_owned()),
    })
}

/// The values held in custody, for the copies pass; findings of a secret
/// migrated into custody are labelled with their entry even where the
/// values cannot be opened. What cannot be read is said, not fatal: the
/// scan still reports everything else.
fn custody_values(
    db: &DbArgs,
    findings: &mut [mayfly_scan::finding::Finding],
) -> Vec<CustodySecret> {
    let note = |what: &str| eprintln!("mayfly: note: custody values not searched: {what}");
    let mut store = match db.open() {
        Ok(store) => store,
        Err(e) => {
            note(&format!("{e:#}"));
            return Vec::new();
        }
    };
    let entries = match store.custody_entries() {
        Ok(entries) => entries,
        Err(e) => {
            note(&e.to_string());
            return Vec::new();
        }
    };
    if entries.is_empty() {
        return Vec::new();
    }
    for finding in findings.iter_mut() {
        let hex = finding.fingerprint.to_hex();
        if let Some(entry) = entries
            .iter()
            .find(|e| e.fingerprint.as_deref() == Some(hex.as_str()))
        {
            finding.custody = Some(entry.name.clone());
        }
    }
    let master = match master_key() {
        Ok(Some(master)) => master,
        Ok(None) => {
            note(&format!(
                "{} in custody, but the master key is not readable here (set MAYFLY_MASTER_KEY, or scan on the broker's host)",
                crate::cmd::inventory::plural(entries.len(), "secret", "secrets")
            ));
            return Vec::new();
        }
        Err(e) => {
            note(&format!("{e:#}"));
            return Vec::new();
        }
    };
    match custody::held_values(&mut store, &master, crate::common::now()) {
        Ok(held) => held
            .into_iter()
            .map(|h| CustodySecret {
                name: h.name,
                provider: h.provider,
                value: SecretBytes::new(h.value.to_vec()),
            })
            .collect(),
        Err(e) => {
            note(&e.to_string());
            Vec::new()
        }
    }
}

/// The broker's master key, when this machine holds it: `MAYFLY_MASTER_KEY`,
/// else `broker-master.key` in the data directory.
fn master_key() -> anyhow::Result<Option<MasterKey>> {
    if let Ok(text) = std::env::var("MAYFLY_MASTER_KEY")
        && !text.trim().is_empty()
    {
        return Ok(Some(MasterKey::from_base64(&text)?));
    }
    Ok(MasterKey::load(
        &crate::common::data_dir()?.join("broker-master.key"),
    )?)
}

/// `mayfly scan`.
pub fn scan(args: ScanArgs) -> anyhow::Result<u8> {
    ScanPlan::new(args)?.run()
}
