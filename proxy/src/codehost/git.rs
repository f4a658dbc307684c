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
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ChildStdout;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

pub use auth::{Credentials, HttpsUser};
use parse::{BatchHeader, Refs, Scope};
use run::{GitCommand, RunError};

use super::{
    CodeHost, HostError, RevInfo, SpooledZip, Tag, check_hash, check_path, check_rev, display_url,
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
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            refs_bytes: 64 << 20,
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

    /// `git archive` as the go command's `ReadZip` runs it (`stored`: with `-0`), spooled to
    /// an unnamed file in the mirrors' directory; `TooLarge` past `max_bytes`.
    fn archive(
        &self,
        hash: &str,
        subdir: &str,
        stored: bool,
        max_bytes: u64,
    ) -> Result<SpooledZip, HostError> {
        let spool = |e: std::io::Error| {
            HostError::Unavailable(format!(
                "cannot spool git archive of {} to {}: {e} (the cache directory must be \
                 writable and have room for a module)",
                self.shown,
                self.options.dir.display()
            ))
        };
        let mut file = tempfile::tempfile_in(&self.options.dir).map_err(spool)?;
        // The go command's command line (codehost/git.go, ReadZip), but for the literal
        // pathspec (GIT_LITERAL_PATHSPECS: a directory is never read as a glob).
        let mut args = vec![
            "-c",
            "core.autocrlf=input",
            "-c",
            "core.eol=lf",
            "archive",
            "--format=zip",
            "--prefix=prefix/",
        ];
        if stored {
            args.push("-0");
        }
        args.extend(["--end-of-options", hash]);
        if !subdir.is_empty() {
            args.push(subdir);
        }
        let what = format!("git archive of {} at {hash}", self.shown);
        let archived = self.run(Scope::Local, "archive", to_os(&args), &[], None, |out| {
            let mut buf = vec![0; 64 << 10];
            let mut size = 0u64;
            loop {
                let n = match out.read(&mut buf) {
                    Ok(0) => return Ok(size),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(HostError::Unavailable(format!("{what}: reading: {e}")));
                    }
                };
                size += n as u64;
                if size > max_bytes {
                    return Err(HostError::TooLarge(format!(
                        "{what}: more than {max_bytes} bytes of archive (the go command's \
                         limit on a module)"
                    )));
                }
                file.write_all(&buf[..n]).map_err(spool)?;
            }
        });
        let size = match archived {
            Ok((size, _)) => size,
            // A tree with a path git will not write (`.git`, `..`): the go command gets no
            // zip either, and no retry changes that.
            Err(HostError::Corrupt(m)) if m.contains("invalid path '") => {
                return Err(HostError::NotFound(format!(
                    "{m} (git refuses to export a path of this tree, so there is no zip of it)"
                )));
            }
            Err(e) => return Err(e),
        };
        Ok(SpooledZip { file, size })
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

    fn read_zip(&self, hash: &str, subdir: &str, max_bytes: u64) -> Result<SpooledZip, HostError> {
        check_hash(hash)?;
        check_path(subdir, true)?;
        self.refs()?;
        self.ensure_archive_attributes()?;
        // Stored first: the same files and bytes (compression changes no content) for a
        // fraction of the CPU. git stores an entry whose deflate would not be smaller, so
        // the go command's compressed archive is never larger than the stored one: within
        // the limit stored, within it for the go command too. Past it, the archive is made
        // again exactly as the go command makes it, and its size decides, as for the go
        // command ("downloaded zip file too large").
        match self.archive(hash, subdir, true, max_bytes) {
            Err(HostError::TooLarge(_)) => self.archive(hash, subdir, false, max_bytes),
            r => r,
        }
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
