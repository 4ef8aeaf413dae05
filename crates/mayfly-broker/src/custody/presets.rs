//! Providers whose API Mayfly knows: where their API is, how a key is
//! presented to it, and which variables their SDKs read for the base URL
//! and the key (what `mayfly run --inject` sets).

/// A provider whose API Mayfly knows: upstream, injection, and the
/// variables an SDK reads for its base URL and key. `generic` has no
/// upstream of its own (give one) and no SDK variables (use
/// `MAYFLY_PROXY_URL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderPreset {
    /// The name used in `--provider` (lowercase).
    pub id: &'static str,
    /// The provider's display name (as rules name it).
    pub provider: &'static str,
    /// Its API's base URL.
    pub upstream: &'static str,
    /// The header that carries the key, and its template.
    pub header: (&'static str, &'static str),
    /// Variables that take the base URL (with the suffix the SDK expects).
    pub base_url_vars: &'static [(&'static str, &'static str)],
    /// Variables that take the key (the SDK needs one to be set).
    pub key_vars: &'static [&'static str],
}

/// The presets.
pub const PRESETS: &[ProviderPreset] = &[
    ProviderPreset {
        id: "openai",
        provider: "OpenAI",
        upstream: "https://api.openai.com",
        header: ("authorization", "Bearer {secret}"),
        base_url_vars: &[("OPENAI_BASE_URL", "/v1")],
        key_vars: &["OPENAI_API_KEY"],
    },
    ProviderPreset {
        id: "anthropic",
        provider: "Anthropic",
        upstream: "https://api.anthropic.com",
        header: ("x-api-key", "{secret}"),
        base_url_vars: &[("ANTHROPIC_BASE_URL", "")],
        key_vars: &["ANTHROPIC_API_KEY"],
    },
    ProviderPreset {
        id: "github",
        provider: "GitHub",
        upstream: "https://api.github.com",
        header: ("authorization", "Bearer {secret}"),
        base_url_vars: &[("GITHUB_API_URL", "")],
        key_vars: &["GITHUB_TOKEN", "GH_TOKEN"],
    },
    ProviderPreset {
        id: "gitlab",
        provider: "GitLab",
        upstream: "https://gitlab.com",
        header: ("private-token", "{secret}"),
        base_url_vars: &[("GITLAB_URL", ""), ("CI_SERVER_URL", "")],
        key_vars: &["GITLAB_TOKEN"],
    },
    ProviderPreset {
        id: "stripe",
        provider: "Stripe",
        upstream: "https://api.stripe.com",
        header: ("authorization", "Bearer {secret}"),
        base_url_vars: &[("STRIPE_API_BASE", "")],
        key_vars: &["STRIPE_API_KEY", "STRIPE_SECRET_KEY"],
    },
    ProviderPreset {
        id: "slack",
        provider: "Slack",
        upstream: "https://slack.com",
        header: ("authorization", "Bearer {secret}"),
        base_url_vars: &[("SLACK_API_URL", "/api/")],
        key_vars: &["SLACK_BOT_TOKEN", "SLACK_TOKEN"],
    },
    ProviderPreset {
        id: "huggingface",
        provider: "Hugging Face",
        upstream: "https://huggingface.co",
        header: ("authorization", "Bearer {secret}"),
        base_url_vars: &[("HF_ENDPOINT", "")],
        key_vars: &["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"],
    },
    ProviderPreset {
        id: "generic",
        provider: "Generic",
        upstream: "",
        header: ("authorization", "Bearer {secret}"),
        base_url_vars: &[],
        key_vars: &[],
    },
];

/// The preset of a provider (by id or display name, any case).
pub fn preset(provider: &str) -> Option<&'static ProviderPreset> {
    PRESETS
        .iter()
        .find(|p| p.id.eq_ignore_ascii_case(provider) || p.provider.eq_ignore_ascii_case(provider))
}
