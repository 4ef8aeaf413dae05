//! The client side of the identity endpoint: one HTTP/1.1 request over
//! the unix socket, as `mayfly run` makes it.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Largest answer read, in bytes.
const MAX_ANSWER_BYTES: u64 = 256 * 1024;

/// Why no identity came from the local socket.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there.
    #[error("no local Mayfly server at {path}: start `mayfly serve` ({reason})")]
    Unreachable {
        /// The socket.
        path: String,
        /// The system's error.
        reason: String,
    },
    /// The server refused or answered something unreadable.
    #[error("the local Mayfly server at {path} gave no identity: {reason}")]
    Refused {
        /// The socket.
        path: String,
        /// What it said.
        reason: String,
    },
}

/// An attested identity.
#[derive(Debug, Clone, Deserialize)]
pub struct LocalIdentity {
    /// The identity token (a JWT the broker trusts).
    pub identity_token: String,
    /// Its lifetime, in seconds.
    pub expires_in: i64,
    /// The workload id it names.
    pub workload: String,
    /// The SPIFFE ID of the same process.
    pub spiffe_id: String,
    /// The attested facts.
    pub facts: serde_json::Value,
}

/// Asks the server on `socket` to attest this process.
pub fn fetch_identity(socket: &Path) -> Result<LocalIdentity, ClientError> {
    let shown = socket.display().to_string();
    let refused = |reason: String| ClientError::Refused {
        path: shown.clone(),
        reason,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| ClientError::Unreachable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let timeout = Some(Duration::from_secs(10));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    stream
        .write_all(b"POST /v1/identity HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .map_err(|e| refused(e.to_string()))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .map_err(|e| refused(e.to_string()))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| refused("an incomplete HTTP answer".into()))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| refused(format!("HTTP {status} with a body that is not JSON")))?;
    if status != "200" {
        let why = json
            .get("error_description")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no reason given");
        return Err(refused(format!("HTTP {status}: {why}")));
    }
    serde_json::from_value(json).map_err(|e| refused(format!("an unexpected answer ({e})")))
}
