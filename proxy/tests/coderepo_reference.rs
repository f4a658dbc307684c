//! modfleet's module-to-repository mapping (`coderepo`) against the go command itself.
//!
//! A corpus of real repositories (`coderepo_reference/corpus.rs`: root and subdirectory
//! modules, major subdirectories and branches, `+incompatible`, foreign go.mods, retractions,
//! pre-releases, untagged histories, zip rules, Git attributes, SHA-256 object names) is
//! served by git's own smart-HTTP server. For every
//! module, `CodeRepo` answers from a mirror of that server, and the go command goes direct to
//! the same server (`GOPROXY=direct`, module paths with the `.git` qualifier rewritten to the
//! server by `url.<base>.insteadOf`, a fresh module cache per command so nothing is reused).
//! The bar: the same version list (`go list -m -versions -retracted`), and for every query
//! (tags, branches, `HEAD`, full and short hashes, pseudo-versions good and bad, `latest`)
//! the same outcome: the same `.info` bytes the go command writes into its cache, the same
//! Origin it reports, the same `.mod` bytes, the same zip `h1:` and files (names and bytes:
//! `.gitattributes` conversions that `git archive` applies included); or both refusing, for
//! the same reason.

#[path = "coderepo_reference/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modfleet_proxy::codehost::git::{Credentials, GitOptions, GitRepo};
use modfleet_proxy::coderepo::{CodeRepo, Repository};
use modfleet_testkit::gitserver::{GitHttpServer, RepoRoot};
use serde_json::Value;

use corpus::{Case, HOST, Pinned};

/// The go command, direct to the test's Git server.
struct Go {
    scratch: tempfile::TempDir,
    gitconfig: PathBuf,
}

/// What `go mod download -json MOD@QUERY` reported and wrote.
#[derive(Debug)]
struct Download {
    /// The JSON it printed (`Error` when it failed).
    json: Value,
    /// The `.info` file it wrote into its cache.
    info: Option<Vec<u8>>,
    /// The `.mod` file.
    go_mod: Option<Vec<u8>>,
    /// The zip it built.
    zip: Option<Vec<u8>>,
}

impl Go {
    /// Rewrites `https://HOST/NAME` (what the go command derives from `HOST/NAME.git`) to the
    /// server's `NAME.git`.
    fn new(server: &GitHttpServer, repos: &[&str]) -> Go {
        let scratch = tempfile::tempdir().unwrap();
        let mut config = String::new();
        for name in repos {
            config.push_str(&format!(
                "[url \"{}\"]\n\tinsteadOf = https://{HOST}/{name}\n",
                server.url(name)
            ));
        }
        let gitconfig = scratch.path().join("gitconfig");
        std::fs::write(&gitconfig, config).unwrap();
        std::fs::create_dir_all(scratch.path().join("work")).unwrap();
        Go { scratch, gitconfig }
    }

    /// Runs the go command with a module cache of its own; returns its exit status, stdout
    /// and stderr, and the module cache (kept until dropped).
    fn run(&self, args: &[&str]) -> (bool, Vec<u8>, String, tempfile::TempDir) {
        let cache = tempfile::tempdir_in(self.scratch.path()).unwrap();
        let s = self.scratch.path();
        let out = modfleet_testkit::go::isolated(s)
            .args(args)
            .current_dir(s.join("work"))
            .env("GOMODCACHE", cache.path())
            .env("GOPROXY", "direct")
            .env("GOPRIVATE", HOST)
            .env("GONOSUMDB", HOST)
            .env("GOINSECURE", HOST)
            .env("GIT_CONFIG_GLOBAL", &self.gitconfig)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap_or_else(|e| panic!("cannot run the go command (install Go): {e}"));
        (
            out.status.success(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
            cache,
        )
    }

    /// `go list -m -versions -retracted -json MODULE`: the version list (retracted versions
    /// included, as a proxy lists them); `Err` with the go command's error.
    fn versions(&self, module: &str) -> Result<Vec<String>, String> {
        let (ok, out, err, _cache) =
            self.run(&["list", "-m", "-versions", "-retracted", "-json", module]);
        let json: Value = serde_json::from_slice(&out).map_err(|e| format!("{e}: {err}"))?;
        if !ok || json.get("Error").is_some() {
            return Err(format!("{} {err}", json["Error"]));
        }
        Ok(json["Versions"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default())
    }

    fn download(&self, module: &str, query: &str) -> Download {
        let arg = format!("{module}@{query}");
        let (_, out, err, _cache) = self.run(&["mod", "download", "-json", &arg]);
        let json: Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("go mod download -json {arg}: {e}\n{err}"));
        let read = |field: &str| json[field].as_str().map(|p| std::fs::read(p).unwrap());
        Download {
            info: read("Info"),
            go_mod: read("GoMod"),
            zip: read("Zip"),
            json,
        }
    }
}

/// Our side: one mirror per repository, each module a `CodeRepo` on it.
struct Ours {
    _mirrors: tempfile::TempDir,
    repos: BTreeMap<&'static str, Arc<Repository>>,
}

impl Ours {
    fn new(server: &GitHttpServer, names: &[&'static str]) -> Ours {
        let mirrors = tempfile::tempdir().unwrap();
        let mut options = GitOptions::new(mirrors.path().join("git"));
        options.allow_insecure_http = true;
        options.fetch_deadline = Duration::from_secs(120);
        options.read_deadline = Duration::from_secs(120);
        let repos = names
            .iter()
            .map(|name| {
                let host = GitRepo::open(&server.url(name), Credentials::None, &options).unwrap();
                let url = format!("https://{HOST}/{name}");
                (
                    *name,
                    Arc::new(Repository::new(
                        Arc::new(host),
                        &url,
                        Duration::from_secs(1),
                    )),
                )
            })
            .collect();
        Ours {
            _mirrors: mirrors,
            repos,
        }
    }

    fn code_repo(&self, case: &Case) -> CodeRepo {
        let root = format!("{HOST}/{}.git", case.repo);
        CodeRepo::new(self.repos[case.repo].clone(), &root, "", &case.module).unwrap()
    }
}

/// A module zip's files: name (without `module@version/`) → content.
fn zip_files(data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(data)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            // `module@version/` ends at the first '/' after the '@' (paths have no '@').
            let full = f.name().unwrap().to_string();
            let at = full.find('@').unwrap();
            let name = full[at + full[at..].find('/').unwrap() + 1..].to_string();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut content).unwrap();
            (name, content)
        })
        .collect()
}

/// Checks a zip's pinned files; returns the differences.
fn check_pinned(case: &Case, files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut diffs = Vec::new();
    for (path, want) in &case.pinned {
        let got = files.get(*path);
        let ok = match (got, want) {
            (Some(g), Pinned::Exactly(w)) => g == w,
            (Some(g), Pinned::StartsWith(w)) => g.starts_with(w.as_bytes()),
            (None, _) => false,
        };
        if !ok {
            diffs.push(format!(
                "{}: {path} in the zip is {:?}, not what the corpus pins",
                case.module,
                got.map(|g| String::from_utf8_lossy(g).into_owned())
            ));
        }
    }
    diffs
}

/// Compares one query's outcome; returns the differences.
fn compare(case: &Case, code: &CodeRepo, query: &str, go: &Download) -> Vec<String> {
    let module = case.module.as_str();
    let mut diffs = Vec::new();
    let mut differ = |what: &str, ours: String, theirs: String| {
        if ours != theirs {
            diffs.push(format!(
                "{module}@{query}: {what}:\n    ours: {ours}\n    go:   {theirs}"
            ));
        }
    };
    let ours = if query == "latest" {
        code.latest()
    } else {
        code.stat(query)
    };
    // A zip the rules refuse fails the download after .info and .mod: those are compared,
    // then the zip's refusal.
    let go_error = go
        .json
        .get("Error")
        .and_then(Value::as_str)
        .filter(|_| go.info.is_none());
    let info = match (ours, go_error) {
        (Err(e), Some(theirs)) => {
            // Both refuse, for the same reason (ours may name the repository too), with a 4xx.
            let reason = ["invalid version: ", "invalid pseudo-version: "]
                .iter()
                .find_map(|p| theirs.split_once(p).map(|(_, r)| r))
                .unwrap_or(theirs);
            if e.status().as_u16() >= 500 || !e.to_string().contains(reason) {
                differ(
                    "refusal",
                    format!("{} {e}", e.status()),
                    format!("a 4xx: {theirs}"),
                );
            }
            return diffs;
        }
        (Err(e), None) => {
            differ(
                "outcome",
                format!("error {e}"),
                format!("{}", go.json["Version"]),
            );
            return diffs;
        }
        (Ok(info), Some(theirs)) => {
            differ("outcome", info.version.clone(), format!("error {theirs}"));
            return diffs;
        }
        (Ok(info), None) => info,
    };
    differ(
        "Version",
        info.version.clone(),
        go.json["Version"].as_str().unwrap_or("").to_string(),
    );
    differ(
        ".info",
        String::from_utf8_lossy(&info.info_json().unwrap()).into_owned(),
        go.info
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .into_owned(),
    );
    if query != "latest" {
        // A query's Origin (latest's merges the tag list's, which the proxy does not serve).
        let full: Value = serde_json::from_slice(&info.query_json().unwrap()).unwrap();
        differ(
            "Origin",
            full["Origin"].to_string(),
            go.json["Origin"].to_string(),
        );
    }
    match code.go_mod(&info.version) {
        Ok(data) => differ(
            ".mod",
            String::from_utf8_lossy(&data).into_owned(),
            go.go_mod
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned(),
        ),
        Err(e) => differ(".mod", format!("error {e}"), "a go.mod".into()),
    }
    let mut zip = Vec::new();
    match code.zip(&info.version, &mut zip) {
        Ok(created) => {
            differ(
                "zip h1",
                created.h1,
                go.json["Sum"].as_str().unwrap_or("no zip").to_string(),
            );
            // The same files with the same bytes (what the h1 sums up, shown by file).
            let ours = zip_files(&zip);
            let theirs = go.zip.as_deref().map(zip_files).unwrap_or_default();
            let shown = |files: &BTreeMap<String, Vec<u8>>| {
                files
                    .iter()
                    .map(|(n, c)| format!("{n}={:?}", String::from_utf8_lossy(c)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            if ours != theirs {
                differ("zip files", shown(&ours), shown(&theirs));
            }
            diffs.extend(check_pinned(case, &ours));
        }
        // Both refuse the zip (x/mod's rules; the wording is protocol::zip's): a 4xx.
        Err(e) if go.json.get("Sum").is_none() && go.json.get("Error").is_some() => {
            if e.status().as_u16() >= 500 {
                differ(
                    "zip refusal",
                    format!("{} {e}", e.status()),
                    go.json["Error"].to_string(),
                );
            }
        }
        Err(e) => differ("zip", format!("error {e}"), format!("{}", go.json["Sum"])),
    }
    diffs
}

fn require_go() {
    let ok = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the go command is the reference here: install Go and put it on PATH"
    );
}

#[test]
fn every_answer_is_the_go_commands() {
    require_go();
    let root = RepoRoot::new();
    let cases = corpus::build(&root);
    let server = GitHttpServer::start(root.path(), None);
    let mut names: Vec<&'static str> = cases.iter().map(|c| c.repo).collect();
    names.dedup();
    let go = Go::new(&server, &names);
    let ours = Ours::new(&server, &names);

    let mut diffs = Vec::new();
    let mut compared = 0;
    let (mut go_time, mut our_time) = (Duration::ZERO, Duration::ZERO);
    for case in &cases {
        let code = ours.code_repo(case);
        let started = Instant::now();
        let theirs = go.versions(&case.module);
        go_time += started.elapsed();
        let started = Instant::now();
        let mine = code.versions("").map_err(|e| e.to_string());
        our_time += started.elapsed();
        if mine.is_err() || mine != theirs {
            diffs.push(format!(
                "{}: versions:\n    ours: {mine:?}\n    go:   {theirs:?}",
                case.module
            ));
        }
        for query in &case.queries {
            let started = Instant::now();
            let download = go.download(&case.module, query);
            go_time += started.elapsed();
            let started = Instant::now();
            diffs.extend(compare(case, &code, query, &download));
            our_time += started.elapsed();
            compared += 1;
        }
    }
    // For information (a benchmark belongs in bench/): the go command starts cold each time.
    eprintln!(
        "{compared} queries compared; the go command took {go_time:?}, modfleet {our_time:?} \
         (its first fetch of each mirror included)"
    );
    let pinned: usize = cases.iter().map(|c| c.pinned.len()).sum();
    assert!(pinned >= 15, "the corpus pins the attributes' effects");
    assert!(
        diffs.is_empty(),
        "{} differences from the go command:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
