//! Verification of artifacts before they are cached (and by `modfleet-proxy verify`).
//!
//! The rules are the `go` command's own (golang.org/x/mod/zip `CheckZip` and the size limits of
//! `modfetch`): a module zip holds only files under `<module>@<version>/`, with clean, valid,
//! case-insensitively unique names, within the size limits, and every entry decompresses to its
//! recorded size and CRC. A `.info` is JSON naming exactly the version asked for.

use std::collections::HashSet;
use std::io::{self, Read};

use crate::protocol::{ModulePath, Version};

/// Largest module zip the go command accepts (`modzip.MaxZipFile`).
pub const MAX_ZIP_BYTES: u64 = 500 << 20;
/// Largest go.mod the go command accepts (`modzip.MaxGoMod`).
pub const MAX_GO_MOD_BYTES: u64 = 16 << 20;
/// Largest LICENSE file in a module zip (`modzip.MaxLICENSE`).
pub const MAX_LICENSE_BYTES: u64 = 16 << 20;
/// A sane bound for a `.info` document.
pub const MAX_INFO_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct VerifyError(pub String);

fn bad(msg: impl Into<String>) -> VerifyError {
    VerifyError(msg.into())
}

/// Checks a `.info` body: a JSON object whose `Version` is `version`.
pub fn info(body: &[u8], version: &Version) -> Result<(), VerifyError> {
    if body.len() as u64 > MAX_INFO_BYTES {
        return Err(bad(format!(".info is larger than {MAX_INFO_BYTES} bytes")));
    }
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "Version")]
        version: String,
    }
    let parsed: Info = serde_json::from_slice(body)
        .map_err(|e| bad(format!(".info is not a JSON object with a Version: {e}")))?;
    if parsed.version != version.as_str() {
        return Err(bad(format!(
            ".info names version {:?}, not the requested {}",
            parsed.version, version
        )));
    }
    Ok(())
}

/// Checks a `.mod` body: within the go command's size limit, and a go.mod whose `module`
/// directive names `module` (an HTML page, a file cut short or another module's go.mod is not).
pub fn go_mod(body: &[u8], module: &ModulePath) -> Result<(), VerifyError> {
    if body.len() as u64 > MAX_GO_MOD_BYTES {
        return Err(bad(format!(
            "go.mod is larger than {MAX_GO_MOD_BYTES} bytes"
        )));
    }
    crate::protocol::modfile::check_module(body, module.as_str()).map_err(|e| bad(e.to_string()))
}

/// Checks an `@v/list` body and returns it cleaned: every non-empty line must start with a
/// semantic version (an HTML page is not a list of none); pseudo-versions and non-canonical
/// versions are dropped, as the go command drops them.
pub fn list(body: &[u8]) -> Result<String, VerifyError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("list is not UTF-8"))?;
    if let Some(line) = text.lines().find(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|v| !crate::protocol::is_valid_semver(v))
    }) {
        let line: String = line.chars().take(60).collect();
        return Err(bad(format!(
            "list has a line that is not a version: {line:?}"
        )));
    }
    Ok(crate::protocol::filter_list(text))
}

/// Checks an `@latest` or query `.info` answer: JSON naming a canonical version.
pub fn resolved_info(body: &[u8]) -> Result<(), VerifyError> {
    if body.len() as u64 > MAX_INFO_BYTES {
        return Err(bad(format!(".info is larger than {MAX_INFO_BYTES} bytes")));
    }
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "Version")]
        version: String,
    }
    let info: Info = serde_json::from_slice(body)
        .map_err(|e| bad(format!("answer is not a JSON object with a Version: {e}")))?;
    if !crate::protocol::is_canonical_semver(&info.version) {
        return Err(bad(format!(
            "answer names {:?}, which is not a canonical version",
            info.version
        )));
    }
    Ok(())
}

/// Checks a module zip and returns the go.mod at its root, if any (the caller compares it with
/// the module's `.mod`; `+incompatible` versions have a `.mod` synthesized by the proxy that
/// served them).
pub fn zip(
    file: &std::fs::File,
    module: &ModulePath,
    version: &Version,
) -> Result<Option<Vec<u8>>, VerifyError> {
    let file = file
        .try_clone()
        .map_err(|e| bad(format!("cannot read zip: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| bad(format!("cannot stat zip: {e}")))?
        .len();
    if size > MAX_ZIP_BYTES {
        return Err(bad(format!(
            "module zip is {size} bytes, more than the go command's limit of {MAX_ZIP_BYTES}"
        )));
    }
    let mut archive = ::zip::ZipArchive::new(io::BufReader::new(file))
        .map_err(|e| bad(format!("not a valid zip file: {e}")))?;
    let prefix = format!("{}@{}/", module.as_str(), version.as_str());
    let mut seen = HashSet::new();
    let mut total: u64 = 0;
    let mut zip_go_mod: Option<Vec<u8>> = None;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad(format!("zip entry {i} is unreadable: {e}")))?;
        let full = entry
            .name()
            .map_err(|e| bad(format!("zip entry {i} has an unreadable name: {e}")))?
            .to_string();
        let Some(name) = full.strip_prefix(&prefix) else {
            return Err(bad(format!("zip entry {full:?} is not under {prefix:?}")));
        };
        if name.is_empty() {
            continue;
        }
        let is_dir = name.ends_with('/');
        let name = name.trim_end_matches('/');
        check_file_path(name).map_err(|why| bad(format!("zip entry {full:?}: {why}")))?;
        if !seen.insert(name.to_lowercase()) {
            return Err(bad(format!(
                "zip has two entries that differ only in case: {full:?}"
            )));
        }
        if is_dir {
            continue;
        }
        let declared = entry.size();
        total = total.saturating_add(declared);
        if total > MAX_ZIP_BYTES {
            return Err(bad(format!(
                "module files total more than the go command's limit of {MAX_ZIP_BYTES} bytes"
            )));
        }
        let limit = match name {
            "go.mod" => MAX_GO_MOD_BYTES,
            "LICENSE" => MAX_LICENSE_BYTES,
            _ => MAX_ZIP_BYTES,
        };
        if declared > limit {
            return Err(bad(format!("{name} is larger than {limit} bytes")));
        }
        // Decompress everything: this checks each CRC and that sizes are what they claim.
        let read = if name == "go.mod" {
            let mut buf = Vec::with_capacity(declared as usize);
            let n = (&mut entry)
                .take(limit + 1)
                .read_to_end(&mut buf)
                .map_err(|e| bad(format!("zip entry {full:?} is corrupt: {e}")))?;
            zip_go_mod = Some(buf);
            n as u64
        } else {
            io::copy(&mut (&mut entry).take(limit + 1), &mut io::sink())
                .map_err(|e| bad(format!("zip entry {full:?} is corrupt: {e}")))?
        };
        if read != declared {
            return Err(bad(format!(
                "zip entry {full:?} holds {read} bytes, not the {declared} it declares"
            )));
        }
    }
    Ok(zip_go_mod)
}

/// `module.CheckFilePath` for a name inside a module zip: clean, relative, and made of
/// characters every file system accepts.
fn check_file_path(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name.starts_with('/') || name.contains("//") || name.contains('\\') {
        return Err("file path is not clean".into());
    }
    for elem in name.split('/') {
        if elem.is_empty() || elem.chars().all(|c| c == '.') {
            return Err(format!("invalid path element {elem:?}"));
        }
        if elem.ends_with('.') {
            return Err(format!("trailing dot in path element {elem:?}"));
        }
        if let Some(c) = elem.chars().find(|&c| !file_name_char_ok(c)) {
            return Err(format!("invalid character {c:?} in file name"));
        }
        let short = elem.split('.').next().unwrap_or(elem);
        if is_windows_reserved(short) {
            return Err(format!("{short:?} is a reserved file name on Windows"));
        }
    }
    Ok(())
}

/// `module.fileNameOK`: ASCII letters, digits, a safe set of punctuation and space; beyond ASCII,
/// letters only.
fn file_name_char_ok(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&()+,-.=@[]^_{}~ ".contains(c)
    } else {
        c.is_alphabetic()
    }
}

fn is_windows_reserved(short: &str) -> bool {
    const BAD: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    BAD.iter().any(|b| b.eq_ignore_ascii_case(short))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_zip(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut w = ::zip::ZipWriter::new(f.reopen().unwrap());
        for (name, body) in entries {
            w.start_file(*name, ::zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(body).unwrap();
        }
        w.finish().unwrap();
        f
    }

    fn zip_at(
        path: &std::path::Path,
        module: &ModulePath,
        version: &Version,
    ) -> Result<Option<Vec<u8>>, VerifyError> {
        zip(&std::fs::File::open(path).unwrap(), module, version)
    }

    fn m(p: &str) -> ModulePath {
        ModulePath::parse(p).unwrap()
    }

    fn v(m: &ModulePath, s: &str) -> Version {
        Version::parse(m, s).unwrap()
    }

    #[test]
    fn a_good_module_zip_passes() {
        let module = m("example.com/m");
        let version = v(&module, "v1.0.0");
        let z = write_zip(&[
            ("example.com/m@v1.0.0/go.mod", b"module example.com/m\n"),
            ("example.com/m@v1.0.0/m.go", b"package m\n"),
            ("example.com/m@v1.0.0/sub/LICENSE", b"MIT"),
        ]);
        let go_mod = zip_at(z.path(), &module, &version).unwrap();
        assert_eq!(
            go_mod.as_deref(),
            Some(b"module example.com/m\n".as_slice())
        );
    }

    #[test]
    fn wrong_prefix_traversal_and_case_clashes_fail() {
        let module = m("example.com/m");
        let version = v(&module, "v1.0.0");
        for entries in [
            vec![("example.com/m@v1.0.1/m.go", b"x".as_slice())],
            vec![("example.com/m@v1.0.0/../evil.go", b"x".as_slice())],
            vec![
                ("example.com/m@v1.0.0/A.go", b"x".as_slice()),
                ("example.com/m@v1.0.0/a.go", b"y".as_slice()),
            ],
            vec![("example.com/m@v1.0.0/CON.txt", b"x".as_slice())],
        ] {
            let z = write_zip(&entries);
            assert!(zip_at(z.path(), &module, &version).is_err(), "{entries:?}");
        }
    }

    #[test]
    fn a_zip_without_go_mod_has_none() {
        let module = m("example.com/m");
        let version = v(&module, "v1.0.0");
        let z = write_zip(&[("example.com/m@v1.0.0/m.go", b"package m\n")]);
        assert_eq!(zip_at(z.path(), &module, &version).unwrap(), None);
    }

    #[test]
    fn garbage_and_truncated_zips_fail() {
        let module = m("example.com/m");
        let version = v(&module, "v1.0.0");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"this is not a zip").unwrap();
        assert!(zip_at(f.path(), &module, &version).is_err());

        let good = write_zip(&[("example.com/m@v1.0.0/m.go", &[b'x'; 4096])]);
        let bytes = std::fs::read(good.path()).unwrap();
        let mut cut = tempfile::NamedTempFile::new().unwrap();
        cut.write_all(&bytes[..bytes.len() / 2]).unwrap();
        assert!(zip_at(cut.path(), &module, &version).is_err());
    }

    #[test]
    fn corrupt_entry_data_fails_its_crc() {
        let module = m("example.com/m");
        let version = v(&module, "v1.0.0");
        let good = write_zip(&[("example.com/m@v1.0.0/m.go", b"package m // some text")]);
        let mut bytes = std::fs::read(good.path()).unwrap();
        // Flip a byte inside the stored data (after the 30-byte local header and the name).
        let at = 30 + "example.com/m@v1.0.0/m.go".len() + 2;
        bytes[at] ^= 0xff;
        let mut bad_zip = tempfile::NamedTempFile::new().unwrap();
        bad_zip.write_all(&bytes).unwrap();
        assert!(zip_at(bad_zip.path(), &module, &version).is_err());
    }

    #[test]
    fn a_list_is_versions_or_nothing() {
        assert_eq!(
            list(b"v1.0.0\nv1.1.0 2024-01-01T00:00:00Z\n").unwrap(),
            "v1.0.0\nv1.1.0\n"
        );
        assert_eq!(list(b"").unwrap(), "");
        assert_eq!(list(b"\n  \n").unwrap(), "");
        // A pseudo-version or a short version is a version, dropped from the answer.
        assert_eq!(
            list(b"v0.0.0-20240101000000-abcdefabcdef\nv1.2\nv1.3.0\n").unwrap(),
            "v1.3.0\n"
        );
        for page in [
            b"<!DOCTYPE html>\n<html>\n".as_slice(),
            b"v1.0.0\nnot found\n",
            b"\xff\xfe",
        ] {
            assert!(list(page).is_err(), "{page:?}");
        }
    }

    #[test]
    fn a_mod_must_be_the_go_mod_of_the_module() {
        let module = m("example.com/m");
        go_mod(b"module example.com/m\n\ngo 1.21\n", &module).unwrap();
        assert!(go_mod(b"<html>captive portal</html>", &module).is_err());
        assert!(go_mod(b"module example.com/other\n", &module).is_err());
        assert!(go_mod(b"module example.com/m\nrequire (\n", &module).is_err());
    }

    #[test]
    fn resolved_info_names_a_canonical_version() {
        resolved_info(br#"{"Version":"v1.2.3","Time":"2024-01-01T00:00:00Z"}"#).unwrap();
        assert!(resolved_info(br#"{"Version":"v1.2"}"#).is_err());
        assert!(resolved_info(b"<html>").is_err());
    }

    #[test]
    fn info_must_name_the_requested_version() {
        let module = m("example.com/m");
        let version = v(&module, "v1.2.3");
        info(
            br#"{"Version":"v1.2.3","Time":"2024-01-01T00:00:00Z"}"#,
            &version,
        )
        .unwrap();
        assert!(info(br#"{"Version":"v1.2.4"}"#, &version).is_err());
        assert!(info(b"<html>", &version).is_err());
    }
}
