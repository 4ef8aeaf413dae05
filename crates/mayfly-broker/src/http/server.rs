//! Serving the API: each connection gets a deadline for its headers
//! (which also closes idle keep-alive connections), each request a
//! deadline for its body and answer, and the number of connections is
//! capped overall and per client address, so slow or idle clients cannot
//! take the broker from everyone else. Also the broker's background work.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt as _;
use tower::Service as _;

use super::{Shared, app};
use crate::service::SWEEP_BATCH;

/// The read buffer of a connection: larger than the header limit, so a
/// request with too many header bytes gets a 431 with an OAuth body.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// How often a replica looks at the store for a policy set or signing key
/// another replica put there (two small reads each time).
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// Counts open connections, overall and per client address.
#[derive(Debug)]
struct Connections {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    max: usize,
    max_per_address: usize,
}

/// One admitted connection; dropping it frees its place.
struct Admitted {
    connections: Arc<Connections>,
    address: IpAddr,
}

impl Connections {
    /// Admits a connection from `address`, or says which limit it hit.
    fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, &'static str> {
        let Ok(mut open) = self.open.lock() else {
            return Err("the connection table is unavailable");
        };
        let (total, by_address) = &mut *open;
        let from_address = by_address.get(&address).copied().unwrap_or(0);
        if *total >= self.max {
            return Err("the broker has as many connections as it accepts");
        }
        if from_address >= self.max_per_address {
            return Err("this address has as many connections as one address may hold");
        }
        *total += 1;
        by_address.insert(address, from_address + 1);
        Ok(Admitted {
            connections: self.clone(),
            address,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut open) = self.connections.open.lock() {
            let (total, by_address) = &mut *open;
            *total = total.saturating_sub(1);
            if let Some(count) = by_address.get_mut(&self.address) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    by_address.remove(&self.address);
                }
            }
        }
    }
}

/// The answer to a connection over a limit: 503 with an OAuth body, then
/// the connection is closed.
async fn refuse(mut stream: tokio::net::TcpStream, why: &str) {
    let body = serde_json::json!({"error": "temporarily_unavailable", "error_description": format!("{why}; retry later")})
        .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncache-control: no-store\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
}

/// Runs the background work of a broker: the sweeper and the release of
/// upstream credentials whose lease ended (every 250 ms), key refresh and
/// rotation and the reconciliation of upstream roles (every minute) and,
/// on Unix, policy reload on SIGHUP. (The writer checkpoints the store
/// itself.)
pub fn spawn_background(broker: Shared) {
    let releaser = broker.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut reconcile = tokio::time::interval(Duration::from_secs(60));
        reconcile.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = releaser.release_grants().await {
                        tracing::warn!("releasing upstream credentials failed (will retry): {e}");
                    }
                }
                _ = reconcile.tick() => {
                    if let Err(e) = releaser.reconcile_upstreams().await {
                        tracing::warn!("reconciling upstream roles failed (will retry): {e}");
                    }
                }
            }
        }
    });
    let sweeper = broker.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            // A full batch means more is waiting: go on at once (issuance
            // still gets the writer between batches).
            loop {
                match sweeper.sweep().await {
                    Ok(swept) if swept.is_full(SWEEP_BATCH as i64) => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!("sweep failed (will retry): {e}");
                        break;
                    }
                }
            }
        }
    });
    let keys = broker.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = keys.refresh_keys().await {
                tracing::warn!("key refresh failed (will retry): {e}");
            }
        }
    });
    // Other replicas on the store may load policies or rotate keys.
    let follower = broker.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FOLLOW_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = follower.follow_store().await {
                tracing::warn!("following the other replicas failed (will retry): {e}");
            }
        }
    });
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            match broker.reload_policies().await {
                Ok((ids, revoked)) => {
                    tracing::info!(policies = ids.len(), revoked, "policies reloaded")
                }
                Err(e) => tracing::error!("policies not reloaded, the old set stays in force: {e}"),
            }
        }
    });
}

/// Serves the API on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn serve(
    broker: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    spawn_background(broker.clone());
    let server = broker.config().server.clone();
    let connections = Arc::new(Connections {
        open: Mutex::new((0, HashMap::new())),
        max: server.max_connections,
        max_per_address: server.max_connections_per_address,
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(server.header_read_timeout_seconds))
        .max_buf_size(READ_BUFFER_BYTES)
        .keep_alive(true);
    let router = app(broker);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match connections.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(why) => {
                tracing::warn!(address = %peer.ip(), "connection refused: {why}");
                tokio::spawn(refuse(stream, why));
                continue;
            }
        };
        // Answers are small and go out whole: no reason to let Nagle's
        // algorithm hold one back waiting for the client's ACK.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            // A Router is always ready; it needs no poll_ready.
            router.clone().call(request)
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _admitted = admitted;
            // A client that goes away or times out ends its connection;
            // nothing to report.
            let _ = connection.await;
        });
    }
    drop(listener);
    // Requests in flight get a few seconds to finish.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_overall_and_per_address() {
        let connections = Arc::new(Connections {
            open: Mutex::new((0, HashMap::new())),
            max: 3,
            max_per_address: 2,
        });
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = connections.admit(a).unwrap();
        let _second = connections.admit(a).unwrap();
        assert!(connections.admit(a).is_err());
        let _third = connections.admit(b).unwrap();
        assert!(connections.admit(b).is_err(), "the overall cap");
        drop(first);
        assert!(connections.admit(a).is_ok());
    }
}
