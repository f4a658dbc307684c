//! The table of module zips, good and bad, that modfleet and the go command must judge alike.
//!
//! Every case is built byte by byte ([`modfleet_testkit::zipfile`]), so it can hold what a zip
//! library would refuse to write. Most use module `example.com/m` at `v1.0.0`.

use modfleet_testkit::zipfile::{
    Bits, DataDescriptor, Entry, Method, Zip, crc32, deflate, deflated_zeros,
};

pub const MODULE: &str = "example.com/m";
pub const VERSION: &str = "v1.0.0";
const P: &str = "example.com/m@v1.0.0/";
const MIB: usize = 1 << 20;

/// One zip to judge.
pub struct Case {
    pub name: &'static str,
    pub module: &'static str,
    pub version: &'static str,
    pub zip: Content,
}

/// How to put a case's zip on disk.
pub enum Content {
    Bytes(Vec<u8>),
    /// The bytes, after a hole of this many zero bytes (a sparse file).
    AfterHole(u64, Vec<u8>),
}

/// A file under the module's prefix.
fn f(name: &str, data: impl AsRef<[u8]>) -> Entry {
    Entry::file(format!("{P}{name}"), data)
}

/// A directory entry under the module's prefix.
fn d(name: &str) -> Entry {
    Entry::dir(format!("{P}{name}"))
}

fn go_mod() -> Entry {
    f("go.mod", "module example.com/m\n\ngo 1.22\n")
}

fn zip(entries: Vec<Entry>) -> Content {
    Content::Bytes(Zip::new(entries).build())
}

fn with(z: Zip, edit: impl FnOnce(&mut Zip)) -> Content {
    let mut z = z;
    edit(&mut z);
    Content::Bytes(z.build())
}

fn case(name: &'static str, zip: Content) -> Case {
    Case {
        name,
        module: MODULE,
        version: VERSION,
        zip,
    }
}

/// A final fixed-Huffman block: literals `lits`, then a match of length 3 at `distance`
/// (1..=4 only), then end of block.
fn fixed_block(lits: &[u8], distance: u64) -> Vec<u8> {
    let mut b = Bits::default();
    b.put(1, 1); // BFINAL
    b.put(1, 2); // BTYPE = fixed
    for &l in lits {
        if l < 144 {
            b.code(0x30 + u64::from(l), 8);
        } else {
            b.code(0x190 + u64::from(l) - 144, 9);
        }
    }
    b.code(1, 7); // length code 257: length 3
    b.code(distance - 1, 5); // distance codes 0..=3: distances 1..=4
    b.code(0, 7); // end of block
    b.finish()
}

/// A deflated entry whose compressed bytes are `raw`, claiming content `data`.
fn raw_deflate(name: &str, data: &[u8], raw: Vec<u8>) -> Entry {
    let mut e = f(name, data).deflated();
    e.raw = Some(raw);
    e
}

/// Every case. Names are unique; the table printed on a mismatch is in this order.
pub fn all() -> Vec<Case> {
    let good = || {
        vec![
            go_mod(),
            f("m.go", "package m\n"),
            f("sub/s.go", "package sub\n"),
        ]
    };
    let mut cases = vec![
        // --- Good zips, as the go command and common tools write them.
        case("good: go.mod and two files, stored", zip(good())),
        case(
            "good: deflated",
            zip(good().into_iter().map(Entry::deflated).collect()),
        ),
        case("good: no go.mod", zip(vec![f("m.go", "package m\n")])),
        case("good: empty archive", zip(vec![])),
        case(
            "good: directory entries, root included",
            zip(vec![
                d(""),
                d("sub/"),
                go_mod(),
                f("sub/s.go", "package sub\n"),
            ]),
        ),
        case(
            "good: the same directory entry twice",
            zip(vec![d("sub/"), d("sub/"), f("sub/s.go", "x")]),
        ),
        case(
            "good: non-ASCII letters (é, 日本, ß, Ω)",
            zip(vec![
                f("é.go", "x"),
                f("日本/語.go", "x"),
                f("ß.go", "x"),
                f("Ω.txt", "x"),
            ]),
        ),
        case(
            "good: leading dot, spaces, allowed punctuation",
            zip(vec![
                f(".hidden", "x"),
                f("a b.txt", "x"),
                f("!#$%&()+,-=@[]^_{}~.txt", "x"),
            ]),
        ),
        case(
            "good: Windows-like names that are not reserved",
            zip(vec![
                f("COM0.txt", "x"),
                f("CONX.go", "x"),
                f("xcon.go", "x"),
                f("LPT10", "x"),
            ]),
        ),
        case(
            "good: LICENSE over 16 MiB in a subdirectory",
            zip(vec![f("sub/LICENSE", vec![b' '; 16 * MIB + 1]).deflated()]),
        ),
        case(
            "good: lowercase license over 16 MiB at the root",
            zip(vec![f("license", vec![b' '; 16 * MIB + 1]).deflated()]),
        ),
        case(
            "good: go.mod of exactly 16 MiB",
            zip(vec![f("go.mod", vec![b'\n'; 16 * MIB]).deflated()]),
        ),
        case(
            "good: a directory named go.mod",
            zip(vec![d("go.mod/"), f("go.mod/x.go", "x")]),
        ),
        case(
            "good: a deep path (1000 levels)",
            zip(vec![f(&format!("{}x.go", "a/".repeat(1000)), "x")]),
        ),
        case(
            "bad: a directory entry with a deep path and data",
            zip(vec![f(&"a/".repeat(1000), "x")]),
        ),
        case(
            "good: CRC of zero is not checked (no data descriptor)",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.crc = Some(0);
                e
            }]),
        ),
        case(
            "good: symlink mode bits are ignored",
            zip(vec![{
                let mut e = f("link", "target");
                e.unix_mode = Some(0o120777);
                e
            }]),
        ),
        case(
            "good: the encrypted flag is ignored",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.extra_flags = 1;
                e
            }]),
        ),
        case(
            "good: local header names another file",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.local_name = Some(b"../../etc/passwd".to_vec());
                e
            }]),
        ),
        case(
            "good: two names share one local header and data",
            zip(vec![f("a.go", "package m\n"), {
                let mut e = f("b.go", "package m\n");
                e.share_header_of = Some(0);
                e
            }]),
        ),
        case(
            "good: a method number on a directory entry is ignored",
            zip(vec![
                d("sub/").method(Method::Other(99)),
                f("sub/a.go", "x"),
            ]),
        ),
        case(
            "good: data descriptor with signature",
            zip(vec![{
                let mut e = f("m.go", "package m\n").deflated();
                e.data_descriptor = Some(DataDescriptor::default());
                e
            }]),
        ),
        case(
            "good: data descriptor without signature",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.data_descriptor = Some(DataDescriptor {
                    signature: false,
                    ..DataDescriptor::default()
                });
                e
            }]),
        ),
        case(
            "good: zip64 extra fields",
            zip(vec![
                {
                    let mut e = go_mod();
                    e.zip64 = true;
                    e
                },
                {
                    let mut e = f("m.go", "package m\n").deflated();
                    e.zip64 = true;
                    e
                },
            ]),
        ),
        case(
            "good: zip64 end record and locator",
            with(Zip::new(good()), |z| z.zip64_end = true),
        ),
        case(
            "good: bytes before the zip, offsets from the archive",
            with(Zip::new(good()), |z| {
                z.prefix = b"#!/bin/sh\nexit 0\n".to_vec()
            }),
        ),
        case(
            "good: bytes before the zip, offsets from the file",
            with(Zip::new(good()), |z| {
                z.prefix = vec![0xAA; 1000];
                z.offsets_include_prefix = true;
            }),
        ),
        case(
            "good: a comment after the zip",
            with(Zip::new(good()), |z| z.comment = b"made by hand".to_vec()),
        ),
        case(
            "good: bytes after the end record",
            with(Zip::new(good()), |z| z.suffix = vec![0x55; 300]),
        ),
        case(
            "good: deflate stream with bytes after its final block",
            zip(vec![raw_deflate("m.go", b"package m\n", {
                let mut raw = deflate(b"package m\n");
                raw.extend(b"trailing junk");
                raw
            })]),
        ),
        case(
            "good: hand-made fixed-Huffman block with a match",
            zip(vec![raw_deflate("m.go", b"abcabc", fixed_block(b"abc", 3))]),
        ),
        // --- The four holes of the old check (issue 12, item 2).
        case(
            "bad: two entries with one name, different content",
            zip(vec![f("m.go", "package m\n"), f("m.go", "package evil\n")]),
        ),
        case(
            "bad: two identical entries",
            zip(vec![f("m.go", "package m\n"), f("m.go", "package m\n")]),
        ),
        case(
            "bad: s.go and ſ.go (long s) fold together",
            zip(vec![f("s.go", "x"), f("ſ.go", "x")]),
        ),
        case(
            "bad: S.go and ſ.go fold together",
            zip(vec![f("S.go", "x"), f("ſ.go", "x")]),
        ),
        case(
            "bad: k.go and K.go (Kelvin sign) fold together",
            zip(vec![f("k.go", "x"), f("\u{212A}.go", "x")]),
        ),
        case(
            "bad: σ.go and ς.go (Greek sigma forms) fold together",
            zip(vec![f("σ.go", "x"), f("ς.go", "x")]),
        ),
        case(
            "bad: Σ.go and ς.go fold together",
            zip(vec![f("Σ.go", "x"), f("ς.go", "x")]),
        ),
        case(
            "bad: ǅ.go and ǆ.go (title case) fold together",
            zip(vec![f("ǅ.go", "x"), f("ǆ.go", "x")]),
        ),
        case(
            "bad: A.go and a.go",
            zip(vec![f("A.go", "x"), f("a.go", "x")]),
        ),
        case(
            "bad: directories differing in case",
            zip(vec![f("Sub/a.go", "x"), f("sub/b.go", "x")]),
        ),
        case(
            "bad: go.mod in a subdirectory",
            zip(vec![
                go_mod(),
                f("sub/go.mod", "module example.com/m/sub\n"),
            ]),
        ),
        case(
            "bad: Go.Mod in a subdirectory",
            zip(vec![f("sub/Go.Mod", "module example.com/m/sub\n")]),
        ),
        case(
            "bad: GO.MOD at the root",
            zip(vec![f("GO.MOD", "module example.com/m\n")]),
        ),
        case(
            "bad: a file, then a directory of that name",
            zip(vec![f("a", "x"), f("a/b.go", "x")]),
        ),
        case(
            "bad: a directory, then a file of that name",
            zip(vec![f("a/b.go", "x"), f("a", "x")]),
        ),
        case(
            "bad: a directory entry, then a file of that name",
            zip(vec![d("a/"), f("a", "x")]),
        ),
        case(
            "bad: a file, then a directory entry of that name",
            zip(vec![f("a", "x"), d("a/")]),
        ),
        case(
            "bad: a directory entry and a file differing in case",
            zip(vec![d("a/"), f("A", "x")]),
        ),
        // --- File names (module.CheckFilePath, path.Clean).
        case("bad: ..", zip(vec![f("../evil.go", "x")])),
        case("bad: .. inside", zip(vec![f("a/../b.go", "x")])),
        case("bad: . element", zip(vec![f("./a.go", "x")])),
        case("bad: double slash", zip(vec![f("a//b.go", "x")])),
        case(
            "bad: absolute path",
            zip(vec![Entry::file("/example.com/m@v1.0.0/a.go", "x")]),
        ),
        case("bad: absolute after the prefix", zip(vec![f("/a.go", "x")])),
        case("bad: backslash", zip(vec![f("a\\b.go", "x")])),
        case(
            "bad: Windows reserved CON.txt",
            zip(vec![f("CON.txt", "x")]),
        ),
        case("bad: Windows reserved aux", zip(vec![f("sub/aux", "x")])),
        case(
            "bad: Windows reserved lpt9.go",
            zip(vec![f("lpt9.go", "x")]),
        ),
        case(
            "bad: Windows reserved nul as a directory",
            zip(vec![f("nul/a.go", "x")]),
        ),
        case("bad: trailing dot", zip(vec![f("a.go.", "x")])),
        case("bad: only dots", zip(vec![f("...", "x")])),
        case("bad: a symbol (€)", zip(vec![f("€.go", "x")])),
        case("bad: a symbol (✓)", zip(vec![f("✓.go", "x")])),
        case(
            "bad: a combining mark (e + U+0301)",
            zip(vec![f("e\u{301}.go", "x")]),
        ),
        case(
            "bad: alphabetic but not a letter (Roman numeral Ⅻ)",
            zip(vec![f("\u{216B}.go", "x")]),
        ),
        case(
            "bad: alphabetic but not a letter (circled Ⓐ)",
            zip(vec![f("\u{24B6}.go", "x")]),
        ),
        case(
            "bad: a letter newer than Go's Unicode 15 (Todhri)",
            zip(vec![f("\u{105C0}.go", "x")]),
        ),
        case(
            "bad: a digit from another script (٣)",
            zip(vec![f("\u{663}.go", "x")]),
        ),
        case("bad: a colon", zip(vec![f("a:b.go", "x")])),
        case("bad: a newline", zip(vec![f("a\nb.go", "x")])),
        case("bad: a NUL", zip(vec![f("a\0b.go", "x")])),
        case(
            "bad: invalid UTF-8",
            zip(vec![Entry::file([P.as_bytes(), b"\xff.go"].concat(), "x")]),
        ),
        case("bad: an empty name", zip(vec![Entry::file("", "x")])),
        // --- Prefix.
        case(
            "bad: another module's prefix",
            zip(vec![Entry::file("example.com/other@v1.0.0/a.go", "x")]),
        ),
        case(
            "bad: another version in the prefix",
            zip(vec![
                go_mod(),
                Entry::file("example.com/m@v1.0.1/a.go", "x"),
            ]),
        ),
        case(
            "bad: the prefix without its slash",
            zip(vec![Entry::file("example.com/m@v1.0.0", "x")]),
        ),
        case(
            "bad: the prefix in another case",
            zip(vec![Entry::file("Example.com/m@v1.0.0/a.go", "x")]),
        ),
        // --- Size limits.
        case(
            "bad: go.mod over 16 MiB",
            zip(vec![f("go.mod", vec![b'\n'; 16 * MIB + 1]).deflated()]),
        ),
        case(
            "bad: LICENSE over 16 MiB at the root",
            zip(vec![f("LICENSE", vec![b' '; 16 * MIB + 1]).deflated()]),
        ),
        case(
            "bad: go.mod declaring 16 MiB + 1 (lying)",
            zip(vec![{
                let mut e = f("go.mod", "module example.com/m\n");
                e.uncompressed_size = Some(16 * MIB as u64 + 1);
                e
            }]),
        ),
        case(
            "bad: total declared size over 500 MiB (lying headers)",
            zip(vec![
                {
                    let mut e = f("a.go", "x").deflated();
                    e.uncompressed_size = Some(300 * MIB as u64);
                    e
                },
                {
                    let mut e = f("b.go", "x").deflated();
                    e.uncompressed_size = Some(200 * MIB as u64 + 1);
                    e
                },
            ]),
        ),
        case(
            "bad: one entry declaring 4 GiB - 1 (lying)",
            zip(vec![{
                let mut e = f("a.go", "x");
                e.uncompressed_size = Some(u64::from(u32::MAX));
                e
            }]),
        ),
        case(
            "bad: zip64 entry declaring 2^63 bytes (lying)",
            zip(vec![{
                let mut e = f("a.go", "x");
                e.zip64 = true;
                e.uncompressed_size = Some(1 << 63);
                e
            }]),
        ),
        case(
            "bad: the zip file is over 500 MiB",
            Content::AfterHole(500 * MIB as u64, Zip::new(good()).build()),
        ),
        // --- Entry data (what dirhash.HashZip reads).
        case(
            "bad: wrong CRC",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.crc = Some(crc32(b"package n\n"));
                e
            }]),
        ),
        case(
            "bad: wrong CRC, deflated",
            zip(vec![{
                let mut e = f("m.go", "package m\n").deflated();
                e.crc = Some(1);
                e
            }]),
        ),
        case(
            "bad: stored data shorter than declared",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.uncompressed_size = Some(11);
                e.compressed_size = Some(11);
                e
            }]),
        ),
        case(
            "bad: stored data longer than declared",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.uncompressed_size = Some(9);
                e
            }]),
        ),
        case(
            "bad: stored, compressed size differs from size",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.compressed_size = Some(9);
                e
            }]),
        ),
        case(
            "bad: deflated to more than declared",
            zip(vec![{
                let mut e = f("m.go", "package m\n").deflated();
                e.uncompressed_size = Some(5);
                e
            }]),
        ),
        case(
            "bad: deflated to less than declared",
            zip(vec![{
                let mut e = f("m.go", "package m\n").deflated();
                e.uncompressed_size = Some(50);
                e
            }]),
        ),
        case(
            "bad: deflate stream cut short",
            zip(vec![raw_deflate("m.go", &[b'x'; 5000], {
                let raw = deflate(&crate::common::noise(7, 5000));
                raw[..raw.len() / 2].to_vec()
            })]),
        ),
        case(
            "bad: deflate match before the start of the data",
            zip(vec![raw_deflate("m.go", b"abcab", fixed_block(b"ab", 4))]),
        ),
        case(
            "bad: deflate block type 3",
            zip(vec![raw_deflate("m.go", b"x", vec![0b111, 0, 0])]),
        ),
        case(
            "bad: stored deflate block with a bad length check",
            zip(vec![raw_deflate(
                "m.go",
                b"ab",
                vec![1, 2, 0, 0, 0, b'a', b'b'],
            )]),
        ),
        case(
            "bad: unsupported method (bzip2)",
            zip(vec![f("m.go", "package m\n").method(Method::Other(12))]),
        ),
        case(
            "bad: a directory entry with data",
            zip(vec![{
                let mut e = d("sub/");
                e.data = b"data".to_vec();
                e
            }]),
        ),
        case(
            "bad: data descriptor CRC differs",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.data_descriptor = Some(DataDescriptor {
                    crc: Some(7),
                    ..DataDescriptor::default()
                });
                e
            }]),
        ),
        case(
            "bad: data descriptor flag without a descriptor",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.data_descriptor = Some(DataDescriptor {
                    missing: true,
                    ..DataDescriptor::default()
                });
                e
            }]),
        ),
        case(
            "bad: CRC of zero with a data descriptor is checked",
            zip(vec![{
                let mut e = f("m.go", "package m\n");
                e.crc = Some(0);
                e.data_descriptor = Some(DataDescriptor::default());
                e
            }]),
        ),
        case(
            "bad: local header signature",
            zip(vec![go_mod(), {
                let mut e = f("m.go", "x");
                e.bad_local_signature = true;
                e
            }]),
        ),
        case(
            "bad: local header of a directory entry",
            zip(vec![{
                let mut e = d("sub/");
                e.bad_local_signature = true;
                e
            }]),
        ),
        case(
            "bad: entry data cut short (file truncated inside the data)",
            zip(vec![{
                let mut e = f("m.go", vec![b'x'; 100]);
                e.cut_data_to = Some(40);
                e
            }]),
        ),
        // --- Archive structure (archive/zip's reader).
        case(
            "bad: not a zip",
            Content::Bytes(b"<html>not found</html>".to_vec()),
        ),
        case("bad: an empty file", Content::Bytes(Vec::new())),
        case("bad: the zip cut in half", {
            let z = Zip::new(good()).build();
            Content::Bytes(z[..z.len() / 2].to_vec())
        }),
        case("bad: the end record cut short", {
            let z = Zip::new(good()).build();
            Content::Bytes(z[..z.len() - 4].to_vec())
        }),
        case(
            "bad: comment length beyond the end",
            with(Zip::new(good()), |z| {
                z.comment = b"short".to_vec();
                z.comment_len = Some(200);
            }),
        ),
        case(
            "bad: entry count too high",
            with(Zip::new(good()), |z| z.records = Some(4)),
        ),
        case(
            "bad: entry count too low",
            with(Zip::new(good()), |z| z.records = Some(2)),
        ),
        case(
            "good: zip64 entry count off by 65536 (Go compares 16 bits)",
            with(Zip::new(good()), |z| {
                z.zip64_end = true;
                z.records = Some(65_539);
            }),
        ),
        case(
            "bad: central directory offset past the end",
            with(Zip::new(good()), |z| z.directory_offset = Some(1 << 30)),
        ),
        case(
            "bad: central directory offset into the data",
            with(Zip::new(good()), |z| z.directory_offset = Some(7)),
        ),
        case(
            "bad: a record swallowing the end record up to the end of the file",
            zip(vec![{
                let mut e = f("m.go", "x");
                e.central_comment_len = Some(22);
                e
            }]),
        ),
        case(
            "good: a record swallowing the end record, one byte before the end",
            with(
                Zip::new(vec![{
                    let mut e = f("m.go", "x");
                    e.central_comment_len = Some(22);
                    e
                }]),
                |z| z.suffix = vec![0],
            ),
        ),
        case(
            "bad: zip64 extra field too short",
            zip(vec![go_mod(), {
                let mut e = f("m.go", "x");
                e.zip64_field_len = Some(12);
                e
            }]),
        ),
    ];
    cases.push(case("good: exactly 500 MiB of content", {
        // 500 files of 1 MiB of zeros, sharing one hand-made deflate stream: cheap to write.
        let zeros = vec![0u8; MIB];
        let raw = deflated_zeros(MIB as u64);
        zip((0..500)
            .map(|i| {
                let mut e = f(&format!("z/{i}.bin"), &zeros).deflated();
                e.raw = Some(raw.clone());
                e
            })
            .collect())
    }));
    cases.push(case("bad: 500 MiB + 1 of content", {
        let zeros = vec![0u8; MIB];
        let raw = deflated_zeros(MIB as u64);
        let mut entries: Vec<Entry> = (0..500)
            .map(|i| {
                let mut e = f(&format!("z/{i}.bin"), &zeros).deflated();
                e.raw = Some(raw.clone());
                e
            })
            .collect();
        entries.push(f("one-more-byte", "x"));
        zip(entries)
    }));
    for (module, version, name) in [
        ("example.com/m/v2", "v2.0.0", "good: /v2 module"),
        ("gopkg.in/yaml.v2", "v2.4.0", "good: gopkg.in module"),
        (
            "example.com/m",
            "v2.0.0+incompatible",
            "good: +incompatible",
        ),
        (
            "example.com/m",
            "v0.0.0-20240102030405-abcdefabcdef",
            "good: pseudo-version",
        ),
        (
            "github.com/BurntSushi/toml",
            "v1.3.2",
            "good: uppercase module path",
        ),
    ] {
        cases.push(Case {
            name,
            module,
            version,
            zip: zip(vec![Entry::file(format!("{module}@{version}/a.go"), "x")]),
        });
    }
    cases
}
