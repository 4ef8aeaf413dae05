//! A stand-in for a provider's API (OpenAI, Anthropic): a real HTTP server
//! on loopback, plain or TLS with a certificate `openssl` makes for the
//! test's own CA. It records what reached it (never echoing a key back)
//! and can answer slowly, stream server-sent events, redirect or fail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What one request carried.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body_len: usize,
}

#[derive(Default)]
struct Log {
    seen: Mutex<Vec<Seen>>,
}

/// The fake API, stopped with its runtime.
pub struct Upstream {
    pub address: SocketAddr,
    pub base: String,
    log: Arc<Log>,
}

impl Upstream {
    /// Everything it received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the upstream received a request")
    }
}

async fn handle(State(log): State<Arc<Log>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    log.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body_len: bytes.len(),
    });
    match path.as_str() {
        "/v1/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            axum::Json(json!({"slow": true})).into_response()
        }
        "/v1/redirect-away" => (
            StatusCode::FOUND,
            [("location", "https://elsewhere.example/steal")],
        )
            .into_response(),
        "/v1/echo-key" => {
            // A broken upstream that puts the key it got in a header.
            let key = parts
                .headers
                .get("authorization")
                .cloned()
                .unwrap_or(axum::http::HeaderValue::from_static(""));
            (StatusCode::OK, [("x-debug-auth", key)], "ok").into_response()
        }
        "/v1/stream" => {
            // Three server-sent events, 400 ms apart.
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(sse(3, Duration::from_millis(400)))
                .unwrap()
        }
        _ => axum::Json(json!({
            "ok": true,
            "path": path,
            "bytes": bytes.len(),
        }))
        .into_response(),
    }
}

/// A body fed by a channel: each message goes out as one chunk when sent.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

/// `events` server-sent events, `gap` apart.
fn sse(events: usize, gap: Duration) -> Body {
    let (send, receive) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for i in 0..events {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            if send
                .send(Bytes::from(format!("data: {{\"n\": {i}}}\n\n")))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Body::new(ChannelBody(receive))
}

fn router(log: Arc<Log>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(log)
}

/// A plain HTTP upstream on loopback.
pub fn start_plain(rt: &tokio::runtime::Runtime) -> Upstream {
    let log = Arc::new(Log::default());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    let app = router(log.clone());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Upstream {
        address,
        base: format!("http://127.0.0.1:{}", address.port()),
        log,
    }
}

/// A test CA and a server certificate for `localhost` and 127.0.0.1,
/// made by `openssl` in `dir`: (ca.pem, cert.pem, key.pem).
pub fn openssl_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Mayfly test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// A TLS upstream on loopback with `cert` and `key` (PEM).
pub fn start_tls(rt: &tokio::runtime::Runtime, cert: &Path, key: &Path) -> Upstream {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let log = Arc::new(Log::default());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    let app = router(log.clone());
    let tls = TlsListener { listener, acceptor };
    rt.spawn(async move { axum::serve(tls, app).await.unwrap() });
    Upstream {
        address,
        base: format!("https://localhost:{}", address.port()),
        log,
    }
}

/// TCP connections that completed a TLS handshake (failed ones are dropped).
struct TlsListener {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.listener.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
