use base64::Engine as _;
use http::HeaderValue;
use http::header::AUTHORIZATION;
use modfleet_contract::access::{TokenLine, parse_tokens_file};

use super::*;

fn tokens() -> TokenSet {
    let lines = [
        TokenLine::for_token("ci", "tok-ci", &["builders".to_string()]),
        TokenLine::for_token("dev", "tok-dev", &[]),
        TokenLine::for_token("ops", "tok-ops", &["ops".to_string()]),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    TokenSet::new(&parse_tokens_file(&text).unwrap()).unwrap()
}

fn rule_set(yaml: &[(&[&str], &[&str])]) -> Vec<Rule> {
    yaml.iter()
        .map(|(modules, allow)| Rule {
            modules: modules
                .iter()
                .map(|m| ModulePattern::parse(m).unwrap())
                .collect(),
            allow: allow.iter().map(|p| p.parse().unwrap()).collect(),
        })
        .collect()
}

/// The README's example: private modules for the builders group, the rest for everyone.
fn example() -> Vec<Rule> {
    rule_set(&[
        (&["git.corp.example.com"], &["group:builders", "ops"]),
        (&["*"], &["anonymous"]),
    ])
}

fn header(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    h
}

fn basic(user: &str, token: &str) -> HeaderMap {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
    header(&format!("Basic {v}"))
}

fn caller(h: &HeaderMap) -> Caller {
    authenticate(&tokens(), h).unwrap()
}

#[test]
fn tokens_authenticate_as_bearer_or_as_basic_with_their_identity() {
    assert_eq!(caller(&HeaderMap::new()).name(), "anonymous");
    assert_eq!(caller(&header("Bearer tok-ci")).name(), "ci");
    assert_eq!(caller(&basic("dev", "tok-dev")).name(), "dev");
    let refused = |h: &HeaderMap| authenticate(&tokens(), h).unwrap_err();
    let r = refused(&basic("ci", "tok-dev"));
    assert_eq!((r.unauthorized, r.reason), (true, "user_mismatch"));
    let r = refused(&header("Bearer tok-nope"));
    assert_eq!((r.unauthorized, r.reason), (true, "unknown_token"));
    let r = refused(&header("Negotiate abc"));
    assert_eq!((r.unauthorized, r.reason), (true, "malformed_credentials"));
    for r in [
        refused(&basic("ci", "tok-dev")),
        refused(&header("Bearer tok-nope")),
    ] {
        assert!(!r.message.contains("tok-"), "{}", r.message);
    }
}

#[test]
fn the_first_matching_rule_decides() {
    let rules = example();
    let ci = caller(&header("Bearer tok-ci"));
    let ops = caller(&header("Bearer tok-ops"));
    let dev = caller(&header("Bearer tok-dev"));
    let anon = Caller::Anonymous;
    let private = Target::Module("git.corp.example.com/team/lib");
    assert!(authorize(&rules, &ci, private).is_ok());
    assert!(authorize(&rules, &ops, private).is_ok());
    let r = authorize(&rules, &dev, private).unwrap_err();
    assert_eq!((r.unauthorized, r.reason), (false, "not_allowed"));
    assert_eq!(
        r.message,
        "identity dev may not fetch module git.corp.example.com/team/lib: no access rule allows it"
    );
    let r = authorize(&rules, &anon, private).unwrap_err();
    assert_eq!((r.unauthorized, r.reason), (true, "missing_credentials"));
    assert!(
        r.message.contains("git.corp.example.com/team/lib"),
        "{}",
        r.message
    );
    // The host alone (the go command asks for path prefixes) is private too.
    assert!(authorize(&rules, &anon, Target::Module("git.corp.example.com")).is_err());
    // Everything else is open, with or without an identity.
    for c in [&anon, &dev, &ci] {
        assert!(authorize(&rules, c, Target::Module("golang.org/x/text")).is_ok());
        assert!(authorize(&rules, c, Target::Other).is_ok());
    }
    // An earlier rule wins over a later one that would allow.
    let rules_first = rule_set(&[
        (&["*"], &["anonymous"]),
        (&["git.corp.example.com"], &["ci"]),
    ]);
    assert!(authorize(&rules_first, &anon, private).is_ok());
}

#[test]
fn no_matching_rule_is_a_refusal_and_other_paths_need_some_rule() {
    let rules = rule_set(&[(&["git.corp.example.com/*"], &["group:builders"])]);
    let ci = caller(&header("Bearer tok-ci"));
    let dev = caller(&header("Bearer tok-dev"));
    let r = authorize(&rules, &ci, Target::Module("golang.org/x/text")).unwrap_err();
    assert_eq!(r.reason, "not_allowed");
    // The checksum database and error pages: whoever some rule admits.
    assert!(authorize(&rules, &ci, Target::Other).is_ok());
    let r = authorize(&rules, &dev, Target::Other).unwrap_err();
    assert_eq!((r.unauthorized, r.reason), (false, "not_allowed"));
    assert_eq!(
        r.message,
        "identity dev may not use this proxy: no access rule allows it"
    );
    let r = authorize(&rules, &Caller::Anonymous, Target::Other).unwrap_err();
    assert!(r.unauthorized);
    // No rules at all: nothing is served.
    assert!(authorize(&[], &ci, Target::Other).is_err());
    // A rule allowing nobody closes its modules.
    let closed = rules_with_empty_allow();
    assert!(authorize(&closed, &ci, Target::Module("secret.example/x")).is_err());
    assert!(authorize(&closed, &ci, Target::Module("other.example/x")).is_ok());
}

fn rules_with_empty_allow() -> Vec<Rule> {
    rule_set(&[(&["secret.example"], &[]), (&["*"], &["authenticated"])])
}

#[test]
fn principals_name_callers() {
    let ci = caller(&header("Bearer tok-ci"));
    for (p, expected) in [
        ("anonymous", true),
        ("authenticated", true),
        ("group:builders", true),
        ("group:ops", false),
        ("ci", true),
        ("dev", false),
    ] {
        assert_eq!(ci.is(&p.parse().unwrap()), expected, "{p}");
    }
    for (p, expected) in [("anonymous", true), ("authenticated", false), ("ci", false)] {
        assert_eq!(Caller::Anonymous.is(&p.parse().unwrap()), expected, "{p}");
    }
}

#[test]
fn the_admin_port_needs_an_admin() {
    let access = Access::new(
        example(),
        vec!["group:ops".parse().unwrap()],
        TokenStore::new(Vec::new()),
    );
    let ops = caller(&header("Bearer tok-ops"));
    let ci = caller(&header("Bearer tok-ci"));
    assert!(access.authorize_admin(&ops).is_ok());
    let r = access.authorize_admin(&ci).unwrap_err();
    assert_eq!((r.unauthorized, r.reason), (false, "not_admin"));
    let r = access.authorize_admin(&Caller::Anonymous).unwrap_err();
    assert_eq!((r.unauthorized, r.reason), (true, "missing_credentials"));
    let nobody = Access::new(example(), Vec::new(), TokenStore::new(Vec::new()));
    assert!(nobody.authorize_admin(&ops).is_err());
}

#[test]
fn identity_labels_are_bounded() {
    let labels = IdentityLabels::default();
    assert_eq!(labels.of("anonymous"), "anonymous");
    for i in 0..MAX_IDENTITY_LABELS {
        assert_eq!(labels.of(&format!("id{i}")), format!("id{i}"));
    }
    assert_eq!(labels.of("late"), OTHER_IDENTITIES);
    assert_eq!(labels.of("id0"), "id0");
    assert_eq!(labels.of("anonymous"), "anonymous");
    assert!(
        modfleet_contract::access::check_name(OTHER_IDENTITIES).is_err(),
        "no identity can be named like the shared label"
    );
}
