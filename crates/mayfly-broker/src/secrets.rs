//! The secrets `mayfly serve` needs at start: the admin token, the
//! resource servers' secrets and the master key. Each comes from the
//! environment or a file (created, mode 0600, when Mayfly makes it), never
//! from the command line or the config file.

use std::path::{Path, PathBuf};

use crate::b64;
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::keys::{self, MasterKey};

/// Where the admin token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenOrigin {
    /// `MAYFLY_ADMIN_TOKEN`.
    Environment,
    /// A file (the configured one, or `admin-token` in the data directory).
    File(PathBuf),
}

/// The admin token: `MAYFLY_ADMIN_TOKEN`, else the configured file, else
/// `admin-token` in the data directory (created on first start).
pub fn admin_token(
    config: &BrokerConfig,
    data_dir: &Path,
) -> Result<(String, AdminTokenOrigin), BrokerError> {
    if let Ok(token) = std::env::var("MAYFLY_ADMIN_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok((token.trim().to_owned(), AdminTokenOrigin::Environment));
    }
    let path = config
        .server
        .admin_token_file
        .clone()
        .unwrap_or_else(|| data_dir.join("admin-token"));
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            Ok((text.trim().to_owned(), AdminTokenOrigin::File(path)))
        }
        Ok(_) => Err(BrokerError::Internal(format!(
            "the admin token file {} is empty; write a token into it or delete it to have one made",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = b64::encode(&b64::random_bytes::<32>().map_err(crate::error::internal)?);
            keys::write_private(&path, token.as_bytes()).map_err(|e| {
                BrokerError::Internal(format!(
                    "cannot write the admin token to {}: {e}",
                    path.display()
                ))
            })?;
            Ok((token, AdminTokenOrigin::File(path)))
        }
        Err(e) => Err(BrokerError::Internal(format!(
            "cannot read the admin token file {}: {e}",
            path.display()
        ))),
    }
}

/// The resource servers' secrets, as (client id, secret), read from their
/// files or environment variables. Each must be at least 16 characters.
pub fn resource_server_secrets(
    config: &BrokerConfig,
) -> Result<Vec<(String, String)>, BrokerError> {
    let mut out = Vec::new();
    for rs in &config.resource_servers {
        let secret = match (&rs.secret_file, &rs.secret_env) {
            (Some(file), _) => std::fs::read_to_string(file).map_err(|e| {
                BrokerError::Internal(format!(
                    "resource server {}: cannot read {}: {e}",
                    rs.client_id,
                    file.display()
                ))
            })?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                BrokerError::Internal(format!(
                    "resource server {}: environment variable {var} is not set",
                    rs.client_id
                ))
            })?,
            (None, None) => continue,
        };
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err(BrokerError::Internal(format!(
                "resource server {}: its secret must be at least 16 characters",
                rs.client_id
            )));
        }
        out.push((rs.client_id.clone(), secret.to_owned()));
    }
    Ok(out)
}

/// The master key that seals Mayfly's keys: `MAYFLY_MASTER_KEY` (base64),
/// else the configured file, else `broker-master.key` in the data
/// directory (created on first start).
pub fn master_key(config: &BrokerConfig, data_dir: &Path) -> Result<MasterKey, BrokerError> {
    if let Ok(text) = std::env::var("MAYFLY_MASTER_KEY")
        && !text.trim().is_empty()
    {
        return Ok(MasterKey::from_base64(&text)?);
    }
    let path = config
        .tokens
        .master_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("broker-master.key"));
    Ok(MasterKey::load_or_create(&path)?)
}
