//! `.env` files: a `KEY=value` line holding the secret becomes a comment
//! that says where it went and how to run with it.

/// Rewrites every `KEY=secret` line (with `export`, quotes, spaces).
pub(crate) fn rewrite(text: &str, secret: &str, entry: &str) -> Result<super::Rewrite, String> {
    let mut out = String::with_capacity(text.len());
    let mut changes = Vec::new();
    for line in text.split_inclusive('\n') {
        if !line.contains(secret) {
            out.push_str(line);
            continue;
        }
        let Some(key) = assignment_of(line, secret) else {
            return Err(format!(
                "a line holds the secret but is not KEY={{value}} (line {}); edit it by hand",
                text[..text.find(line).unwrap_or(0)].matches('\n').count() + 1
            ));
        };
        let ending = if line.ends_with("\r\n") {
            "\r\n"
        } else if line.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        out.push_str(&format!(
            "# {key} moved into Mayfly custody as \"{entry}\": mayfly run --inject {entry} -- <command>{ending}"
        ));
        changes.push(format!("{key} line"));
    }
    Ok(super::Rewrite { text: out, changes })
}

/// The key of a line `[export ]KEY = value` whose value is the secret.
fn assignment_of<'l>(line: &'l str, secret: &str) -> Option<&'l str> {
    let line = line.trim();
    let line = line.strip_prefix("export ").map_or(line, str::trim_start);
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    let valid_key = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    let value = value.trim();
    let value = value.split_once(" #").map_or(value, |(v, _)| v.trim_end());
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
        .unwrap_or(value);
    (valid_key && unquoted == secret).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_become_notes_and_the_rest_stays() {
        let text = "# keys\nexport OPENAI_API_KEY=\"sk-proj-abc\"\r\nDEBUG=1\nOTHER='sk-proj-abc' # prod\n";
        let out = rewrite(text, "sk-proj-abc", "openai").unwrap();
        assert_eq!(
            out.text,
            "# keys\n# OPENAI_API_KEY moved into Mayfly custody as \"openai\": mayfly run --inject openai -- <command>\r\nDEBUG=1\n# OTHER moved into Mayfly custody as \"openai\": mayfly run --inject openai -- <command>\n"
        );
        assert_eq!(out.changes, ["OPENAI_API_KEY line", "OTHER line"]);
    }

    #[test]
    fn a_secret_inside_a_longer_value_is_not_guessed_at() {
        let line = "URL=https://u:sk-proj-abc@host\n"; // mayfly:allow (test fixture)
        let err = rewrite(line, "sk-proj-abc", "openai").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }
}
