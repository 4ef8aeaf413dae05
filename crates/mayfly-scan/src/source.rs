//! Sources: directory trees (dotfiles, ignored and vendored files
//! included; `.git` internals excluded), single files, SQLite databases and
//! streams. Files are read whole up to [`WHOLE_FILE_LIMIT`] and in
//! overlapping chunks above it, so memory stays bounded whatever the input.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ignore::{WalkBuilder, WalkState};

use crate::finding::Finding;
use crate::matcher::Scratch;
use crate::scan::{
    NoProgress, Origin, Progress, ScanIssue, ScanReport, ScanStats, Scanner, SkippedFile,
};
use crate::sketch::{DEFAULT_BUDGET, ReadSketch, SketchBudget, Sketcher};
use crate::surface::{Surface, classify};

/// Files up to this size are read in one piece.
pub const WHOLE_FILE_LIMIT: usize = 32 * 1024 * 1024;
/// Chunk size for larger files and streams.
pub const CHUNK: usize = 8 * 1024 * 1024;
/// Bytes shared by consecutive chunks, so a secret across a boundary is
/// seen whole (longer than any multi-line window).
pub const OVERLAP: usize = 64 * 1024;
/// Bytes inspected to tell text from binary.
const SNIFF: usize = 8192;

/// How the first bytes of a file say to read it.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Utf16 { little_endian: bool },
    Sqlite,
    Binary,
}

fn sniff(head: &[u8]) -> Kind {
    if head.starts_with(b"SQLite format 3\0") {
        Kind::Sqlite
    } else if head.starts_with(&[0xFF, 0xFE]) {
        Kind::Utf16 {
            little_endian: true,
        }
    } else if head.starts_with(&[0xFE, 0xFF]) {
        Kind::Utf16 {
            little_endian: false,
        }
    } else if memchr::memchr(0, head).is_some() {
        Kind::Binary
    } else {
        Kind::Text
    }
}

fn utf16_to_utf8(bytes: &[u8], little_endian: bool) -> Vec<u8> {
    let units = bytes
        .get(2..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|pair| {
            let (a, b) = (
                pair.first().copied().unwrap_or(0),
                pair.get(1).copied().unwrap_or(0),
            );
            if little_endian {
                u16::from_le_bytes([a, b])
            } else {
                u16::from_be_bytes([a, b])
            }
        });
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect::<String>()
        .into_bytes()
}

/// Reads the rest of a file that `fill` began: up to the size its metadata
/// gave (a file that grows while it is read is scanned as it was measured),
/// or to its end when that size is 0 (files of `/proc` say 0 and hold
/// text). Nothing is read when `eof` says the end was reached.
fn read_rest(file: &mut File, buf: &mut Vec<u8>, size: u64, eof: bool) -> io::Result<()> {
    if eof {
        return Ok(());
    }
    match usize::try_from(size) {
        Ok(known) if known > 0 => fill(file, buf, known).map(|_| ()),
        _ => file.read_to_end(buf).map(|_| ()),
    }
}

/// Reads into `buf` until it holds `want` bytes or the reader ends;
/// returns true at the end of input.
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> io::Result<bool> {
    while buf.len() < want {
        let start = buf.len();
        buf.resize(want, 0);
        let read = loop {
            match reader.read(buf.get_mut(start..).unwrap_or_default()) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    buf.truncate(start);
                    return Err(e);
                }
            }
        };
        buf.truncate(start + read);
        if read == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A scanning thread's state: reused buffers and what it found so far.
pub(crate) struct Worker<'s> {
    pub(crate) scanner: &'s Scanner,
    scratch: Scratch,
    buf: Vec<u8>,
    findings: Vec<Finding>,
    pub(crate) stats: ScanStats,
    /// Buffers archive entries are decompressed into, kept for reuse.
    #[cfg_attr(
        not(feature = "archive"),
        expect(dead_code, reason = "only archives use them")
    )]
    pub(crate) spare_buffers: Vec<Vec<u8>>,
    /// Set when the read keeps a sketch for the copies pass.
    sketcher: Option<Sketcher<'s>>,
}

impl<'s> Worker<'s> {
    pub(crate) fn new(scanner: &'s Scanner) -> Self {
        Worker {
            scanner,
            scratch: Scratch::default(),
            buf: Vec::new(),
            findings: Vec::new(),
            stats: ScanStats::default(),
            spare_buffers: Vec::new(),
            sketcher: None,
        }
    }

    /// A worker that also keeps each file's sketch, within `budget`.
    fn sketching(scanner: &'s Scanner, budget: Option<&'s SketchBudget>) -> Self {
        let mut worker = Worker::new(scanner);
        worker.sketcher = budget.map(Sketcher::new);
        worker
    }

    /// What the worker found and counted.
    #[cfg_attr(
        not(all(feature = "git", feature = "archive")),
        expect(dead_code, reason = "only archives in git blobs hand results back")
    )]
    pub(crate) fn into_parts(self) -> (Vec<Finding>, ScanStats) {
        (self.findings, self.stats)
    }

    pub(crate) fn issue(&mut self, path: &str, error: impl ToString) {
        self.stats.errors.push(ScanIssue {
            path: path.to_owned(),
            error: error.to_string(),
        });
    }

    /// Scans a stream in chunks; `head` already holds its first bytes.
    fn scan_stream(
        &mut self,
        shown: &str,
        surface: Surface,
        reader: &mut impl Read,
    ) -> io::Result<u64> {
        let origin = Origin {
            path: shown,
            surface,
            cell: None,
        };
        let mut buf = std::mem::take(&mut self.buf);
        let (mut line_base, mut total) = (0u64, 0u64);
        let result = loop {
            let eof = match fill(reader, &mut buf, CHUNK + OVERLAP) {
                Ok(eof) => eof,
                Err(e) => break Err(e),
            };
            let limit = if eof { buf.len() } else { CHUNK };
            self.scanner.scan_blob(
                &buf,
                &origin,
                line_base,
                limit,
                &mut self.scratch,
                &mut self.findings,
                &mut self.stats,
            );
            let done = buf.get(..limit).unwrap_or_default();
            line_base += memchr::memchr_iter(b'\n', done).count() as u64;
            total += limit as u64;
            buf.drain(..limit);
            if eof {
                break Ok(total);
            }
        };
        buf.clear();
        self.buf = buf;
        result
    }

    /// Reads and scans the file at `path`, keeping its sketch when the
    /// read keeps sketches.
    fn scan_file(&mut self, path: &Path, progress: &dyn Progress) {
        let Some(sketcher) = &mut self.sketcher else {
            return self.read_file(path, progress);
        };
        let mut hashes = std::mem::take(&mut sketcher.spare);
        hashes.clear();
        self.scratch.sketch = Some(hashes);
        self.read_file(path, progress);
        let kept = self.scratch.sketch.take();
        if let Some(sketcher) = &mut self.sketcher {
            // A file with no chunk cannot hold a copy: not recorded.
            match kept {
                Some(hashes) if hashes.is_empty() => sketcher.spare = hashes,
                Some(hashes) => {
                    sketcher.record(path.to_path_buf(), Some(&hashes));
                    sketcher.spare = hashes;
                }
                None => sketcher.record(path.to_path_buf(), None),
            }
        }
    }

    fn read_file(&mut self, path: &Path, progress: &dyn Progress) {
        let shown = display_path(path);
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) => return self.issue(&shown, e),
        };
        let size = match file.metadata() {
            Ok(meta) if !meta.is_file() => {
                self.stats.skipped_special += 1;
                return;
            }
            Ok(meta) => meta.len(),
            Err(e) => return self.issue(&shown, e),
        };
        if size > self.scanner.options.max_file_size {
            self.stats
                .skipped_too_large
                .push(SkippedFile { path: shown, size });
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        // The size is known: a small file takes one read, with no second
        // read to find its end.
        let head = match usize::try_from(size) {
            Ok(known) if known > 0 => SNIFF.min(known),
            _ => SNIFF,
        };
        let eof = match fill(&mut file, &mut buf, head) {
            Ok(eof) => eof || (size > 0 && buf.len() as u64 >= size),
            Err(e) => {
                self.buf = buf;
                return self.issue(&shown, e);
            }
        };
        let head = buf.get(..SNIFF.min(buf.len())).unwrap_or_default();
        #[cfg(feature = "archive")]
        if let Some(archive) = crate::archive::archive_kind(head) {
            if let Err(e) = read_rest(&mut file, &mut buf, size, eof) {
                self.buf = buf;
                return self.issue(&shown, e);
            }
            let mut budget = crate::archive::Budget::for_limit(self.scanner.options.max_file_size);
            self.scan_archive(&buf, &shown, archive, 0, &mut budget);
            buf.clear();
            self.buf = buf;
            progress.advance(size);
            return;
        }
        let kind = sniff(head);
        let surface = classify(path, head);
        match kind {
            Kind::Binary => {
                self.stats.skipped_binary += 1;
                self.buf = buf;
            }
            Kind::Sqlite => {
                self.buf = buf;
                drop(file);
                self.scan_sqlite(path, &shown, size);
            }
            Kind::Utf16 { little_endian } => {
                let read = if eof || size as usize <= WHOLE_FILE_LIMIT {
                    read_rest(&mut file, &mut buf, size, eof)
                } else {
                    self.stats.skipped_binary += 1;
                    self.buf = buf;
                    return;
                };
                if let Err(e) = read {
                    self.buf = buf;
                    return self.issue(&shown, e);
                }
                let text = utf16_to_utf8(&buf, little_endian);
                self.buf = buf;
                self.scan_whole(&text, &shown, surface);
            }
            Kind::Text if eof || size as usize <= WHOLE_FILE_LIMIT => {
                if let Err(e) = read_rest(&mut file, &mut buf, size, eof) {
                    self.buf = buf;
                    return self.issue(&shown, e);
                }
                self.scan_whole(&buf, &shown, surface);
                buf.clear();
                self.buf = buf;
            }
            Kind::Text => {
                // Large file: put the sniffed head back in front of the rest.
                let mut reader = io::Cursor::new(std::mem::take(&mut buf)).chain(file);
                self.buf = buf;
                match self.scan_stream(&shown, surface, &mut reader) {
                    Ok(bytes) => {
                        self.stats.files_scanned += 1;
                        self.stats.bytes_scanned += bytes;
                    }
                    Err(e) => self.issue(&shown, e),
                }
            }
        }
        progress.advance(size);
    }

    /// Scans in-memory content by what its bytes are: text (UTF-8 or
    /// UTF-16) is scanned, binaries and databases are counted as skipped.
    #[cfg_attr(
        not(feature = "archive"),
        expect(dead_code, reason = "only archives hold in-memory files")
    )]
    pub(crate) fn scan_text_or_skip(&mut self, content: &[u8], name: &str) {
        let head = content.get(..SNIFF).unwrap_or(content);
        let surface = classify(Path::new(name.rsplit('!').next().unwrap_or(name)), head);
        match sniff(head) {
            Kind::Text => self.scan_whole(content, name, surface),
            Kind::Utf16 { little_endian } => {
                self.scan_whole(&utf16_to_utf8(content, little_endian), name, surface)
            }
            Kind::Binary | Kind::Sqlite => self.stats.skipped_binary += 1,
        }
    }

    fn scan_whole(&mut self, bytes: &[u8], shown: &str, surface: Surface) {
        let origin = Origin {
            path: shown,
            surface,
            cell: None,
        };
        self.scanner.scan_blob(
            bytes,
            &origin,
            0,
            bytes.len(),
            &mut self.scratch,
            &mut self.findings,
            &mut self.stats,
        );
        self.stats.files_scanned += 1;
        self.stats.bytes_scanned += bytes.len() as u64;
    }

    #[cfg(feature = "sqlite")]
    fn scan_sqlite(&mut self, path: &Path, shown: &str, size: u64) {
        let mut table_errors = Vec::new();
        let (scanner, scratch, findings, stats) = (
            self.scanner,
            &mut self.scratch,
            &mut self.findings,
            &mut self.stats,
        );
        let mut bytes = 0u64;
        let result = crate::sqlite::scan_database(path, &mut table_errors, |cell, text| {
            bytes += text.len() as u64;
            let origin = Origin {
                path: shown,
                surface: Surface::Database,
                cell: Some(cell),
            };
            scanner.scan_blob(text, &origin, 0, text.len(), scratch, findings, stats);
        });
        match result {
            Ok(cells) => {
                self.stats.databases_scanned += 1;
                self.stats.cells_scanned += cells;
                self.stats.bytes_scanned += bytes;
            }
            Err(e) => self.issue(shown, e),
        }
        for e in table_errors {
            self.issue(shown, e);
        }
        let _ = size;
    }

    #[cfg(not(feature = "sqlite"))]
    fn scan_sqlite(&mut self, _path: &Path, _shown: &str, _size: u64) {
        self.stats.skipped_binary += 1;
    }
}

/// A path as outputs show it: relative paths stay relative, without `./`.
fn display_path(path: &Path) -> String {
    let shown = path.to_string_lossy();
    shown.strip_prefix("./").unwrap_or(&shown).to_owned()
}

impl Scanner {
    /// Scans files and directory trees. Directories are walked with every
    /// file included (dotfiles, git-ignored and vendored files) except the
    /// `.git` directory's internals. A path of `-` reads standard input.
    pub fn scan_paths(&self, paths: &[PathBuf], progress: &dyn Progress) -> ScanReport {
        self.walk(paths, progress, None).0
    }

    /// Scans as [`Scanner::scan_paths`] does and keeps, for the copies
    /// pass, a sketch of what each file holds (see [`crate::sketch`]).
    pub fn scan_paths_sketched(
        &self,
        paths: &[PathBuf],
        progress: &dyn Progress,
    ) -> (ScanReport, ReadSketch) {
        let budget = SketchBudget::new(DEFAULT_BUDGET);
        self.walk(paths, progress, Some(&budget))
    }

    /// Scans exactly `files` (no walk), on as many threads as the options
    /// say: the copies pass over the files a sketch could not rule out.
    pub fn scan_files(&self, files: &[PathBuf]) -> ScanReport {
        let threads = self.threads().min(files.len()).max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let collected = Mutex::new((ScanReport::default(), ReadSketch::default()));
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut flush = Flush {
                        shared: &collected,
                        worker: Worker::new(self),
                    };
                    while let Some(path) =
                        files.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        flush.worker.scan_file(path, &NoProgress);
                    }
                });
            }
        });
        let (mut report, _) = collected
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        report.sort();
        report
    }

    fn walk(
        &self,
        paths: &[PathBuf],
        progress: &dyn Progress,
        budget: Option<&SketchBudget>,
    ) -> (ScanReport, ReadSketch) {
        let mut report = ScanReport::default();
        let mut sketch = ReadSketch::default();
        let mut roots = Vec::new();
        for path in paths {
            if path.as_os_str() == "-" {
                let stdin = io::stdin();
                let mut reader = crate::diff::DiffReader::new(stdin.lock());
                let mut partial = self.scan_reader("-", &mut reader);
                // `git diff | mayfly scan -`: each copy at its file and line.
                let map = reader.finish();
                if map.is_diff() {
                    for finding in &mut partial.findings {
                        let location = &mut finding.location;
                        if let Some((file, line)) = map.locate(location.line) {
                            location.path = file.to_owned();
                            location.line = line;
                            location.column = location.column.saturating_sub(1).max(1);
                            location.surface = classify(Path::new(file), b"");
                        }
                    }
                }
                report.findings.extend(partial.findings);
                report.stats.merge(partial.stats);
            } else if std::fs::symlink_metadata(path).is_err() {
                report.stats.missing.push(display_path(path));
            } else {
                roots.push(path.clone());
            }
        }
        if let Some((first, rest)) = roots.split_first() {
            let mut builder = WalkBuilder::new(first);
            for root in rest {
                builder.add(root);
            }
            builder
                .standard_filters(false)
                .follow_links(self.options.follow_symlinks)
                .threads(self.options.threads)
                .filter_entry(|entry| {
                    !(entry.file_name() == ".git" && entry.file_type().is_some_and(|t| t.is_dir()))
                });
            let collected = Mutex::new((ScanReport::default(), ReadSketch::default()));
            builder.build_parallel().run(|| {
                let mut flush = Flush {
                    shared: &collected,
                    worker: Worker::sketching(self, budget),
                };
                Box::new(move |entry| {
                    let worker = &mut flush.worker;
                    match entry {
                        Err(err) => {
                            let path = error_path(&err).unwrap_or_default();
                            worker.issue(&path, err.to_string());
                        }
                        Ok(entry) => match entry.file_type() {
                            Some(t) if t.is_dir() => {}
                            Some(t) if t.is_symlink() => worker.stats.skipped_symlinks += 1,
                            Some(t) if t.is_file() => worker.scan_file(entry.path(), progress),
                            _ => worker.stats.skipped_special += 1,
                        },
                    }
                    WalkState::Continue
                })
            });
            let (walked, kept) = collected
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            report.findings.extend(walked.findings);
            report.stats.merge(walked.stats);
            sketch = kept;
        }
        report.sort();
        (report, sketch)
    }

    /// Scans a stream (standard input, a pipe) in bounded memory.
    pub fn scan_reader(&self, name: &str, reader: &mut impl Read) -> ScanReport {
        let mut worker = Worker::new(self);
        let surface = classify(Path::new(name), b"");
        match worker.scan_stream(name, surface, reader) {
            Ok(bytes) => {
                worker.stats.files_scanned += 1;
                worker.stats.bytes_scanned += bytes;
            }
            Err(e) => worker.issue(name, e),
        }
        ScanReport {
            findings: worker.findings,
            stats: worker.stats,
        }
    }
}

/// Hands a worker's results (and sketch) to the shared ones when its
/// thread ends.
struct Flush<'a, 's> {
    shared: &'a Mutex<(ScanReport, ReadSketch)>,
    worker: Worker<'s>,
}

impl Drop for Flush<'_, '_> {
    fn drop(&mut self) {
        let findings = std::mem::take(&mut self.worker.findings);
        let stats = std::mem::take(&mut self.worker.stats);
        let kept = self.worker.sketcher.take().map(|s| s.kept);
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        shared.0.findings.extend(findings);
        shared.0.stats.merge(stats);
        if let Some(kept) = kept {
            shared.1.append(kept);
        }
    }
}

fn error_path(err: &ignore::Error) -> Option<String> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(display_path(path)),
        ignore::Error::Loop { child, .. } => Some(display_path(child)),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Partial(errs) => errs.iter().find_map(error_path),
        _ => None,
    }
}
