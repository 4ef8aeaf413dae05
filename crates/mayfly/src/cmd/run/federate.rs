//! `mayfly run --federate PROFILE`: CMD gets a cloud's own short-lived
//! credentials through workload identity federation with Mayfly as the
//! OpenID provider. Mayfly exchanges the task's identity for an ID token
//! for the cloud's audience, then either trades it at the cloud's token
//! endpoint itself (`aws:ROLE_ARN`: `AssumeRoleWithWebIdentity`) or hands
//! it to the cloud's SDK in a file the SDK reads and this command keeps
//! fresh (`aws-sdk:`, `gcp:`, `azure:`, `anthropic:`, `oidc:`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mayfly_broker::client::{Client, IdentitySource};

use super::{blocking, refresh_after, write_token};

/// Where AWS STS is [default]; `MAYFLY_AWS_STS_URL` points elsewhere
/// (a regional endpoint, a test server).
const AWS_STS: &str = "https://sts.amazonaws.com/";

/// One federation profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Profile {
    /// Mayfly calls STS; CMD gets `AWS_ACCESS_KEY_ID` and its siblings.
    Aws { role_arn: String },
    /// The AWS SDK calls STS with the token file Mayfly keeps fresh.
    AwsSdk { role_arn: String },
    /// Google Cloud: a credential configuration over the token file.
    Gcp { provider: String },
    /// Azure: `AZURE_FEDERATED_TOKEN_FILE` for an app registration.
    Azure { tenant: String, client: String },
    /// Anthropic's Claude API: the official SDKs' workload identity
    /// variables over the token file (the SDK trades it at
    /// `/v1/oauth/token`, RFC 7523 `jwt-bearer`).
    Anthropic {
        organization: String,
        rule: String,
        service_account: Option<String>,
    },
    /// Any relying party: the token file and its audience.
    Oidc { audience: String },
}

/// The audience of ID tokens for Anthropic (what its federation rule must
/// accept).
pub(super) const ANTHROPIC_AUDIENCE: &str = "https://api.anthropic.com";

impl Profile {
    /// Reads `KIND:VALUE`.
    pub(super) fn parse(text: &str) -> anyhow::Result<Profile> {
        let (kind, value) = text.split_once(':').unwrap_or((text, ""));
        let profile = match kind {
            "aws" if value.starts_with("arn:") => Profile::Aws {
                role_arn: value.to_owned(),
            },
            "aws-sdk" if value.starts_with("arn:") => Profile::AwsSdk {
                role_arn: value.to_owned(),
            },
            "gcp" if value.starts_with("//iam.googleapis.com/") => Profile::Gcp {
                provider: value.to_owned(),
            },
            "azure" => match value.split_once(':') {
                Some((tenant, client)) if !tenant.is_empty() && !client.is_empty() => {
                    Profile::Azure {
                        tenant: tenant.to_owned(),
                        client: client.to_owned(),
                    }
                }
                _ => bail!("--federate azure:TENANT_ID:CLIENT_ID"),
            },
            "anthropic" => match value.split(':').collect::<Vec<_>>().as_slice() {
                [organization, rule] | [organization, rule, ""]
                    if !organization.is_empty() && !rule.is_empty() =>
                {
                    Profile::Anthropic {
                        organization: (*organization).to_owned(),
                        rule: (*rule).to_owned(),
                        service_account: None,
                    }
                }
                [organization, rule, account] if !organization.is_empty() && !rule.is_empty() => {
                    Profile::Anthropic {
                        organization: (*organization).to_owned(),
                        rule: (*rule).to_owned(),
                        service_account: Some((*account).to_owned()),
                    }
                }
                _ => bail!(
                    "--federate anthropic:ORGANIZATION_ID:FEDERATION_RULE_ID[:SERVICE_ACCOUNT_ID]"
                ),
            },
            "oidc" if !value.is_empty() => Profile::Oidc {
                audience: value.to_owned(),
            },
            _ => bail!(
                "--federate {text}: use aws:ROLE_ARN, aws-sdk:ROLE_ARN, gcp://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/providers/PROVIDER, azure:TENANT_ID:CLIENT_ID, anthropic:ORGANIZATION_ID:FEDERATION_RULE_ID[:SERVICE_ACCOUNT_ID] or oidc:AUDIENCE"
            ),
        };
        Ok(profile)
    }

    /// The audience of its ID tokens (what the cloud's trust expects).
    pub(super) fn audience(&self) -> String {
        match self {
            Profile::Aws { .. } | Profile::AwsSdk { .. } => "sts.amazonaws.com".into(),
            Profile::Gcp { provider } => provider.clone(),
            Profile::Azure { .. } => "api://AzureADTokenExchange".into(),
            Profile::Anthropic { .. } => ANTHROPIC_AUDIENCE.into(),
            Profile::Oidc { audience } => audience.clone(),
        }
    }
}

/// What CMD gets, and the refresher of the token file.
pub(super) struct Federated {
    pub(super) env: Vec<(String, String)>,
    /// Variables CMD must not inherit (a static key its SDK would prefer).
    pub(super) env_remove: &'static [&'static str],
    pub(super) refresher: Option<tokio::task::JoinHandle<()>>,
}

async fn id_token(
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
    audience: &str,
) -> anyhow::Result<(String, i64)> {
    let (client, source, task_id, audience) = (
        client.clone(),
        source.clone(),
        task_id.to_owned(),
        audience.to_owned(),
    );
    blocking(move || {
        let identity = source.token(&client)?;
        let response = client
            .exchange_id_token(&identity, &task_id, &audience, None)
            .with_context(|| format!("an ID token for {audience}"))?;
        Ok((response.access_token, response.expires_in))
    })
    .await
}

/// The text of element `name` in an STS answer.
fn xml_text<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml.get(start..)?.find(&format!("</{name}>"))?;
    xml.get(start..end)
}

/// `AssumeRoleWithWebIdentity` at STS: the role's temporary credentials.
fn assume_role(
    role_arn: &str,
    token: &str,
    task_id: &str,
    seconds: i64,
) -> anyhow::Result<Vec<(String, String)>> {
    let url = std::env::var("MAYFLY_AWS_STS_URL").unwrap_or_else(|_| AWS_STS.to_owned());
    let session = format!("mayfly-{}", task_id.get(..32).unwrap_or(task_id));
    let seconds = seconds.clamp(900, 43200).to_string();
    let form = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn),
        ("RoleSessionName", session.as_str()),
        ("WebIdentityToken", token),
        ("DurationSeconds", seconds.as_str()),
    ];
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut answer = agent
        .post(&url)
        .send_form(form)
        .with_context(|| format!("AWS STS at {url} cannot be reached"))?;
    let status = answer.status().as_u16();
    let body = answer
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .context("reading the answer of AWS STS")?;
    if status != 200 {
        let code = xml_text(&body, "Code").unwrap_or("no code");
        let message = xml_text(&body, "Message").unwrap_or("no message");
        bail!(
            "AWS STS refused AssumeRoleWithWebIdentity for {role_arn} ({status} {code}: {message}); check the role's trust policy names this broker's issuer and audience sts.amazonaws.com"
        );
    }
    let field = |name: &str| {
        xml_text(&body, name)
            .map(str::to_owned)
            .with_context(|| format!("AWS STS answered without {name}"))
    };
    Ok(vec![
        ("AWS_ACCESS_KEY_ID".into(), field("AccessKeyId")?),
        ("AWS_SECRET_ACCESS_KEY".into(), field("SecretAccessKey")?),
        ("AWS_SESSION_TOKEN".into(), field("SessionToken")?),
        ("AWS_CREDENTIAL_EXPIRATION".into(), field("Expiration")?),
    ])
}

/// Google Cloud's credential configuration for a token file.
fn gcp_config(provider: &str, token_file: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let config = serde_json::json!({
        "type": "external_account",
        "audience": provider,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": token_file},
    });
    let file = dir.join("gcp-credentials.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&config)?)?;
    Ok(file)
}

/// Gets the first ID token and gives CMD what its cloud's SDK reads;
/// token files are rewritten before they expire while CMD runs.
pub(super) async fn start(
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
    profile: &Profile,
    dir: &Path,
) -> anyhow::Result<Federated> {
    let audience = profile.audience();
    let (token, expires_in) = id_token(client, source, task_id, &audience).await?;
    let token_file = dir.join("id-token.jwt");
    write_token(&token_file, &token)?;
    let file = token_file.display().to_string();
    let env: Vec<(&str, String)> = match profile {
        Profile::Aws { role_arn } => {
            let (role_arn, task_id) = (role_arn.clone(), task_id.to_owned());
            let credentials =
                blocking(move || assume_role(&role_arn, &token, &task_id, 3600)).await?;
            eprintln!(
                "mayfly run: AWS credentials from AssumeRoleWithWebIdentity (they live an hour at most)"
            );
            return Ok(Federated {
                env: credentials,
                env_remove: &[],
                refresher: None,
            });
        }
        Profile::AwsSdk { role_arn } => vec![
            ("AWS_WEB_IDENTITY_TOKEN_FILE", file),
            ("AWS_ROLE_ARN", role_arn.clone()),
            (
                "AWS_ROLE_SESSION_NAME",
                format!("mayfly-{}", task_id.get(..32).unwrap_or(task_id)),
            ),
        ],
        Profile::Gcp { provider } => vec![(
            "GOOGLE_APPLICATION_CREDENTIALS",
            gcp_config(provider, &token_file, dir)?
                .display()
                .to_string(),
        )],
        Profile::Azure { tenant, client } => vec![
            ("AZURE_FEDERATED_TOKEN_FILE", file),
            ("AZURE_TENANT_ID", tenant.clone()),
            ("AZURE_CLIENT_ID", client.clone()),
        ],
        Profile::Anthropic {
            organization,
            rule,
            service_account,
        } => {
            let mut env = vec![
                ("ANTHROPIC_IDENTITY_TOKEN_FILE", file),
                ("ANTHROPIC_ORGANIZATION_ID", organization.clone()),
                ("ANTHROPIC_FEDERATION_RULE_ID", rule.clone()),
            ];
            if let Some(account) = service_account {
                env.push(("ANTHROPIC_SERVICE_ACCOUNT_ID", account.clone()));
            }
            env
        }
        Profile::Oidc { audience } => vec![
            ("MAYFLY_ID_TOKEN_FILE", file),
            ("MAYFLY_ID_TOKEN_AUDIENCE", audience.clone()),
        ],
    };
    let refresher = {
        let (client, source, task_id) = (client.clone(), source.clone(), task_id.to_owned());
        let mut expires_in = expires_in;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(refresh_after(expires_in)).await;
                match id_token(&client, &source, &task_id, &audience).await {
                    Ok((token, lifetime)) => {
                        expires_in = lifetime;
                        if let Err(e) = write_token(&token_file, &token) {
                            eprintln!("mayfly run: cannot write the refreshed ID token: {e:#}");
                        }
                    }
                    Err(e) => {
                        eprintln!("mayfly run: ID token refresh failed: {e:#}");
                        expires_in = 6;
                    }
                }
            }
        })
    };
    // The SDKs prefer a static key to federation: none may be inherited.
    let env_remove: &'static [&'static str] = match profile {
        Profile::Anthropic { .. } => &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"],
        Profile::AwsSdk { .. } => &[
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ],
        _ => &[],
    };
    Ok(Federated {
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        env_remove,
        refresher: Some(refresher),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_name_their_audience() {
        let aws = Profile::parse("aws:arn:aws:iam::123456789012:role/deploy").unwrap();
        assert_eq!(aws.audience(), "sts.amazonaws.com");
        let gcp = Profile::parse(
            "gcp://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/mayfly",
        )
        .unwrap();
        assert!(
            gcp.audience()
                .starts_with("//iam.googleapis.com/projects/1/")
        );
        let azure = Profile::parse("azure:tenant-1:client-2").unwrap();
        assert_eq!(azure.audience(), "api://AzureADTokenExchange");
        let claude = Profile::parse("anthropic:org-1:fdrl_2:svac_3").unwrap();
        assert_eq!(claude.audience(), ANTHROPIC_AUDIENCE);
        for bad in [
            "aws",
            "aws:role",
            "gcp:x",
            "azure:t",
            "oidc:",
            "s3:x",
            "anthropic:org",
        ] {
            assert!(Profile::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sts_answers_are_read_by_element() {
        let xml = "<AssumeRoleWithWebIdentityResponse><Credentials><AccessKeyId>ASIA1</AccessKeyId><SessionToken>tok</SessionToken></Credentials></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_text(xml, "AccessKeyId"), Some("ASIA1"));
        assert_eq!(xml_text(xml, "SessionToken"), Some("tok"));
        assert_eq!(xml_text(xml, "Expiration"), None);
    }
}
