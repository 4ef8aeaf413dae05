//! The local socket: made private at start, then served over HTTP/1.1
//! (the identity endpoint) and HTTP/2 (the SPIFFE Workload API).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http_body::Frame;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use crate::attestor::Attestor;
use crate::peer::{AttestError, ExeHashes, Peer, PeerFacts};
use crate::workload_api;

/// At most this many connections are served at once.
const MAX_CONNECTIONS: usize = 1024;

/// Why the socket could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Its directory lets other users replace it.
    #[error(
        "the local socket's directory {dir} is writable by other users (mode {mode:o}); make it private with `chmod go-w {dir}` or set [local] socket to a path in a private directory"
    )]
    DirectoryNotPrivate {
        /// The directory.
        dir: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// Its directory belongs to another user.
    #[error(
        "the local socket's directory {dir} belongs to uid {owner}, not to this user or root; set [local] socket to a path in a directory of yours"
    )]
    DirectoryOwner {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// Another server answers on it.
    #[error(
        "another server already listens on {0}; stop it, or set [local] socket to another path"
    )]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket; remove it or set [local] socket to another path")]
    NotASocket(PathBuf),
    /// The socket did not get the mode it must have.
    #[error(
        "the local socket {path} has mode {found:o} instead of {expected:o} (the filesystem does not keep modes?); set [local] socket to a path on a local filesystem"
    )]
    Mode {
        /// The socket.
        path: PathBuf,
        /// Its mode.
        found: u32,
        /// The mode it must have.
        expected: u32,
    },
    /// The configured group does not exist.
    #[error("[local] group {0:?} is neither a gid nor a group in /etc/group")]
    UnknownGroup(String),
    /// A system call failed.
    #[error("cannot make the local socket {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A gid from a number or a group name in `/etc/group`.
fn resolve_group(group: &str) -> Result<u32, SocketError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| SocketError::UnknownGroup(group.to_owned()))
}

/// Makes the socket at `path`: its directory must be private (or sticky),
/// a stale socket is replaced, a live one is refused; it is bound under a
/// temporary name, given mode 0600 (0660 and the group's ownership with
/// `group`), then renamed into place, so it is never reachable with a
/// wider mode.
pub fn bind(path: &Path, group: Option<&str>) -> Result<tokio::net::UnixListener, SocketError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let meta = std::fs::metadata(dir).map_err(io_error(dir))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(SocketError::DirectoryOwner {
            dir: dir.to_owned(),
            owner: meta.uid(),
        });
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(SocketError::DirectoryNotPrivate {
            dir: dir.to_owned(),
            mode: mode & 0o7777,
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(existing) => {
            use std::os::unix::fs::FileTypeExt as _;
            if !existing.file_type().is_socket() {
                return Err(SocketError::NotASocket(path.to_owned()));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse(path.to_owned()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path)(e)),
    }
    let gid = group.map(resolve_group).transpose()?;
    let expected = if gid.is_some() { 0o660 } else { 0o600 };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener =
        std::os::unix::net::UnixListener::bind(&temporary).map_err(io_error(&temporary))?;
    let placed = (|| {
        if let Some(gid) = gid {
            rustix::fs::chown(&temporary, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| io_error(&temporary)(e.into()))?;
        }
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(expected))
            .map_err(io_error(&temporary))?;
        std::fs::rename(&temporary, path).map_err(io_error(path))?;
        let found = std::fs::metadata(path)
            .map_err(io_error(path))?
            .permissions()
            .mode()
            & 0o777;
        if found != expected {
            let _ = std::fs::remove_file(path);
            return Err(SocketError::Mode {
                path: path.to_owned(),
                found,
                expected,
            });
        }
        Ok(())
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    listener.set_nonblocking(true).map_err(io_error(path))?;
    tokio::net::UnixListener::from_std(listener).map_err(io_error(path))
}

/// What every request handler shares.
pub(crate) struct Context {
    pub(crate) attestor: Attestor,
    hashes: ExeHashes,
}

impl Context {
    /// Unix time now.
    pub(crate) fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    /// The peer's facts, read off the async threads.
    pub(crate) async fn attest(
        self: &Arc<Self>,
        peer: Arc<Peer>,
    ) -> Result<PeerFacts, AttestError> {
        // A few small /proc files are read here when the executable's hash
        // is known; hashing a large executable is done off the async threads.
        let max_ancestors = self.attestor.config().max_ancestors;
        if let Some(facts) = peer.facts_if_hashed(&self.hashes, max_ancestors)? {
            return Ok(facts);
        }
        let context = self.clone();
        let pid = peer.pid;
        tokio::task::spawn_blocking(move || {
            peer.facts(&context.hashes, context.attestor.config().max_ancestors)
        })
        .await
        .unwrap_or(Err(AttestError::Exited { pid }))
    }
}

/// A response body: some frames, then either the end or (a server
/// stream) nothing more until the client goes away.
pub(crate) struct Reply {
    frames: VecDeque<Frame<Bytes>>,
    hold_open: bool,
}

impl Reply {
    pub(crate) fn empty() -> Reply {
        Reply {
            frames: VecDeque::new(),
            hold_open: false,
        }
    }

    fn bytes(body: Vec<u8>) -> Reply {
        Reply {
            frames: VecDeque::from([Frame::data(Bytes::from(body))]),
            hold_open: false,
        }
    }

    /// One gRPC message and an OK status in the trailers, or the message
    /// alone with the stream held open.
    pub(crate) fn grpc(message: Bytes, hold_open: bool) -> Reply {
        let mut frames = VecDeque::from([Frame::data(message)]);
        if !hold_open {
            let mut trailers = hyper::HeaderMap::new();
            trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
            frames.push_back(Frame::trailers(trailers));
        }
        Reply { frames, hold_open }
    }
}

impl http_body::Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            // A held stream ends when the client cancels it (the
            // connection then drops this body).
            None if self.hold_open => Poll::Pending,
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && !self.hold_open
    }

    /// Exact for a finished body, so HTTP/1.1 answers carry a
    /// Content-Length (the identity client reads them whole).
    fn size_hint(&self) -> http_body::SizeHint {
        let known: usize = self
            .frames
            .iter()
            .filter_map(|f| f.data_ref().map(Bytes::len))
            .sum();
        let trailers = self.frames.iter().any(Frame::is_trailers);
        if self.hold_open || trailers {
            let mut hint = http_body::SizeHint::new();
            hint.set_lower(known as u64);
            hint
        } else {
            http_body::SizeHint::with_exact(known as u64)
        }
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Reply> {
    let mut response = Response::new(Reply::bytes(body.to_string().into_bytes()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

/// `POST /v1/identity`: an identity token for the caller.
async fn identity(context: Arc<Context>, peer: Arc<Peer>) -> Response<Reply> {
    let facts = match context.attest(peer).await {
        Ok(facts) => facts,
        Err(e) => {
            tracing::warn!("local attestation refused: {e}");
            return json_response(
                StatusCode::FORBIDDEN,
                &json!({"error": "attestation_failed", "error_description": e.to_string()}),
            );
        }
    };
    match context.attestor.identity_token(&facts, context.now()) {
        Ok(token) => {
            let workload = context.attestor.workload_id(&facts);
            tracing::info!(
                workload,
                pid = facts.pid,
                exe = facts.exe,
                "local identity issued"
            );
            json_response(
                StatusCode::OK,
                &json!({
                    "identity_token": token,
                    "token_type": "JWT",
                    "expires_in": context.attestor.ttl(),
                    "workload": workload,
                    "spiffe_id": context.attestor.spiffe_id(&facts),
                    "facts": facts,
                }),
            )
        }
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "temporarily_unavailable", "error_description": e.to_string()}),
        ),
    }
}

async fn route(
    request: Request<Incoming>,
    context: Arc<Context>,
    peer: Arc<Peer>,
) -> Response<Reply> {
    let path = request.uri().path();
    if path.starts_with("/SpiffeWorkloadAPI/") {
        if request.method() != Method::POST {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "invalid_request", "error_description": "gRPC calls are POSTs"}),
            );
        }
        return workload_api::handle(request, context, peer).await;
    }
    match (request.method(), path) {
        (&Method::POST, "/v1/identity") => identity(context, peer).await,
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "error_description": "this socket serves POST /v1/identity and the SPIFFE Workload API"}),
        ),
    }
}

/// Serves the socket until `shutdown` completes, then removes it.
pub async fn serve(
    listener: tokio::net::UnixListener,
    attestor: Attestor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let path = listener.local_addr()?.as_pathname().map(Path::to_owned);
    let identity = path
        .as_deref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()));
    let context = Arc::new(Context {
        attestor,
        hashes: ExeHashes::default(),
    });
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("local socket: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("local socket: {MAX_CONNECTIONS} connections open; refusing one");
            continue;
        };
        let peer = match Peer::of(&stream) {
            Ok(peer) => Arc::new(peer),
            Err(e) => {
                tracing::warn!("local socket: {e}");
                continue;
            }
        };
        let context = context.clone();
        let service = hyper::service::service_fn(move |request| {
            let (context, peer) = (context.clone(), peer.clone());
            async move { Ok::<_, Infallible>(route(request, context, peer).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(crate::authority::shim(stream)), service)
            .into_owned();
        tokio::spawn(async move {
            let _permit = permit;
            // A client that goes away ends its connection; nothing to say.
            let _ = connection.await;
        });
    }
    // Removed only if it is still the socket this server made.
    if let (Some(path), Some(made)) = (path, identity)
        && std::fs::metadata(&path).is_ok_and(|m| (m.dev(), m.ino()) == made)
    {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
