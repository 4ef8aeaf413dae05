//! What the kernel says about the process at the other end of a unix
//! socket (Linux).
//!
//! The pid comes from `SO_PEERCRED` (recorded by the kernel at
//! `connect`), and a pidfd is opened for it at once. Each attestation
//! then reads `/proc/PID` and checks, after reading, that
//! - the process the pidfd names has not exited (so `/proc/PID` could not
//!   have named another process while it was read), and
//! - that process started before the connection was accepted (so the pid
//!   was not reused between `connect` and the pidfd).
//!
//! Either failure refuses the attestation.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use rustix::fs::{Mode, OFlags};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// Why a connecting process could not be attested.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The socket did not give its peer's credentials.
    #[error("cannot read the connecting process's credentials (SO_PEERCRED): {0}")]
    Credentials(std::io::Error),
    /// The process went away before or while it was attested.
    #[error(
        "process {pid} exited before it could be attested; the process that connects must stay alive until it has its identity"
    )]
    Exited {
        /// Its pid.
        pid: i32,
    },
    /// The pid names a process that started after the connection.
    #[error(
        "pid {pid} now names a process that started after the connection was made (the connecting process exited and its pid was reused); refused"
    )]
    PidReused {
        /// The pid.
        pid: i32,
    },
    /// A file of `/proc/PID` could not be read.
    #[error("cannot read the {what} of process {pid}: {source}{hint}")]
    Proc {
        /// The pid.
        pid: i32,
        /// Which fact.
        what: &'static str,
        /// The system's error.
        source: std::io::Error,
        /// What to do, when it is a permission problem.
        hint: &'static str,
    },
}

/// A connected process: its credentials as the kernel recorded them at
/// `connect`, and a pidfd that names it.
#[derive(Debug)]
pub struct Peer {
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
    /// Its process id (in the server's pid namespace).
    pub pid: i32,
    pidfd: OwnedFd,
    /// When the connection was accepted, in clock ticks since boot.
    accepted_at: u64,
}

/// An ancestor of the attested process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    /// Its pid.
    pub pid: i32,
    /// Its executable's path (empty when the server may not read it).
    pub exe: String,
}

/// The attested facts about a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerFacts {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id.
    pub pid: i32,
    /// The executable's path (`/proc/PID/exe`).
    pub exe: String,
    /// SHA-256 of the executable the process runs, in hex.
    pub exe_sha256: String,
    /// Its cgroup (v2 path, or the v1 lines joined).
    pub cgroup: String,
    /// The container id found in the cgroup, if it runs in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Its parent, grandparent... up to the configured depth.
    pub ancestors: Vec<Ancestor>,
}

impl PeerFacts {
    /// The value of the fact `name` as text (the names of templates and
    /// token claims).
    pub fn fact(&self, name: &str) -> Option<String> {
        Some(match name {
            "uid" => self.uid.to_string(),
            "gid" => self.gid.to_string(),
            "pid" => self.pid.to_string(),
            "exe" => self.exe.clone(),
            "exe_name" => self.exe.rsplit('/').next().unwrap_or_default().to_owned(),
            "exe_sha256" => self.exe_sha256.clone(),
            "cgroup" => self.cgroup.clone(),
            "container_id" => self.container_id.clone()?,
            "parent_exe" => self.ancestors.first()?.exe.clone(),
            // `:/a:/b:`, so policy can test membership with
            // `like "*:/usr/bin/claude:*"`.
            "ancestor_exes" => {
                let mut joined = String::from(":");
                for ancestor in &self.ancestors {
                    joined.push_str(&ancestor.exe);
                    joined.push(':');
                }
                joined
            }
            _ => return None,
        })
    }
}

/// SHA-256 of executables, remembered by file identity (device, inode,
/// size, change times) so a busy caller is not hashed on every request.
#[derive(Debug, Default)]
pub struct ExeHashes {
    known: Mutex<HashMap<[i64; 6], String>>,
}

/// `/proc` files are read up to about this size.
const MAX_PROC_FILE: usize = 64 * 1024;

/// At most this many executables' hashes are remembered.
const MAX_HASHES: usize = 4096;

impl ExeHashes {
    /// The executable's identity in the cache.
    fn key(file: &File, pid: i32) -> Result<[i64; 6], AttestError> {
        let stat = rustix::fs::fstat(file).map_err(|e| proc_error(pid, "executable", e.into()))?;
        let key = [
            stat.st_dev as i64,
            stat.st_ino as i64,
            stat.st_size,
            stat.st_mtime,
            stat.st_mtime_nsec as i64,
            stat.st_ctime_nsec as i64 ^ stat.st_ctime,
        ];
        Ok(key)
    }

    /// The hash if this version of the file was hashed before.
    fn cached(&self, file: &File, pid: i32) -> Result<Option<String>, AttestError> {
        let key = Self::key(file, pid)?;
        Ok(self.lock().get(&key).cloned())
    }

    fn hash(&self, file: &mut File, pid: i32) -> Result<String, AttestError> {
        let key = Self::key(file, pid)?;
        if let Some(known) = self.lock().get(&key) {
            return Ok(known.clone());
        }
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(|e| proc_error(pid, "executable", e))?;
            if n == 0 {
                break;
            }
            hasher.update(buffer.get(..n).unwrap_or_default());
        }
        let digest = hex(&hasher.finalize());
        let mut known = self.lock();
        if known.len() >= MAX_HASHES {
            known.clear();
        }
        known.insert(key, digest.clone());
        Ok(digest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[i64; 6], String>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn proc_error(pid: i32, what: &'static str, source: std::io::Error) -> AttestError {
    if source.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) {
        return AttestError::Exited { pid };
    }
    let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
        "; mayfly serve can attest only processes it may inspect: run it as the same user as the caller (or as root)"
    } else {
        ""
    };
    AttestError::Proc {
        pid,
        what,
        source,
        hint,
    }
}

/// Now, in clock ticks since boot (the unit of `/proc/PID/stat`'s start
/// time).
fn ticks_since_boot() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let hz = rustix::param::clock_ticks_per_second();
    (now.tv_sec as u64) * hz + (now.tv_nsec as u64) * hz / 1_000_000_000
}

/// A process's `/proc/PID` directory, opened once so every read below
/// names the same process.
struct ProcDir {
    pid: i32,
    dir: OwnedFd,
}

/// The fields of `/proc/PID/stat` attestation needs.
struct Stat {
    ppid: i32,
    start_ticks: u64,
}

impl ProcDir {
    fn open(pid: i32) -> Result<ProcDir, AttestError> {
        let dir = rustix::fs::open(
            format!("/proc/{pid}"),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => AttestError::Exited { pid },
            e => proc_error(pid, "/proc directory", e.into()),
        })?;
        Ok(ProcDir { pid, dir })
    }

    fn file(&self, name: &str, what: &'static str) -> Result<File, AttestError> {
        rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|e| proc_error(self.pid, what, e.into()))
    }

    /// A small `/proc` file, read with plain reads: `read_to_string` would
    /// also stat and seek it, for a size `/proc` does not report.
    fn read(&self, name: &str, what: &'static str) -> Result<String, AttestError> {
        let mut file = self.file(name, what)?;
        let mut text = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(|e| proc_error(self.pid, what, e))?;
            if n == 0 || text.len() > MAX_PROC_FILE {
                break;
            }
            text.extend_from_slice(buffer.get(..n).unwrap_or_default());
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    fn exe_path(&self) -> Result<String, AttestError> {
        rustix::fs::readlinkat(&self.dir, "exe", Vec::new())
            .map(|path| path.to_string_lossy().into_owned())
            .map_err(|e| proc_error(self.pid, "executable", e.into()))
    }

    fn stat(&self) -> Result<Stat, AttestError> {
        let text = self.read("stat", "status")?;
        parse_stat(&text).ok_or_else(|| AttestError::Proc {
            pid: self.pid,
            what: "status",
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "unreadable stat line"),
            hint: "",
        })
    }
}

/// Parses `/proc/PID/stat`: the command name is in parentheses and may
/// hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // Field 3 (state) is fields[0]; ppid is field 4, starttime field 22.
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The container id in a cgroup path: the last 64-hex-digit run
/// (`docker-ID.scope`, `/docker/ID`, `cri-containerd-ID.scope`, `libpod-ID`).
fn container_id(cgroup: &str) -> Option<String> {
    let bytes = cgroup.as_bytes();
    let mut found = None;
    let mut run_start = 0;
    for (i, b) in bytes.iter().chain(std::iter::once(&b'/')).enumerate() {
        if !b.is_ascii_hexdigit() || b.is_ascii_uppercase() {
            if i - run_start == 64 {
                found = Some(cgroup[run_start..i].to_owned());
            }
            run_start = i + 1;
        }
    }
    found
}

impl Peer {
    /// The peer of a connected unix socket, recorded now.
    pub fn of(socket: impl AsFd) -> Result<Peer, AttestError> {
        let accepted_at = ticks_since_boot();
        let credentials = rustix::net::sockopt::socket_peercred(&socket)
            .map_err(|e| AttestError::Credentials(e.into()))?;
        let pid = credentials.pid.as_raw_nonzero().get();
        let pidfd =
            rustix::process::pidfd_open(credentials.pid, rustix::process::PidfdFlags::empty())
                .map_err(|e| match e {
                    rustix::io::Errno::SRCH => AttestError::Exited { pid },
                    e => proc_error(pid, "pidfd", e.into()),
                })?;
        Ok(Peer {
            uid: credentials.uid.as_raw(),
            gid: credentials.gid.as_raw(),
            pid,
            pidfd,
            accepted_at,
        })
    }

    /// Reads the facts now (the process may have `exec`ed since it
    /// connected: they are those of what it runs now).
    pub fn facts(
        &self,
        hashes: &ExeHashes,
        max_ancestors: usize,
    ) -> Result<PeerFacts, AttestError> {
        self.read_facts(hashes, max_ancestors, true)?
            .ok_or(AttestError::Exited { pid: self.pid })
    }

    /// The facts if the executable's hash is known already: `None` when it
    /// must be hashed (slow for a large file: do that off the async
    /// threads, with [`Peer::facts`]).
    pub fn facts_if_hashed(
        &self,
        hashes: &ExeHashes,
        max_ancestors: usize,
    ) -> Result<Option<PeerFacts>, AttestError> {
        self.read_facts(hashes, max_ancestors, false)
    }

    fn read_facts(
        &self,
        hashes: &ExeHashes,
        max_ancestors: usize,
        may_hash: bool,
    ) -> Result<Option<PeerFacts>, AttestError> {
        let dir = ProcDir::open(self.pid)?;
        let stat = dir.stat()?;
        let exe = dir.exe_path()?;
        let mut exe_file = dir.file("exe", "executable")?;
        let exe_sha256 = match hashes.cached(&exe_file, self.pid)? {
            Some(known) => known,
            None if may_hash => hashes.hash(&mut exe_file, self.pid)?,
            None => return Ok(None),
        };
        let cgroup_text = dir.read("cgroup", "cgroup")?;
        let cgroup = cgroup_text
            .lines()
            .map(|line| line.splitn(3, ':').nth(2).unwrap_or(line))
            .collect::<Vec<_>>()
            .join(",");
        let ancestors = ancestors(stat.ppid, stat.start_ticks, max_ancestors);
        // Checked last: what was read above named the process the pidfd
        // names only if it is still alive, and it is the peer only if it
        // started before the connection.
        if self.exited()? {
            return Err(AttestError::Exited { pid: self.pid });
        }
        if stat.start_ticks > self.accepted_at {
            return Err(AttestError::PidReused { pid: self.pid });
        }
        Ok(Some(PeerFacts {
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            exe,
            exe_sha256,
            container_id: container_id(&cgroup),
            cgroup,
            ancestors,
        }))
    }

    /// Whether the process the pidfd names has exited (a pidfd polls
    /// readable once it has).
    fn exited(&self) -> Result<bool, AttestError> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let ready = rustix::event::poll(&mut fds, Some(&zero))
            .map_err(|e| proc_error(self.pid, "pidfd", e.into()))?;
        Ok(ready > 0)
    }
}

/// The parent chain: each ancestor must have started no later than its
/// child (else its pid was reused and the chain stops there). An ancestor
/// the server may not inspect is listed with an empty path.
fn ancestors(mut ppid: i32, mut child_start: u64, max: usize) -> Vec<Ancestor> {
    let mut chain = Vec::new();
    while ppid > 0 && chain.len() < max {
        let Ok(dir) = ProcDir::open(ppid) else { break };
        let Ok(stat) = dir.stat() else { break };
        if stat.start_ticks > child_start {
            break;
        }
        chain.push(Ancestor {
            pid: ppid,
            exe: dir.exe_path().unwrap_or_default(),
        });
        child_start = stat.start_ticks;
        ppid = stat.ppid;
    }
    chain
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (we (ird) name) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.ppid, stat.start_ticks), (17, 987654));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn container_ids_come_from_the_cgroup() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(
            container_id(&format!("/system.slice/docker-{id}.scope")),
            Some(id.clone())
        );
        assert_eq!(
            container_id(&format!("/kubepods/besteffort/pod1/{id}")),
            Some(id)
        );
        assert_eq!(
            container_id("/user.slice/user-1000.slice/session-2.scope"),
            None
        );
    }

    #[test]
    fn this_process_is_attested_through_a_socket_pair() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let peer = Peer::of(&ours).unwrap();
        assert_eq!(peer.pid as u32, std::process::id());
        let facts = peer.facts(&ExeHashes::default(), 8).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(facts.exe, exe.to_string_lossy());
        let bytes = std::fs::read(&exe).unwrap();
        assert_eq!(facts.exe_sha256, hex(&Sha256::digest(&bytes)));
        assert_eq!(facts.uid, rustix::process::getuid().as_raw());
        assert!(!facts.ancestors.is_empty(), "the test runner has a parent");
        assert!(facts.fact("ancestor_exes").unwrap().starts_with(':'));
    }

    /// A child connects, then exits before it is attested: refused.
    #[test]
    fn a_process_that_exits_before_attestation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
            ])
            .arg(&path)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let (stream, _) = listener.accept().unwrap();
        let peer = Peer::of(&stream).unwrap();
        child.wait().unwrap();
        let e = peer.facts(&ExeHashes::default(), 8).unwrap_err();
        assert!(matches!(e, AttestError::Exited { .. }), "{e}");
        assert!(e.to_string().contains("exited before it could be attested"));
    }

    /// A pid that names a process started after the connection was
    /// accepted (what a reused pid looks like) is refused.
    #[test]
    fn a_process_started_after_the_connection_is_not_the_peer() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let mut peer = Peer::of(&ours).unwrap();
        let accepted_at = ticks_since_boot();
        std::thread::sleep(std::time::Duration::from_millis(60));
        let mut later = Command::new("sleep").arg("5").spawn().unwrap();
        let pid = rustix::process::Pid::from_raw(later.id() as i32).unwrap();
        peer.pid = later.id() as i32;
        peer.pidfd =
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
        peer.accepted_at = accepted_at;
        let e = peer.facts(&ExeHashes::default(), 8).unwrap_err();
        let _ = later.kill();
        let _ = later.wait();
        assert!(matches!(e, AttestError::PidReused { .. }), "{e}");
    }
}
