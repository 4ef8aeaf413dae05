//! Git sources: every blob reachable from every ref (branches, tags,
//! stashes, remotes), each scanned exactly once and attributed to the
//! commit that introduced it; the staged changes of a commit in progress;
//! and a range of commits for pull requests.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender};

use git2::{Delta, DiffOptions, ObjectType, Oid, Repository, Sort, TreeWalkMode, TreeWalkResult};

use crate::finding::{Commit, Finding};
use crate::matcher::Scratch;
use crate::scan::{Origin, Progress, ScanIssue, ScanReport, ScanStats, Scanner, SkippedFile};
use crate::sketch::{HISTORY_BUDGET, PathSketches, SketchBudget};
use crate::surface::classify;
use crate::tree::EntryKind;

/// Which history to scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitSelection {
    /// Only commits reachable from these branches (default: every ref).
    pub branches: Vec<String>,
    /// Only commits made at or after this time (seconds since the epoch).
    pub since: Option<i64>,
    /// At most this many commits, newest first.
    pub max_commits: Option<usize>,
    /// Only the commits of a revision range, `BASE..HEAD` (a pull request).
    pub range: Option<String>,
}

/// The git repository a scanned path belongs to, as the inventory records
/// it: where it is and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    /// The work tree's root (the git directory of a bare repository).
    pub root: std::path::PathBuf,
    /// The URL of its `origin` remote (else its first remote), with any
    /// user name and password removed.
    pub remote: Option<String>,
}

/// Bytes of a pack file libgit2 maps at a time (its default on 64-bit
/// systems is 1 GiB).
const PACK_WINDOW: usize = 32 * 1024 * 1024;
/// Bytes of pack files libgit2 keeps mapped in all (its default is 8 GiB:
/// a history scan would hold its whole pack in memory).
const PACK_MAPPED_LIMIT: usize = 96 * 1024 * 1024;

/// Bounds the memory libgit2 maps from pack files, so a history scan's
/// footprint does not grow with the size of the repository.
///
/// # Safety
///
/// These are libgit2's process-wide settings, read without a lock: call
/// this before any thread uses libgit2 (at the start of `main`).
#[expect(
    unsafe_code,
    reason = "libgit2's settings are only reachable through unsafe calls"
)]
pub unsafe fn bound_libgit2_memory() -> Result<(), git2::Error> {
    // SAFETY: the caller guarantees no other thread uses libgit2 yet.
    unsafe {
        git2::opts::set_mwindow_size(PACK_WINDOW)?;
        git2::opts::set_mwindow_mapped_limit(PACK_MAPPED_LIMIT)?;
    }
    Ok(())
}

/// The repository `path` is in, if any.
pub fn repository_of(path: &Path) -> Option<RepositoryInfo> {
    let repo = Repository::discover(path).ok()?;
    let root = repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf();
    let root = root.canonicalize().unwrap_or(root);
    let remote = repo
        .find_remote("origin")
        .ok()
        .or_else(|| {
            let names = repo.remotes().ok()?;
            let first = names.iter().flatten().flatten().next()?.to_owned();
            repo.find_remote(&first).ok()
        })
        .and_then(|r| r.url().ok().map(without_userinfo));
    Some(RepositoryInfo { root, remote })
}

/// The content of `path` (relative to the work tree) at `commit`, read
/// from the repository at `root`: where a copy that only history still
/// holds can be read back.
pub fn file_at_commit(root: &Path, commit: &str, path: &Path) -> Result<Vec<u8>, GitError> {
    let repo = Repository::open(root).map_err(|e| repo_error(root, &e))?;
    let revision = |reason: String| GitError::Revision {
        path: root.display().to_string(),
        what: "commit",
        value: commit.to_owned(),
        reason,
    };
    let oid = Oid::from_str(commit).map_err(|e| revision(e.message().to_owned()))?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| revision(e.message().to_owned()))?;
    let entry = tree
        .get_path(path)
        .map_err(|e| revision(format!("{}: {}", path.display(), e.message())))?;
    let blob = repo
        .find_blob(entry.id())
        .map_err(|e| revision(format!("{}: {}", path.display(), e.message())))?;
    Ok(blob.content().to_vec())
}

/// A remote URL without credentials: `https://user:token@host/x` becomes
/// `https://host/x` (an scp-like `git@host:x` keeps its user, which is no
/// secret).
fn without_userinfo(url: &str) -> String {
    if let Some(authority) = url.find("://").map(|i| i + 3)
        && let Some(rest) = url.get(authority..)
        && let Some(at) = rest.find('@')
        && !rest.get(..at).unwrap_or_default().contains('/')
    {
        return format!(
            "{}{}",
            url.get(..authority).unwrap_or_default(),
            rest.get(at + 1..).unwrap_or_default()
        );
    }
    url.to_owned()
}

/// The working-tree files of the repository at `repo_path` that history
/// does not hold as they are: untracked (ignored ones included: `.env` files
/// usually are), modified or staged. Paths are `repo_path` joined with the
/// file's path in the tree.
pub fn uncommitted_files(repo_path: &Path) -> Result<Vec<std::path::PathBuf>, GitError> {
    let error = |e: git2::Error| GitError::Repository {
        path: repo_path.display().to_string(),
        reason: e.message().to_owned(),
    };
    let repo = Repository::open(repo_path).map_err(error)?;
    if repo.is_bare() {
        return Ok(Vec::new());
    }
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(true)
        .recurse_ignored_dirs(true)
        .include_unmodified(false);
    let statuses = repo.statuses(Some(&mut options)).map_err(error)?;
    let mut files: Vec<std::path::PathBuf> = statuses
        .iter()
        .filter(|entry| !entry.status().contains(git2::Status::WT_DELETED))
        .filter_map(|entry| Some(repo_path.join(entry.path().ok()?)))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Why a repository could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The repository could not be opened or read.
    #[error("git repository {path}: {reason}")]
    Repository {
        /// The repository path.
        path: String,
        /// libgit2's message.
        reason: String,
    },
    /// A branch, range or revision does not resolve.
    #[error("git repository {path}: {what} {value:?} does not resolve: {reason}")]
    Revision {
        /// The repository path.
        path: String,
        /// What was given (`branch`, `range`).
        what: &'static str,
        /// The value given.
        value: String,
        /// libgit2's message.
        reason: String,
    },
}

/// Where the walk saw each blob first, kept compact for histories of
/// millions of blobs: 20 bytes of commit id per commit, and per blob its id
/// with two 32-bit indices (its path, interned, and its commit).
#[derive(Debug, Default)]
struct Introductions {
    commits: Vec<Oid>,
    blobs: HashMap<Oid, (u32, u32)>,
    paths: Vec<String>,
    path_ids: HashMap<String, u32>,
    /// Each blob with the path it was first seen at, in the walk's order.
    order: Vec<(Oid, u32)>,
}

/// A history walk of the first pass, kept so the copies pass reads the same
/// blobs again without walking commits and trees a second time.
#[derive(Debug)]
pub(crate) struct Walked {
    repo: std::path::PathBuf,
    selection: GitSelection,
    seen: Introductions,
    /// What each path's blobs hold, when the first pass kept a sketch:
    /// the copies pass reads only the blobs of paths that may hold a copy.
    sketch: Option<PathSketches>,
}

impl Introductions {
    /// Records that commit `index` changed `blob` at `path` (an older
    /// commit than any recorded before); the path's id the first time the
    /// blob is seen.
    fn introduce(&mut self, blob: Oid, path: &str, index: usize) -> Option<u32> {
        let path_id = match self.path_ids.get(path) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.paths.len()).unwrap_or(u32::MAX);
                self.paths.push(path.to_owned());
                self.path_ids.insert(path.to_owned(), id);
                id
            }
        };
        let commit = u32::try_from(index).unwrap_or(u32::MAX);
        let first = self.blobs.insert(blob, (path_id, commit)).is_none();
        if first {
            self.order.push((blob, path_id));
        }
        first.then_some(path_id)
    }

    /// The path and commit that introduced `blob`.
    fn introduction(&self, blob: Oid) -> Option<(&str, Oid)> {
        let &(path, commit) = self.blobs.get(&blob)?;
        let path = self.paths.get(usize::try_from(path).ok()?)?;
        let commit = *self.commits.get(usize::try_from(commit).ok()?)?;
        Some((path, commit))
    }
}

/// A blob to scan and the path it was first seen at.
struct BlobSource {
    blob: Oid,
    path: String,
    /// The path's id in the walk (for the sketch; `u32::MAX` outside one).
    path_id: u32,
}

fn repo_error(path: &Path, err: &git2::Error) -> GitError {
    GitError::Repository {
        path: path.display().to_string(),
        reason: err.message().to_owned(),
    }
}

fn commit_meta(commit: &git2::Commit<'_>) -> Commit {
    let author = commit.author();
    let time = author.when().seconds();
    Commit {
        id: commit.id().to_string(),
        author: String::from_utf8_lossy(author.name_bytes()).into_owned(),
        email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
        time,
        date: crate::time::rfc3339(time),
    }
}

fn display_prefix(repo_path: &Path) -> String {
    let shown = repo_path.to_string_lossy();
    let shown = shown.trim_end_matches('/');
    if shown == "." || shown.is_empty() {
        String::new()
    } else {
        format!("{shown}/")
    }
}

impl Scanner {
    /// Scans the history of the repository at `repo_path` (work tree or bare).
    pub fn scan_git(
        &self,
        repo_path: &Path,
        selection: &GitSelection,
        progress: &dyn Progress,
    ) -> Result<ScanReport, GitError> {
        // A scanner reads objects, it does not trust them: skipping the
        // SHA-1 check of every object read saves a fifth of the work.
        // (A process-wide libgit2 setting; zlib still checks each object.)
        git2::opts::strict_hash_verification(false);
        // libgit2 caches every commit and tree it parses (up to 256 MiB);
        // a walk parses each once or twice, so the cache only grows.
        git2::opts::enable_caching(false);
        let repo = Repository::discover(repo_path).map_err(|e| repo_error(repo_path, &e))?;
        let mut walk = repo.revwalk().map_err(|e| repo_error(repo_path, &e))?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
            .map_err(|e| repo_error(repo_path, &e))?;
        let revision = |what: &'static str, value: &str, err: git2::Error| GitError::Revision {
            path: repo_path.display().to_string(),
            what,
            value: value.to_owned(),
            reason: err.message().to_owned(),
        };
        if let Some(range) = &selection.range {
            walk.push_range(range)
                .map_err(|e| revision("range", range, e))?;
        } else if selection.branches.is_empty() {
            // Every ref: branches, tags, remotes, stashes, notes. An empty
            // repository has none, and yields nothing.
            walk.push_glob("*").map_err(|e| repo_error(repo_path, &e))?;
        } else {
            for branch in &selection.branches {
                let target = repo
                    .revparse_single(branch)
                    .and_then(|o| o.peel_to_commit())
                    .map_err(|e| revision("branch", branch, e))?;
                walk.push(target.id())
                    .map_err(|e| repo_error(repo_path, &e))?;
            }
        }

        let mut stats = ScanStats::default();
        // Newest commits come first; a blob seen again in an older commit
        // is re-attributed to it, so each blob ends with the commit that
        // introduced it. Blobs are scanned as soon as they are first seen,
        // on the other cores, while the walk goes on. The copies pass reads
        // the blobs the first pass's walk found, in the same order.
        let reused = self.copies.as_ref().and_then(|_| {
            let mut walks = self.walks.lock().unwrap_or_else(|p| p.into_inner());
            let at = walks
                .iter()
                .position(|w| w.repo == repo_path && w.selection == *selection)?;
            Some(walks.swap_remove(at))
        });
        let walk_again = reused.is_none();
        let (mut seen, kept) = reused.map_or_else(Default::default, |w| (w.seen, w.sketch));
        // A path whose blobs cannot hold a searched form is not read again.
        let query = self.copies.as_ref().and_then(|c| c.sketch_query());
        let skip = |path: u32| match (&kept, query) {
            (Some(kept), Some(query)) => !kept.may_hold(path, query),
            _ => false,
        };
        let mut trees = TreeReader::new(&repo).map_err(|e| repo_error(repo_path, &e))?;
        let mut parent_slot: Option<git2::Commit<'_>> = None;
        let budget = SketchBudget::new(HISTORY_BUDGET);
        let sketching = (self.options.sketch && self.copies.is_none()).then_some(&budget);
        let (senders, receivers) = self.lanes();
        let (mut report, sketch) = std::thread::scope(|scope| {
            let scanning =
                scope.spawn(|| self.scan_blob_stream(repo_path, receivers, progress, sketching));
            if !walk_again {
                for &(blob, path_id) in &seen.order {
                    let Some(path) = usize::try_from(path_id)
                        .ok()
                        .and_then(|p| seen.paths.get(p))
                    else {
                        continue;
                    };
                    if skip(path_id) {
                        continue;
                    }
                    if let Some(sender) = senders.get(path_lane(path, senders.len())) {
                        let _ = sender.send(BlobSource {
                            blob,
                            path: path.to_owned(),
                            path_id,
                        });
                    }
                }
            }
            for oid in walk_again.then_some(walk).into_iter().flatten() {
                if selection
                    .max_commits
                    .is_some_and(|max| seen.commits.len() >= max)
                {
                    break;
                }
                // The commit read as the last one's parent, if it is this one.
                let commit = match oid.and_then(|oid| match parent_slot.take() {
                    Some(parent) if parent.id() == oid => Ok(parent),
                    _ => repo.find_commit(oid),
                }) {
                    Ok(commit) => commit,
                    Err(e) => {
                        stats.errors.push(ScanIssue {
                            path: repo_path.display().to_string(),
                            error: format!("commit unreadable: {}", e.message()),
                        });
                        continue;
                    }
                };
                if selection
                    .since
                    .is_some_and(|since| commit.time().seconds() < since)
                {
                    continue;
                }
                let index = seen.commits.len();
                seen.commits.push(commit.id());
                trees.next_commit();
                let tree = commit.tree_id();
                if trees.read(tree).is_err() {
                    stats.errors.push(ScanIssue {
                        path: format!("{}@{}", repo_path.display(), commit.id()),
                        error: "tree unreadable".into(),
                    });
                    continue;
                }
                parent_slot = commit.parent(0).ok();
                let parent_tree = parent_slot.as_ref().map(git2::Commit::tree_id);
                let mut changed = Vec::new();
                if let Err(e) = changed_blobs(&mut trees, parent_tree, tree, "", &mut changed) {
                    stats.errors.push(ScanIssue {
                        path: format!("{}@{}", repo_path.display(), commit.id()),
                        error: format!("cannot compare trees: {}", e.message()),
                    });
                }
                for (blob, path) in changed {
                    if let Some(path_id) = seen.introduce(blob, &path, index) {
                        let lane = path_lane(&path, senders.len());
                        if let Some(sender) = senders.get(lane) {
                            // A closed channel means its scanner stopped; the
                            // walk result is still recorded.
                            let _ = sender.send(BlobSource {
                                blob,
                                path,
                                path_id,
                            });
                        }
                    }
                }
            }
            drop(senders);
            scanning.join().unwrap_or_default()
        });
        let head_blobs = head_blobs(&repo);
        // Attribute each copy to the commit that introduced its blob; only
        // those commits' metadata is read.
        let prefix = display_prefix(repo_path);
        let mut metadata: HashMap<Oid, Commit> = HashMap::new();
        for finding in &mut report.findings {
            let known = finding
                .location
                .blob
                .as_deref()
                .and_then(|b| Oid::from_str(b).ok())
                .and_then(|b| seen.introduction(b));
            if let Some((path, commit)) = known {
                if !metadata.contains_key(&commit)
                    && let Ok(found) = repo.find_commit(commit)
                {
                    metadata.insert(commit, commit_meta(&found));
                }
                finding.location.commit = metadata.get(&commit).cloned();
                // A copy inside a committed archive keeps its `!entry` part.
                let shown = finding
                    .location
                    .path
                    .strip_prefix(&prefix)
                    .unwrap_or_default();
                let entry = shown
                    .find('!')
                    .and_then(|i| shown.get(i..))
                    .unwrap_or_default();
                finding.location.path = format!("{prefix}{path}{entry}");
            }
        }
        report.stats.merge(stats);
        mark_present_at_head(&mut report.findings, &head_blobs);
        keep_introductions(&mut report.findings);
        report
            .findings
            .sort_by(|a, b| (&a.location, &a.rule.id).cmp(&(&b.location, &b.rule.id)));
        report.stats.sort();
        if self.copies.is_none() {
            let mut walks = self.walks.lock().unwrap_or_else(|p| p.into_inner());
            walks.push(Walked {
                repo: repo_path.to_path_buf(),
                selection: selection.clone(),
                seen,
                sketch: sketching.map(|_| sketch),
            });
        }
        Ok(report)
    }

    /// Scans what is staged for the next commit (for a pre-commit hook).
    pub fn scan_staged(&self, repo_path: &Path) -> Result<ScanReport, GitError> {
        let repo = Repository::discover(repo_path).map_err(|e| repo_error(repo_path, &e))?;
        let index = repo.index().map_err(|e| repo_error(repo_path, &e))?;
        let head = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
        let mut options = DiffOptions::new();
        options.skip_binary_check(true);
        let diff = repo
            .diff_tree_to_index(head.as_ref(), Some(&index), Some(&mut options))
            .map_err(|e| repo_error(repo_path, &e))?;
        let mut sources = Vec::new();
        for delta in diff.deltas() {
            if matches!(delta.status(), Delta::Deleted) || delta.new_file().id().is_zero() {
                continue;
            }
            let file = delta.new_file();
            sources.push(BlobSource {
                blob: file.id(),
                path: file
                    .path()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path_id: u32::MAX,
            });
        }
        drop(diff);
        drop(index);
        drop(head);
        drop(repo);
        let (senders, receivers) = self.lanes();
        let (mut report, _) = std::thread::scope(|scope| {
            let scanning = scope.spawn(|| {
                self.scan_blob_stream(repo_path, receivers, &crate::scan::NoProgress, None)
            });
            for source in sources {
                if let Some(sender) = senders.get(path_lane(&source.path, senders.len())) {
                    let _ = sender.send(source);
                }
            }
            drop(senders);
            scanning.join().unwrap_or_default()
        });
        report
            .findings
            .sort_by(|a, b| (&a.location, &a.rule.id).cmp(&(&b.location, &b.rule.id)));
        Ok(report)
    }

    /// One channel per scanning thread. Blobs are routed by path
    /// ([`path_lane`]), so the versions of one file go to the same thread,
    /// whose pack cache then holds their delta bases.
    fn lanes(&self) -> (Vec<SyncSender<BlobSource>>, Vec<Receiver<BlobSource>>) {
        (0..self.threads())
            .map(|_| std::sync::mpsc::sync_channel::<BlobSource>(4096))
            .unzip()
    }

    /// Scans the blobs sent on each of `receivers`, one thread and one
    /// repository handle per receiver; keeps each path's sketch within
    /// `sketch` when given one.
    fn scan_blob_stream(
        &self,
        repo_path: &Path,
        receivers: Vec<Receiver<BlobSource>>,
        progress: &dyn Progress,
        sketch: Option<&SketchBudget>,
    ) -> (ScanReport, PathSketches) {
        let collected = Mutex::new((ScanReport::default(), PathSketches::default()));
        let prefix = display_prefix(repo_path);
        std::thread::scope(|scope| {
            for receiver in receivers {
                let (collected, prefix) = (&collected, &prefix);
                scope.spawn(move || {
                    let mut findings = Vec::new();
                    let mut stats = ScanStats::default();
                    let mut scratch = Scratch::default();
                    let mut sketches = PathSketches::default();
                    let mut spare = Vec::new();
                    match Repository::discover(repo_path) {
                        Ok(repo) => {
                            for source in receiver.iter() {
                                if sketch.is_some() {
                                    let mut hashes: Vec<u32> = std::mem::take(&mut spare);
                                    hashes.clear();
                                    scratch.sketch = Some(hashes);
                                }
                                self.scan_one_blob(
                                    &repo,
                                    prefix,
                                    &source,
                                    &mut scratch,
                                    &mut findings,
                                    &mut stats,
                                    progress,
                                );
                                if let Some(budget) = sketch {
                                    let kept = scratch.sketch.take();
                                    sketches.add(source.path_id, kept.as_deref(), budget);
                                    spare = kept.unwrap_or_default();
                                }
                            }
                        }
                        Err(e) => {
                            stats.errors.push(ScanIssue {
                                path: repo_path.display().to_string(),
                                error: e.message().to_owned(),
                            });
                            // Keep draining, so the walk never waits on a full channel.
                            for _ in receiver.iter() {}
                        }
                    }
                    let mut shared = collected.lock().unwrap_or_else(|p| p.into_inner());
                    shared.0.findings.extend(findings);
                    shared.0.stats.merge(stats);
                    shared.1.merge(sketches);
                });
            }
        });
        collected.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one blob's scan, kept flat on the hot path"
    )]
    fn scan_one_blob(
        &self,
        repo: &Repository,
        prefix: &str,
        source: &BlobSource,
        scratch: &mut Scratch,
        findings: &mut Vec<Finding>,
        stats: &mut ScanStats,
        progress: &dyn Progress,
    ) {
        let shown = format!("{prefix}{}", source.path);
        let blob = match repo.find_blob(source.blob) {
            Ok(blob) => blob,
            Err(e) => {
                stats.errors.push(ScanIssue {
                    path: shown,
                    error: format!("blob {} unreadable: {}", source.blob, e.message()),
                });
                return;
            }
        };
        let content = blob.content();
        progress.advance(content.len() as u64);
        if content.len() as u64 > self.options.max_file_size {
            stats.skipped_too_large.push(SkippedFile {
                path: format!("{shown}@{}", source.blob),
                size: content.len() as u64,
            });
            return;
        }
        let head = content.get(..8192).unwrap_or(content);
        #[cfg(feature = "archive")]
        if let Some(kind) = crate::archive::archive_kind(head) {
            // A committed archive (a release zip, a vendored wheel): its
            // entries are scanned like a file's, located `path!entry`, by a
            // worker of their own: no sketch of them is kept, so the path
            // is always read again.
            scratch.sketch = None;
            let mut worker = crate::source::Worker::new(self);
            let mut budget = crate::archive::Budget::for_limit(self.options.max_file_size);
            worker.scan_archive(content, &shown, kind, 0, &mut budget);
            let (mut found, archive_stats) = worker.into_parts();
            for finding in &mut found {
                finding.location.blob = Some(source.blob.to_string());
            }
            findings.append(&mut found);
            stats.merge(archive_stats);
            return;
        }
        if memchr::memchr(0, head).is_some() {
            stats.skipped_binary += 1;
            return;
        }
        let origin = Origin {
            path: &shown,
            surface: classify(Path::new(&source.path), head),
            cell: None,
        };
        let first = findings.len();
        self.scan_blob(content, &origin, 0, content.len(), scratch, findings, stats);
        // The introducing commit is attributed once the walk is done.
        for finding in findings.get_mut(first..).unwrap_or_default() {
            finding.location.blob = Some(source.blob.to_string());
        }
        stats.files_scanned += 1;
        stats.bytes_scanned += content.len() as u64;
    }
}

/// The scanning thread for a path: a stable hash, so one file's versions
/// share a thread.
fn path_lane(path: &str, lanes: usize) -> usize {
    let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % lanes.max(1) as u64) as usize
}

/// The trees the walk reads, by id: each commit's tree is compared with
/// its parent's, and the next commit walked is usually that parent, so the
/// trees read for one commit are kept for the next (up to
/// [`TREE_CACHE_BYTES`]) and the rest dropped.
struct TreeReader<'r> {
    odb: git2::Odb<'r>,
    current: HashMap<Oid, Rc<Vec<u8>>>,
    previous: HashMap<Oid, Rc<Vec<u8>>>,
    bytes: usize,
}

/// Bytes of tree objects kept from one commit to the next (a commit
/// changes a few directories: this only matters for a huge commit, whose
/// trees past it are read again, and it bounds the walk's memory).
const TREE_CACHE_BYTES: usize = 4 * 1024 * 1024;

impl<'r> TreeReader<'r> {
    fn new(repo: &'r Repository) -> Result<TreeReader<'r>, git2::Error> {
        Ok(TreeReader {
            odb: repo.odb()?,
            current: HashMap::new(),
            previous: HashMap::new(),
            bytes: 0,
        })
    }

    /// The bytes of tree `id`.
    fn read(&mut self, id: Oid) -> Result<Rc<Vec<u8>>, git2::Error> {
        if let Some(data) = self.current.get(&id) {
            return Ok(data.clone());
        }
        let data = match self.previous.remove(&id) {
            Some(data) => data,
            None => {
                let object = self.odb.read(id)?;
                if object.kind() != ObjectType::Tree {
                    return Err(git2::Error::from_str(&format!("{id} is not a tree")));
                }
                Rc::new(object.data().to_vec())
            }
        };
        if self.bytes + data.len() <= TREE_CACHE_BYTES {
            self.bytes += data.len();
            self.current.insert(id, data.clone());
        }
        Ok(data)
    }

    /// Starts the next commit: what the last one read is kept for it.
    fn next_commit(&mut self) {
        self.previous = std::mem::take(&mut self.current);
        self.bytes = 0;
    }
}

/// The blobs added or changed from tree `old` to tree `new`, with their
/// paths. Subtrees with the same id are skipped whole, so a commit costs
/// what it changed, not the size of the tree.
fn changed_blobs(
    trees: &mut TreeReader<'_>,
    old: Option<Oid>,
    new: Oid,
    prefix: &str,
    out: &mut Vec<(Oid, String)>,
) -> Result<(), git2::Error> {
    let new_data = trees.read(new)?;
    // An old tree that cannot be read counts as empty: all of `new` is new.
    let old_data = old.and_then(|old| trees.read(old).ok());
    // Entries in the tree's order, subtrees walked in place, as a
    // recursive walk would: the first path a blob is seen at is the same.
    let mut changed = Vec::new();
    crate::tree::changes(
        old_data.as_deref().map(Vec::as_slice),
        &new_data,
        |entry, previous| {
            let id =
                |raw: &[u8; crate::tree::ID_LEN]| Oid::from_bytes(raw).unwrap_or(Oid::ZERO_SHA1);
            let path = format!("{prefix}{}", String::from_utf8_lossy(entry.name));
            changed.push((
                entry.kind(),
                id(&entry.id),
                previous.map(|p| id(&p.id)),
                path,
            ));
        },
    )
    .map_err(|e| git2::Error::from_str(&format!("tree {new}: {e}")))?;
    for (kind, id, previous, path) in changed {
        match kind {
            EntryKind::Blob => out.push((id, path)),
            EntryKind::Tree => changed_blobs(trees, previous, id, &format!("{path}/"), out)?,
            // Submodules hold no blob of this repository.
            EntryKind::Commit => {}
        }
    }
    Ok(())
}

/// A file edited in many commits holds the same secret in many blob
/// versions: keep, per secret and path, the copy of the oldest commit,
/// the one that introduced it.
fn keep_introductions(findings: &mut Vec<Finding>) {
    findings.sort_by(|a, b| {
        let key = |f: &Finding| {
            (
                f.fingerprint,
                f.location.path.clone(),
                f.location.commit.as_ref().map_or(i64::MAX, |c| c.time),
            )
        };
        key(a).cmp(&key(b))
    });
    findings.dedup_by(|later, earlier| {
        later.fingerprint == earlier.fingerprint && later.location.path == earlier.location.path
    });
}

/// The blob ids of HEAD's tree.
fn head_blobs(repo: &Repository) -> HashSet<String> {
    let mut blobs = HashSet::new();
    if let Some(tree) = repo.head().ok().and_then(|h| h.peel_to_tree().ok()) {
        let _ = tree.walk(TreeWalkMode::PreOrder, |_, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                blobs.insert(entry.id().to_string());
            }
            TreeWalkResult::Ok
        });
    }
    blobs
}

/// Marks each copy with whether its secret is still in HEAD's tree; a
/// secret only in history is "removed but live until rotated".
fn mark_present_at_head(findings: &mut [Finding], head_blobs: &HashSet<String>) {
    let at_head: HashSet<_> = findings
        .iter()
        .filter(|f| {
            f.location
                .blob
                .as_ref()
                .is_some_and(|b| head_blobs.contains(b))
        })
        .map(|f| f.fingerprint)
        .collect();
    for finding in findings {
        finding.location.present_at_head = Some(at_head.contains(&finding.fingerprint));
    }
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn remote_urls_lose_their_credentials() {
        assert_eq!(
            without_userinfo("https://x-access-token:ghs_secret@github.com/acme/app.git"), // mayfly:allow (test fixture)
            "https://github.com/acme/app.git"
        );
        assert_eq!(
            without_userinfo("git@github.com:acme/app.git"),
            "git@github.com:acme/app.git"
        );
        assert_eq!(
            without_userinfo("https://github.com/acme/@weird"),
            "https://github.com/acme/@weird"
        );
    }
}
