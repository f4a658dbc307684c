//! Verification of artifacts before they are cached (and by `modfleet-proxy verify`).
//!
//! A module zip must pass the go command's own checks ([`crate::protocol::zip`]: golang.org/x/mod
//! `CheckZip`, then every entry read back against its size and CRC) and its root go.mod must be
//! the module's `.mod`. A `.info` is JSON naming exactly the version asked for.

use std::path::Path;

use crate::protocol::{self, ModulePath, Version};

/// Largest module zip the go command accepts (`modzip.MaxZipFile`).
pub const MAX_ZIP_BYTES: u64 = protocol::zip::MAX_ZIP_FILE;
/// Largest go.mod the go command accepts (`modzip.MaxGoMod`).
pub const MAX_GO_MOD_BYTES: u64 = protocol::zip::MAX_GO_MOD;
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

/// Checks a `.mod` body: UTF-8 within the go command's size limit.
pub fn go_mod(body: &[u8]) -> Result<(), VerifyError> {
    if body.len() as u64 > MAX_GO_MOD_BYTES {
        return Err(bad(format!(
            "go.mod is larger than {MAX_GO_MOD_BYTES} bytes"
        )));
    }
    std::str::from_utf8(body).map_err(|e| bad(format!("go.mod is not UTF-8: {e}")))?;
    Ok(())
}

/// Checks a module zip on disk. `go_mod` is the module's `.mod`: when the zip has a go.mod at
/// its root, the two must be equal (skipped for `+incompatible` versions, whose `.mod` is
/// synthesized by the proxy that served it).
pub fn zip(
    path: &Path,
    module: &ModulePath,
    version: &Version,
    go_mod: Option<&[u8]>,
) -> Result<(), VerifyError> {
    let checked = protocol::zip::check_zip_file(path, module, version)
        .map_err(|e| VerifyError(e.to_string()))?;
    if let (Some(from_zip), Some(from_mod)) = (&checked.go_mod, go_mod)
        && !version.as_str().ends_with("+incompatible")
        && from_zip.as_slice() != from_mod
    {
        return Err(bad(
            "the go.mod inside the zip differs from the module's .mod file",
        ));
    }
    Ok(())
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
        zip(z.path(), &module, &version, Some(b"module example.com/m\n")).unwrap();
        zip(z.path(), &module, &version, None).unwrap();
    }

    #[test]
    fn a_zip_the_go_command_rejects_fails() {
        let module = m("example.com/m");
        let version = v(&module, "v1.0.0");
        let z = write_zip(&[
            ("example.com/m@v1.0.0/m.go", b"package m\n"),
            ("example.com/m@v1.0.0/m.go", b"package evil\n"),
        ]);
        let err = zip(z.path(), &module, &version, None).unwrap_err();
        assert!(err.0.contains("appears twice"), "{err}");
        let missing = zip(Path::new("/nonexistent/x.zip"), &module, &version, None).unwrap_err();
        assert!(missing.0.contains("cannot read"), "{missing}");
    }

    #[test]
    fn go_mod_must_match_the_mod_file() {
        let module = m("example.com/m");
        let version = v(&module, "v1.0.0");
        let z = write_zip(&[("example.com/m@v1.0.0/go.mod", b"module example.com/m\n")]);
        let err = zip(
            z.path(),
            &module,
            &version,
            Some(b"module example.com/other\n"),
        )
        .unwrap_err();
        assert!(err.0.contains("differs"), "{err}");
        // +incompatible .mod files are synthesized: not compared.
        let module = m("example.com/m");
        let version = v(&module, "v2.0.0+incompatible");
        let z = write_zip(&[(
            "example.com/m@v2.0.0+incompatible/go.mod",
            b"module example.com/m\n",
        )]);
        zip(
            z.path(),
            &module,
            &version,
            Some(b"module example.com/m\n// synthesized\n"),
        )
        .unwrap();
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
