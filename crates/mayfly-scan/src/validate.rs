//! Checks that tell a real credential from something shaped like one:
//! structural validators, entropy and the shared placeholder filter.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A structural check named by a rule's `validator` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidatorKind {
    /// `PREFIX_` + 30 base62 + the base62 CRC32 of those 30 (GitHub tokens).
    GithubChecksum,
    /// The same scheme for `npm_` tokens.
    NpmChecksum,
    /// A JSON Web Token whose header and payload decode to JSON objects.
    Jwt,
    /// A PEM private key block whose body decodes to the format its label
    /// names (a DER SEQUENCE, `openssh-key-v1`, OpenPGP packets).
    PemPrivateKey,
    /// The password of a `scheme://user:password@host` URL.
    UrlCredentials,
    /// A base64 `user:password` pair (HTTP basic auth).
    BasicAuth,
    /// An AWS secret access key: 40 base64 characters of mixed classes.
    AwsSecret,
    /// A password assigned in code or config: not a weak default, not a
    /// variable, expression or identifier.
    Password,
    /// A keyword-anchored secret: letters and digits, not an expression,
    /// path, URL or identifier.
    GenericSecret,
}

impl ValidatorKind {
    /// Whether the check is a checksum the format carries (a candidate that
    /// fails it is a typo or a fake, worth explaining).
    pub fn is_checksum(self) -> bool {
        matches!(
            self,
            ValidatorKind::GithubChecksum | ValidatorKind::NpmChecksum
        )
    }

    /// Whether the check decodes the secret's structure, so that the
    /// statistical placeholder checks (runs, one byte dominating) must not
    /// judge it: binary formats in base64 have runs by design.
    pub fn decodes_structure(self) -> bool {
        matches!(self, ValidatorKind::PemPrivateKey)
    }

    /// True when `secret` passes the check.
    pub fn check(self, secret: &[u8]) -> bool {
        match self {
            ValidatorKind::GithubChecksum | ValidatorKind::NpmChecksum => base62_crc32_ok(secret),
            ValidatorKind::Jwt => jwt_ok(secret),
            ValidatorKind::PemPrivateKey => pem_ok(secret),
            ValidatorKind::UrlCredentials => password_ok(secret),
            ValidatorKind::BasicAuth => basic_auth_ok(secret),
            ValidatorKind::AwsSecret => {
                secret.len() == 40
                    && secret.iter().any(u8::is_ascii_uppercase)
                    && secret.iter().any(u8::is_ascii_lowercase)
                    && secret.iter().any(u8::is_ascii_digit)
            }
            ValidatorKind::Password => {
                password_ok(secret) && !looks_like_code(secret) && !looks_like_identifier(secret)
            }
            ValidatorKind::GenericSecret => {
                password_ok(secret)
                    && !looks_like_code(secret)
                    && !looks_like_identifier_or_id(secret)
                    && secret.iter().any(u8::is_ascii_digit)
                    && secret.iter().any(u8::is_ascii_alphabetic)
            }
        }
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62_value(digit: u8) -> Option<u64> {
    BASE62.iter().position(|&d| d == digit).map(|p| p as u64)
}

/// Encodes a CRC32 the way GitHub and npm tokens carry it: six base62
/// digits, most significant first.
pub fn base62_checksum(data: &[u8]) -> String {
    let mut value = u64::from(crc32fast::hash(data));
    let mut digits = [b'0'; 6];
    for slot in digits.iter_mut().rev() {
        // INVARIANT: value % 62 < 62, so the index is in bounds.
        *slot = BASE62.get((value % 62) as usize).copied().unwrap_or(b'0');
        value /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// `PREFIX_` + 30 base62 random characters + 6 base62 checksum digits.
fn base62_crc32_ok(secret: &[u8]) -> bool {
    let Some(underscore) = secret.iter().rposition(|&b| b == b'_') else {
        return false;
    };
    let body = secret.get(underscore + 1..).unwrap_or_default();
    if body.len() != 36 {
        return false;
    }
    let (random, check) = body.split_at(30);
    let mut value: u64 = 0;
    for &digit in check {
        match base62_value(digit) {
            Some(d) => value = value * 62 + d,
            None => return false,
        }
    }
    value == u64::from(crc32fast::hash(random))
}

fn b64url_json_object(part: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&decoded).ok()
}

fn jwt_ok(secret: &[u8]) -> bool {
    let mut parts = secret.split(|&b| b == b'.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Some(header) = b64url_json_object(header) else {
        return false;
    };
    let Some(payload) = b64url_json_object(payload) else {
        return false;
    };
    // The example token of jwt.io and of countless tutorials.
    let tutorial = payload.get("name").and_then(serde_json::Value::as_str) == Some("John Doe")
        || payload.get("sub").and_then(serde_json::Value::as_str) == Some("1234567890");
    header.get("alg").is_some_and(serde_json::Value::is_string) && !tutorial
}

/// One line of a key block without what surrounds it in its container.
pub(crate) fn undecorated(mut line: &[u8]) -> &[u8] {
    loop {
        line = line.trim_ascii();
        let before = line.len();
        if let Some(rest) = line.strip_prefix(b"//")
            && rest.first().is_none_or(u8::is_ascii_whitespace)
        {
            line = rest;
        } else if let [b'#' | b'>' | b'*' | b'"' | b'\'', rest @ ..] = line {
            line = rest;
        }
        match line {
            [rest @ .., b',' | b';'] => line = rest,
            [rest @ .., b'"' | b'\''] => line = rest,
            [rest @ .., q, b'+'] if q.is_ascii_whitespace() || *q == b'"' || *q == b'\'' => {
                line = rest;
                line = line.trim_ascii_end();
                if let [rest @ .., b'"' | b'\''] = line {
                    line = rest;
                }
            }
            _ => {}
        }
        if line.len() == before {
            return line;
        }
    }
}

fn pem_ok(secret: &[u8]) -> bool {
    // The body is what lies between the BEGIN and END lines, less the
    // headers (`Proc-Type: ...`) and the OpenPGP checksum line (`=abcd`);
    // it must decode as base64 to a key-sized blob of the label's format.
    let text = String::from_utf8_lossy(secret)
        .replace("\\r", "")
        .replace("\\n", "\n");
    let label = text
        .split("-----BEGIN ")
        .nth(1)
        .and_then(|rest| rest.split("-----").next())
        .unwrap_or_default();
    let encrypted_headers = text.contains("ENCRYPTED");
    let body: Vec<u8> = text
        .lines()
        .map(|line| undecorated(line.replace('\\', "").as_bytes()).to_vec())
        .filter(|line| memchr::memmem::find(line, b"-----").is_none() && !line.contains(&b':'))
        .filter(|line| !(line.first() == Some(&b'=') && line.len() <= 6))
        .flatten()
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let Ok(key) = engine.decode(&body) else {
        return false;
    };
    if key.len() < 48 {
        return false;
    }
    match label {
        // openssh-key-v1 (PROTOCOL.key in OpenSSH's sources).
        "OPENSSH PRIVATE KEY" => key.starts_with(b"openssh-key-v1\0"),
        // OpenPGP packets: the first byte of a packet has its top bit set.
        "PGP PRIVATE KEY BLOCK" => key.first().is_some_and(|b| b & 0x80 != 0),
        // Legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED`): the body is
        // ciphertext, with no structure to check.
        _ if encrypted_headers && label != "ENCRYPTED PRIVATE KEY" => true,
        // PKCS #1, SEC 1, DSA, PKCS #8 (plain or encrypted): one DER SEQUENCE.
        _ => der_sequence_spans(&key),
    }
}

/// Whether `der` is exactly one DER SEQUENCE (tag, length, contents).
fn der_sequence_spans(der: &[u8]) -> bool {
    let (Some(&0x30), Some(&first)) = (der.first(), der.get(1)) else {
        return false;
    };
    let (header, length) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let bytes = usize::from(first & 0x7f);
        let Some(digits) = der.get(2..2 + bytes).filter(|_| (1..=4).contains(&bytes)) else {
            return false;
        };
        (
            2 + bytes,
            digits
                .iter()
                .fold(0usize, |n, &d| (n << 8) | usize::from(d)),
        )
    };
    header + length == der.len()
}

/// Passwords that documentation and local development use, never a real
/// one (any value containing "password" or "passwd", also in leetspeak, is
/// refused separately).
const WEAK_PASSWORDS: &[&str] = &[
    "pass",
    "secret",
    "postgres",
    "postgresql",
    "mysql",
    "root",
    "admin",
    "user",
    "username",
    "guest",
    "test",
    "testing",
    "changeme",
    "example",
    "sample",
    "dummy",
    "default",
    "pwd",
    "redis",
    "mongo",
    "mongodb",
    "rabbitmq",
    "letmein",
    "qwerty",
    "123456",
    "pass123",
    "supersecret",
    "s3cr3t",
    "foobar",
    "foo",
    "bar",
    "baz",
    "none",
    "null",
    "nil",
    "undefined",
    "true",
    "false",
    "xxx",
    "token",
    "apikey",
];

fn password_ok(password: &[u8]) -> bool {
    let lower = password.to_ascii_lowercase();
    if password.len() < 4
        || WEAK_PASSWORDS
            .iter()
            .any(|w| w.as_bytes() == lower.as_slice())
    {
        return false;
    }
    // "mypassword1", "generatedpassword2", "P@55w0rd!": a value naming
    // itself is a placeholder.
    let plain: Vec<u8> = lower
        .iter()
        .map(|&b| match b {
            b'0' => b'o',
            b'@' | b'4' => b'a',
            b'5' | b'$' => b's',
            b'3' => b'e',
            b'1' | b'!' => b'i',
            b'7' => b't',
            other => other,
        })
        .collect();
    if [b"password".as_slice(), b"passwd", b"passwort"]
        .iter()
        .any(|w| {
            memchr::memmem::find(&lower, w).is_some() || memchr::memmem::find(&plain, w).is_some()
        })
    {
        return false;
    }
    // A variable reference is not a password: $PASS, %PASS%, {{pass}}.
    !matches!(password.first(), Some(b'$' | b'%' | b'{' | b'<' | b'['))
}

/// True for identifiers (`WIN32_ERROR`, `snake_case_name`, `PWSTR`).
fn looks_like_identifier(value: &[u8]) -> bool {
    value
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && value.iter().filter(|b| b.is_ascii_digit()).count() <= 2
        && (value.contains(&b'_') || value.iter().all(u8::is_ascii_alphabetic))
}

/// True for identifiers, UUIDs and short hex ids: values that sit in
/// secret-named fields without being secrets.
fn looks_like_identifier_or_id(value: &[u8]) -> bool {
    let identifier = looks_like_identifier(value);
    let uuid = value.len() == 36
        && value.iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    let short_hex = value.len() < 32 && value.iter().all(u8::is_ascii_hexdigit);
    // "import-token-5ott6ho5", "my_secret_1": a value naming itself.
    let lower = value.to_ascii_lowercase();
    let self_named = [b"token".as_slice(), b"secret"]
        .iter()
        .any(|w| memchr::memmem::find(&lower, w).is_some());
    identifier || uuid || short_hex || self_named
}

/// True for text that is code or a reference, not a literal secret:
/// identifiers and dotted paths (`request.form`), calls, file paths, URLs.
fn looks_like_code(value: &[u8]) -> bool {
    // `request.form`, `windows_sys::core::PWSTR`, `os.environ`
    let separated = value.iter().any(|&b| b == b'.' || b == b':');
    let identifier_path = separated
        && value
            .split(|&b| b == b'.' || b == b':')
            .filter(|part| !part.is_empty())
            .all(|part| {
                part.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    && part.iter().filter(|b| b.is_ascii_digit()).count() <= 2
            });
    let call_or_index = value.iter().any(|b| b"()[]{}".contains(b));
    let path = value.starts_with(b"/") || value.starts_with(b"./") || value.starts_with(b"~/");
    let url = memchr::memmem::find(value, b"://").is_some();
    identifier_path
        || call_or_index
        || path
        || url
        || looks_like_number(value)
        || looks_like_type_name(value)
}

/// Numeric literals: `-2146893773`, `0x8004004A_u32`, `2108u32`, `1.5f`.
fn looks_like_number(value: &[u8]) -> bool {
    let digits = value
        .strip_prefix(b"-")
        .or_else(|| value.strip_prefix(b"+"))
        .unwrap_or(value);
    let (body, hex) = match digits
        .strip_prefix(b"0x")
        .or_else(|| digits.strip_prefix(b"0X"))
    {
        Some(rest) => (rest, true),
        None => (digits, false),
    };
    let end = body
        .iter()
        .position(|&b| {
            !(b.is_ascii_digit() || b == b'_' || b == b'.' || (hex && b.is_ascii_hexdigit()))
        })
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(end);
    let suffix = suffix.strip_prefix(b"_").unwrap_or(suffix);
    number.iter().any(u8::is_ascii_digit)
        && matches!(
            suffix,
            b"" | b"u8"
                | b"u16"
                | b"u32"
                | b"u64"
                | b"u128"
                | b"usize"
                | b"i8"
                | b"i16"
                | b"i32"
                | b"i64"
                | b"i128"
                | b"isize"
                | b"f32"
                | b"f64"
                | b"f"
                | b"l"
                | b"L"
                | b"u"
                | b"U"
        )
}

/// PascalCase type names: three or more capitalised words of four letters
/// or more (`X509HardwareKeyUsageFlags`), which random tokens almost never hold.
fn looks_like_type_name(value: &[u8]) -> bool {
    if !value.iter().all(u8::is_ascii_alphanumeric)
        || value.iter().filter(|b| b.is_ascii_digit()).count() > 3
    {
        return false;
    }
    let mut words = 0;
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b.is_ascii_uppercase() {
            let lower = value
                .get(i + 1..)
                .unwrap_or_default()
                .iter()
                .take_while(|c| c.is_ascii_lowercase())
                .count();
            if lower >= 3 {
                words += 1;
            }
            i += 1 + lower;
        } else {
            i += 1;
        }
    }
    words >= 3
}

fn basic_auth_ok(secret: &[u8]) -> bool {
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(secret) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = decoded.split_at(colon);
    let password = password.get(1..).unwrap_or_default();
    !user.is_empty()
        && decoded.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
        && password_ok(password)
        && !is_placeholder(password)
}

/// Shannon entropy of `bytes`, in bits per byte.
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let len = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// Words that mark documentation, templates and redactions.
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "sample",
    "dummy",
    "placeholder",
    "changeme",
    "change_me",
    "redacted",
    "your",
    "insert",
    "replace",
    "fake",
];

/// Markers that never occur in a real credential.
const PLACEHOLDER_MARKS: &[&str] = &[
    "xxxx", "XXXX", "****", "...", "${", "{{", "<", ">", "%(", "$(", "EXAMPLE", "example",
];

/// Prefixes of keys that providers mark as test-mode: they reach no real
/// account or money.
const TEST_MODE_PREFIXES: &[&str] = &[
    "sk_test_",
    "pk_test_",
    "rk_test_",
    "whsec_test_",
    "sk-test-",
];

/// True when `secret` carries a mark no credential has: a template, a
/// redaction, a test-mode prefix. Structured secrets whose validator
/// decodes them (private keys) are judged by these marks only: the base64
/// of binary key formats holds long runs (`AAAAAAAA`) by design.
pub fn is_marked_placeholder(secret: &[u8]) -> bool {
    let contains =
        |hay: &[u8], needle: &str| memchr::memmem::find(hay, needle.as_bytes()).is_some();
    secret.is_empty()
        || TEST_MODE_PREFIXES
            .iter()
            .any(|p| secret.starts_with(p.as_bytes()))
        || PLACEHOLDER_MARKS.iter().any(|m| contains(secret, m))
}

/// True when `secret` is a placeholder, template, redaction, test-mode key
/// or documentation example rather than a credential.
pub fn is_placeholder(secret: &[u8]) -> bool {
    if is_marked_placeholder(secret) {
        return true;
    }
    let contains =
        |hay: &[u8], needle: &str| memchr::memmem::find(hay, needle.as_bytes()).is_some();
    // Long secrets (key bodies) are checked for markers only: a 2,000-byte
    // random body holds four-letter words by chance.
    if secret.len() <= 160 {
        let lower = secret.to_ascii_lowercase();
        if PLACEHOLDER_WORDS.iter().any(|w| contains(&lower, w)) || contains(&lower, "xxxx") {
            return true;
        }
        let mut counts = [0u32; 256];
        for &b in secret {
            if let Some(c) = counts.get_mut(usize::from(b)) {
                *c += 1;
            }
        }
        let most = counts.iter().copied().max().unwrap_or(0) as usize;
        if secret.len() >= 8 && most * 2 >= secret.len() {
            return true;
        }
    }
    has_run(secret)
}

/// True for six identical bytes in a row, or eight consecutive ascending
/// or descending letters or digits (`12345678`, `hgfedcba`).
fn has_run(secret: &[u8]) -> bool {
    let (mut same, mut up, mut down) = (1, 1, 1);
    for pair in secret.windows(2) {
        let [a, b] = [
            pair.first().copied().unwrap_or(0),
            pair.get(1).copied().unwrap_or(0),
        ];
        same = if a == b { same + 1 } else { 1 };
        let alnum = a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric();
        up = if alnum && b.wrapping_sub(a) == 1 {
            up + 1
        } else {
            1
        };
        down = if alnum && a.wrapping_sub(b) == 1 {
            down + 1
        } else {
            1
        };
        if same >= 6 || up >= 8 || down >= 8 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_roundtrip() {
        let random = b"aUUyYzqMZ2nSHWaBiDjdxSy9C7DGa4";
        let token = format!(
            "ghp_{}{}",
            String::from_utf8_lossy(random),
            base62_checksum(random)
        );
        assert!(ValidatorKind::GithubChecksum.check(token.as_bytes()));
        let mut broken = token.into_bytes();
        if let Some(last) = broken.last_mut() {
            *last = if *last == b'a' { b'b' } else { b'a' };
        }
        assert!(!ValidatorKind::GithubChecksum.check(&broken));
    }

    #[test]
    fn placeholders() {
        for p in [
            "AKIAIOSFODNN7EXAMPLE",
            "your-api-key-here",
            "<TOKEN>",
            "${OPENAI_API_KEY}",
            "${{ secrets.X }}",
            "sk-****************",
            "changeme",
            "sk-proj-xxxxxxxxxxxxxxxxxxxx",
            "abcdefghijklmnop",
            "1234567890",
            "aaaaaaaaaaaa",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p} should be a placeholder");
        }
        for real in [
            "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", // mayfly:allow (test fixture)
            "Zq3v9LmP2xR7tK1wB8nC",
        ] {
            assert!(
                !is_placeholder(real.as_bytes()),
                "{real} is not a placeholder"
            );
        }
    }

    #[test]
    fn jwt_structure() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ3b3JrZXIiLCJpYXQiOjE3MDAwMDAwMDB9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"; // mayfly:allow (test fixture)
        assert!(ValidatorKind::Jwt.check(jwt.as_bytes()));
        assert!(!ValidatorKind::Jwt.check(b"eyJub3QiOiJqd3QifQ.eyJub3QiOiJqd3QifQ.x"));
    }

    #[test]
    fn entropy_orders_randomness() {
        assert!(shannon_entropy(b"aaaaaaaa") < 0.01);
        assert!(shannon_entropy(b"Zq3v9LmP2xR7tK1wB8nC") > 4.0);
    }

    proptest::proptest! {
        #[test]
        fn validators_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            for kind in [ValidatorKind::GithubChecksum, ValidatorKind::NpmChecksum, ValidatorKind::Jwt,
                ValidatorKind::PemPrivateKey, ValidatorKind::UrlCredentials, ValidatorKind::BasicAuth,
                ValidatorKind::AwsSecret, ValidatorKind::Password, ValidatorKind::GenericSecret] {
                let _ = kind.check(&bytes);
            }
            let _ = is_placeholder(&bytes);
            let _ = shannon_entropy(&bytes);
        }
    }
}
