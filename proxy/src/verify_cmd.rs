//! `modfleet-proxy verify`: checks every file in a cache directory with the same rules used
//! before caching (and, like the server, against the checksum database), and reports (or with
//! `--purge` removes) the bad ones. Run it against a stopped proxy's cache, or a live one: it
//! removes nothing but what it reports, files are only ever replaced by atomic renames, and
//! downloads in flight (`.tmp-*`) are never touched.
//!
//! Blame goes where it belongs: a symlink or special file in a file's place is bad itself (it is
//! removed, never what it points to); a `.mod` that is not the module's go.mod is bad; a file
//! whose `h1:` hash the checksum database disowns is bad. When a zip's go.mod and the module's
//! `.mod` disagree, the one the database confirms stands; without the database nothing can tell
//! which one is wrong, so both are bad (the proxy fetches both again on demand). Private
//! modules are exempt from that comparison: built from Git as the go command builds them, a
//! zip's go.mod is `git archive`'s (with `.gitattributes` conversions) and the `.mod` the
//! blob's, which may differ by design.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::cache::Cache;
use crate::cache::fs::Root;
use crate::cache::scan::{self, Entry};
use crate::config::{Config, ConfigError, Environment, ModulePattern, OnOff, VerifyArgs};
use crate::fetch::{Checksums, Fetcher};
use crate::metrics::Metrics;
use crate::protocol::artifact;
use crate::protocol::sumdb::{Artifact, SumdbError, dirhash};
use crate::protocol::{ModulePath, Request, Version, VersionQuery};
use crate::upstream::UpstreamPool;

/// The verdict on one cache entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad(String),
    /// Not a file the proxy writes; reported, never removed.
    Unknown,
}

pub fn run(args: &VerifyArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("modfleet-proxy verify: {msg}");
        ExitCode::from(2)
    };
    let cache_dir = match Config::cache_dir(&args.serve) {
        Ok(dir) => dir,
        Err(e) => return fail(e.to_string()),
    };
    let root_path = cache_dir.join("download");
    if !root_path.is_dir() {
        return fail(format!(
            "{} is not a modfleet cache (no download/ directory); pass the --cache-dir the proxy runs with",
            cache_dir.display()
        ));
    }
    let (root, entries) =
        match Root::open(&root_path).and_then(|r| Ok((r, scan::scan(&root_path)?))) {
            Ok(found) => found,
            Err(e) => return fail(format!("cannot read {}: {e}", root_path.display())),
        };
    let private = match Config::private_patterns(&args.serve) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let database = match Database::open(args, &cache_dir) {
        Ok(db) => db,
        Err(e) => return fail(e),
    };
    let verdicts = check_all(&root, &entries, database.as_ref(), &private);
    report(args.purge, &root, &root_path, &verdicts)
}

fn report(
    purge: bool,
    root: &Root,
    root_path: &Path,
    verdicts: &BTreeMap<PathBuf, Verdict>,
) -> ExitCode {
    let (mut good, mut bad, mut unknown, mut removed) = (0usize, 0usize, 0usize, 0usize);
    for (rel, verdict) in verdicts {
        match verdict {
            Verdict::Good => good += 1,
            Verdict::Unknown => {
                unknown += 1;
                println!(
                    "unknown {}: not a file modfleet-proxy writes (left alone)",
                    rel.display()
                );
            }
            Verdict::Bad(why) if purge => {
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
        if purge {
            format!(" ({removed} removed)")
        } else {
            String::new()
        },
    );
    if bad > removed {
        if !purge {
            println!(
                "run again with --purge to remove the bad files; the proxy fetches them again on demand"
            );
        }
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The checksum database, read the way the server reads it (through the configured upstreams'
/// `/sumdb/` endpoints, caching tiles in this cache).
pub struct Database {
    runtime: tokio::runtime::Runtime,
    checksums: Arc<Checksums>,
    _fetcher: Arc<Fetcher>,
}

/// What the database says of one file.
enum Confirmation {
    Confirmed,
    Disowned(String),
    /// Not checked: no-sum module, unknown to the database, or the database unreachable.
    Unchecked(String),
}

impl Database {
    /// None when checking is off (`--verify-sumdb off`), or on by default but no upstream is
    /// configured to reach the database through (then said on stderr).
    fn open(args: &VerifyArgs, cache_dir: &Path) -> Result<Option<Database>, String> {
        if args.serve.verify_sumdb == Some(OnOff::Off) {
            return Ok(None);
        }
        let config = match Config::load(&args.serve, Environment::detect) {
            Ok(config) if config.verify_sumdb => config,
            Ok(_) => return Ok(None),
            Err(ConfigError::NoUpstream) if args.serve.verify_sumdb.is_none() => {
                eprintln!(
                    "modfleet-proxy verify: no upstream configured, so files are not checked \
                     against the checksum database (pass the server's --config or --upstream)"
                );
                return Ok(None);
            }
            Err(e) => return Err(e.to_string()),
        };
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let metrics = Arc::new(Metrics::new());
        let cache = Cache::attach(cache_dir, metrics.clone()).map_err(|e| e.to_string())?;
        let _guard = runtime.enter();
        let pool = UpstreamPool::new(
            &config.upstreams,
            &config.sumdbs,
            config.resilience.clone(),
            metrics.clone(),
        )
        .map_err(|e| format!("cannot build the HTTP client for upstreams: {e}"))?;
        let fetcher = Fetcher::new(
            Arc::new(cache),
            Arc::new(pool),
            metrics.clone(),
            config.list_ttl,
            &config.resilience,
        );
        let checksums =
            crate::app::checksums(&config, &fetcher, &metrics).map_err(|e| format!("{e:#}"))?;
        Ok(Some(Database {
            runtime,
            checksums: Arc::new(checksums),
            _fetcher: fetcher,
        }))
    }

    fn confirm(
        &self,
        module: &ModulePath,
        version: &Version,
        artifact: Artifact,
        h1: &str,
    ) -> Confirmation {
        if !self.checksums.applies(module) {
            return Confirmation::Unchecked("a no-sum module".into());
        }
        let checker = self.checksums.checker();
        match self
            .runtime
            .block_on(checker.check(module, version, artifact, h1))
        {
            Ok(()) => Confirmation::Confirmed,
            Err(e @ SumdbError::Mismatch { .. }) => Confirmation::Disowned(e.to_string()),
            Err(e) => Confirmation::Unchecked(e.to_string()),
        }
    }
}

/// Verdicts on every entry but temporary files, by path relative to the `download/` root.
/// `private`: the `privateModules` patterns, whose zips are not compared with their `.mod`.
pub fn check_all(
    root: &Root,
    entries: &[Entry],
    database: Option<&Database>,
    private: &[ModulePattern],
) -> BTreeMap<PathBuf, Verdict> {
    let mut verdicts = BTreeMap::new();
    // Files the checksum database confirmed.
    let mut confirmed = BTreeSet::new();
    // Zips with a go.mod, checked against their `.mod` once every file has its own verdict.
    let mut zip_go_mods: Vec<(PathBuf, PathBuf, Vec<u8>)> = Vec::new();
    for entry in entries {
        let rel = match entry {
            Entry::Tmp { .. } => continue,
            Entry::NotRegular { rel } => {
                let why = "not a regular file (a symlink or special file): never served";
                verdicts.insert(rel.clone(), Verdict::Bad(why.into()));
                continue;
            }
            Entry::File { rel, .. } => rel,
        };
        let (verdict, hashed) = match check(root, rel) {
            Checked::Zip {
                go_mod,
                mod_rel,
                hashed,
            } => {
                let is_private = hashed
                    .as_ref()
                    .is_some_and(|h| private.iter().any(|p| p.matches(h.module.as_str())));
                if let Some(g) = go_mod.filter(|_| !is_private) {
                    zip_go_mods.push((rel.clone(), mod_rel, g));
                }
                (Verdict::Good, hashed)
            }
            Checked::Mod { hashed } => (Verdict::Good, Some(hashed)),
            Checked::Done(v) => (v, None),
        };
        let verdict = match (verdict, hashed, database) {
            (Verdict::Good, Some(h), Some(db)) => {
                match db.confirm(&h.module, &h.version, h.artifact, &h.h1) {
                    Confirmation::Confirmed => {
                        confirmed.insert(rel.clone());
                        Verdict::Good
                    }
                    Confirmation::Disowned(why) => Verdict::Bad(why),
                    Confirmation::Unchecked(why) => {
                        eprintln!(
                            "not checked against the checksum database: {}: {why}",
                            rel.display()
                        );
                        Verdict::Good
                    }
                }
            }
            (verdict, _, _) => verdict,
        };
        verdicts.insert(rel.clone(), verdict);
    }
    for (zip_rel, mod_rel, inside) in zip_go_mods {
        let both_good = verdicts.get(&mod_rel) == Some(&Verdict::Good)
            && verdicts.get(&zip_rel) == Some(&Verdict::Good);
        if !both_good || read(root, &mod_rel).is_ok_and(|cached| cached == inside) {
            continue;
        }
        let (zip_ok, mod_ok) = (confirmed.contains(&zip_rel), confirmed.contains(&mod_rel));
        let blamed: Vec<(&PathBuf, &str)> = match (zip_ok, mod_ok) {
            (true, false) => vec![(
                &mod_rel,
                "differs from the zip's go.mod, which the checksum database confirms",
            )],
            (false, true) => vec![(
                &zip_rel,
                "its go.mod differs from the .mod, which the checksum database confirms",
            )],
            _ => {
                let why = "the zip's go.mod and the module's .mod differ; without the checksum \
                           database it cannot be told which is wrong, so both go";
                vec![(&zip_rel, why), (&mod_rel, why)]
            }
        };
        for (rel, why) in blamed {
            verdicts.insert(rel.clone(), Verdict::Bad(why.into()));
        }
    }
    verdicts
}

/// A file's `h1:` hash, to confirm with the checksum database.
struct Hashed {
    module: ModulePath,
    version: Version,
    artifact: Artifact,
    h1: String,
}

/// What checking one file found.
enum Checked {
    Done(Verdict),
    /// A `.mod` good on its own.
    Mod {
        hashed: Hashed,
    },
    /// A zip good on its own, with its root go.mod (to compare with `mod_rel`).
    Zip {
        go_mod: Option<Vec<u8>>,
        mod_rel: PathBuf,
        hashed: Option<Hashed>,
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
        Request::Zip { module, version } => return check_zip(root, rel, module, version),
        Request::Mod { module, version } => match read().and_then(|b| {
            artifact::go_mod(&b, module).map_err(|e| e.0)?;
            Ok(b)
        }) {
            Ok(go_mod) => {
                return Checked::Mod {
                    hashed: Hashed {
                        module: module.clone(),
                        version: version.clone(),
                        artifact: Artifact::GoMod,
                        h1: dirhash::hash_go_mod(&go_mod),
                    },
                };
            }
            Err(why) => Err(why),
        },
        Request::Info {
            version: VersionQuery::Canonical(v),
            ..
        } => read().and_then(|b| artifact::info(&b, v).map_err(|e| e.0)),
        Request::Info { .. } => return Checked::Done(Verdict::Unknown),
        Request::List { .. } => {
            read().and_then(|b| artifact::list(&b).map(|_| ()).map_err(|e| e.0))
        }
        Request::Latest { .. } => read().and_then(|b| artifact::resolved_info(&b).map_err(|e| e.0)),
        Request::Sumdb { .. } => read().map(|_| ()),
    };
    Checked::Done(match result {
        Ok(()) => Verdict::Good,
        Err(why) => Verdict::Bad(why),
    })
}

fn check_zip(root: &Root, rel: &Path, module: &ModulePath, version: &Version) -> Checked {
    let mod_rel = PathBuf::from(
        Request::Mod {
            module: module.clone(),
            version: version.clone(),
        }
        .escaped_path(),
    );
    let file = match root.open_file(rel) {
        Ok(f) => f,
        Err(e) => return Checked::Done(Verdict::Bad(format!("unreadable: {e}"))),
    };
    let checked = match artifact::zip(&file, module, version) {
        Ok(c) => c,
        Err(e) => return Checked::Done(Verdict::Bad(e.0)),
    };
    let hashed = Some(Hashed {
        module: module.clone(),
        version: version.clone(),
        artifact: Artifact::Zip,
        h1: checked.h1,
    });
    let go_mod = checked.go_mod;
    // An +incompatible version's .mod is synthesized: it need not equal a go.mod in the zip.
    let go_mod = go_mod.filter(|_| !version.as_str().ends_with("+incompatible"));
    Checked::Zip {
        go_mod,
        mod_rel,
        hashed,
    }
}
