//! Unified diffs on standard input (`git diff --cached | mayfly scan -`):
//! while the bytes stream past, the file and line each diff line stands
//! for are noted, so copies are reported at `deploy.sh:12`, not `-:431`.

use std::io::Read;

/// Where one line of a diff belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapped {
    /// Index into the file names.
    file: u32,
    /// 1-based line in the new file (added and context lines) or in the
    /// old file (removed lines).
    line: u32,
}

/// The position of each hunk line of a diff, by line of the diff text.
#[derive(Debug, Default)]
pub struct DiffMap {
    files: Vec<String>,
    /// `lines[i]`: where line `i + 1` of the input belongs, if in a hunk.
    lines: Vec<Option<Mapped>>,
    old_path: Option<String>,
    new_path: Option<String>,
    old_line: u32,
    new_line: u32,
    in_hunk: bool,
    saw_hunk: bool,
    partial: Vec<u8>,
}

/// The path a `--- a/x` or `+++ b/x` header names (`None` for /dev/null).
fn header_path(rest: &str) -> Option<String> {
    let rest = rest.split('\t').next().unwrap_or(rest).trim_end();
    if rest == "/dev/null" {
        return None;
    }
    let path = rest
        .strip_prefix("a/")
        .or_else(|| rest.strip_prefix("b/"))
        .unwrap_or(rest);
    Some(path.to_owned())
}

/// `@@ -a,b +c,d @@` → (a, c).
fn hunk_start(line: &str) -> Option<(u32, u32)> {
    let mut parts = line.strip_prefix("@@ ")?.split(' ');
    let old = parts.next()?.strip_prefix('-')?;
    let new = parts.next()?.strip_prefix('+')?;
    let first = |range: &str| range.split(',').next()?.parse::<u32>().ok();
    Some((first(old)?, first(new)?))
}

impl DiffMap {
    fn file_index(&mut self, path: String) -> u32 {
        match self.files.iter().position(|f| *f == path) {
            Some(i) => i as u32,
            None => {
                self.files.push(path);
                (self.files.len() - 1) as u32
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let mapped = if let Some((old, new)) = hunk_start(text) {
            self.in_hunk = true;
            self.saw_hunk = true;
            self.old_line = old;
            self.new_line = new;
            None
        } else if text.starts_with("diff ") {
            self.in_hunk = false;
            self.old_path = None;
            self.new_path = None;
            None
        } else if let Some(rest) = text.strip_prefix("--- ").filter(|_| !self.in_hunk) {
            self.old_path = header_path(rest);
            None
        } else if let Some(rest) = text.strip_prefix("+++ ").filter(|_| !self.in_hunk) {
            self.new_path = header_path(rest);
            None
        } else if self.in_hunk {
            match line.first() {
                Some(b'+') => {
                    let at = self.new_line;
                    self.new_line += 1;
                    self.new_path.clone().map(|p| (p, at))
                }
                Some(b'-') => {
                    let at = self.old_line;
                    self.old_line += 1;
                    self.old_path.clone().map(|p| (p, at))
                }
                Some(b' ') => {
                    let at = self.new_line;
                    self.new_line += 1;
                    self.old_line += 1;
                    self.new_path.clone().map(|p| (p, at))
                }
                // `\ No newline at end of file`
                Some(b'\\') => None,
                _ => {
                    self.in_hunk = false;
                    None
                }
            }
        } else {
            None
        };
        let mapped = mapped.map(|(path, line)| Mapped {
            file: self.file_index(path),
            line,
        });
        self.lines.push(mapped);
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let (head, tail) = rest.split_at(end);
            if self.partial.is_empty() {
                self.line(head);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.line(&line);
            }
            rest = tail.get(1..).unwrap_or_default();
        }
        self.partial.extend_from_slice(rest);
    }

    /// Whether the input was a unified diff (at least one hunk).
    pub fn is_diff(&self) -> bool {
        self.saw_hunk
    }

    /// The file and line that line `line` (1-based) of the input stands
    /// for, when it is a line of a hunk.
    pub fn locate(&self, line: u64) -> Option<(&str, u64)> {
        let index = usize::try_from(line.checked_sub(1)?).ok()?;
        let mapped = (*self.lines.get(index)?)?;
        let file = self.files.get(mapped.file as usize)?;
        Some((file, u64::from(mapped.line)))
    }
}

/// A reader that notes the diff structure of what passes through it.
pub struct DiffReader<R> {
    inner: R,
    /// What was seen so far.
    pub map: DiffMap,
}

impl<R: Read> DiffReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> DiffReader<R> {
        DiffReader {
            inner,
            map: DiffMap::default(),
        }
    }

    /// The map, once everything was read (a last line without a newline
    /// counts too).
    pub fn finish(mut self) -> DiffMap {
        if !self.map.partial.is_empty() {
            let line = std::mem::take(&mut self.map.partial);
            self.map.line(&line);
        }
        self.map
    }
}

impl<R: Read> Read for DiffReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.map.feed(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/deploy.sh b/deploy.sh
index 1111111..2222222 100644
--- a/deploy.sh
+++ b/deploy.sh
@@ -10,3 +10,4 @@ set -e
 echo start
-export OLD=1
+export TOKEN=abc
+export MORE=2
 echo end
diff --git a/new.env b/new.env
new file mode 100644
--- /dev/null
+++ b/new.env
@@ -0,0 +1,2 @@
+A=1
+KEY=xyz
";

    fn map(text: &str, chunk: usize) -> DiffMap {
        let mut reader = DiffReader::new(text.as_bytes());
        let mut buf = vec![0u8; chunk];
        while reader.read(&mut buf).unwrap() > 0 {}
        reader.finish()
    }

    #[test]
    fn diff_lines_map_to_their_files_whatever_the_chunks() {
        for chunk in [1, 3, 7, 4096] {
            let m = map(DIFF, chunk);
            assert!(m.is_diff());
            assert_eq!(m.locate(6), Some(("deploy.sh", 10)), "context");
            assert_eq!(m.locate(7), Some(("deploy.sh", 11)), "removed: old line");
            assert_eq!(m.locate(8), Some(("deploy.sh", 11)), "added");
            assert_eq!(m.locate(9), Some(("deploy.sh", 12)));
            assert_eq!(m.locate(10), Some(("deploy.sh", 13)));
            assert_eq!(m.locate(16), Some(("new.env", 1)));
            assert_eq!(m.locate(17), Some(("new.env", 2)));
            assert_eq!(m.locate(1), None, "headers stand for no file line");
            assert_eq!(m.locate(99), None);
        }
    }

    #[test]
    fn text_that_is_not_a_diff_is_left_alone() {
        let m = map("KEY=abc\n--- not a header\n+ nor this\n", 5);
        assert!(!m.is_diff());
        assert_eq!(m.locate(1), None);
    }
}
