//! `modfleet-proxy verify`: checks every file in a cache directory with the same rules used
//! before caching, and reports (or with `--purge` removes) the bad ones. Run it against a
//! stopped proxy's cache, or a live one: it only reads, files are only ever replaced by atomic
//! renames, and downloads in flight (`.tmp-*`) are never touched.
//!
//! Blame goes where it belongs: a symlink or special file in a file's place is bad itself (it is
//! removed, never what it points to); a `.mod` that is not the module's go.mod is bad; and when a
//! zip's go.mod and the module's `.mod` disagree while each is fine on its own, nothing here can
//! tell which one is wrong, so both are bad (the proxy fetches both again on demand).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cache::fs::Root;
use crate::cache::scan::{self, Entry};
use crate::cache::verify;
use crate::config::VerifyArgs;
use crate::protocol::{Request, VersionQuery};

/// The verdict on one cache entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad(String),
    /// Not a file the proxy writes; reported, never removed.
    Unknown,
}

pub fn run(args: &VerifyArgs) -> ExitCode {
    let root_path = args.cache_dir.join("download");
    if !root_path.is_dir() {
        eprintln!(
            "modfleet-proxy verify: {} is not a modfleet cache (no download/ directory); pass the --cache-dir the proxy runs with",
            args.cache_dir.display()
        );
        return ExitCode::from(2);
    }
    let (root, entries) =
        match Root::open(&root_path).and_then(|r| Ok((r, scan::scan(&root_path)?))) {
            Ok(found) => found,
            Err(e) => {
                eprintln!(
                    "modfleet-proxy verify: cannot read {}: {e}",
                    root_path.display()
                );
                return ExitCode::from(2);
            }
        };
    let verdicts = check_all(&root, &entries);
    let (mut good, mut bad, mut unknown, mut removed) = (0usize, 0usize, 0usize, 0usize);
    for (rel, verdict) in &verdicts {
        match verdict {
            Verdict::Good => good += 1,
            Verdict::Unknown => {
                unknown += 1;
                println!(
                    "unknown {}: not a file modfleet-proxy writes (left alone)",
                    rel.display()
                );
            }
            Verdict::Bad(why) if args.purge => {
                bad += 1;
                match root.remove_file(rel) {
                    Ok(()) => {
                        removed += 1;
                        println!("removed {}: {why}", rel.display());
                    }
                    Err(e) => println!("bad {}: {why} (cannot remove: {e})", rel.display()),
                }
            }
            Verdict::Bad(why) => {
                bad += 1;
                println!("bad {}: {why}", rel.display());
            }
        }
    }
    println!(
        "checked {} files in {}: {good} good, {bad} bad{}, {unknown} unknown",
        verdicts.len(),
        root_path.display(),
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

/// Verdicts on every entry but temporary files, by path relative to the `download/` root.
pub fn check_all(root: &Root, entries: &[Entry]) -> BTreeMap<PathBuf, Verdict> {
    let mut verdicts = BTreeMap::new();
    // Zips with a go.mod, checked against their `.mod` once every file has its own verdict.
    let mut zip_go_mods: Vec<(PathBuf, PathBuf, Vec<u8>)> = Vec::new();
    for entry in entries {
        match entry {
            Entry::Tmp { .. } => {}
            Entry::NotRegular { rel } => {
                verdicts.insert(
                    rel.clone(),
                    Verdict::Bad(
                        "not a regular file (a symlink or special file): never served".into(),
                    ),
                );
            }
            Entry::File { rel, .. } => {
                let verdict = match check(root, rel) {
                    Checked::Zip {
                        go_mod: Some(g),
                        mod_rel,
                    } => {
                        zip_go_mods.push((rel.clone(), mod_rel, g));
                        Verdict::Good
                    }
                    Checked::Zip { go_mod: None, .. } => Verdict::Good,
                    Checked::Done(v) => v,
                };
                verdicts.insert(rel.clone(), verdict);
            }
        }
    }
    for (zip_rel, mod_rel, inside) in zip_go_mods {
        if verdicts.get(&mod_rel) != Some(&Verdict::Good) {
            continue; // no .mod, or a .mod already bad on its own: nothing to compare with
        }
        let Ok(cached) = read(root, &mod_rel) else {
            continue;
        };
        if cached != inside {
            let why = "the zip's go.mod and the module's .mod differ; without the checksum \
                       database it cannot be told which is wrong, so both go";
            verdicts.insert(zip_rel, Verdict::Bad(why.into()));
            verdicts.insert(mod_rel, Verdict::Bad(why.into()));
        }
    }
    verdicts
}

/// What checking one file found.
enum Checked {
    Done(Verdict),
    /// A zip good on its own, with its root go.mod (to compare with `mod_rel`).
    Zip {
        go_mod: Option<Vec<u8>>,
        mod_rel: PathBuf,
    },
}

fn read(root: &Root, rel: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    root.open_file(rel)?.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Checks one file on its own, given its path relative to the `download/` root.
fn check(root: &Root, rel: &Path) -> Checked {
    let Some(rel_str) = rel.to_str() else {
        return Checked::Done(Verdict::Unknown);
    };
    let Ok(req) = Request::parse(&format!("/{rel_str}")) else {
        return Checked::Done(Verdict::Unknown);
    };
    let read = || read(root, rel).map_err(|e| format!("unreadable: {e}"));
    let result = match &req {
        Request::Zip { module, version } => {
            let mod_rel = PathBuf::from(
                Request::Mod {
                    module: module.clone(),
                    version: version.clone(),
                }
                .escaped_path(),
            );
            let checked = root
                .open_file(rel)
                .map_err(|e| format!("unreadable: {e}"))
                .and_then(|f| verify::zip(&f, module, version).map_err(|e| e.0));
            return match checked {
                Ok(_) if version.as_str().ends_with("+incompatible") => Checked::Zip {
                    go_mod: None,
                    mod_rel,
                },
                Ok(go_mod) => Checked::Zip { go_mod, mod_rel },
                Err(why) => Checked::Done(Verdict::Bad(why)),
            };
        }
        Request::Mod { module, .. } => {
            read().and_then(|b| verify::go_mod(&b, module).map_err(|e| e.0))
        }
        Request::Info {
            version: VersionQuery::Canonical(v),
            ..
        } => read().and_then(|b| verify::info(&b, v).map_err(|e| e.0)),
        Request::Info { .. } => return Checked::Done(Verdict::Unknown),
        Request::List { .. } => read().and_then(|b| verify::list(&b).map(|_| ()).map_err(|e| e.0)),
        Request::Latest { .. } => read().and_then(|b| verify::resolved_info(&b).map_err(|e| e.0)),
        Request::Sumdb { .. } => read().map(|_| ()),
    };
    Checked::Done(match result {
        Ok(()) => Verdict::Good,
        Err(why) => Verdict::Bad(why),
    })
}
