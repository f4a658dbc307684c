use super::*;

use crate::protocol::zip::create::{Omission, check_files};
use crate::protocol::{ModulePath, Version};

/// One entry of a hand-made archive: stored, its sizes and attributes as given.
struct Raw {
    name: &'static str,
    data: Vec<u8>,
    /// Overrides the uncompressed size in the central directory.
    declared: Option<u32>,
    creator: u16,
    attrs: u32,
}

/// Git's attributes: a plain file (made by MS-DOS, no attributes), an executable and a
/// symbolic link (made by Unix, the mode in the high bits), a directory (MS-DOS flag 0x10).
fn file(name: &'static str, data: &str) -> Raw {
    Raw {
        name,
        data: data.as_bytes().to_vec(),
        declared: None,
        creator: 0,
        attrs: 0,
    }
}

fn unix(name: &'static str, data: &str, mode: u32) -> Raw {
    Raw {
        creator: 0x0317,
        attrs: mode << 16,
        ..file(name, data)
    }
}

fn dir(name: &'static str) -> Raw {
    Raw {
        attrs: 0x10,
        ..file(name, "")
    }
}

/// A zip as a writer lays it out: local headers and data, central directory, end record.
fn zip(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(&e.data);
        let size = e.data.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&e.data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&e.creator.to_le_bytes());
        central.extend_from_slice(&[10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&e.declared.unwrap_or(size).to_le_bytes());
        central.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]);
        central.extend_from_slice(&e.attrs.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(e.name.as_bytes());
    }
    let at = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn read<'a>(
    z: &'a [u8],
    subdir: &str,
    limits: &Limits,
) -> Result<ArchivedFiles<'a, [u8]>, ArchiveError> {
    ArchivedFiles::read(z, z.len() as u64, subdir, limits)
}

fn paths(a: &ArchivedFiles<'_, [u8]>) -> Vec<String> {
    a.files()
        .iter()
        .map(|f| String::from_utf8_lossy(&f.path).into_owned())
        .collect()
}

#[test]
fn the_module_directory_is_listed_as_codehost_read_zip_gives_it() {
    let z = zip(&[
        dir("prefix/"),
        file("prefix/LICENSE", "root\n"),
        dir("prefix/sub/"),
        file("prefix/sub/go.mod", "module m/sub\r\n\r\ngo 1.24\r\n"),
        unix("prefix/sub/run.sh", "#!/bin/sh\n", 0o100_755),
        unix("prefix/sub/link", "a.go", 0o120_777),
        unix("prefix/sub/fifo", "", 0o010_644),
        // A submodule: a directory entry, so no file.
        dir("prefix/sub/deps/"),
        file("prefix/subway/x.go", "package x\n"),
        file("prefix/sub/a.go", "package sub\r\n"),
    ]);
    let mut a = read(&z, "sub", &Limits::default()).unwrap();
    assert_eq!(paths(&a), ["go.mod", "run.sh", "link", "fifo", "a.go"]);
    let kinds: Vec<SourceKind> = a.files().iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            SourceKind::File,
            SourceKind::Executable,
            SourceKind::Symlink,
            SourceKind::Irregular,
            SourceKind::File
        ]
    );
    assert_eq!(a.files()[4].size, 13);
    assert_eq!(
        a.root_go_mod().unwrap().unwrap(),
        b"module m/sub\r\n\r\ngo 1.24\r\n"
    );
    // In listing order, and back again.
    assert_eq!(a.content(b"run.sh").unwrap(), b"#!/bin/sh\n");
    assert_eq!(a.content(b"a.go").unwrap(), b"package sub\r\n");
    assert_eq!(a.content(b"go.mod").unwrap().len(), 25);
    assert!(matches!(
        a.content(b"missing"),
        Err(ArchiveError::NotListed(_))
    ));

    let root = read(&z, "", &Limits::default()).unwrap();
    assert_eq!(paths(&root)[..2], ["LICENSE", "sub/go.mod"]);
    assert_eq!(paths(&root).len(), 7);
    // The rules then omit what is not a regular file.
    let m = ModulePath::parse("example.com/m/sub").unwrap();
    let v = Version::parse(&m, "v1.0.0").unwrap();
    let checked = check_files(&m, &v, a.files().to_vec(), Some(b"go 1.24\n")).unwrap();
    let omitted: Vec<Omission> = checked.omitted.iter().map(|(_, o)| *o).collect();
    assert_eq!(omitted, [Omission::Symlink, Omission::NotRegular]);
    assert_eq!(checked.valid.len(), 3);
}

#[test]
fn hostile_archives_are_refused_within_bounds() {
    let limits = Limits::default();

    // An entry holding more than its directory record declares: found while reading, and
    // never more than one byte past the declared size is taken.
    let mut big = file("prefix/big.go", &"x".repeat(100_000));
    big.declared = Some(10);
    let z = zip(&[big]);
    let mut a = read(&z, "", &limits).unwrap();
    assert_eq!(a.files()[0].size, 10, "the listing has the declared size");
    let e = a.content(b"big.go").unwrap_err();
    assert!(
        matches!(
            e,
            ArchiveError::Data {
                error: DataError::Long(10),
                ..
            }
        ),
        "{e}"
    );
    // And one holding less.
    let mut short = file("prefix/short.go", "abc");
    short.declared = Some(1 << 30);
    let z = zip(&[short]);
    let e = read(&z, "", &limits)
        .unwrap()
        .content(b"short.go")
        .unwrap_err();
    assert!(
        matches!(
            e,
            ArchiveError::Data {
                error: DataError::Short { .. },
                ..
            }
        ),
        "{e}"
    );

    // An archive larger than the go command takes is refused before it is read.
    let z = zip(&[file("prefix/a.go", "package a\n")]);
    let e = ArchivedFiles::read(&z[..], MAX_ZIP_FILE + 1, "", &limits)
        .err()
        .unwrap();
    assert!(matches!(e, ArchiveError::TooLarge(_)) && e.is_too_large());

    // Too many files for modfleet's bound.
    let many: Vec<Raw> = (0..5).map(|_| file("prefix/f.go", "x")).collect();
    let few = Limits {
        entries: 4,
        ..Limits::default()
    };
    let e = read(&zip(&many), "", &few).err().unwrap();
    assert!(
        matches!(e, ArchiveError::Zip(ZipError::TooManyEntries(4))) && e.is_too_large(),
        "{e}"
    );

    // What may be read of an archive in all (overlapping entries would re-read the same
    // bytes): the read budget ends it.
    let z = zip(&[
        file("prefix/a.go", &"a".repeat(1000)),
        file("prefix/b.go", &"b".repeat(1000)),
    ]);
    let tight = Limits {
        read_bytes: 1500,
        ..Limits::default()
    };
    let mut a = read(&z, "", &tight).unwrap();
    a.content(b"a.go").unwrap();
    let e = a.content(b"b.go").unwrap_err();
    assert!(
        matches!(e, ArchiveError::Zip(ZipError::ReadBudget(1500))),
        "{e}"
    );

    // Paths that escape: listed as they are, and refused by the zip rules (nothing is ever
    // written by these names).
    let z = zip(&[
        file("prefix/go.mod", "module m\n"),
        file("prefix/../evil.go", "package evil\n"),
        file("prefix//abs.go", "package abs\n"),
    ]);
    let a = read(&z, "", &limits).unwrap();
    assert_eq!(paths(&a), ["go.mod", "../evil.go", "/abs.go"]);
    let m = ModulePath::parse("example.com/m").unwrap();
    let v = Version::parse(&m, "v1.0.0").unwrap();
    let e = check_files(&m, &v, a.files().to_vec(), Some(b"module m\n"))
        .unwrap()
        .err()
        .unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("\"../evil.go\": malformed file path: invalid path element \"..\"")
            && shown.contains("\"/abs.go\": file path is not relative"),
        "{shown}"
    );

    // Another top-level directory, or none: the go command's errors.
    let z = zip(&[file("prefix/a.go", "a"), file("other/b.go", "b")]);
    let e = read(&z, "", &limits).err().unwrap();
    assert!(matches!(e, ArchiveError::TwoTopDirectories(_)), "{e}");
    let z = zip(&[file("a.go", "a")]);
    let e = read(&z, "", &limits).err().unwrap();
    assert!(matches!(e, ArchiveError::NoTopDirectory(_)), "{e}");

    // A stream cut short (git killed at its deadline): no end record, no zip; cut inside an
    // entry's data while the directory survives: that entry fails.
    let z = zip(&[
        file("prefix/a.go", &"a".repeat(5000)),
        file("prefix/b.go", "package b\n"),
    ]);
    for cut in [0, 1, 30, 2000, z.len() - 23, z.len() - 1] {
        let e = read(&z[..cut], "", &limits).err().unwrap();
        assert!(matches!(e, ArchiveError::Zip(_)), "cut at {cut}: {e}");
        assert!(!e.is_too_large(), "cut at {cut}: {e}");
    }
    let mut hole = z.clone();
    hole[100..200].fill(0);
    let mut a = read(&hole, "", &limits).unwrap();
    let e = a.content(b"a.go").unwrap_err();
    assert!(
        matches!(
            e,
            ArchiveError::Data {
                error: DataError::Crc { .. },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(a.content(b"b.go").unwrap(), b"package b\n");
}
