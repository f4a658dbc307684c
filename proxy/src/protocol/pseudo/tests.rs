//! Unit tests of pseudo.rs: x/mod's own pseudo_test.go tables, the calendar, and the
//! go command's checks; `tests/pseudo_reference.rs` compares many more cases with x/mod.

use super::*;

/// 2006-01-02T15:04:05Z, x/mod's test time.
fn pseudo_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_136_214_245)
}

/// x/mod's `pseudoTests`: (major, older, version).
const PSEUDO_TESTS: &[(&str, &str, &str)] = &[
    ("", "", "v0.0.0-20060102150405-hash"),
    ("v0", "", "v0.0.0-20060102150405-hash"),
    ("v1", "", "v1.0.0-20060102150405-hash"),
    ("v2", "", "v2.0.0-20060102150405-hash"),
    ("unused", "v0.0.0", "v0.0.1-0.20060102150405-hash"),
    ("unused", "v1.2.3", "v1.2.4-0.20060102150405-hash"),
    (
        "unused",
        "v1.2.99999999999999999",
        "v1.2.100000000000000000-0.20060102150405-hash",
    ),
    ("unused", "v1.2.3-pre", "v1.2.3-pre.0.20060102150405-hash"),
    ("unused", "v1.3.0-pre", "v1.3.0-pre.0.20060102150405-hash"),
    ("unused", "v0.0.0--", "v0.0.0--.0.20060102150405-hash"),
    (
        "unused",
        "v1.0.0+metadata",
        "v1.0.1-0.20060102150405-hash+metadata",
    ),
    (
        "unused",
        "v2.0.0+incompatible",
        "v2.0.1-0.20060102150405-hash+incompatible",
    ),
    (
        "unused",
        "v2.3.0-pre+incompatible",
        "v2.3.0-pre.0.20060102150405-hash+incompatible",
    ),
];

#[test]
fn x_mod_pseudo_tests() {
    for &(major, older, version) in PSEUDO_TESTS {
        assert_eq!(pseudo_version(major, older, pseudo_time(), "hash"), version);
        assert!(is_pseudo_version(version), "{version}");
        assert!(!is_pseudo_version(older), "{older}");
        assert_eq!(pseudo_version_time(version), Ok(pseudo_time()), "{version}");
        assert!(pseudo_version_time(older).is_err(), "{older}");
        assert_eq!(pseudo_version_rev(version), Ok("hash"));
        assert!(pseudo_version_rev(older).is_err());
        let base = pseudo_version_base(version).unwrap();
        assert_eq!(base.as_deref().unwrap_or(""), older, "{version}");
    }
    assert!(pseudo_version_time("---").is_err());
}

#[test]
fn x_mod_invalid_bases() {
    for v in [
        "v0.0.0",
        "v0.0.0-",
        "v0.0.0-0.20060102150405-hash",
        "v0.1.0-0.20060102150405-hash",
        "v1.0.0-0.20060102150405-hash",
        "v0.0.0-20060102150405-hash+incompatible",
        "v0.0.0-20060102150405-hash+metadata",
    ] {
        assert!(pseudo_version_base(v).is_err(), "{v}");
    }
    assert_eq!(
        pseudo_version_base("v1.0.0-0.20060102150405-hash")
            .unwrap_err()
            .to_string(),
        "pseudo-version \"v1.0.0-0.20060102150405-hash\" invalid: version before v1.0.0 would \
         have negative patch number"
    );
}

#[test]
fn decimals() {
    for (x, y) in [
        ("0", "1"),
        ("1", "2"),
        ("99", "100"),
        ("100", "101"),
        ("101", "102"),
    ] {
        assert_eq!(inc_decimal(x), y);
    }
    for (x, y) in [
        ("", None),
        ("0", None),
        ("00", None),
        ("1", Some("0")),
        ("2", Some("1")),
        ("99", Some("98")),
        ("100", Some("99")),
        ("101", Some("100")),
        ("10", Some("9")),
    ] {
        assert_eq!(dec_decimal(x).as_deref(), y, "{x:?}");
    }
}

#[test]
fn zero_pseudo_versions() {
    assert_eq!(
        zero_pseudo_version("v2"),
        "v2.0.0-00010101000000-000000000000"
    );
    assert_eq!(
        zero_pseudo_version(""),
        "v0.0.0-00010101000000-000000000000"
    );
    assert!(is_zero_pseudo_version("v0.0.0-00010101000000-000000000000"));
    assert!(is_zero_pseudo_version("v3.0.0-00010101000000-000000000000"));
    assert!(!is_zero_pseudo_version(
        "v3.0.0-00010101000000-000000000001"
    ));
    assert!(!is_zero_pseudo_version("v3.0.0"));
}

#[test]
fn the_calendar_round_trips() {
    for secs in [
        0i128,
        -1,
        1,
        951_782_400, // 2000-02-29
        -62_135_596_800,
        -62_167_219_200, // 0000-01-01
        253_402_300_799, // 9999-12-31T23:59:59
        1_136_214_245,
    ] {
        let t = from_unix_seconds(secs).unwrap();
        let ts = format_timestamp(t);
        assert_eq!(parse_timestamp(&ts), Some(t), "{secs} {ts}");
    }
    assert_eq!(format_timestamp(pseudo_time()), "20060102150405");
    assert_eq!(format_timestamp(go_zero_time()), "00010101000000");
    assert_eq!(
        format_timestamp(UNIX_EPOCH - Duration::from_millis(500)),
        "19691231235959"
    );
    assert_eq!(
        format_timestamp(from_unix_seconds(253_402_300_800).unwrap()),
        "100000101000000"
    );
    assert_eq!(
        format_timestamp(from_unix_seconds(-62_167_219_201).unwrap()),
        "-00011231235959"
    );
    for bad in [
        "20060002150405",
        "20061302150405",
        "20060100150405",
        "20060132150405",
        "20060431150405",
        "20060229150405",
        "19000229150405",
        "20060102240405",
        "20060102156005",
        "20060102150460",
        "2006010215040",
    ] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
    }
    assert!(parse_timestamp("20000229000000").is_some());
    assert!(parse_timestamp("00000229000000").is_some());
}

#[test]
fn path_major_prefixes() {
    for (suffix, want) in [
        ("", Some("")),
        ("/v2", Some("v2")),
        ("/v10", Some("v10")),
        (".v1", Some("v1")),
        (".v0", Some("v0")),
        (".v1-unstable", Some("v1")),
        ("/v2-unstable", None),
        ("v2", None),
        ("/v2.1", None),
    ] {
        assert_eq!(path_major_prefix(suffix), want, "{suffix:?}");
    }
}

fn commit<'a>(tags: &'a [String]) -> PseudoCommit<'a> {
    PseudoCommit {
        module: "example.com/m",
        pseudo_major: "",
        tag_prefix: "",
        short: "abcdefabcdef",
        time: pseudo_time() + Duration::from_millis(700),
        tags,
    }
}

#[test]
fn the_go_commands_checks_of_a_requested_pseudo_version() {
    let none = [];
    let c = commit(&none);
    assert_eq!(
        validate_pseudo_version("v0.0.0-20060102150405-abcdefabcdef", &c),
        Ok(None)
    );
    assert_eq!(
        validate_pseudo_version("v1.2.4-0.20060102150405-abcdefabcdef", &c),
        Ok(Some("v1.2.3".into()))
    );
    assert_eq!(
        validate_pseudo_version("v2.2.4-0.20060102150405-abcdefabcdef+incompatible", &c),
        Ok(Some("v2.2.3".into()))
    );
    let err = |v: &str, c: &PseudoCommit| validate_pseudo_version(v, c).unwrap_err().to_string();
    assert_eq!(
        err("v0.0.0-20060102150405-abcdefabcdef0", &c),
        "example.com/m@v0.0.0-20060102150405-abcdefabcdef0: invalid pseudo-version: revision \
         is longer than canonical (expected abcdefabcdef)"
    );
    assert!(err("v0.0.0-20060102150405-abcdef", &c).contains("shorter than canonical"));
    assert!(err("v0.0.0-20060102150405-000000000000", &c).contains("does not match short name"));
    assert_eq!(
        err("v0.0.0-20060102150406-abcdefabcdef", &c),
        "example.com/m@v0.0.0-20060102150406-abcdefabcdef: invalid pseudo-version: does not \
         match version-control timestamp (expected 20060102150405)"
    );
    assert!(err("v1.0.0-20060102150405-abcdefabcdef", &c).contains("must be v0, not v1"));
    assert!(err("v1.2.3", &c).ends_with("invalid pseudo-version: syntax error"));
    // +incompatible is trimmed before the base is taken (other build metadata is not).
    assert_eq!(
        validate_pseudo_version("v2.0.0-20060102150405-abcdefabcdef+incompatible", &c),
        Ok(None)
    );
    assert_eq!(
        err("v0.0.0-20060102150405-abcdefabcdef+meta", &c),
        "example.com/m@v0.0.0-20060102150405-abcdefabcdef+meta: invalid pseudo-version: lacks \
         base version, but has build metadata \"+meta\""
    );
    let v2 = PseudoCommit {
        pseudo_major: "v2",
        ..c.clone()
    };
    assert_eq!(
        validate_pseudo_version("v1.0.0-20060102150405-abcdefabcdef", &v2),
        Ok(None)
    );
    let tags = ["sub/v1.2.3".to_string()];
    let tagged = PseudoCommit {
        tag_prefix: "sub/",
        ..commit(&tags)
    };
    assert!(
        err("v1.2.4-0.20060102150405-abcdefabcdef", &tagged)
            .contains("tag (sub/v1.2.3) found on revision abcdefabcdef is already canonical")
    );
    assert_eq!(
        validate_pseudo_version("v1.2.3-pre.0.20060102150405-abcdefabcdef", &tagged),
        Ok(Some("v1.2.3-pre".into()))
    );
}

#[test]
fn pseudo_version_table() {
    for (ver, pseudo) in [
        ("v0.0.0-20191109021931-daa7c04131f5", true),
        ("v1.0.0-20191109021931-daa7c04131f5", true),
        ("v2.0.0-20191109021931-daa7c04131f5", true),
        ("v3.0.0-20191109021931-daa7c04131f5+incompatible", true),
        ("v1.1.0-20191109021931-daa7c04131f5", false),
        ("v0.0.0-20191109021931-daa7c04131f5+incompatible", true),
        ("v1.2.3-pre.0.20191109021931-daa7c04131f5", true),
        ("v1.2.3-pre.x.0.20191109021931-daa7c04131f5", true),
        ("v1.2.4-0.20191109021931-daa7c04131f5", true),
        ("v1.2.4-0.20191109021931-daa7c04131f5+incompatible", true),
        ("v2.0.0-0.20191109021931-daa7c04131f5", true),
        ("v0.0.0-2019110902193-daa7c04131f5", false), // 13 digits
        ("v0.0.0-201911090219310-daa7c04131f5", false), // 15 digits
        ("v0.0.0-20191109021931-", false),
        ("v0.0.0-20191109021931-daa7_04131f5", false),
        ("v1.2.4-1.20191109021931-daa7c04131f5", false),
        ("v1.2.4-pre.20191109021931-daa7c04131f5", false),
        ("v1.2.3", false),
        ("v1.2.3-pre", false),
        ("v1.2.3-a-b", false),
        ("v0.0.0-20191109021931-daa7c04131f5-x", false),
        ("v00.0.0-20191109021931-daa7c04131f5", false),
        ("v0.0-20191109021931-daa7c04131f5", false),
        ("", false),
    ] {
        assert_eq!(is_pseudo_version(ver), pseudo, "{ver:?}");
    }
}
