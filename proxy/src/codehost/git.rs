//! [`GitRepo`]: a [`CodeHost`] over a bare mirror of one repository, kept with the `git`
//! command as the go command keeps its own (`cmd/go/internal/modfetch/codehost/git.go`): the
//! same protocol, credential and SSH behaviour, one incremental `git fetch` per refresh.
//!
//! Layout under the directory we are given: `<sha256(url)>/` the bare mirror,
//! `<sha256(url)>.lock` the fetch lock (flock: one fetch at a time per mirror, across
//! processes; reads never wait for it), `.home/` an empty HOME for git and ssh.
//!
//! Differences from the go command, on purpose: every refresh fetches all branches and tags
//! (go fetches one ref at a time until it needs more), so reads never touch the network; the
//! remote's HEAD is kept as `refs/modfleet/HEAD` so `latest` needs no `ls-remote`; tags deleted on the
//! remote are pruned, as go's `ls-remote` would no longer list them.

mod auth;
mod mirror;
mod parse;
mod run;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ChildStdout;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

pub use auth::{Credentials, HttpsUser};
use parse::{BatchHeader, Refs, Scope};
use run::{GitCommand, RunError};

use super::{
    BlobSink, CodeHost, HostError, RevInfo, Tag, TreeFile, check_hash, check_path, check_rev,
    display_url,
};
use crate::protocol::semver;

/// The go command's shortest hash prefix taken as a commit (`minHashDigits`).
const MIN_HASH_DIGITS: usize = 7;

/// How a [`GitRepo`] runs git, shared by all repositories of a process.
#[derive(Debug, Clone)]
pub struct GitOptions {
    /// Where mirrors live (created if missing); ours alone.
    pub dir: PathBuf,
    /// The `git` program.
    pub git: PathBuf,
    /// The longest an `ls-remote` or a `fetch` (a cold clone included) may take.
    pub fetch_deadline: Duration,
    /// The longest a read of the mirror may take.
    pub read_deadline: Duration,
    /// Allow `http://` repositories (tests, and GOINSECURE-like setups): credentials would
    /// cross the network in clear text.
    pub allow_insecure_http: bool,
    pub limits: Limits,
}

impl GitOptions {
    pub fn new(dir: impl Into<PathBuf>) -> GitOptions {
        GitOptions {
            dir: dir.into(),
            git: PathBuf::from("git"),
            fetch_deadline: Duration::from_secs(600),
            read_deadline: Duration::from_secs(120),
            allow_insecure_http: false,
            limits: Limits::default(),
        }
    }
}

/// Bounds on what git may hand us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of a ref listing (`ls-remote`, `show-ref`, `for-each-ref`).
    pub refs_bytes: u64,
    /// Entries of one `tree` answer.
    pub tree_entries: usize,
    /// Bytes of one `tree` listing.
    pub tree_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            refs_bytes: 64 << 20,
            tree_entries: 500_000,
            tree_bytes: 256 << 20,
        }
    }
}

/// One repository's mirror.
pub struct GitRepo {
    url: String,
    /// `url` without userinfo, for messages.
    shown: String,
    mirror: PathBuf,
    lock_path: PathBuf,
    git: GitCommand,
    options: GitOptions,
    credentials: Credentials,
    transport: auth::Transport,
    /// The refs as last loaded, with the generation they were loaded at.
    refs: Mutex<Option<(String, Arc<Refs>)>>,
}

impl GitRepo {
    /// Prepares the mirror of `url` (no network until the first read or refresh).
    pub fn open(
        url: &str,
        credentials: Credentials,
        options: &GitOptions,
    ) -> Result<GitRepo, HostError> {
        let transport = auth::transport(url, options.allow_insecure_http)?;
        let shown = display_url(url);
        let local = |e: std::io::Error, what: &Path| {
            HostError::Unavailable(format!(
                "cannot prepare the Git mirror directory {}: {e} (it must be writable by the proxy)",
                what.display()
            ))
        };
        let home = options.dir.join(".home");
        std::fs::create_dir_all(&home).map_err(|e| local(e, &home))?;
        let name = mirror::mirror_name(url);
        let git = GitCommand {
            program: options.git.clone(),
            env: vec![
                ("HOME".into(), home.clone().into()),
                ("XDG_CONFIG_HOME".into(), home.join(".config").into()),
                ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
                ("GIT_CONFIG_SYSTEM".into(), "/dev/null".into()),
                ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
                ("GIT_TERMINAL_PROMPT".into(), "0".into()),
                ("GIT_LITERAL_PATHSPECS".into(), "1".into()),
                ("GIT_NO_REPLACE_OBJECTS".into(), "1".into()),
                ("GIT_OPTIONAL_LOCKS".into(), "0".into()),
            ],
            config: [
                "protocol.allow=never",
                "protocol.https.allow=always",
                "protocol.ssh.allow=always",
                if options.allow_insecure_http {
                    "protocol.http.allow=always"
                } else {
                    "protocol.http.allow=never"
                },
                "core.hooksPath=/dev/null",
                "core.askPass=",
                "credential.helper=",
                "gc.autoDetach=false",
                "maintenance.autoDetach=false",
                "fetch.recurseSubmodules=false",
                "submodule.recurse=false",
                "init.defaultBranch=main",
                "log.showSignature=false",
            ]
            .map(String::from)
            .to_vec(),
        };
        Ok(GitRepo {
            url: url.to_string(),
            shown,
            mirror: options.dir.join(&name),
            lock_path: options.dir.join(format!("{name}.lock")),
            git,
            options: options.clone(),
            credentials,
            transport,
            refs: Mutex::new(None),
        })
    }

    /// The repository URL without userinfo.
    pub fn display_url(&self) -> &str {
        &self.shown
    }

    /// The bare mirror's directory.
    pub fn mirror_dir(&self) -> &Path {
        &self.mirror
    }

    /// Runs git (a remote operation outside the mirror, a local one in it), handing stdout
    /// to `read`. An exit code other than 0 and those in `expected` is an error classified
    /// from stderr.
    fn run<R>(
        &self,
        scope: Scope,
        op: &str,
        args: Vec<OsString>,
        expected: &[i32],
        stdin: Option<Vec<u8>>,
        read: impl FnOnce(&mut ChildStdout) -> Result<R, HostError>,
    ) -> Result<(R, i32), HostError> {
        let what = format!("git {op} of {}", self.shown);
        let deadline = match scope {
            Scope::Remote => self.options.fetch_deadline,
            Scope::Local => self.options.read_deadline,
        };
        // Only these run before the mirror exists; everything else runs in it.
        let git_dir = (!matches!(op, "ls-remote" | "init")).then_some(self.mirror.as_path());
        let mut git = self.git.clone();
        if scope == Scope::Remote {
            let setup = auth::setup(self.transport, &self.credentials, &self.shown)?;
            git.env.extend(setup.env);
            git.config.extend(setup.config);
        }
        let mut cmd = git.command(git_dir, args);
        if git_dir.is_none() {
            cmd.current_dir(&self.options.dir);
        }
        match run::run(cmd, deadline, stdin, read) {
            Ok(f) => match f.status.code() {
                Some(code) if code == 0 || expected.contains(&code) => Ok((f.value, code)),
                _ => Err(parse::classify(&what, scope, &f.stderr)),
            },
            Err(RunError::Spawn(e)) => Err(HostError::Unavailable(format!(
                "{what}: cannot run {}: {e} (install git)",
                self.options.git.display()
            ))),
            Err(RunError::TimedOut { stderr }) => Err(HostError::Unavailable(format!(
                "{what}: no answer within {:?}, killed ({}; the deadline is configurable){}",
                deadline,
                match scope {
                    Scope::Remote => "the Git server is hung or too slow",
                    Scope::Local => "the local mirror is huge or its disk overloaded",
                },
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": {}",
                        super::sanitize(
                            &super::scrub_userinfo(&String::from_utf8_lossy(&stderr)),
                            300
                        )
                    )
                }
            ))),
            Err(RunError::Aborted(e)) => Err(e),
        }
    }

    /// Runs git and returns its stdout (at most `cap` bytes) and exit code (0 or one of
    /// `expected`).
    fn output(
        &self,
        scope: Scope,
        op: &str,
        args: &[&str],
        expected: &[i32],
        cap: u64,
    ) -> Result<(Vec<u8>, i32), HostError> {
        let what = format!("git {op} of {}", self.shown);
        self.run(scope, op, to_os(args), expected, None, |out| {
            run::read_capped(out, cap, || {
                HostError::TooLarge(format!("{what}: more than {cap} bytes of output"))
            })
        })
    }

    /// The mirror's refs, fetching first if it never was, reloaded when a fetch (ours or
    /// another process's) changed them.
    fn refs(&self) -> Result<Arc<Refs>, HostError> {
        let generation = self.ensure_fetched()?;
        if let Some((g, refs)) = &*self.refs.lock().unwrap_or_else(|e| e.into_inner())
            && *g == generation
        {
            return Ok(refs.clone());
        }
        let (out, _) = self.output(
            Scope::Local,
            "show-ref",
            &["show-ref", "-d"],
            // 1: no refs at all (an empty repository).
            &[1],
            self.options.limits.refs_bytes,
        )?;
        let refs = Arc::new(Refs::from_show_ref(&out)?);
        *self.refs.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, refs.clone()));
        Ok(refs)
    }

    /// Hash and committer time of `rev` in the mirror (`git log -n1`, as go's `statLocal`).
    fn commit(&self, rev: &str) -> Result<(String, i64), HostError> {
        let (out, _) = self.output(
            Scope::Local,
            "log",
            &[
                "log",
                "--no-decorate",
                "-n1",
                "--format=format:%H %ct",
                "--end-of-options",
                rev,
                "--",
            ],
            &[],
            4096,
        )?;
        if out.is_empty() {
            return Err(HostError::NotFound(format!(
                "{}: unknown revision {rev}",
                self.shown
            )));
        }
        parse::hash_and_time(&out)
    }

    fn rev_info(
        &self,
        refs: &Refs,
        name: &str,
        rev: &str,
        reference: Option<String>,
    ) -> Result<RevInfo, HostError> {
        let (hash, secs) = self.commit(rev)?;
        let time = if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        };
        Ok(RevInfo {
            short: hash[..12].to_string(),
            tags: refs.tags_at(&hash),
            time,
            hash,
            name: name.to_string(),
            reference,
        })
    }

    /// Streams `git cat-file --batch` for `names` (`HASH:PATH` lines), calling `each` with
    /// the header and a reader of exactly the object's bytes when present.
    fn cat_file<F>(&self, names: &[String], mut each: F) -> Result<(), HostError>
    where
        F: FnMut(usize, BatchHeader, &mut dyn Read) -> Result<(), HostError>,
    {
        let mut input = Vec::new();
        for n in names {
            input.extend_from_slice(n.as_bytes());
            input.push(b'\n');
        }
        let what = format!("git cat-file of {}", self.shown);
        let count = names.len();
        let (res, _) = self.run(
            Scope::Local,
            "cat-file",
            to_os(&["cat-file", "--batch"]),
            &[],
            Some(input),
            |out| {
                let mut r = BufReader::new(out);
                for i in 0..count {
                    let mut line = Vec::new();
                    (&mut r)
                        .take(1024)
                        .read_until(b'\n', &mut line)
                        .map_err(|e| HostError::Unavailable(format!("{what}: reading: {e}")))?;
                    if line.pop() != Some(b'\n') {
                        return Err(HostError::Corrupt(format!("{what}: output cut short")));
                    }
                    let header = parse::batch_header(&line)?;
                    let size = match &header {
                        BatchHeader::Object { size, .. } => *size,
                        BatchHeader::Missing => {
                            each(i, header, &mut std::io::empty())?;
                            continue;
                        }
                    };
                    let mut body = (&mut r).take(size);
                    each(i, header, &mut body)?;
                    // Whatever `each` left unread, then the newline after the object.
                    std::io::copy(&mut body, &mut std::io::sink())
                        .and_then(|_| std::io::copy(&mut (&mut r).take(1), &mut std::io::sink()))
                        .map_err(|e| HostError::Unavailable(format!("{what}: reading: {e}")))?;
                }
                Ok(())
            },
        )?;
        Ok(res)
    }
}

impl CodeHost for GitRepo {
    fn refresh(&self) -> Result<(), HostError> {
        self.fetch()
    }

    fn tags(&self, prefix: &str) -> Result<Vec<Tag>, HostError> {
        let refs = self.refs()?;
        Ok(refs
            .tags
            .range(prefix.to_string()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, hash)| Tag {
                name: name.clone(),
                hash: hash.clone(),
            })
            .collect())
    }

    fn stat(&self, rev: &str) -> Result<RevInfo, HostError> {
        check_rev(rev)?;
        let refs = self.refs()?;
        let hash_len = refs.hash_len();
        let hexish = rev.len() >= MIN_HASH_DIGITS
            && rev.len() <= hash_len
            && rev.bytes().all(|b| b.is_ascii_hexdigit());
        if hexish {
            match self.rev_info(&refs, rev, rev, None) {
                Err(HostError::NotFound(_)) => {}
                Ok(mut info) => {
                    info.reference = refs.reference_naming(&info.hash);
                    return Ok(info);
                }
                r => return r,
            }
        }
        if let Some(hash) = refs.tags.get(rev) {
            return self.rev_info(&refs, rev, hash, Some(format!("refs/tags/{rev}")));
        }
        if let Some(hash) = refs.branches.get(rev) {
            return self.rev_info(&refs, rev, hash, Some(format!("refs/heads/{rev}")));
        }
        if rev == "HEAD"
            && let Some(hash) = &refs.head
        {
            // The go command fetches HEAD's commit under a dummy name and records no Ref.
            return self.rev_info(&refs, rev, hash, None);
        }
        if hexish {
            // A prefix ambiguous among all objects may still name one ref's commit (go
            // resolves it so too).
            let lower = rev.to_ascii_lowercase();
            let mut hits: Vec<&String> = refs
                .all_hashes()
                .filter(|h| h.starts_with(&lower))
                .collect();
            hits.sort();
            hits.dedup();
            if let [hash] = hits.as_slice() {
                return self.rev_info(&refs, rev, hash, refs.reference_naming(hash));
            }
        }
        Err(HostError::NotFound(format!(
            "{}: unknown revision {rev}",
            self.shown
        )))
    }

    fn latest(&self) -> Result<RevInfo, HostError> {
        let refs = self.refs()?;
        let Some(head) = refs.head.clone() else {
            return Err(HostError::NotFound(format!(
                "{}: the repository has no commits (no HEAD)",
                self.shown
            )));
        };
        self.rev_info(&refs, "HEAD", &head, Some("HEAD".into()))
    }

    fn read_file(
        &self,
        hash: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, HostError> {
        check_hash(hash)?;
        check_path(path, false)?;
        self.refs()?;
        let mut found = None;
        self.cat_file(&[format!("{hash}:{path}")], |_, header, body| {
            match header {
                BatchHeader::Object { kind, size } if kind == "blob" => {
                    if size > max_bytes {
                        return Err(HostError::TooLarge(format!(
                            "{}: {path} at {hash} is {size} bytes, more than {max_bytes}",
                            self.shown
                        )));
                    }
                    let mut data = Vec::with_capacity(size as usize);
                    body.read_to_end(&mut data).map_err(|e| {
                        HostError::Unavailable(format!("{}: reading {path}: {e}", self.shown))
                    })?;
                    found = Some(data);
                }
                // A directory or a submodule is not a file; go reports it as absent too.
                BatchHeader::Object { .. } | BatchHeader::Missing => {}
            }
            Ok(())
        })?;
        Ok(found)
    }

    fn tree(&self, hash: &str, subdir: &str) -> Result<Vec<TreeFile>, HostError> {
        check_hash(hash)?;
        check_path(subdir, true)?;
        self.refs()?;
        let treeish = format!("{hash}:{subdir}");
        let limits = self.options.limits;
        let what = format!("git ls-tree of {} at {treeish}", self.shown);
        let (files, _) = self.run(
            Scope::Local,
            "ls-tree",
            to_os(&[
                "ls-tree",
                "-r",
                "-z",
                "--long",
                "--end-of-options",
                &treeish,
            ]),
            &[],
            None,
            |out| {
                let mut r = BufReader::new(out).take(limits.tree_bytes + 1);
                let mut files = Vec::new();
                let mut record = Vec::new();
                loop {
                    record.clear();
                    let n = (&mut r)
                        .take(64 * 1024)
                        .read_until(0, &mut record)
                        .map_err(|e| HostError::Unavailable(format!("{what}: reading: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    if record.pop() != Some(0) {
                        return Err(if r.limit() == 0 {
                            HostError::TooLarge(format!(
                                "{what}: more than {} bytes of listing",
                                limits.tree_bytes
                            ))
                        } else {
                            HostError::Corrupt(format!("{what}: listing cut short"))
                        });
                    }
                    if files.len() == limits.tree_entries {
                        return Err(HostError::TooLarge(format!(
                            "{what}: more than {} files",
                            limits.tree_entries
                        )));
                    }
                    let e = parse::tree_entry(&record)?;
                    let (path, lossy) = match String::from_utf8(e.path) {
                        Ok(p) => (p, false),
                        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
                    };
                    files.push(TreeFile {
                        path,
                        kind: e.kind,
                        size: e.size,
                        lossy,
                    });
                }
                Ok(files)
            },
        )?;
        Ok(files)
    }

    fn read_blobs(
        &self,
        hash: &str,
        subdir: &str,
        paths: &[String],
        max_total: u64,
        each: &mut BlobSink<'_>,
    ) -> Result<(), HostError> {
        check_hash(hash)?;
        check_path(subdir, true)?;
        for p in paths {
            check_path(p, false)?;
        }
        self.refs()?;
        let names: Vec<String> = paths
            .iter()
            .map(|p| match subdir {
                "" => format!("{hash}:{p}"),
                d => format!("{hash}:{d}/{p}"),
            })
            .collect();
        let mut total = 0u64;
        self.cat_file(&names, |i, header, body| {
            let path = &paths[i];
            let size = match header {
                BatchHeader::Object { kind, size } if kind == "blob" => size,
                _ => {
                    return Err(HostError::NotFound(format!(
                        "{}: {path} is not a file at {hash}",
                        self.shown
                    )));
                }
            };
            total = total.saturating_add(size);
            if total > max_total {
                return Err(HostError::TooLarge(format!(
                    "{}: the files at {hash} add up to more than {max_total} bytes",
                    self.shown
                )));
            }
            let mut data = Vec::with_capacity(size as usize);
            body.read_to_end(&mut data).map_err(|e| {
                HostError::Unavailable(format!("{}: reading {path}: {e}", self.shown))
            })?;
            if data.len() as u64 != size {
                return Err(HostError::Corrupt(format!(
                    "{}: {path} at {hash} was cut short",
                    self.shown
                )));
            }
            each(path, &data)
        })
    }

    fn recent_tag(
        &self,
        hash: &str,
        prefix: &str,
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<Option<String>, HostError> {
        check_hash(hash)?;
        self.refs()?;
        let merged = format!("--merged={hash}");
        let (out, _) = self.output(
            Scope::Local,
            "for-each-ref",
            &["for-each-ref", "--format=%(refname)", &merged, "refs/tags/"],
            &[],
            self.options.limits.refs_bytes,
        )?;
        // As go: the highest valid semver after the prefix, first of equals in ref order.
        let mut highest: Option<&str> = None;
        let text = String::from_utf8_lossy(&out);
        for line in text.lines() {
            let Some(tag) = line.trim().strip_prefix("refs/tags/") else {
                continue;
            };
            let Some(semtag) = tag.strip_prefix(prefix) else {
                continue;
            };
            if !allowed(tag) || !semver::is_valid(semtag) {
                continue;
            }
            if highest.is_none_or(|h| semver::compare(semtag, h).is_gt()) {
                highest = Some(semtag);
            }
        }
        Ok(highest.map(|h| format!("{prefix}{h}")))
    }

    fn descends_from(&self, hash: &str, tag: &str) -> Result<bool, HostError> {
        check_hash(hash)?;
        check_rev(tag)?;
        let refs = self.refs()?;
        let Some(target) = refs.tags.get(tag) else {
            return Ok(false);
        };
        let (_, code) = self.output(
            Scope::Local,
            "merge-base",
            &[
                "merge-base",
                "--is-ancestor",
                "--end-of-options",
                target,
                hash,
            ],
            // 1: not an ancestor.
            &[1],
            4096,
        )?;
        Ok(code == 0)
    }
}

impl Refs {
    /// Hex digits of this repository's hashes (40, or 64 for SHA-256).
    fn hash_len(&self) -> usize {
        self.all_hashes().next().map_or(40, String::len)
    }

    /// The ref the go command records as `Origin.Ref` for a commit asked for by hash (its
    /// `stat` of a hash on a fresh clone): the least ref name pointing at it, none when that
    /// is `HEAD` (fetched under a dummy name) or nothing points at it.
    fn reference_naming(&self, hash: &str) -> Option<String> {
        if self.head.as_deref() == Some(hash) {
            return None;
        }
        // "refs/heads/" sorts before "refs/tags/", and each map is sorted by name.
        if let Some((branch, _)) = self.branches.iter().find(|(_, h)| *h == hash) {
            return Some(format!("refs/heads/{branch}"));
        }
        self.tags
            .iter()
            .find(|(_, h)| *h == hash)
            .map(|(tag, _)| format!("refs/tags/{tag}"))
    }

    fn all_hashes(&self) -> impl Iterator<Item = &String> {
        self.head
            .iter()
            .chain(self.tags.values())
            .chain(self.branches.values())
    }
}

fn to_os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}
