//! `modfleet-proxy verify`: checks every file in a cache directory with the same rules used
//! before caching, and reports (or with `--purge` removes) the bad ones. Run it against a
//! stopped proxy's cache, or a live one: files are only ever replaced by atomic renames.

use std::path::Path;
use std::process::ExitCode;

use crate::cache::{self, verify};
use crate::config::VerifyArgs;
use crate::protocol::{Request, VersionQuery};

/// The verdict on one cached file.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad(String),
    /// Not a file the proxy writes; reported, never removed.
    Unknown,
}

pub fn run(args: &VerifyArgs) -> ExitCode {
    let root = args.cache_dir.join("download");
    if !root.is_dir() {
        eprintln!(
            "modfleet-proxy verify: {} is not a modfleet cache (no download/ directory); pass the --cache-dir the proxy runs with",
            args.cache_dir.display()
        );
        return ExitCode::from(2);
    }
    let files = match cache::list_files(&args.cache_dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("modfleet-proxy verify: cannot read {}: {e}", root.display());
            return ExitCode::from(2);
        }
    };
    let (mut good, mut bad, mut unknown, mut removed) = (0usize, 0usize, 0usize, 0usize);
    for rel in &files {
        match check(&root, rel) {
            Verdict::Good => good += 1,
            Verdict::Unknown => {
                unknown += 1;
                println!(
                    "unknown {}: not a file modfleet-proxy writes (left alone)",
                    rel.display()
                );
            }
            Verdict::Bad(why) => {
                bad += 1;
                if args.purge {
                    match std::fs::remove_file(root.join(rel)) {
                        Ok(()) => {
                            removed += 1;
                            println!("removed {}: {why}", rel.display());
                        }
                        Err(e) => println!("bad {}: {why} (cannot remove: {e})", rel.display()),
                    }
                } else {
                    println!("bad {}: {why}", rel.display());
                }
            }
        }
    }
    println!(
        "checked {} files in {}: {good} good, {bad} bad{}, {unknown} unknown",
        files.len(),
        root.display(),
        if args.purge {
            format!(" ({removed} removed)")
        } else {
            String::new()
        },
    );
    if bad > removed {
        if !args.purge {
            println!(
                "run again with --purge to remove the bad files; the proxy fetches them again on demand"
            );
        }
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Checks one file, given its path relative to the `download/` root.
pub fn check(root: &Path, rel: &Path) -> Verdict {
    let Some(rel_str) = rel.to_str() else {
        return Verdict::Unknown;
    };
    let Ok(req) = Request::parse(&format!("/{rel_str}")) else {
        return Verdict::Unknown;
    };
    let path = root.join(rel);
    let read = || std::fs::read(&path).map_err(|e| format!("unreadable: {e}"));
    let result = match &req {
        Request::Zip { module, version } => {
            let mod_rel = Request::Mod {
                module: module.clone(),
                version: version.clone(),
            }
            .escaped_path();
            let go_mod = std::fs::read(root.join(mod_rel)).ok();
            verify::zip(&path, module, version, go_mod.as_deref()).map_err(|e| e.0)
        }
        Request::Mod { .. } => read().and_then(|b| verify::go_mod(&b).map_err(|e| e.0)),
        Request::Info {
            version: VersionQuery::Canonical(v),
            ..
        } => read().and_then(|b| verify::info(&b, v).map_err(|e| e.0)),
        Request::Info { .. } => return Verdict::Unknown,
        Request::List { .. } => read().and_then(|b| {
            String::from_utf8(b)
                .map(|_| ())
                .map_err(|_| "list is not UTF-8".to_string())
        }),
        Request::Latest { .. } => read().and_then(|b| {
            serde_json::from_slice::<serde_json::Value>(&b)
                .map(|_| ())
                .map_err(|e| format!("@latest is not JSON: {e}"))
        }),
        Request::Sumdb { .. } => read().map(|_| ()),
    };
    match result {
        Ok(()) => Verdict::Good,
        Err(why) => Verdict::Bad(why),
    }
}
