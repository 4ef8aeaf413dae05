//! The proxy's HTTP client to upstreams: rustls with the platform's roots
//! (plus a configured CA), connection reuse, connect and answer timeouts,
//! no redirects followed (a secret goes to its configured upstream only).

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::config::ProxyConfig;
use crate::error::BrokerError;

/// A client to upstream APIs.
#[derive(Clone)]
pub struct Upstream {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    response_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upstream(..)")
    }
}

/// Why an upstream request failed (never with a secret in it).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting or talking to the upstream failed.
    #[error("the upstream {host} could not be reached: {reason}")]
    Unreachable {
        /// The upstream host.
        host: String,
        /// What failed.
        reason: String,
    },
    /// The upstream did not start answering in time.
    #[error("the upstream {host} did not answer within {seconds} s")]
    Timeout {
        /// The upstream host.
        host: String,
        /// The limit.
        seconds: u64,
    },
}

impl Upstream {
    /// A client trusting the platform's roots and `config.extra_ca_file`.
    pub fn new(config: &ProxyConfig) -> Result<Upstream, BrokerError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(file) = &config.extra_ca_file {
            let pem = std::fs::read(file).map_err(|e| {
                BrokerError::Internal(format!("proxy: cannot read {}: {e}", file.display()))
            })?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    BrokerError::Internal(format!(
                        "proxy: {} is not PEM certificates: {e}",
                        file.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    BrokerError::Internal(format!(
                        "proxy: a certificate of {} is not usable: {e}",
                        file.display()
                    ))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(BrokerError::Internal(format!(
                    "proxy: {} holds no certificate",
                    file.display()
                )));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| BrokerError::Internal(format!("proxy TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(config.connect_timeout_seconds)));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Upstream {
            client,
            response_timeout: Duration::from_secs(config.response_timeout_seconds),
        })
    }

    /// Sends `request` and returns the answer as it starts; its body
    /// streams.
    pub async fn send(
        &self,
        request: axum::http::Request<Body>,
    ) -> Result<axum::http::Response<hyper::body::Incoming>, UpstreamError> {
        let host = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(UpstreamError::Unreachable {
                host,
                reason: describe(&e),
            }),
            Err(_) => Err(UpstreamError::Timeout {
                host,
                seconds: self.response_timeout.as_secs(),
            }),
        }
    }
}

/// A client error and its causes, in one line.
fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Headers that belong to one connection (RFC 9110 section 7.6.1): never
/// forwarded either way.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The headers that may cross: not hop-by-hop, not named by
/// `Connection`, not in `also_drop`.
pub fn forwardable(headers: &HeaderMap, also_drop: &[&str]) -> HeaderMap {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name_text = name.as_str();
        if HOP_BY_HOP.contains(&name_text)
            || also_drop.contains(&name_text)
            || named_by_connection.iter().any(|n| n == name_text)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}
