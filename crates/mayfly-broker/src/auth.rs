//! Who is calling: the admin token, a resource server (HTTP Basic) or a
//! workload (its identity token). Secrets are kept only as SHA-256 digests
//! and compared in constant time.

use std::collections::HashMap;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::BrokerError;
use crate::identity::Workload;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The admin token.
    Admin,
    /// A configured resource server, by client id.
    ResourceServer(String),
    /// A verified workload.
    Workload(Workload),
}

impl Caller {
    /// The name recorded in audit events (`admin`, a client id, a workload id).
    pub fn audit_name(&self) -> &str {
        match self {
            Caller::Admin => "admin",
            Caller::ResourceServer(id) => id,
            Caller::Workload(w) => &w.id,
        }
    }
}

/// What an `Authorization` header offers, before it is checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// Nothing, or a scheme Mayfly does not take.
    Nothing,
    /// `Bearer TOKEN`.
    Bearer(&'a str),
    /// `Basic base64(id:secret)`, decoded.
    Basic {
        /// The client id.
        id: String,
        /// The secret.
        secret: String,
    },
}

impl<'a> Presented<'a> {
    /// Reads an `Authorization` header value (scheme names are
    /// case-insensitive, RFC 9110 section 11.1).
    pub fn parse(header: Option<&'a str>) -> Presented<'a> {
        let Some((scheme, rest)) = header.and_then(|h| h.trim().split_once(' ')) else {
            return Presented::Nothing;
        };
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Presented::Bearer(rest);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((id, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                return Presented::Basic {
                    id: id.to_owned(),
                    secret: secret.to_owned(),
                };
            }
        }
        Presented::Nothing
    }
}

/// The digests of the secrets callers authenticate with.
pub struct CallerSecrets {
    admin: [u8; 32],
    resource_servers: HashMap<String, [u8; 32]>,
}

impl std::fmt::Debug for CallerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CallerSecrets(admin, {:?})",
            self.resource_servers.keys().collect::<Vec<_>>()
        )
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl CallerSecrets {
    /// Keeps the digests of the admin token and the resource servers'
    /// secrets (client id, secret).
    pub fn new(admin_token: &str, resource_servers: &[(String, String)]) -> CallerSecrets {
        CallerSecrets {
            admin: digest(admin_token),
            resource_servers: resource_servers
                .iter()
                .map(|(id, secret)| (id.clone(), digest(secret)))
                .collect(),
        }
    }

    /// Whether `token` is the admin token.
    pub fn is_admin(&self, token: &str) -> bool {
        bool::from(digest(token).ct_eq(&self.admin))
    }

    /// Whether `secret` is resource server `id`'s secret. An unknown id
    /// costs the same comparison as a known one.
    pub fn is_resource_server(&self, id: &str, secret: &str) -> bool {
        let offered = digest(secret);
        match self.resource_servers.get(id) {
            Some(expected) => bool::from(offered.ct_eq(expected)),
            None => {
                let _ = offered.ct_eq(&self.admin);
                false
            }
        }
    }

    /// Authenticates the client of introspection and revocation: the admin
    /// token (`Bearer`) or a resource server (`Basic`).
    pub fn client(&self, header: Option<&str>) -> Result<Caller, BrokerError> {
        let unauthorized = || {
            BrokerError::Unauthorized(
                "authenticate with the admin token (Bearer) or a resource server's client id and secret (Basic)"
                    .into(),
            )
        };
        match Presented::parse(header) {
            Presented::Bearer(token) if self.is_admin(token) => Ok(Caller::Admin),
            Presented::Basic { id, secret } if self.is_resource_server(&id, &secret) => {
                Ok(Caller::ResourceServer(id))
            }
            _ => Err(unauthorized()),
        }
    }

    /// Checks that the caller holds the admin token.
    pub fn admin(&self, header: Option<&str>) -> Result<(), BrokerError> {
        match self.client(header)? {
            Caller::Admin => Ok(()),
            _ => Err(BrokerError::Forbidden("this needs the admin token".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> CallerSecrets {
        CallerSecrets::new(
            "admin-0123456789",
            &[("api".to_owned(), "api-secret-0123456789".to_owned())],
        )
    }

    fn basic(pair: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    #[test]
    fn headers_parse_by_scheme() {
        assert_eq!(Presented::parse(None), Presented::Nothing);
        assert_eq!(
            Presented::parse(Some("bearer abc")),
            Presented::Bearer("abc")
        );
        assert_eq!(Presented::parse(Some("Bearer ")), Presented::Nothing);
        assert_eq!(
            Presented::parse(Some(&basic("a:b:c"))),
            Presented::Basic {
                id: "a".into(),
                secret: "b:c".into()
            }
        );
        assert_eq!(Presented::parse(Some("Basic !!!")), Presented::Nothing);
        assert_eq!(Presented::parse(Some("Digest x")), Presented::Nothing);
    }

    #[test]
    fn clients_authenticate() {
        let s = secrets();
        assert!(matches!(
            s.client(Some("Bearer admin-0123456789")),
            Ok(Caller::Admin)
        ));
        assert!(matches!(
            s.client(Some(&basic("api:api-secret-0123456789"))),
            Ok(Caller::ResourceServer(id)) if id == "api"
        ));
        assert!(s.client(Some(&basic("api:wrong"))).is_err());
        assert!(
            s.client(Some(&basic("other:api-secret-0123456789")))
                .is_err()
        );
        assert!(s.client(Some("Bearer nope")).is_err());
        assert!(s.admin(Some(&basic("api:api-secret-0123456789"))).is_err());
    }
}
