//! The chart's observability files, as the tests read them: the alerting rules and their
//! unit tests (`charts/modfleet/rules/`), the Grafana dashboard and its PromQL expressions
//! (`charts/modfleet/dashboards/`), promtool (built by `hack/tools.sh`), and a scanner of the
//! metric names an expression selects. Used by the file checks (tests/observability_files.rs)
//! and the cluster test (tests/observability.rs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::helm::chart_dir;

pub fn rules_file() -> PathBuf {
    chart_dir().join("rules").join("modfleet.rules.yaml")
}

pub fn rules_test_file() -> PathBuf {
    chart_dir().join("rules").join("modfleet.rules.test.yaml")
}

pub fn dashboard_file() -> PathBuf {
    chart_dir().join("dashboards").join("modfleet-fleet.json")
}

pub fn dashboard() -> Value {
    let path = dashboard_file();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// The alerts the issue asks for; the rules may have more.
pub const REQUIRED_ALERTS: &[&str] = &[
    "ModfleetUpstreamDown",
    "ModfleetAllUpstreamsDown",
    "ModfleetCacheHitRatioLow",
    "ModfleetCacheNearlyFull",
    "ModfleetHighErrorRate",
    "ModfleetOperatorReconcileErrors",
    "ModfleetObjectStoreUnhealthy",
    "ModfleetPeerFillDegraded",
];

/// Metrics from outside modfleet the expressions may use (none today). Anything else must
/// start with one of the prefixes below and be exported by the proxy or the operator.
pub const ALLOWED_FOREIGN_METRICS: &[&str] = &[];
pub const MODFLEET_PREFIXES: &[&str] = &["modfleet_proxy_", "modfleet_operator_"];

// ------------------------------------------------------------------------------------------
// promtool

/// `MODFLEET_PROMTOOL`, else what `hack/tools.sh path promtool` prints.
pub fn promtool() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        modfleet_testkit::workspace::test_tool(
            "MODFLEET_PROMTOOL",
            "promtool",
            "promtool (the alert rules' checker)",
            "; it builds it from Prometheus's Go module, once",
        )
    })
    .clone()
}

pub fn run_promtool(args: &[&str], cwd: &Path) -> Output {
    Command::new(promtool())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"))
}

pub fn assert_promtool_ok(args: &[&str], cwd: &Path) -> String {
    let out = run_promtool(args, cwd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "modfleet-obs-{prefix}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `- alert: NAME` lines of the rule file, in order.
pub fn alert_names_in_rules_file() -> Vec<String> {
    std::fs::read_to_string(rules_file())
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Grafana's variables replaced by values that make plain PromQL.
pub fn without_grafana_variables(expr: &str) -> String {
    let mut out = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut name = String::new();
        if chars.peek() == Some(&'{') {
            chars.next();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                name.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
        }
        out.push_str(match name.as_str() {
            "__rate_interval" | "__interval" | "__range" => "5m",
            _ => ".*",
        });
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets, and the series selectors of
/// `label_values(SELECTOR, LABEL)` variable queries. (where, expression)
pub fn dashboard_expressions(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without expr: {t}"));
                out.push((
                    format!("panel {title:?} target {}", t["refId"]),
                    expr.to_owned(),
                ));
            }
            walk(&p["panels"], out);
        }
    }
    walk(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?");
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name}: no query"));
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: only label_values(...) is supported: {q}"));
        // label_values(LABEL) has no selector; label_values(SELECTOR, LABEL) has one.
        if let Some(comma) = last_top_level_comma(inner) {
            out.push((format!("variable {name}"), inner[..comma].trim().to_owned()));
        }
    }
    out
}

pub fn last_top_level_comma(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut in_string = false;
    let mut last = None;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '{' | '(' | '[' if !in_string => depth += 1,
            '}' | ')' | ']' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => last = Some(i),
            _ => {}
        }
    }
    last
}

// ------------------------------------------------------------------------------------------
// Metric names: what the expressions use, what the binaries export

/// Names of the metrics a PromQL expression selects. A small scanner, right for the
/// expressions we write: strings, label matchers `{...}`, ranges `[...]`, numbers, durations
/// and Grafana variables are skipped; an identifier followed by `(` is a function or an
/// aggregation; `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` are followed
/// by label lists; the other keywords (`and`, `or`, `unless`, `bool`, `offset`, `inf`, `nan`)
/// are not metrics. What remains is in metric position. `{__name__=...}` selectors are
/// refused rather than half understood.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    let s: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Index after the bracketed group opening at `i` (which holds `open`), skipping strings.
    let skip_group = |mut i: usize, open: char, close: char| -> Result<usize, String> {
        let mut depth = 0;
        while i < s.len() {
            match s[i] {
                '"' | '\'' | '`' => i = skip_string(&s, i)?,
                c if c == open => {
                    depth += 1;
                    i += 1;
                }
                c if c == close => {
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                _ => i += 1,
            }
        }
        Err(format!("unbalanced {open}{close} in {expr:?}"))
    };
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i)?;
        } else if c == '{' {
            let end = skip_group(i, '{', '}')?;
            let matchers: String = s[i..end].iter().collect();
            if matchers.contains("__name__") {
                return Err(format!(
                    "{{__name__=...}} selectors are not supported: {expr:?}"
                ));
            }
            i = end;
        } else if c == '[' {
            i = skip_group(i, '[', ']')?;
        } else if c == '$' {
            i += 1;
            if i < s.len() && s[i] == '{' {
                i = skip_group(i, '{', '}')?;
            } else {
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers (1e12, 0x1f, 0.95) and durations (5m, 1h30m).
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.' || s[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_' || s[i] == ':') {
                i += 1;
            }
            let ident: String = s[start..i].iter().collect();
            let lower = ident.to_ascii_lowercase();
            let mut j = i;
            while j < s.len() && s[j].is_whitespace() {
                j += 1;
            }
            let next = s.get(j).copied();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if next == Some('(') {
                    i = skip_group(j, '(', ')')?;
                }
            } else if KEYWORDS.contains(&lower.as_str())
                || next == Some('(')
                || followed_by_label_list(&s[j..])
            {
                // an operator, a function, or an aggregation (`sum(`, `sum by (...) (`)
            } else {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

/// Whether `rest` starts with `by` or `without` (an aggregation's modifier before its
/// parenthesised argument).
pub fn followed_by_label_list(rest: &[char]) -> bool {
    let word: String = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .collect();
    let word = word.to_ascii_lowercase();
    word == "by" || word == "without"
}

/// Index after the string literal opening at `i`.
pub fn skip_string(s: &[char], i: usize) -> Result<usize, String> {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() {
        if s[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if s[j] == quote {
            return Ok(j + 1);
        }
        j += 1;
    }
    Err("unterminated string".to_owned())
}
