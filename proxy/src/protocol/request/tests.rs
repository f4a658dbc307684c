//! Tests of request parsing: tables from the protocol and x/mod, and property tests.

use super::*;
use crate::protocol::{TileLevel, escape_path, escape_version, unescape_path};
use http::StatusCode;
use proptest::prelude::*;

pub(crate) fn parse_ok(path: &str) -> Request {
    match Request::parse(path) {
        Ok(r) => r,
        Err(e) => panic!("parse({path:?}) failed: {e}"),
    }
}

pub(crate) fn parse_err(path: &str) -> ProtocolError {
    match Request::parse(path) {
        Ok(r) => panic!("parse({path:?}) = {r:?}, want error"),
        Err(e) => {
            assert!(!e.message.contains(['\n', '\r']), "multi-line: {e:?}");
            assert!(
                e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::NOT_FOUND,
                "{e:?}"
            );
            e
        }
    }
}

pub(crate) fn m(p: &str) -> ModulePath {
    ModulePath::parse(p).unwrap()
}

pub(crate) fn v(module: &str, version: &str) -> Version {
    Version::parse(&m(module), version).unwrap()
}

// From x/mod module_test.go checkPathTests: (path, CheckPath ok).
#[test]
fn routes() {
    let text = m("golang.org/x/text");
    assert_eq!(
        parse_ok("/golang.org/x/text/@v/list"),
        Request::List {
            module: text.clone()
        }
    );
    assert_eq!(
        parse_ok("/golang.org/x/text/@latest"),
        Request::Latest {
            module: text.clone()
        }
    );
    assert_eq!(
        parse_ok("/golang.org/x/text/@v/v0.3.0.info"),
        Request::Info {
            module: text.clone(),
            version: VersionQuery::Canonical(v("golang.org/x/text", "v0.3.0")),
        }
    );
    assert_eq!(
        parse_ok("/golang.org/x/text/@v/v0.3.0.mod"),
        Request::Mod {
            module: text.clone(),
            version: v("golang.org/x/text", "v0.3.0"),
        }
    );
    let zip = parse_ok("/github.com/!burnt!sushi/toml/@v/v1.2.0.zip");
    assert_eq!(
        zip,
        Request::Zip {
            module: m("github.com/BurntSushi/toml"),
            version: v("github.com/BurntSushi/toml", "v1.2.0"),
        }
    );
    assert_eq!(
        zip.escaped_path(),
        "github.com/!burnt!sushi/toml/@v/v1.2.0.zip"
    );
    assert_eq!(zip.route(), Route::Zip);
    assert!(zip.is_immutable());
    assert_eq!(zip.module().unwrap().as_str(), "github.com/BurntSushi/toml");

    for (query, want) in [
        ("master", "master"),
        ("v1.2", "v1.2"),
        ("latest", "latest"),
        ("daa7c04131f5", "daa7c04131f5"),
        ("!feature-!x", "Feature-X"),
        ("v1.2.3+meta", "v1.2.3+meta"),
        ("release~1_2", "release~1_2"),
    ] {
        let r = parse_ok(&format!("/golang.org/x/text/@v/{query}.info"));
        assert_eq!(
            r,
            Request::Info {
                module: text.clone(),
                version: VersionQuery::Query(want.into()),
            }
        );
        assert!(!r.is_immutable());
        assert_eq!(
            r.escaped_path(),
            format!("golang.org/x/text/@v/{query}.info")
        );
    }

    // Uppercase in version, escaped.
    let r = parse_ok("/example.com/m/@v/v1.0.0-!r!c1.mod");
    assert_eq!(
        r,
        Request::Mod {
            module: m("example.com/m"),
            version: v("example.com/m", "v1.0.0-RC1"),
        }
    );
    assert_eq!(r.escaped_path(), "example.com/m/@v/v1.0.0-!r!c1.mod");

    // Percent-encoded but harmless characters decode.
    assert_eq!(
        parse_ok("/golang%2eorg/x/text/@v/v0.3.0%2Ezip"),
        parse_ok("/golang.org/x/text/@v/v0.3.0.zip")
    );

    let routes = [
        ("/golang.org/x/text/@v/list", Route::List, "list", false),
        ("/golang.org/x/text/@latest", Route::Latest, "latest", false),
        (
            "/golang.org/x/text/@v/v0.3.0.info",
            Route::Info,
            "info",
            true,
        ),
        ("/golang.org/x/text/@v/v0.3.0.mod", Route::Mod, "mod", true),
        ("/golang.org/x/text/@v/v0.3.0.zip", Route::Zip, "zip", true),
        (
            "/sumdb/sum.golang.org/supported",
            Route::Sumdb,
            "sumdb",
            false,
        ),
    ];
    for (path, route, label, immutable) in routes {
        let r = parse_ok(path);
        assert_eq!(r.route(), route);
        assert_eq!(r.route().as_str(), label);
        assert_eq!(r.is_immutable(), immutable, "{path}");
        assert_eq!(format!("/{}", r.escaped_path()), path);
    }
}

#[test]
fn not_found_shapes() {
    for path in [
        "/",
        "/foo",
        "/x/@v/",
        "/x/@v/v1.0.0.tar",
        "/golang.org/x/text",
        "/golang.org/x/text/",
        "/golang.org/x/text/@v",
        "/golang.org/x/text/@v/list/",
        "/golang.org/x/text/@v/lists",
        "/golang.org/x/text/@v/.info",
        "/golang.org/x/text/@v/.zip",
        "/golang.org/x/text/@v/v1.0.0",
        "/golang.org/x/text/@v/v1.0.0.zip/extra",
        "/golang.org/x/text/@latest/x",
        "/golang.org/x/text/@v/v1.0.0.ZIP",
        "/@v/list",
        "/@latest",
        "/golang.org/x/text/@V/list",
    ] {
        let e = parse_err(path);
        assert_eq!(e.status, StatusCode::NOT_FOUND, "{path}: {e}");
        assert!(e.message.starts_with("not found: "), "{e}");
    }
}

#[test]
fn bad_requests() {
    for path in [
        // Module path problems.
        "/x/@v/list",
        "/github.com/Foo/bar/@v/list",
        "/github.com/!!foo/bar/@v/list",
        "/github.com/foo!/bar/@v/list",
        "/github.com/!0/bar/@v/list",
        "/GitHub.com/foo/@v/list",
        "/example.com/m/v1/@v/list",
        "/example.com/a@b/@v/list",
        "/example.com/m@v1.0.0/@v/list",
        "/example.com/m/@v1/@v/list",
        "/example.com/con/@v/list",
        "/example.com/m~1/@latest",
        "/example.com/.hidden/@latest",
        "/example.com/m./@latest",
        "/example.com/m%20x/@latest",
        "/example.com/m%25/@latest",
        "/example.com/%c3%a9/@latest",
        "/example.com/é/@latest",
        // Version problems.
        "/example.com/m/@v/v1.2.mod",
        "/example.com/m/@v/master.zip",
        "/example.com/m/@v/v2.0.0.zip",
        "/example.com/m/@v/v2.0.0.info",
        "/example.com/m/@v/v1.0.0+incompatible.mod",
        "/example.com/m/v2/@v/v2.0.0+incompatible.mod",
        "/example.com/m/@v/V1.0.0.mod",
        "/example.com/m/@v/v1.0.0-RC1.mod",
        "/example.com/m/@v/v1.0.0-!.mod",
        "/example.com/m/@v/v1.2.3+meta.zip",
        "/example.com/m/@v/-x.info",
        "/example.com/m/@v/x..info",
        "/example.com/m/@v/a%40b.info",
        "/example.com/m/@v/a=b.info",
        "/example.com/m/@v/a%20b.info",
        // Query length.
        &format!("/example.com/m/@v/{}.info", "a".repeat(129)),
    ] {
        let e = parse_err(path);
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{path}: {e}");
    }
    let e = parse_err("/github.com/Foo/bar/@v/list");
    assert_eq!(
        e.message,
        "invalid escaped module path \"github.com/Foo/bar\": \
         uppercase letters must be escaped as '!' + lowercase"
    );
    let e = parse_err("/example.com/m/@v/v1.2.zip");
    assert!(e.message.contains("did you mean \"v1.2.0\""), "{e}");
    let ok_query = format!("/example.com/m/@v/{}.info", "a".repeat(128));
    parse_ok(&ok_query);
}

#[test]
fn traversal_attempts() {
    let long_2000 = format!("/example.com/{}/@v/list", "a".repeat(2000));
    let long_many = format!("/example.com{}/@v/list", "/ab".repeat(700));
    let long_encoded = format!("/example.com/{}/@v/list", "%61".repeat(1100));
    let long_raw = "/".to_string() + &"%2e".repeat(2000);
    for path in [
        "/../../etc/passwd",
        "/..",
        "/.",
        "/./golang.org/x/text/@v/list",
        "/%2e%2e/x/@v/list",
        "/%2E%2E/%2e%2e/etc/passwd",
        "/golang.org/x/text/@v/..%2f..%2fsecret.zip",
        "/golang.org/x/text/@v/..%2F..%2Fsecret.zip",
        "/golang.org%2fx%2ftext/@v/list",
        "/golang.org/x/../../text/@v/list",
        "/golang.org/x/text/@v/../../../etc/passwd.zip",
        "/golang.org/x/text/@v/%2e%2e.zip",
        "/golang.org/x/text/@v/v1.0.0.zip%00",
        "/golang.org/x/text%00/@v/list",
        "/golang.org/x/text/@v/list%0a",
        "/golang.org/x/text/@v/list%0d%0aX-Injected: 1",
        "/golang.org/x/text/@v/\u{7f}.zip",
        "/golang.org\\x\\text/@v/list",
        "/golang.org/x/text/@v/..\\..\\secret.zip",
        "/golang.org/x/text%5c..%5c/@v/list",
        "//etc/passwd",
        "///etc/passwd",
        "//golang.org/x/text/@v/list",
        "/golang.org//x/text/@v/list",
        "/golang.org/x/text/@v//list",
        "/sumdb/sum.golang.org/../../etc/passwd",
        "/sumdb/sum.golang.org/lookup/../../x@v1.0.0",
        "/sumdb/%2e%2e/latest",
        "/golang.org/x/text/@v/v1.0.0.zip%",
        "/golang.org/x/text/@v/v1.0.0.zip%2",
        "/golang.org/x/text/@v/v1.0.0.zip%zz",
        "/golang.org/x/text/@v/v1.0.0.zip%%30",
        "golang.org/x/text/@v/list",
        "",
        &long_2000,
        &long_many,
        &long_encoded,
        &long_raw,
    ] {
        let e = parse_err(path);
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{path:?}: {e}");
        assert!(e.message.len() < 600, "message too long for {path:?}");
    }
    let e = parse_err("/golang.org/x/text%00/@v/list");
    assert!(e.message.contains("\\0"), "{e}");
}

#[test]
fn filter_list_table() {
    let body = "v1.0.0\nv1.1.0 2019-01-01T00:00:00Z\r\n\nv1.0.0\nmaster\nv1.2\n\
                v0.0.0-20191109021931-daa7c04131f5\nv2.0.0+incompatible\nv1.3.0+meta\n  v1.4.0-rc.1  \n\
                v1.2.4-0.20191109021931-daa7c04131f5\nv01.0.0\n";
    assert_eq!(
        filter_list(body),
        "v1.0.0\nv1.1.0\nv2.0.0+incompatible\nv1.4.0-rc.1\n"
    );
    assert_eq!(filter_list(""), "");
    assert_eq!(filter_list("\n\n"), "");
}

#[test]
fn error_messages_are_one_line_and_quoted() {
    let e = parse_err("/example.com/m/@v/a%0Ab.info");
    assert!(e.message.contains("\\n"), "{e}");
    let e = ModulePath::parse("example.com/a\nb").unwrap_err();
    assert!(!e.message.contains('\n'));
    assert!(e.message.contains("\\n"), "{e}");
    let e = ProtocolError::bad_request("a\nb\rc");
    assert_eq!(e.message, "a b c");
    assert_eq!(e.to_string(), "a b c");
}

#[test]
fn display_and_accessors() {
    let module = m("github.com/BurntSushi/toml");
    assert_eq!(module.to_string(), "github.com/BurntSushi/toml");
    assert_eq!(module.escaped(), "github.com/!burnt!sushi/toml");
    assert_eq!(m("example.com/m/v3").path_major(), "/v3");
    assert_eq!(m("gopkg.in/yaml.v2").path_major(), ".v2");
    let ver = v("example.com/m", "v1.0.0-RC1");
    assert_eq!(ver.to_string(), "v1.0.0-RC1");
    assert_eq!(ver.as_str(), "v1.0.0-RC1");
    assert_eq!(ver.escaped(), "v1.0.0-!r!c1");
    let q = VersionQuery::Query("Main".into());
    assert_eq!(q.escaped(), "!main");
    assert_eq!(q.to_string(), "Main");
    assert_eq!(VersionQuery::Canonical(ver).escaped(), "v1.0.0-!r!c1");
    assert_eq!(Route::Sumdb.to_string(), "sumdb");
}

// ------------------------------------------------------------------
// Property tests
// ------------------------------------------------------------------

fn module_path_strategy() -> impl Strategy<Value = ModulePath> {
    (
        "[a-z0-9][a-z0-9-]{0,8}\\.[a-z]{2,4}",
        prop::collection::vec("[A-Za-z0-9_~][A-Za-z0-9._~-]{0,8}[A-Za-z0-9_~-]?", 0..4),
        prop::option::of(2u32..30),
    )
        .prop_filter_map("valid module path", |(host, elems, major)| {
            let mut p = host;
            for e in elems {
                p.push('/');
                p.push_str(&e);
            }
            if let Some(n) = major {
                p.push_str(&format!("/v{n}"));
            }
            ModulePath::parse(&p).ok()
        })
}

fn gopkg_in_strategy() -> impl Strategy<Value = ModulePath> {
    ("[a-z][a-z0-9]{0,8}", 0u32..5, any::<bool>()).prop_filter_map(
        "valid gopkg.in path",
        |(name, n, unstable)| {
            let suffix = if unstable { "-unstable" } else { "" };
            ModulePath::parse(&format!("gopkg.in/{name}.v{n}{suffix}")).ok()
        },
    )
}

fn version_string_strategy() -> BoxedStrategy<String> {
    let num = prop_oneof![Just(0u64), 1u64..5, 0u64..1_000_000];
    let pre = prop::option::of("-[0-9A-Za-z-]{1,6}(\\.[0-9A-Za-z-]{1,6}){0,2}");
    let build = prop_oneof![
        Just(String::new()),
        Just("+incompatible".to_string()),
        "\\+[0-9A-Za-z-]{1,6}",
    ];
    let pseudo = (
        0u64..5,
        "[0-9]{14}",
        "[0-9a-f]{12}",
        prop_oneof![Just(""), Just("+incompatible")],
    )
        .prop_map(|(major, ts, rev, b)| format!("v{major}.0.0-{ts}-{rev}{b}"));
    let pseudo_pre = (0u64..5, 0u64..9, 0u64..9, "[0-9]{14}", "[0-9a-f]{12}")
        .prop_map(|(a, b, c, ts, rev)| format!("v{a}.{b}.{c}-0.{ts}-{rev}"));
    prop_oneof![
        (num.clone(), num.clone(), num, pre, build).prop_map(|(a, b, c, pre, build)| {
            format!("v{a}.{b}.{c}{}{build}", pre.unwrap_or_default())
        }),
        pseudo,
        pseudo_pre,
        "v[0-9]{1,3}(\\.[0-9]{1,3})?",
    ]
    .boxed()
}

/// Rewrites the major version (and `+incompatible`) of a generated
/// version so that it suits `module`, to keep rejections rare.
fn fit_major(module: &ModulePath, ver: &str) -> String {
    let Some(rest) = ver.strip_prefix('v') else {
        return ver.to_string();
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (major, rest) = rest.split_at(digits);
    let major: u64 = major.parse().unwrap_or(0);
    let path_major = module.path_major();
    let wanted = path_major
        .trim_start_matches(['/', '.'])
        .trim_start_matches('v')
        .trim_end_matches("-unstable");
    if wanted.is_empty() {
        if rest.ends_with("+incompatible") {
            format!("v{}{rest}", major.max(2))
        } else {
            format!("v{}{rest}", major % 2)
        }
    } else {
        format!("v{wanted}{}", rest.trim_end_matches("+incompatible"))
    }
}

fn module_and_version() -> impl Strategy<Value = (ModulePath, Version)> {
    (
        prop_oneof![module_path_strategy(), gopkg_in_strategy()],
        version_string_strategy(),
    )
        .prop_filter_map("valid version for module", |(module, ver)| {
            let version = Version::parse(&module, &fit_major(&module, &ver)).ok()?;
            Some((module, version))
        })
}

/// Checks the round-trip and safety properties of a successful parse.
fn check_round_trip(req: &Request) {
    let p = req.escaped_path();
    assert!(!p.starts_with('/'), "absolute: {p:?}");
    assert!(
        !p.contains('\\') && !p.contains('\0') && !p.contains('%'),
        "{p:?}"
    );
    assert!(
        p.split('/').all(|e| !e.is_empty() && e != "." && e != ".."),
        "bad element in {p:?}"
    );
    let again = Request::parse(&format!("/{p}"))
        .unwrap_or_else(|e| panic!("escaped path {p:?} does not re-parse: {e}"));
    assert_eq!(&again, req);
    assert_eq!(again.escaped_path(), p);
}

/// Concatenations of protocol-ish pieces: mostly invalid paths.
fn random_pieces_strategy() -> BoxedStrategy<String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("%".to_string()),
        Just("!".to_string()),
        Just("@".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("@v".to_string()),
        Just("@latest".to_string()),
        Just("list".to_string()),
        Just(".info".to_string()),
        Just(".mod".to_string()),
        Just(".zip".to_string()),
        Just("sumdb".to_string()),
        Just("sum.golang.org".to_string()),
        Just("lookup".to_string()),
        Just("tile".to_string()),
        Just(".p".to_string()),
        Just("x001".to_string()),
        Just("%2e".to_string()),
        Just("%2f".to_string()),
        Just("%00".to_string()),
        Just("\\".to_string()),
        Just("example.com".to_string()),
        Just("v1.0.0".to_string()),
        Just("v2.0.0+incompatible".to_string()),
        "[a-zA-Z0-9._~+-]{1,6}",
        "%[0-9a-fA-F]{2}",
        ".",
    ];
    prop::collection::vec(piece.boxed(), 0..16)
        .prop_map(|v| v.concat())
        .boxed()
}

/// Route-shaped paths, many of them valid.
fn structured_path_strategy() -> BoxedStrategy<String> {
    let module = prop_oneof![
        Just("example.com/m".to_string()),
        Just("github.com/!burnt!sushi/toml".to_string()),
        Just("gopkg.in/yaml.v2".to_string()),
        Just("gopkg.in/check.v1".to_string()),
        Just("example.com/m/v2".to_string()),
        "[a-z0-9-]{1,5}\\.[a-z]{2,3}(/[a-z0-9!._~-]{1,6}){0,3}",
    ]
    .boxed();
    let version = prop_oneof![
        version_string_strategy().prop_map(|v| escape_string(&v)),
        "[a-z0-9!._+~-]{1,10}",
    ]
    .boxed();
    let ext = prop_oneof![Just("info"), Just("mod"), Just("zip")];
    let tile_part = prop_oneof![
        "[0-9]{3}",
        "x[0-9]{3}",
        "[0-9]{3}\\.p/[0-9]{1,3}",
        "[0-9]{1,4}",
    ];
    let sumdb = prop_oneof![
        Just("supported".to_string()),
        Just("latest".to_string()),
        (module.clone(), version.clone()).prop_map(|(m, v)| format!("lookup/{m}@{v}")),
        (
            prop_oneof![Just("8".to_string()), "[0-9]{1,2}"],
            prop_oneof![Just("data".to_string()), "[0-9]{1,3}"],
            prop::collection::vec(tile_part, 1..4),
        )
            .prop_map(|(h, l, parts)| format!("tile/{h}/{l}/{}", parts.join("/"))),
    ]
    .boxed();
    prop_oneof![
        module.clone().prop_map(|m| format!("{m}/@v/list")),
        module.clone().prop_map(|m| format!("{m}/@latest")),
        (module, version, ext).prop_map(|(m, v, e)| format!("{m}/@v/{v}.{e}")),
        (
            prop_oneof![Just("sum.golang.org"), Just("sum.example-db.org")],
            sumdb
        )
            .prop_map(|(n, p)| format!("sumdb/{n}/{p}")),
    ]
    .boxed()
}

/// Structured paths, random pieces, and structured paths with a random
/// piece spliced in.
fn arbitrary_path_strategy() -> BoxedStrategy<String> {
    prop_oneof![
        3 => structured_path_strategy(),
        1 => random_pieces_strategy(),
        2 => (structured_path_strategy(), random_pieces_strategy(), any::<prop::sample::Index>())
            .prop_map(|(s, piece, at)| {
                let i = at.index(s.len() + 1);
                format!("{}{piece}{}", &s[..i], &s[i..])
            }),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_path_escape_round_trip(module in prop_oneof![module_path_strategy(), gopkg_in_strategy()]) {
        let esc = escape_path(module.as_str()).unwrap();
        prop_assert_eq!(&esc, &module.escaped());
        prop_assert!(!esc.bytes().any(|b| b.is_ascii_uppercase()));
        prop_assert_eq!(unescape_path(&esc).unwrap(), module.as_str());
        prop_assert_eq!(ModulePath::from_escaped(&esc).unwrap(), module);
    }

    #[test]
    fn prop_version_escape_round_trip((module, version) in module_and_version()) {
        let esc = escape_version(version.as_str()).unwrap();
        prop_assert_eq!(&esc, &version.escaped());
        prop_assert!(!esc.bytes().any(|b| b.is_ascii_uppercase()));
        prop_assert_eq!(unescape_version(&esc).unwrap(), version.as_str());
        prop_assert_eq!(Version::from_escaped(&module, &esc).unwrap(), version);
    }

    #[test]
    fn prop_valid_requests_round_trip((module, version) in module_and_version(), kind in 0u8..6) {
        let req = match kind {
            0 => Request::List { module },
            1 => Request::Latest { module },
            2 => Request::Info { module, version: VersionQuery::Canonical(version) },
            3 => Request::Mod { module, version },
            4 => Request::Zip { module, version },
            _ => Request::Sumdb {
                name: "sum.golang.org".into(),
                path: SumdbPath::Lookup { module, version },
            },
        };
        check_round_trip(&req);
    }

    #[test]
    fn prop_tiles_round_trip(
        height in 1u8..=30,
        level in prop_oneof![Just(TileLevel::Data), any::<u8>().prop_map(TileLevel::Level)],
        first in 1u16..1000,
        rest in prop::collection::vec(0u16..1000, 0..5),
        w in any::<u16>(),
        has_partial in any::<bool>(),
    ) {
        let mut index = vec![first];
        index.extend(rest);
        if index.len() == 1 && first % 2 == 0 {
            index[0] = 0;
        }
        let full = 1u32 << height;
        let partial = (has_partial && full > 1)
            .then(|| (u32::from(w) % (full - 1)) as u16 + 1);
        let path = SumdbPath::Tile { height, level, index, partial };
        prop_assert_eq!(path.is_immutable(), partial.is_none());
        check_round_trip(&Request::Sumdb { name: "sum.golang.org".into(), path });
    }

    #[test]
    fn prop_parse_never_panics_any_string(s in any::<String>()) {
        let _ = Request::parse(&s);
        let _ = Request::parse(&format!("/{s}"));
    }

    #[test]
    fn prop_parse_never_panics_and_round_trips(s in arbitrary_path_strategy()) {
        let raw = format!("/{s}");
        match Request::parse(&raw) {
            Ok(req) => check_round_trip(&req),
            Err(e) => {
                prop_assert!(e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::NOT_FOUND);
                prop_assert!(!e.message.contains(['\n', '\r']));
            }
        }
    }

    #[test]
    fn prop_module_routes_round_trip(
        module in prop_oneof![module_path_strategy(), gopkg_in_strategy()],
        ver in prop_oneof![version_string_strategy(), "[A-Za-z0-9._+~-]{1,12}"],
        ext in prop_oneof![Just("info"), Just("mod"), Just("zip")],
    ) {
        // Escape whatever we can; parse; any success must round-trip.
        if let Ok(esc_ver) = escape_version(&ver) {
            let raw = format!("/{}/@v/{esc_ver}.{ext}", module.escaped());
            match Request::parse(&raw) {
                Ok(req) => {
                    check_round_trip(&req);
                    prop_assert_eq!(req.escaped_path(), &raw[1..]);
                }
                Err(e) => prop_assert_eq!(e.status, StatusCode::BAD_REQUEST),
            }
        }
    }

    #[test]
    fn prop_filter_list_output_is_canonical(
        lines in prop::collection::vec(prop_oneof![version_string_strategy(), "[ -~]{0,12}"], 0..20)
    ) {
        let body = lines.join("\n");
        let out = filter_list(&body);
        let mut seen = HashSet::new();
        for line in out.lines() {
            prop_assert!(is_canonical_semver(line), "{line:?}");
            prop_assert!(!is_pseudo_version(line), "{line:?}");
            prop_assert!(seen.insert(line.to_string()), "duplicate {line:?}");
        }
        prop_assert_eq!(filter_list(&out), out.clone());
    }
}
