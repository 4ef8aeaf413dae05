//! Keyed fingerprints: HMAC-SHA256 of a secret under a per-installation (or
//! per-organisation) key. The same secret has the same fingerprint wherever
//! it is copied; the fingerprint reveals nothing without the key.

use std::fmt;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Serialize, Serializer};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// The HMAC key that fingerprints are computed under.
#[derive(Clone)]
pub struct FingerprintKey {
    mac: HmacSha256,
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FingerprintKey(id {})", self.key_id())
    }
}

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("fingerprint key {path}: {reason}")]
    Io {
        /// The key file.
        path: String,
        /// The operating system's message.
        reason: String,
    },
    /// The key is too short to be a key.
    #[error(
        "fingerprint key {path} holds {len} bytes; a key needs at least {MIN_KEY_LEN} (create one with `head -c 32 /dev/urandom | xxd -p -c 64 > FILE`)"
    )]
    TooShort {
        /// The key file.
        path: String,
        /// Its length after trimming.
        len: usize,
    },
    /// No data directory is known for the default key.
    #[error(
        "no data directory for the fingerprint key: set MAYFLY_HOME or HOME, or pass --fingerprint-key FILE"
    )]
    NoHome,
}

impl FingerprintKey {
    /// A key from raw bytes (at least [`MIN_KEY_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                path: "(bytes)".into(),
                len: bytes.len(),
            });
        }
        let mac = HmacSha256::new_from_slice(bytes).map_err(|_| KeyError::TooShort {
            path: "(bytes)".into(),
            len: bytes.len(),
        })?;
        Ok(FingerprintKey { mac })
    }

    /// Reads a key file shared across an organisation. Surrounding
    /// whitespace is ignored, so a hex line and raw bytes both work.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let io = |err: std::io::Error| KeyError::Io {
            path: path.display().to_string(),
            reason: err.to_string(),
        };
        let mut bytes = Vec::new();
        fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io)?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                path: path.display().to_string(),
                len: trimmed.len(),
            });
        }
        Self::from_bytes(trimmed)
    }

    /// The installation key at `path`, created (32 random bytes, hex, mode
    /// 0600) on first use. Concurrent first uses agree on one key.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |err: std::io::Error| KeyError::Io {
            path: path.display().to_string(),
            reason: err.to_string(),
        };
        if path.exists() {
            return Self::from_file(path);
        }
        if let Some(dir) = path.parent().filter(|d| !d.is_dir()) {
            // Mayfly's data directory: only its owner may enter it.
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o700);
            }
            builder.create(dir).map_err(io)?;
        }
        let mut random = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .map_err(io)?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        // Write to a private temporary file, then link it into place: the
        // key appears whole or not at all, and a racing process that links
        // first wins for both.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(hex.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io(err)),
        }
        Self::from_file(path)
    }

    /// Where the installation key lives: `$MAYFLY_HOME/fingerprint.key`, else
    /// `$XDG_DATA_HOME/mayfly/fingerprint.key`, else
    /// `$HOME/.local/share/mayfly/fingerprint.key`.
    pub fn default_path() -> Result<PathBuf, KeyError> {
        data_dir().map(|dir| dir.join("fingerprint.key"))
    }

    /// The fingerprint of `secret`.
    pub fn fingerprint(&self, secret: &[u8]) -> Fingerprint {
        let mut mac = self.mac.clone();
        mac.update(secret);
        Fingerprint(mac.finalize().into_bytes().into())
    }

    /// A short public identifier of the key, recorded in baselines so a
    /// baseline is never compared under another key.
    pub fn key_id(&self) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"mayfly fingerprint key id v1");
        let bytes: [u8; 32] = mac.finalize().into_bytes().into();
        bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// Mayfly's data directory (see [`FingerprintKey::default_path`]).
pub fn data_dir() -> Result<PathBuf, KeyError> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(home) = var("MAYFLY_HOME") {
        return Ok(home);
    }
    if let Some(data) = var("XDG_DATA_HOME") {
        return Ok(data.join("mayfly"));
    }
    var("HOME")
        .map(|home| home.join(".local/share/mayfly"))
        .ok_or(KeyError::NoHome)
}

/// The keyed fingerprint of one secret.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The 64-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 12 hex characters, for people.
    pub fn short(&self) -> String {
        self.0.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_secret_same_fingerprint_per_key() {
        let a = FingerprintKey::from_bytes(b"0123456789abcdef-key-a").unwrap();
        let b = FingerprintKey::from_bytes(b"0123456789abcdef-key-b").unwrap();
        assert_eq!(a.fingerprint(b"s1"), a.fingerprint(b"s1"));
        assert_ne!(a.fingerprint(b"s1"), a.fingerprint(b"s2"));
        assert_ne!(a.fingerprint(b"s1"), b.fingerprint(b"s1"));
        assert_ne!(a.key_id(), b.key_id());
        assert_eq!(a.fingerprint(b"s1").to_hex().len(), 64);
    }

    #[test]
    fn creates_once_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/fingerprint.key");
        let first = FingerprintKey::load_or_create(&path).unwrap();
        let again = FingerprintKey::load_or_create(&path).unwrap();
        assert_eq!(first.key_id(), again.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn rejects_short_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            FingerprintKey::from_file(&path),
            Err(KeyError::TooShort { len: 5, .. })
        ));
    }
}
