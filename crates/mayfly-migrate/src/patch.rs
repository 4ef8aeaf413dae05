//! A patch for people: the lines a rewrite changes, in unified-diff form,
//! with the secret redacted (a dry run shows what would change without
//! printing the key).

/// The secret as it may be shown: its first four characters.
pub fn redact(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!("{head}…(redacted)")
}

/// A unified diff of `old` and `new` for `path` (one hunk: the changed
/// region with up to three lines of context), the secret redacted.
pub fn patch(path: &str, old: &str, new: &str, secret: &str) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let prefix = old_lines
        .iter()
        .zip(&new_lines)
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = old_lines
        .get(prefix..)
        .unwrap_or_default()
        .iter()
        .rev()
        .zip(new_lines.get(prefix..).unwrap_or_default().iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let start = prefix.saturating_sub(3);
    let old_end = (old_lines.len() - suffix + 3).min(old_lines.len());
    let new_end = (new_lines.len() - suffix + 3).min(new_lines.len());
    let shown = |line: &str| {
        if secret.is_empty() {
            line.to_owned()
        } else {
            line.replace(secret, &redact(secret))
        }
    };
    let mut out = format!(
        "--- {path}\n+++ {path}\n@@ -{},{} +{},{} @@\n",
        start + 1,
        old_end - start,
        start + 1,
        new_end - start
    );
    let range = |lines: &[&str], from: usize, to: usize| -> Vec<String> {
        lines
            .get(from..to)
            .unwrap_or_default()
            .iter()
            .map(|l| shown(l))
            .collect()
    };
    for line in range(&old_lines, start, prefix) {
        out.push_str(&format!(" {line}\n"));
    }
    for line in range(&old_lines, prefix, old_lines.len() - suffix) {
        out.push_str(&format!("-{line}\n"));
    }
    for line in range(&new_lines, prefix, new_lines.len() - suffix) {
        out.push_str(&format!("+{line}\n"));
    }
    for line in range(&old_lines, old_lines.len() - suffix, old_end) {
        out.push_str(&format!(" {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_changed_lines_show_with_the_secret_redacted() {
        let old = "a\nb\nKEY=sk-proj-abcdef\nc\n";
        let new = "a\nb\n# KEY moved\nc\n";
        let text = patch(".env", old, new, "sk-proj-abcdef");
        assert_eq!(
            text,
            "--- .env\n+++ .env\n@@ -1,4 +1,4 @@\n a\n b\n-KEY=sk-p…(redacted)\n+# KEY moved\n c\n"
        );
    }

    proptest! {
        #[test]
        fn patches_never_show_the_secret(
            lines in proptest::collection::vec("[a-z=]{0,12}", 0..20),
            at in 0usize..20,
        ) {
            let secret = "sk-SECRETVALUE";
            let mut old = lines.clone();
            old.insert(at.min(old.len()), format!("K={secret}"));
            let mut new = lines;
            new.insert(at.min(new.len()), "# moved".to_owned());
            let text = patch("f", &old.join("\n"), &new.join("\n"), secret);
            prop_assert!(!text.contains(secret));
            prop_assert!(text.contains("+# moved"));
        }
    }
}
