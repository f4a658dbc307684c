//! Module path patterns (`--exclude`, `--no-sum`) in GOPRIVATE's glob syntax.

use super::ConfigError;

/// A GOPRIVATE-style glob: it matches a module path when it matches the path's leading
/// elements (as many as the pattern has). `*` and `?` never match `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModulePattern(String);

impl ModulePattern {
    pub fn parse(pattern: &str) -> Result<Self, ConfigError> {
        let p = pattern.trim().trim_end_matches('/');
        let bad = |reason: &str| ConfigError::Exclude {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        if p.is_empty() {
            return Err(bad("it is empty"));
        }
        if p.starts_with('/') || p.contains("//") {
            return Err(bad("use a module path prefix such as corp.example.com/*"));
        }
        if p.contains(['[', ']', '\\']) {
            return Err(bad("only `*` and `?` wildcards are supported"));
        }
        Ok(ModulePattern(p.to_string()))
    }

    pub fn matches(&self, module: &str) -> bool {
        let n = self.0.split('/').count();
        let elems: Vec<&str> = module.split('/').collect();
        if elems.len() < n {
            return false;
        }
        self.0
            .split('/')
            .zip(elems)
            .all(|(p, e)| glob_match(p.as_bytes(), e.as_bytes()))
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&p[1..], s) || (!s.is_empty() && glob_match(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob_match(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob_match(&p[1..], &s[1..]),
        _ => false,
    }
}

/// The patterns of a setting: the flag's values win over the file's; each value may itself be
/// a comma-separated list.
pub(super) fn merge(
    flags: &[String],
    file: Option<Vec<String>>,
) -> Result<Vec<ModulePattern>, ConfigError> {
    let raw = if flags.is_empty() {
        file.unwrap_or_default()
    } else {
        flags.to_vec()
    };
    raw.iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(ModulePattern::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_patterns_match_like_goprivate() {
        let p = ModulePattern::parse("corp.example.com/*").unwrap();
        assert!(p.matches("corp.example.com/team/x"));
        assert!(p.matches("corp.example.com/team"));
        assert!(!p.matches("corp.example.com"));
        assert!(!p.matches("github.com/corp.example.com/x"));
        let p = ModulePattern::parse("*.corp.example").unwrap();
        assert!(p.matches("git.corp.example/a/b"));
        assert!(!p.matches("corp.example/a"));
        assert!(ModulePattern::parse("/abs").is_err());
    }

    #[test]
    fn flags_win_and_lists_split() {
        let from_file = Some(vec!["a.example/*".to_string()]);
        let p = merge(&[], from_file.clone()).unwrap();
        assert!(p[0].matches("a.example/x"));
        let p = merge(&["b.example/*, c.example/*".to_string()], from_file).unwrap();
        assert_eq!(p.len(), 2);
        assert!(!p.iter().any(|p| p.matches("a.example/x")));
        assert!(p[1].matches("c.example/y"));
    }
}
