//! What each answer of the GOPROXY protocol must be, by the go command's rules: checked on
//! every download before it is cached or served, and by `modfleet-proxy verify`.
//!
//! A module zip must pass the go command's own checks ([`crate::protocol::zip`]: golang.org/x/mod
//! `CheckZip`, then every entry read back against its size and CRC); the caller compares its
//! root go.mod with the module's `.mod`. A `.mod` must be the go.mod of the module asked for, a
//! `.info` JSON naming exactly the version asked for, a list a list of versions.

use std::fs::File;

use crate::protocol::zip::CheckedZip;
use crate::protocol::{self, ModulePath, Version};

/// Largest module zip the go command accepts (`modzip.MaxZipFile`).
pub const MAX_ZIP_BYTES: u64 = protocol::zip::MAX_ZIP_FILE;
/// Largest go.mod the go command accepts (`modzip.MaxGoMod`).
pub const MAX_GO_MOD_BYTES: u64 = protocol::zip::MAX_GO_MOD;
/// A sane bound for a `.info` document.
pub const MAX_INFO_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ArtifactError(pub String);

fn bad(msg: impl Into<String>) -> ArtifactError {
    ArtifactError(msg.into())
}

/// The `Version` of an info document (`what` names it in errors), within the size limit.
fn info_version(body: &[u8], what: &str) -> Result<String, ArtifactError> {
    if body.len() as u64 > MAX_INFO_BYTES {
        return Err(bad(format!(".info is larger than {MAX_INFO_BYTES} bytes")));
    }
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "Version")]
        version: String,
    }
    serde_json::from_slice::<Info>(body)
        .map(|i| i.version)
        .map_err(|e| bad(format!("{what} is not a JSON object with a Version: {e}")))
}

/// Checks a `.info` body: a JSON object whose `Version` is `version`.
pub fn info(body: &[u8], version: &Version) -> Result<(), ArtifactError> {
    let named = info_version(body, ".info")?;
    if named != version.as_str() {
        return Err(bad(format!(
            ".info names version {named:?}, not the requested {version}"
        )));
    }
    Ok(())
}

/// Checks a `.mod` body: within the go command's size limit, and a go.mod whose `module`
/// directive names `module` (an HTML page, a file cut short or another module's go.mod is not).
pub fn go_mod(body: &[u8], module: &ModulePath) -> Result<(), ArtifactError> {
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
pub fn list(body: &[u8]) -> Result<String, ArtifactError> {
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
pub fn resolved_info(body: &[u8]) -> Result<(), ArtifactError> {
    let named = info_version(body, "answer")?;
    if !crate::protocol::is_canonical_semver(&named) {
        return Err(bad(format!(
            "answer names {named:?}, which is not a canonical version"
        )));
    }
    Ok(())
}

/// Checks a module zip (in one pass: the go command's rules, every entry's CRC, and its
/// `h1:` hash for the checksum database) and returns what it holds: its root go.mod, if any
/// (the caller compares it with the module's `.mod`; `+incompatible` versions have a `.mod`
/// synthesized by the proxy that served them), and its hash.
pub fn zip(
    file: &File,
    module: &ModulePath,
    version: &Version,
) -> Result<CheckedZip, ArtifactError> {
    let size = file
        .metadata()
        .map_err(|e| bad(format!("cannot read the zip: {e}")))?
        .len();
    protocol::zip::check_zip(file, size, module, version, &Default::default())
        .map_err(|e| ArtifactError(e.to_string()))
}

#[cfg(test)]
mod tests {
    //! The zip rules are tested in `protocol::zip`; here, what `verify` adds to them.
    use super::*;
    use modfleet_testkit::zipfile::{Entry, Zip};

    fn write_zip(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let entries = entries.iter().map(|(n, b)| Entry::file(n, b)).collect();
        std::fs::write(f.path(), Zip::new(entries).build()).unwrap();
        f
    }

    fn zip_at(
        path: &std::path::Path,
        module: &ModulePath,
        version: &Version,
    ) -> Result<CheckedZip, ArtifactError> {
        zip(&File::open(path).unwrap(), module, version)
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
        let checked = zip_at(z.path(), &module, &version).unwrap();
        assert_eq!(
            checked.go_mod.as_deref(),
            Some(b"module example.com/m\n".as_slice())
        );
        assert!(checked.h1.starts_with("h1:"), "{}", checked.h1);
    }

    #[test]
    fn a_zip_the_go_command_rejects_fails() {
        let module = m("example.com/m");
        let version = v(&module, "v1.0.0");
        let z = write_zip(&[
            ("example.com/m@v1.0.0/m.go", b"package m\n"),
            ("example.com/m@v1.0.0/m.go", b"package evil\n"),
        ]);
        let err = zip_at(z.path(), &module, &version).unwrap_err();
        assert!(err.0.contains("appears twice"), "{err}");
    }

    #[test]
    fn a_zip_without_go_mod_has_none() {
        let module = m("example.com/m");
        let version = v(&module, "v1.0.0");
        let z = write_zip(&[("example.com/m@v1.0.0/m.go", b"package m\n")]);
        assert_eq!(zip_at(z.path(), &module, &version).unwrap().go_mod, None);
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
