//! Git tree objects read from their bytes, and what changed between two of
//! them, for the history walk: a commit's tree is compared with its
//! parent's by one merge of their sorted entries, without building either
//! tree as an object and without a lookup per entry.
//!
//! A tree's bytes are a repository's, so they are untrusted: a malformed
//! entry is an error that names its offset, never a panic. An entry list
//! out of git's order only costs work (an unmatched entry is treated as
//! changed), never a missed change.

use std::cmp::Ordering;

/// Bytes of a (SHA-1) object id.
pub const ID_LEN: usize = 20;

/// What a tree entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A file or a symbolic link: a blob.
    Blob,
    /// A directory: another tree.
    Tree,
    /// A submodule: a commit of another repository.
    Commit,
}

/// One entry of a tree: `mode SP name NUL id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeEntry<'a> {
    /// The entry's mode (`0o100644`, `0o40000`...).
    pub mode: u32,
    /// Its name within the tree (never empty, never holds a NUL).
    pub name: &'a [u8],
    /// The id of the object it points at.
    pub id: [u8; ID_LEN],
}

impl TreeEntry<'_> {
    /// What the entry points at, from its mode's type bits (git's rule).
    pub fn kind(&self) -> EntryKind {
        match self.mode & 0o170_000 {
            0o040_000 => EntryKind::Tree,
            0o160_000 => EntryKind::Commit,
            _ => EntryKind::Blob,
        }
    }

    /// Git's order of entries: by name, where a tree's name compares as if
    /// it ended in `/`.
    pub fn git_order(&self, other: &TreeEntry<'_>) -> Ordering {
        let common = self.name.len().min(other.name.len());
        let (a, b) = (
            self.name.get(..common).unwrap_or_default(),
            other.name.get(..common).unwrap_or_default(),
        );
        a.cmp(b).then_with(|| {
            let next = |e: &TreeEntry<'_>| {
                e.name.get(common).copied().unwrap_or(match e.kind() {
                    EntryKind::Tree => b'/',
                    _ => 0,
                })
            };
            next(self).cmp(&next(other))
        })
    }
}

/// A tree whose bytes are not a list of entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed git tree at byte {offset}: {reason}")]
pub struct MalformedTree {
    /// Where the entry that could not be read starts.
    pub offset: usize,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// The entries of the tree whose bytes are `data`, in their stored order.
pub fn entries(data: &[u8]) -> Entries<'_> {
    Entries {
        data,
        offset: 0,
        failed: false,
    }
}

/// Iterator over a tree's entries; stops after the first error.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    data: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Entries<'a> {
    fn entry(&self) -> Result<(TreeEntry<'a>, usize), &'static str> {
        let rest = self.data.get(self.offset..).unwrap_or_default();
        let space = memchr::memchr(b' ', rest).ok_or("no space after the mode")?;
        let digits = rest.get(..space).unwrap_or_default();
        if digits.is_empty() || digits.len() > 7 {
            return Err("mode is not 1 to 7 octal digits");
        }
        let mut mode = 0u32;
        for &d in digits {
            if !(b'0'..=b'7').contains(&d) {
                return Err("mode is not octal");
            }
            mode = mode * 8 + u32::from(d - b'0');
        }
        let after_mode = rest.get(space + 1..).unwrap_or_default();
        let nul = memchr::memchr(0, after_mode).ok_or("name is not NUL-terminated")?;
        let name = after_mode.get(..nul).unwrap_or_default();
        if name.is_empty() {
            return Err("empty name");
        }
        let id: [u8; ID_LEN] = after_mode
            .get(nul + 1..nul + 1 + ID_LEN)
            .and_then(|id| id.try_into().ok())
            .ok_or("object id cut short")?;
        let len = space + 1 + nul + 1 + ID_LEN;
        Ok((TreeEntry { mode, name, id }, len))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<TreeEntry<'a>, MalformedTree>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.data.len() {
            return None;
        }
        match self.entry() {
            Ok((entry, len)) => {
                self.offset += len;
                Some(Ok(entry))
            }
            Err(reason) => {
                self.failed = true;
                Some(Err(MalformedTree {
                    offset: self.offset,
                    reason,
                }))
            }
        }
    }
}

/// Calls `changed(entry, previous)` for every entry of `new` that `old`
/// does not hold as it is (same name, same kind of sort key, same id):
/// `previous` is `old`'s entry of the same name and kind, if any. One
/// merge of the two sorted lists. A malformed `new` is an error (after
/// the entries before the malformed one); a malformed `old` only ends what
/// can be matched, so what follows in `new` counts as changed.
pub fn changes<'a>(
    old: Option<&'a [u8]>,
    new: &'a [u8],
    mut changed: impl FnMut(TreeEntry<'a>, Option<TreeEntry<'a>>),
) -> Result<(), MalformedTree> {
    let mut old = entries(old.unwrap_or_default())
        .map_while(Result::ok)
        .peekable();
    for entry in entries(new) {
        let entry = entry?;
        let mut previous = None;
        while let Some(&candidate) = old.peek() {
            match candidate.git_order(&entry) {
                Ordering::Less => {
                    old.next();
                }
                Ordering::Equal => {
                    old.next();
                    previous = Some(candidate);
                    break;
                }
                Ordering::Greater => break,
            }
        }
        if previous.is_none_or(|p| p.id != entry.id) {
            changed(entry, previous);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A tree's bytes from `(mode, name, id byte)` entries, in git's order.
    fn tree(entries: &[(u32, &[u8], u8)]) -> Vec<u8> {
        let mut sorted: Vec<TreeEntry<'_>> = entries
            .iter()
            .map(|&(mode, name, id)| TreeEntry {
                mode,
                name,
                id: [id; ID_LEN],
            })
            .collect();
        sorted.sort_by(|a, b| a.git_order(b));
        let mut out = Vec::new();
        for e in sorted {
            out.extend_from_slice(format!("{:o} ", e.mode).as_bytes());
            out.extend_from_slice(e.name);
            out.push(0);
            out.extend_from_slice(&e.id);
        }
        out
    }

    fn changed_names(old: Option<&[u8]>, new: &[u8]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        changes(old, new, |e, previous| {
            out.push((
                String::from_utf8_lossy(e.name).into_owned(),
                previous.is_some(),
            ));
        })
        .unwrap();
        out
    }

    #[cfg(feature = "git")]
    #[test]
    fn entries_read_modes_names_and_ids_as_git_writes_them() {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(repo_dir.path()).unwrap();
        let blob = repo.blob(b"hello\n").unwrap();
        let mut sub = repo.treebuilder(None).unwrap();
        sub.insert("inner.txt", blob, 0o100_644).unwrap();
        let sub = sub.write().unwrap();
        let mut root = repo.treebuilder(None).unwrap();
        root.insert("a.sh", blob, 0o100_755).unwrap();
        root.insert("link", blob, 0o120_000).unwrap();
        root.insert("a", sub, 0o040_000).unwrap();
        root.insert("a-b", blob, 0o100_644).unwrap();
        root.insert("vendor", blob, 0o160_000).unwrap();
        let root = root.write().unwrap();
        let odb = repo.odb().unwrap();
        let raw = odb.read(root).unwrap();
        let ours: Vec<_> = entries(raw.data()).map(Result::unwrap).collect();
        let theirs = repo.find_tree(root).unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (mine, libgit2) in ours.iter().zip(theirs.iter()) {
            assert_eq!(mine.name, libgit2.name_bytes());
            assert_eq!(&mine.id, libgit2.id().as_bytes());
            assert_eq!(mine.mode, u32::try_from(libgit2.filemode()).unwrap());
            let kind = match libgit2.kind() {
                Some(git2::ObjectType::Tree) => EntryKind::Tree,
                Some(git2::ObjectType::Commit) => EntryKind::Commit,
                _ => EntryKind::Blob,
            };
            assert_eq!(mine.kind(), kind);
        }
        // git's order puts the tree "a" (as "a/") after "a-b" and "a.sh".
        let names: Vec<_> = ours.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [&b"a-b"[..], b"a.sh", b"a", b"link", b"vendor"].to_vec()
        );
    }

    #[test]
    fn malformed_trees_are_errors_at_their_offset() {
        let good = tree(&[(0o100_644, b"ok", 1)]);
        let cases: [(&[u8], &str); 6] = [
            (b"100644", "no space after the mode"),
            (b"10x644 a\0", "mode is not octal"),
            (b" a\0", "mode is not 1 to 7 octal digits"),
            (b"100644 a", "name is not NUL-terminated"),
            (b"100644 \0aaaaaaaaaaaaaaaaaaaa", "empty name"),
            (b"100644 a\0short", "object id cut short"),
        ];
        for (bad, reason) in cases {
            let mut data = good.clone();
            data.extend_from_slice(bad);
            let read: Vec<_> = entries(&data).collect();
            assert_eq!(read.len(), 2, "{reason}");
            assert_eq!(
                read.last().unwrap().clone().unwrap_err(),
                MalformedTree {
                    offset: good.len(),
                    reason
                }
            );
            assert!(changes(None, &data, |_, _| {}).is_err());
            // A malformed old tree is no error: what it cannot match is new.
            let mut seen = Vec::new();
            changes(Some(&data), &good, |e, previous| {
                seen.push((e.name, previous.is_some()))
            })
            .unwrap();
            assert!(seen.is_empty(), "{reason}");
            let mut newer = good.clone();
            newer.extend_from_slice(&tree(&[(0o100_644, b"zz", 2)]));
            changes(Some(&data), &newer, |e, previous| {
                seen.push((e.name, previous.is_some()))
            })
            .unwrap();
            assert_eq!(seen, [(&b"zz"[..], false)], "{reason}");
        }
    }

    #[test]
    fn a_change_of_kind_under_one_name_is_a_new_entry() {
        let old = tree(&[(0o100_644, b"x", 1), (0o040_000, b"d", 2)]);
        let new = tree(&[(0o040_000, b"x", 1), (0o100_644, b"d", 2)]);
        let mut seen = changed_names(Some(&old), &new);
        seen.sort();
        assert_eq!(seen, [("d".into(), false), ("x".into(), false)]);
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        // Short names over a small alphabet that includes the bytes around
        // '/', so prefixes, trees and blobs of one name collide often.
        proptest::collection::vec(prop::sample::select(b"ab.-_0/".to_vec()), 1..4).prop_map(|n| {
            n.into_iter()
                .map(|b| if b == b'/' { b'~' } else { b })
                .collect()
        })
    }

    fn listing() -> impl Strategy<Value = BTreeMap<Vec<u8>, (bool, u8)>> {
        proptest::collection::btree_map(name(), (any::<bool>(), 0u8..4), 0..24)
    }

    proptest! {
        /// The merge reports exactly what a lookup by name and kind finds
        /// changed.
        #[test]
        fn the_merge_matches_a_lookup_by_name(old in listing(), new in listing()) {
            let mode = |is_tree: bool| if is_tree { 0o040_000 } else { 0o100_644 };
            let as_entries = |l: &BTreeMap<Vec<u8>, (bool, u8)>| -> Vec<(u32, Vec<u8>, u8)> {
                l.iter().map(|(n, &(t, id))| (mode(t), n.clone(), id)).collect()
            };
            let (old_e, new_e) = (as_entries(&old), as_entries(&new));
            let borrow = |v: &[(u32, Vec<u8>, u8)]| -> Vec<u8> {
                let refs: Vec<(u32, &[u8], u8)> = v.iter().map(|(m, n, i)| (*m, n.as_slice(), *i)).collect();
                tree(&refs)
            };
            let (old_bytes, new_bytes) = (borrow(&old_e), borrow(&new_e));
            let mut merged = changed_names(Some(&old_bytes), &new_bytes);
            merged.sort();
            let mut expected: Vec<(String, bool)> = new
                .iter()
                .filter_map(|(n, &(t, id))| {
                    let previous = old.get(n).filter(|&&(ot, _)| ot == t);
                    (previous.map(|&(_, oid)| oid) != Some(id))
                        .then(|| (String::from_utf8_lossy(n).into_owned(), previous.is_some()))
                })
                .collect();
            expected.sort();
            prop_assert_eq!(merged, expected);
        }

        /// Any bytes: entries are read or refused, never a panic, and every
        /// entry read lies inside the input.
        #[test]
        fn any_bytes_read_or_refused(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            for entry in entries(&data) {
                let Ok(entry) = entry else { break };
                prop_assert!(!entry.name.is_empty() && !entry.name.contains(&0));
            }
            let _ = changes(Some(&data), &data, |_, _| {});
        }
    }
}
