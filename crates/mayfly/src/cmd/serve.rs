//! `mayfly serve`: the broker, on its embedded defaults or a config file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use mayfly_attest::Attestor;
use mayfly_broker::config::BrokerConfig;
use mayfly_broker::local_issuer::LocalIssuer;
use mayfly_broker::secrets::{AdminTokenOrigin, admin_token};
use mayfly_broker::service::BrokerPaths;
use mayfly_broker::{Broker, SystemClock};

use crate::common::{DbArgs, data_dir, runtime};

/// `mayfly serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (see mayfly.example.toml) [default: embedded
    /// defaults: 127.0.0.1:8710, the embedded policies, the local identity
    /// issuer, which a config without [[issuer]] also keeps].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen on this address instead of the configured one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// PEM certificates to trust for the proxy's upstream TLS, beside the
    /// platform's roots (sets `[proxy] extra_ca_file`).
    #[arg(long, value_name = "FILE", env = "MAYFLY_PROXY_CA_FILE")]
    pub proxy_ca_file: Option<PathBuf>,
    /// Log format on stderr: text, or json (one object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub db: DbArgs,
}

/// How `mayfly serve` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs to stderr at the level `MAYFLY_LOG` names (default `info`; `debug`
/// adds one line per request with its route, status and latency).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAYFLY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// `mayfly serve`.
pub fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    init_logging(args.log_format);
    let data_dir = data_dir()?;
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load(path)?,
        None => BrokerConfig::default(),
    };
    let attest = config.local_attestation();
    // A broker that trusts no issuer could verify nobody: on a workstation
    // (the embedded defaults, or a config that names no [[issuer]]) it
    // trusts the local identity issuer.
    if config.issuers.is_empty() {
        let local = LocalIssuer::new(&data_dir);
        local.ensure()?;
        config.issuers.push(local.issuer_config());
    }
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    if let Some(file) = &args.proxy_ca_file {
        config.proxy.extra_ca_file = Some(file.clone());
    }
    config.check()?;
    let attestor = if attest {
        let attestor = Attestor::open(&data_dir.join("local-attestor"), config.local.clone())?;
        config
            .issuers
            .extend(LocalIssuer::attested_issuer_configs(&attestor));
        Some(attestor)
    } else {
        None
    };
    let socket = config
        .local
        .socket
        .clone()
        .unwrap_or_else(|| data_dir.join("workload.sock"));
    let db = args.db.target()?;
    let (admin, admin_origin) = admin_token(&config, &data_dir)?;
    let paths = BrokerPaths {
        data_dir: data_dir.clone(),
        db: db.clone(),
    };
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let issuers = config
            .issuers
            .iter()
            .map(|i| i.name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let local = match attestor {
            Some(attestor) => match mayfly_attest::bind(&socket, config.local.group.as_deref()) {
                Ok(listener) => Some((listener, attestor)),
                // On by default only: a second broker on this data
                // directory serves without it; asked for, it is an error.
                Err(e @ mayfly_attest::SocketError::InUse(_)) if config.local.enabled.is_none() => {
                    tracing::warn!("mayfly serve: not attesting local processes: {e}");
                    None
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let broker = Arc::new(Broker::open(config, &paths, &admin, Arc::new(SystemClock)).await?);
        let issuers = if issuers.is_empty() { "none" } else { &issuers };
        let admin_token = match &admin_origin {
            AdminTokenOrigin::File(file) => file.display().to_string(),
            AdminTokenOrigin::Environment => "MAYFLY_ADMIN_TOKEN".to_owned(),
        };
        tracing::info!(
            url = broker.public_url(),
            store = %shown_db(&db),
            issuers,
            admin_token,
            "mayfly serve: listening on {}; admin token in {admin_token}",
            broker.public_url()
        );
        // One signal stops both servers.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let local = local.map(|(listener, attestor)| {
            tracing::info!(
                socket = %socket.display(),
                "mayfly serve: attesting local processes on {}",
                socket.display()
            );
            tokio::spawn(mayfly_attest::serve(
                listener,
                attestor,
                until_stopped(stopped.clone()),
            ))
        });
        mayfly_broker::http::serve(broker, listener, until_stopped(stopped)).await?;
        if let Some(local) = local {
            local.await??;
        }
        tracing::info!("mayfly serve: stopped");
        anyhow::Ok(0)
    })
}

fn shown_db(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(_), Some(at)) => format!("postgres://…{}", db.get(at..).unwrap_or_default()),
        _ => db.to_owned(),
    }
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
