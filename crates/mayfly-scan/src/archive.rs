//! Archives and packages: zip (jar, war, wheel, apk...), tar, tar.gz
//! (npm tarballs, sdists) and gzip, nested up to [`MAX_DEPTH`], with the
//! decompressed size bounded so a zip bomb costs a report, not the machine.

use std::io::{Cursor, Read};

use flate2::read::GzDecoder;

use crate::scan::{ScanIssue, SkippedFile};
use crate::source::Worker;

/// Archives nested deeper than this are not opened.
pub const MAX_DEPTH: usize = 4;
/// Decompressed bytes one top-level archive may expand to, in multiples
/// of the file size limit.
const EXPANSION_FACTOR: u64 = 8;

/// The kinds of archive recognised from their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    Zip,
    Gzip,
    Tar,
}

pub(crate) fn archive_kind(head: &[u8]) -> Option<ArchiveKind> {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(ArchiveKind::Zip)
    } else if head.starts_with(&[0x1F, 0x8B]) {
        Some(ArchiveKind::Gzip)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(ArchiveKind::Tar)
    } else {
        None
    }
}

/// How much more may be decompressed from the current top-level archive.
pub(crate) struct Budget {
    remaining: u64,
}

impl Budget {
    pub(crate) fn for_limit(max_file_size: u64) -> Self {
        Budget {
            remaining: max_file_size.saturating_mul(EXPANSION_FACTOR),
        }
    }
}

/// Reads at most `limit` bytes into `out` (emptied first); false when there
/// is more.
fn read_bounded(reader: &mut impl Read, limit: u64, out: &mut Vec<u8>) -> std::io::Result<bool> {
    out.clear();
    reader.take(limit.saturating_add(1)).read_to_end(out)?;
    Ok(out.len() as u64 <= limit)
}

/// Decompression buffers a worker keeps for the next archive: entries are
/// read into memory one after another, and fresh allocations of their size
/// cost page faults every time.
const SPARE_BUFFERS: usize = 4;

impl Worker<'_> {
    /// Scans an archive held in memory; `shown` names it (`dist.zip`, or
    /// `outer.tgz!inner.zip` when nested).
    pub(crate) fn scan_archive(
        &mut self,
        bytes: &[u8],
        shown: &str,
        kind: ArchiveKind,
        depth: usize,
        budget: &mut Budget,
    ) {
        if depth > MAX_DEPTH {
            self.stats.errors.push(ScanIssue {
                path: shown.to_owned(),
                error: format!("archive nested more than {MAX_DEPTH} deep; not opened"),
            });
            return;
        }
        self.stats.archives_scanned += 1;
        match kind {
            ArchiveKind::Zip => self.scan_zip(bytes, shown, depth, budget),
            ArchiveKind::Tar => self.scan_tar(&mut Cursor::new(bytes), shown, depth, budget),
            ArchiveKind::Gzip => {
                let limit = self.entry_limit(budget);
                let mut inner = self.spare_buffer();
                match read_bounded(&mut GzDecoder::new(bytes), limit, &mut inner) {
                    Ok(true) => {
                        budget.remaining = budget.remaining.saturating_sub(inner.len() as u64);
                        if archive_kind(&inner) == Some(ArchiveKind::Tar) {
                            self.scan_tar(&mut Cursor::new(&inner), shown, depth, budget);
                        } else {
                            let name = shown.strip_suffix(".gz").unwrap_or(shown).to_owned();
                            self.scan_entry(&inner, &name, depth, budget);
                        }
                    }
                    Ok(false) => self.too_large(shown, limit),
                    Err(e) => self.issue(shown, format!("corrupt gzip: {e}")),
                }
                self.keep_buffer(inner);
            }
        }
    }

    fn spare_buffer(&mut self) -> Vec<u8> {
        self.spare_buffers.pop().unwrap_or_default()
    }

    fn keep_buffer(&mut self, buffer: Vec<u8>) {
        if self.spare_buffers.len() < SPARE_BUFFERS {
            self.spare_buffers.push(buffer);
        }
    }

    fn entry_limit(&self, budget: &Budget) -> u64 {
        self.scanner.options.max_file_size.min(budget.remaining)
    }

    fn too_large(&mut self, shown: &str, limit: u64) {
        self.stats.skipped_too_large.push(SkippedFile {
            path: format!("{shown} (decompressed)"),
            size: limit.saturating_add(1),
        });
    }

    fn scan_zip(&mut self, bytes: &[u8], shown: &str, depth: usize, budget: &mut Budget) {
        let mut archive = match zip::ZipArchive::new(Cursor::new(bytes)) {
            Ok(archive) => archive,
            Err(e) => return self.issue(shown, format!("corrupt zip: {e}")),
        };
        let mut content = self.spare_buffer();
        for index in 0..archive.len() {
            let limit = self.entry_limit(budget);
            let (name, read) = {
                let mut entry = match archive.by_index(index) {
                    Ok(entry) => entry,
                    Err(e) => {
                        self.issue(shown, format!("zip entry {index} unreadable: {e}"));
                        continue;
                    }
                };
                if entry.is_dir() {
                    continue;
                }
                let inner = entry
                    .name()
                    .map(|n| n.into_owned())
                    .unwrap_or_else(|_| format!("entry-{index}"));
                let name = format!("{shown}!{inner}");
                if entry.size() > limit {
                    self.too_large(&name, limit);
                    continue;
                }
                (name, read_bounded(&mut entry, limit, &mut content))
            };
            match read {
                Ok(true) => {
                    budget.remaining = budget.remaining.saturating_sub(content.len() as u64);
                    self.scan_entry(&content, &name, depth, budget);
                }
                Ok(false) => self.too_large(&name, limit),
                Err(e) => self.issue(&name, format!("cannot decompress: {e}")),
            }
        }
        self.keep_buffer(content);
    }

    fn scan_tar(&mut self, reader: &mut impl Read, shown: &str, depth: usize, budget: &mut Budget) {
        let mut archive = tar::Archive::new(reader);
        let entries = match archive.entries() {
            Ok(entries) => entries,
            Err(e) => return self.issue(shown, format!("corrupt tar: {e}")),
        };
        let mut content = self.spare_buffer();
        for entry in entries {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    // A broken header ends the archive: tar has no index.
                    self.issue(shown, format!("corrupt tar entry: {e}"));
                    break;
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = format!(
                "{shown}!{}",
                entry
                    .path()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            let limit = self.entry_limit(budget);
            if entry.size() > limit {
                self.too_large(&name, limit);
                continue;
            }
            match read_bounded(&mut entry, limit, &mut content) {
                Ok(true) => {
                    budget.remaining = budget.remaining.saturating_sub(content.len() as u64);
                    self.scan_entry(&content, &name, depth, budget);
                }
                Ok(false) => self.too_large(&name, limit),
                Err(e) => self.issue(&name, format!("cannot read: {e}")),
            }
        }
        self.keep_buffer(content);
    }

    /// One file inside an archive: another archive, text, or skipped.
    fn scan_entry(&mut self, content: &[u8], name: &str, depth: usize, budget: &mut Budget) {
        let head = content.get(..8192).unwrap_or(content);
        if let Some(kind) = archive_kind(head) {
            self.scan_archive(content, name, kind, depth + 1, budget);
            return;
        }
        self.scan_text_or_skip(content, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_magic() {
        assert_eq!(archive_kind(b"PK\x03\x04rest"), Some(ArchiveKind::Zip));
        assert_eq!(archive_kind(&[0x1F, 0x8B, 8, 0]), Some(ArchiveKind::Gzip));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(archive_kind(&tar), Some(ArchiveKind::Tar));
        assert_eq!(archive_kind(b"plain text"), None);
    }

    #[test]
    fn bounded_reads() {
        let mut out = b"left over".to_vec();
        assert!(read_bounded(&mut &b"12345"[..], 5, &mut out).unwrap());
        assert_eq!(out, b"12345");
        assert!(!read_bounded(&mut &b"123456"[..], 5, &mut out).unwrap());
    }
}
