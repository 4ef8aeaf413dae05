//! `mayfly scan` and `mayfly rules`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use globset::{Glob, GlobSet, GlobSetBuilder};
use mayfly_scan::fingerprint::FingerprintKey;
use mayfly_scan::git::GitSelection;
use mayfly_scan::output::{self, Format, RunInfo};
use mayfly_scan::rule::RuleSet;
use mayfly_scan::scan::{
    DEFAULT_MAX_FILE_SIZE, NoProgress, Progress, ScanOptions, ScanReport, Scanner,
};
use mayfly_scan::suppress::{self, Baseline, IgnoreList, PathRules};

use crate::cli::ScanArgs;
use crate::config::{self, Loaded};
use crate::progress::Bar;
use crate::{EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS};

/// The name of the ignore file read from scanned directories.
const IGNORE_FILE: &str = ".mayflyignore";

fn glob_set(globs: &[String], what: &str) -> anyhow::Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(Glob::new(glob).with_context(|| format!("{what}: bad glob {glob:?}"))?);
    }
    builder
        .build()
        .with_context(|| format!("{what}: bad globs"))
}

fn load_rules(config: &Loaded, args: &ScanArgs) -> anyhow::Result<RuleSet> {
    let mut rules = RuleSet::builtin()?;
    for file in &config.file.scan.rules {
        rules.add_file(&config.resolve(file))?;
    }
    for file in &args.rule_files {
        rules.add_file(file)?;
    }
    let mut disabled_globs = config.file.scan.disable_rules.clone();
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

fn load_ignore_list(config: &Loaded, args: &ScanArgs) -> anyhow::Result<IgnoreList> {
    let mut list = IgnoreList::default();
    let mut files: Vec<PathBuf> = config
        .file
        .scan
        .ignore_files
        .iter()
        .map(|f| config.resolve(f))
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

fn options(config: &Loaded, args: &ScanArgs) -> anyhow::Result<ScanOptions> {
    let max_file_size = match args.max_file_size.as_ref().or(config
        .file
        .scan
        .max_file_size
        .as_ref())
    {
        Some(text) => config::parse_size(text)?,
        None => DEFAULT_MAX_FILE_SIZE,
    };
    let mut path_rules = PathRules::default();
    for entry in &config.file.scan.path_rules {
        path_rules.push(&entry.paths, &entry.enable, &entry.disable)?;
    }
    Ok(ScanOptions {
        max_file_size,
        follow_symlinks: args.follow_symlinks || config.file.scan.follow_symlinks.unwrap_or(false),
        threads: args.threads.unwrap_or(0),
        reveal_secrets: args.show_secrets,
        path_rules,
    })
}

fn write_report(
    format: Format,
    report: &mayfly_scan::scan::ScanReport,
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

/// `mayfly scan`.
pub fn scan(mut args: ScanArgs) -> anyhow::Result<u8> {
    if args.paths.is_empty() && !args.host {
        args.paths.push(PathBuf::from("."));
    }
    let config = config::load(args.config.as_deref())?;
    let rules = load_rules(&config, &args)?;
    let key = load_key(args.fingerprint_key.as_deref())?;
    let baseline = args
        .baseline
        .as_deref()
        .map(|path| Baseline::read(path, &key))
        .transpose()?;
    let ignore = load_ignore_list(&config, &args)?;
    let scanner = Scanner::new(rules, key, options(&config, &args)?)?;

    let bar = Bar::stderr(args.no_progress);
    let progress: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    let started = Instant::now();
    let git_history = args.git
        || args.range.is_some()
        || !args.branch.is_empty()
        || args.since.is_some()
        || args.max_commits.is_some();
    let mut report = ScanReport::default();
    if args.host {
        let home = match args
            .home
            .clone()
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        {
            Some(home) => home,
            None => bail!("--host needs a home directory: set HOME or pass --home DIR"),
        };
        report.merge(scanner.scan_host(&home, progress));
        if !args.paths.is_empty() {
            report.merge(scanner.scan_paths(&args.paths, progress));
        }
    } else if args.staged {
        for path in &args.paths {
            report.merge(scanner.scan_staged(path)?);
        }
    } else if git_history {
        let selection = GitSelection {
            branches: args.branch.clone(),
            since: args.since.as_deref().map(config::parse_date).transpose()?,
            max_commits: args.max_commits,
            range: args.range.clone(),
        };
        for path in &args.paths {
            report.merge(scanner.scan_git(path, &selection, progress)?);
        }
    } else {
        report = scanner.scan_paths(&args.paths, progress);
        for path in args.paths.iter().filter(|p| p.join(".git").exists()) {
            eprintln!(
                "mayfly: note: {} is a git repository; `mayfly scan --git {}` also scans its history (secrets deleted from the tree stay valid until rotated)",
                path.display(),
                path.display()
            );
        }
    }
    let elapsed = started.elapsed();
    let source_kind = if args.host {
        "host"
    } else if args.staged {
        "staged"
    } else if git_history {
        "git"
    } else {
        "files"
    };
    if let Some(bar) = &bar {
        bar.finish();
    }
    suppress::apply(
        &mut report.findings,
        baseline.as_ref(),
        &ignore,
        &mut report.stats.suppressed,
    );

    if args.save {
        let mut covered = args.paths.clone();
        if let Some(home) = args.home.clone().filter(|_| args.host) {
            covered.push(home);
        }
        crate::inventory_cmd::save(
            &report,
            &crate::inventory_cmd::scan_source(source_kind, &covered),
            &covered,
            &args.db,
        )?;
    }
    if let Some(path) = &args.write_baseline {
        let baseline = Baseline::from_findings(&report.findings, scanner.key());
        baseline.write(path)?;
        eprintln!(
            "mayfly: wrote a baseline of {} secrets to {}",
            baseline.secrets.len(),
            path.display()
        );
    }
    let run = RunInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        key_id: scanner.key().key_id(),
        elapsed: (std::env::var_os("MAYFLY_NO_TIMING").is_none()).then_some(elapsed),
    };
    write_report(args.format, &report, &run, args.output.as_deref())?;

    Ok(if args.write_baseline.is_some() {
        EXIT_CLEAN
    } else if !report.findings.is_empty() {
        EXIT_FINDINGS
    } else if !report.stats.missing.is_empty() {
        EXIT_ERROR
    } else {
        EXIT_CLEAN
    })
}

/// `mayfly rules list`.
pub fn list_rules(files: &[PathBuf]) -> anyhow::Result<u8> {
    let mut rules = RuleSet::builtin()?;
    for file in files {
        rules.add_file(file)?;
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let width = rules
        .rules()
        .iter()
        .map(|r| r.spec.id.len())
        .max()
        .unwrap_or(0);
    for rule in rules.rules() {
        let nhi: Vec<String> = rule.spec.nhi.iter().map(|n| format!("{n:?}")).collect();
        writeln!(
            out,
            "{:<width$}  {:<8}  {:<18}  {}",
            rule.spec.id,
            rule.spec.severity.as_str(),
            rule.spec.provider,
            nhi.join(",")
        )?;
    }
    writeln!(out, "{} rules", rules.len())?;
    out.flush()?;
    Ok(EXIT_CLEAN)
}

/// `mayfly rules check`.
pub fn check_rules(files: &[PathBuf]) -> anyhow::Result<u8> {
    let sets: Vec<(String, RuleSet)> = if files.is_empty() {
        vec![("built-in rules".to_owned(), RuleSet::builtin()?)]
    } else {
        files
            .iter()
            .map(|file| {
                let mut set = RuleSet::default();
                set.add_file(file)?;
                Ok((file.display().to_string(), set))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let mut failed = 0usize;
    for (name, set) in sets {
        let count = set.len();
        let key = FingerprintKey::from_bytes(b"mayfly rules check: examples only")?;
        let scanner = Scanner::new(set, key, ScanOptions::default())?;
        let failures = scanner.check_rule_examples();
        for failure in &failures {
            println!("{failure}");
        }
        println!("{name}: {count} rules, {} failing examples", failures.len());
        failed += failures.len();
    }
    Ok(if failed == 0 {
        EXIT_CLEAN
    } else {
        EXIT_FINDINGS
    })
}
