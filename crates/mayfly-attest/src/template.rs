//! Workload id and SPIFFE path templates over the attested facts.

use crate::peer::PeerFacts;

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 7] = [
    "uid",
    "gid",
    "exe",
    "exe_name",
    "exe_sha256",
    "container_id",
    "parent_exe",
];

/// A parsed template: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Fact(&'static str),
}

impl Template {
    /// Parses `text`; the error names the unknown placeholder or the
    /// unclosed brace.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("{text:?} has a '{{' without its '}}'"))?;
            let name = &after[..close];
            let known = PLACEHOLDERS.iter().find(|p| **p == name).ok_or_else(|| {
                format!(
                    "{text:?} uses {{{name}}}, which is not a fact; use {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                )
            })?;
            parts.push(Part::Fact(known));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The template filled with `facts` (an absent fact is empty).
    pub(crate) fn render(&self, facts: &PeerFacts) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Fact(name) => out.push_str(&facts.fact(name).unwrap_or_default()),
            }
        }
        out
    }
}

/// A SPIFFE ID's path made from any text: segments keep only the
/// characters the specification allows (others become `_`), empty
/// segments are dropped and `.`/`..` segments are renamed.
pub(crate) fn spiffe_path(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        if segment == "." || segment == ".." {
            out.push_str(&segment.replace('.', "_"));
            continue;
        }
        out.extend(segment.chars().map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> PeerFacts {
        PeerFacts {
            uid: 1000,
            gid: 100,
            pid: 42,
            exe: "/usr/bin/python3.11".into(),
            exe_sha256: "ab".repeat(32),
            cgroup: "0::/user.slice".into(),
            container_id: None,
            ancestors: Vec::new(),
        }
    }

    #[test]
    fn templates_render_facts_and_refuse_unknown_placeholders() {
        let t = Template::parse("local:uid:{uid}:exe:{exe}").unwrap();
        assert_eq!(t.render(&facts()), "local:uid:1000:exe:/usr/bin/python3.11");
        let t = Template::parse("c:{container_id}:{exe_name}").unwrap();
        assert_eq!(t.render(&facts()), "c::python3.11");
        assert!(Template::parse("{pidfd}").unwrap_err().contains("{pidfd}"));
        assert!(Template::parse("a{uid").unwrap_err().contains("without"));
    }

    #[test]
    fn spiffe_paths_keep_only_allowed_characters() {
        assert_eq!(
            spiffe_path("/local/uid/1000/exe/opt/My App/bin/node"),
            "/local/uid/1000/exe/opt/My_App/bin/node"
        );
        assert_eq!(spiffe_path("//a/../b/./c:d"), "/a/__/b/_/c_d");
    }
}
