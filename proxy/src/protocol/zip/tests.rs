//! Unit tests of the module zip check. The verdicts themselves are held to Go's by
//! `tests/zip_reference.rs`; these pin modfleet's messages, bounds and results.

use modfleet_testkit::zipfile::{Entry, Zip, crc32, deflated_zeros};

use super::*;

const P: &str = "example.com/m@v1.0.0/";

fn f(name: &str, data: impl AsRef<[u8]>) -> Entry {
    Entry::file(format!("{P}{name}"), data)
}

fn check_with(bytes: &[u8], limits: &Limits) -> Result<CheckedZip, ZipError> {
    let module = ModulePath::parse("example.com/m").unwrap();
    let version = Version::parse(&module, "v1.0.0").unwrap();
    check_zip(bytes, bytes.len() as u64, &module, &version, limits)
}

fn check(entries: Vec<Entry>) -> Result<CheckedZip, ZipError> {
    check_with(&Zip::new(entries).build(), &Limits::default())
}

fn rule(entries: Vec<Entry>) -> Rule {
    match check(entries) {
        Err(ZipError::Entry { rule, .. }) => rule,
        other => panic!("want an entry error, got {other:?}"),
    }
}

#[test]
fn a_good_zip_passes_and_yields_its_go_mod() {
    let checked = check(vec![
        f("go.mod", "module example.com/m\n"),
        f("m.go", "package m\n").deflated(),
        f("sub/LICENSE", "MIT"),
        Entry::dir(format!("{P}sub/")),
    ])
    .unwrap();
    assert_eq!(
        checked.go_mod.as_deref(),
        Some(&b"module example.com/m\n"[..])
    );
    assert_eq!((checked.files, checked.bytes), (3, 21 + 10 + 3));
    assert_eq!(check(vec![f("m.go", "x")]).unwrap().go_mod, None);
}

/// `dirhash.HashZip`'s summary of a zip's entries: hex SHA-256, two spaces, name, sorted.
fn h1_of(entries: &[(&str, &[u8])]) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let mut lines: Vec<String> = entries
        .iter()
        .map(|(name, data)| {
            let hex: String = Sha256::digest(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{hex}  {name}\n")
        })
        .collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    let summary = Sha256::digest(lines.concat().as_bytes());
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary)
    )
}

#[test]
fn the_hash_covers_every_entry_by_full_name_directories_as_empty_files() {
    let checked = check(vec![
        f("xyz.go", "data for xyz").deflated(),
        f("abc.go", "data for abc"),
        Entry::dir(format!("{P}d/")),
        f("d/f", "x"),
    ])
    .unwrap();
    let want = h1_of(&[
        (&format!("{P}xyz.go"), b"data for xyz"),
        (&format!("{P}abc.go"), b"data for abc"),
        (&format!("{P}d/"), b""),
        (&format!("{P}d/f"), b"x"),
    ]);
    assert_eq!(checked.h1, want);
}

#[test]
fn a_go_mod_only_in_a_subdirectory_is_not_the_modules() {
    // Refused anyway, but never returned as the root go.mod.
    assert_eq!(
        rule(vec![f("sub/go.mod", "module example.com/m/sub\n")]),
        Rule::GoModNotAtRoot
    );
}

#[test]
fn the_holes_of_the_old_check_are_closed() {
    assert_eq!(
        rule(vec![f("m.go", "package m\n"), f("m.go", "package evil\n")]),
        Rule::Duplicate
    );
    assert_eq!(
        rule(vec![f("s.go", "x"), f("ſ.go", "y")]),
        Rule::CaseCollision("\"s.go\"".into())
    );
    assert_eq!(
        rule(vec![f("k.go", "x"), f("\u{212A}.go", "y")]),
        Rule::CaseCollision("\"k.go\"".into())
    );
    assert_eq!(rule(vec![f("GO.MOD", "module x\n")]), Rule::GoModCase);
    assert_eq!(
        rule(vec![f("a", "x"), f("a/b.go", "y")]),
        Rule::FileAndDirectory("\"a\"".into())
    );
}

#[test]
fn names_are_checked_like_module_check_file_path() {
    for (name, want) in [
        (
            "../evil.go",
            Rule::FilePath("invalid path element \"..\"".into()),
        ),
        ("a/../b.go", Rule::NotClean),
        ("a\\b.go", Rule::FilePath("invalid char '\\\\'".into())),
        (
            "CON.txt",
            Rule::FilePath("\"CON\" disallowed as path element component on Windows".into()),
        ),
        ("Ⅻ.go", Rule::FilePath("invalid char 'Ⅻ'".into())),
        ("a.", Rule::FilePath("trailing dot in path element".into())),
    ] {
        assert_eq!(rule(vec![f(name, "x")]), want, "{name}");
    }
    assert_eq!(
        rule(vec![Entry::file("example.com/m@v1.0.1/a.go", "x")]),
        Rule::Prefix(P.into())
    );
}

#[test]
fn size_limits_apply_to_declared_sizes() {
    let mut big = f("go.mod", "module x\n");
    big.uncompressed_size = Some(MAX_GO_MOD + 1);
    assert_eq!(rule(vec![big]), Rule::GoModTooLarge(MAX_GO_MOD + 1));
    let mut license = f("LICENSE", "MIT");
    license.uncompressed_size = Some(MAX_LICENSE + 1);
    assert_eq!(rule(vec![license]), Rule::LicenseTooLarge(MAX_LICENSE + 1));
    let mut lying = f("a.go", "x");
    lying.uncompressed_size = Some(MAX_ZIP_FILE + 1);
    assert_eq!(check(vec![lying]), Err(ZipError::TotalSize));
    let too_large = [0u8; 16];
    let module = ModulePath::parse("example.com/m").unwrap();
    let version = Version::parse(&module, "v1.0.0").unwrap();
    assert_eq!(
        check_zip(
            &too_large[..],
            MAX_ZIP_FILE + 1,
            &module,
            &version,
            &Limits::default()
        ),
        Err(ZipError::TooLarge(MAX_ZIP_FILE + 1))
    );
}

#[test]
fn every_entry_is_read_and_its_crc_and_size_checked() {
    let mut bad_crc = f("m.go", "package m\n");
    bad_crc.crc = Some(crc32(b"package n\n"));
    assert!(matches!(
        rule(vec![bad_crc]),
        Rule::Data(DataError::Crc { .. })
    ));
    let mut short = f("m.go", "package m\n").deflated();
    short.uncompressed_size = Some(50);
    assert_eq!(
        rule(vec![short]),
        Rule::Data(DataError::Short {
            declared: 50,
            read: 10
        })
    );
    let mut corrupt = f("m.go", "x").deflated();
    corrupt.raw = Some(vec![0xff; 8]);
    assert!(matches!(
        rule(vec![corrupt]),
        Rule::Data(DataError::Corrupt(_))
    ));
}

#[test]
fn a_zip_bomb_stops_one_chunk_past_its_declared_size() {
    // 1 GiB of zeros in about 1 MiB, declaring 10 bytes.
    let raw = deflated_zeros(1 << 30);
    let compressed = raw.len() as u64;
    let mut bomb = f("bomb", "0123456789").deflated();
    bomb.raw = Some(raw);
    let z = Zip::new(vec![bomb]).build();
    // Inflating it all would read every compressed byte; a budget of a tenth of them is plenty.
    let limits = Limits {
        read_bytes: compressed / 10,
        ..Limits::default()
    };
    match check_with(&z, &limits) {
        Err(ZipError::Entry { rule, .. }) => assert_eq!(rule, Rule::Data(DataError::Long(10))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_and_truncated_zips_fail() {
    let limits = Limits::default();
    assert!(matches!(
        check_with(b"this is not a zip", &limits),
        Err(ZipError::NotZip(_))
    ));
    let good = Zip::new(vec![f("m.go", vec![b'x'; 4096])]).build();
    assert!(check_with(&good, &limits).is_ok());
    for cut in [good.len() / 2, good.len() - 1, 10] {
        assert!(check_with(&good[..cut], &limits).is_err(), "cut at {cut}");
    }
}

#[test]
fn bounds_on_entries_directory_and_reads() {
    let entries = || {
        (0..10)
            .map(|i| f(&format!("{i}.go"), "x"))
            .collect::<Vec<_>>()
    };
    let z = Zip::new(entries()).build();
    let tight = |edit: fn(&mut Limits)| {
        let mut l = Limits::default();
        edit(&mut l);
        l
    };
    assert!(check_with(&z, &tight(|l| l.entries = 10)).is_ok());
    assert_eq!(
        check_with(&z, &tight(|l| l.entries = 9)),
        Err(ZipError::TooManyEntries(9))
    );
    assert_eq!(
        check_with(&z, &tight(|l| l.central_directory_bytes = 100)),
        Err(ZipError::DirectoryTooLarge(100))
    );
    // Overlapping entries re-read the same bytes; the total is bounded.
    let shared: Vec<Entry> = (0..10)
        .map(|i| {
            let mut e = f(&format!("{i}.go"), vec![b'x'; 1000]);
            if i > 0 {
                e.share_header_of = Some(0);
            }
            e
        })
        .collect();
    let z = Zip::new(shared).build();
    assert!(check_with(&z, &tight(|l| l.read_bytes = 10_000)).is_ok());
    assert_eq!(
        check_with(&z, &tight(|l| l.read_bytes = 9_999)),
        Err(ZipError::ReadBudget(9_999))
    );
}

#[test]
fn is_clean_is_go_path_clean_fixed_point() {
    for (name, clean) in [
        ("a", true),
        ("a/b", true),
        (".", true),
        ("..", true),
        ("../a", true),
        ("../../a", true),
        ("/", true),
        ("/a", true),
        ("", false),
        ("./a", false),
        ("a/.", false),
        ("a/..", false),
        ("a/../..", false),
        ("/..", false),
        ("//a", false),
        ("a//b", false),
        ("a/", false),
    ] {
        assert_eq!(is_clean(name.as_bytes()), clean, "{name:?}");
    }
}

#[test]
fn errors_are_one_line_and_quote_hostile_names() {
    let err = check(vec![f("a\nb\u{1b}[31m.go", "x")])
        .unwrap_err()
        .to_string();
    assert!(!err.contains(['\n', '\u{1b}']), "{err}");
    assert!(
        err.starts_with("zip entry \"example.com/m@v1.0.0/a\\nb\\u{1b}[31m.go\": "),
        "{err}"
    );
    let long = "a".repeat(5000);
    let err = check(vec![f(&long, "x"), f(&long, "y")])
        .unwrap_err()
        .to_string();
    assert!(err.len() < 500, "{}", err.len());
}
