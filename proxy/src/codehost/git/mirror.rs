//! The mirror itself: made once (atomically), fetched under a lock, its generation bumped
//! after each fetch so every reader (in this process or another) reloads the refs.

use std::time::Instant;

use sha2::{Digest, Sha256};

use super::GitRepo;
use super::parse::{HEAD_REF, Scope};
use crate::codehost::HostError;

/// Written after each successful fetch (a new value each time): its presence says the mirror
/// was fetched at least once, its change that the refs must be read again.
const GENERATION_FILE: &str = "modfleet-generation";

/// What the go command's `ensureGitAttributes` makes end its repository's `info/attributes`
/// before `git archive`: `export-subst` and `export-ignore` off for every path, so a zip does
/// not depend on git's version or the repository's size (golang.org/issue/27153).
/// `info/attributes` outranks the tree's `.gitattributes`; the mirror's holds nothing else.
const ARCHIVE_ATTRIBUTES: &str = "\n* -export-subst -export-ignore\n";

/// Whether a fetch failed because the server's repository uses SHA-256 and the mirror SHA-1
/// (git: "mismatched algorithms: client sha1; server sha256").
fn is_sha256_server(e: &HostError) -> bool {
    let m = e.to_string().to_ascii_lowercase();
    m.contains("mismatched algorithms") && m.contains("server sha256")
}

/// The mirror's directory name: a hash of the URL, never the URL itself as a path.
pub(super) fn mirror_name(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl GitRepo {
    /// Fetches (a refresh): waits for a fetch in progress, then fetches again.
    pub(super) fn fetch(&self) -> Result<(), HostError> {
        let _lock = self.lock()?;
        self.fetch_locked()
    }

    /// The mirror's generation, fetching first if it never was fetched; a first fetch in
    /// progress elsewhere is waited for, not repeated.
    pub(super) fn ensure_fetched(&self) -> Result<String, HostError> {
        if let Some(g) = self.generation() {
            return Ok(g);
        }
        let _lock = self.lock()?;
        if self.generation().is_none() {
            self.fetch_locked()?;
        }
        self.generation().ok_or_else(|| {
            HostError::Corrupt(format!(
                "{}: the mirror has no generation after a fetch",
                self.shown
            ))
        })
    }

    /// Fetches all branches and tags (and the remote's HEAD) into the mirror, creating it the
    /// first time. Called with the mirror's lock held.
    fn fetch_locked(&self) -> Result<(), HostError> {
        let started = Instant::now();
        let fetched_before = self.mirror.join(GENERATION_FILE).exists();
        if !self.mirror.join("objects").is_dir() {
            // No ls-remote first (two more round trips per repository): most repositories use
            // SHA-1, so the mirror starts as one, and is remade for SHA-256 when the server
            // says so. A missing repository or refused credentials fail the fetch as cleanly.
            self.init_mirror(false)?;
        }
        let fetched = match self.fetch_refs_and_head() {
            Err(e) if !fetched_before && is_sha256_server(&e) => {
                self.remove_unfetched_mirror()?;
                self.init_mirror(true)?;
                self.fetch_refs_and_head()
            }
            r => r,
        };
        if let Err(e) = fetched {
            // A repository that could not be had leaves nothing behind (a client asking for
            // many missing ones must not fill the disk with empty mirrors).
            if !fetched_before {
                self.remove_unfetched_mirror()?;
            }
            return Err(e);
        }
        self.bump_generation()?;
        tracing::info!(
            repo = %self.shown,
            first = !fetched_before,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "git mirror fetched"
        );
        // Packing loose objects now and then keeps reads fast; its failure costs nothing.
        if let Err(e) = self.output(
            Scope::Local,
            "gc",
            &["gc", "--auto", "--quiet"],
            &[],
            1 << 20,
        ) {
            tracing::warn!(repo = %self.shown, error = %e, "git gc --auto failed");
        }
        Ok(())
    }

    /// Removes a mirror that was never fetched (no reader uses it: reads wait for a
    /// generation). Called under the lock.
    fn remove_unfetched_mirror(&self) -> Result<(), HostError> {
        match std::fs::remove_dir_all(&self.mirror) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HostError::Unavailable(format!(
                "cannot remove the unfetched Git mirror {}: {e}",
                self.mirror.display()
            ))),
        }
    }

    /// [`GitRepo::fetch_refs`] with the remote's HEAD, or without when the remote has none
    /// (an unborn or deleted HEAD, an empty repository).
    fn fetch_refs_and_head(&self) -> Result<(), HostError> {
        match self.fetch_refs(true) {
            Err(HostError::Unavailable(m))
                if m.to_ascii_lowercase().contains("couldn't find remote ref") =>
            {
                self.fetch_refs(false)
            }
            r => r,
        }
    }

    /// One `git fetch` of heads and tags (pruning what the remote deleted) and, with
    /// `head`, the remote's HEAD into [`HEAD_REF`]; without, [`HEAD_REF`] is deleted.
    fn fetch_refs(&self, head: bool) -> Result<(), HostError> {
        let mut args = vec![
            "fetch",
            "--prune",
            "--force",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-auto-gc",
            "--no-auto-maintenance",
            "--no-recurse-submodules",
            "--end-of-options",
            &self.url,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ];
        let head_spec = format!("+HEAD:{HEAD_REF}");
        if head {
            args.push(&head_spec);
        }
        self.output(Scope::Remote, "fetch", &args, &[], 1 << 20)?;
        if !head {
            self.output(
                Scope::Local,
                "update-ref",
                &["update-ref", "-d", HEAD_REF],
                &[],
                1 << 20,
            )?;
        }
        Ok(())
    }

    /// Creates the bare mirror in a temporary directory and renames it into place, so a
    /// crash never leaves a half-made mirror. Called under the lock.
    fn init_mirror(&self, sha256: bool) -> Result<(), HostError> {
        let name = self
            .mirror
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let tmp_prefix = format!("{name}.tmp-");
        // Leftovers of a crashed init (we hold the lock: nobody else is making one).
        if let Ok(entries) = std::fs::read_dir(&self.options.dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&tmp_prefix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let tmp = self
            .options
            .dir
            .join(format!("{tmp_prefix}{}", std::process::id()));
        let tmp_s = tmp.to_string_lossy().into_owned();
        let format = if sha256 { "sha256" } else { "sha1" };
        self.output(
            Scope::Local,
            "init",
            &[
                "init",
                "--bare",
                "--quiet",
                "--template=",
                &format!("--object-format={format}"),
                "--",
                &tmp_s,
            ],
            &[],
            1 << 20,
        )?;
        std::fs::rename(&tmp, &self.mirror).map_err(|e| {
            HostError::Unavailable(format!(
                "cannot move the new Git mirror into {}: {e}",
                self.mirror.display()
            ))
        })
    }

    /// The fetch lock: exclusive, across threads and processes.
    fn lock(&self) -> Result<std::fs::File, HostError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| {
                HostError::Unavailable(format!(
                    "cannot open the Git mirror lock {}: {e}",
                    self.lock_path.display()
                ))
            })?;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => return Ok(file),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(HostError::Unavailable(format!(
                        "cannot lock the Git mirror {}: {e}",
                        self.lock_path.display()
                    )));
                }
            }
        }
    }

    /// Makes the mirror's `info/attributes` [`ARCHIVE_ATTRIBUTES`] (replaced atomically, so a
    /// concurrent `git archive` sees the old file or the new one).
    pub(super) fn ensure_archive_attributes(&self) -> Result<(), HostError> {
        let info = self.mirror.join("info");
        let path = info.join("attributes");
        if std::fs::read(&path).is_ok_and(|d| d == ARCHIVE_ATTRIBUTES.as_bytes()) {
            return Ok(());
        }
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&info)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&info)?;
            std::io::Write::write_all(&mut tmp, ARCHIVE_ATTRIBUTES.as_bytes())?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| {
            HostError::Unavailable(format!(
                "cannot write {}: {e} (the Git mirror directory must be writable)",
                path.display()
            ))
        })
    }

    pub(super) fn generation(&self) -> Option<String> {
        std::fs::read_to_string(self.mirror.join(GENERATION_FILE)).ok()
    }

    fn bump_generation(&self) -> Result<(), HostError> {
        let next = self
            .generation()
            .and_then(|g| g.trim().parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let path = self.mirror.join(GENERATION_FILE);
        let tmp = self.mirror.join(format!("{GENERATION_FILE}.tmp"));
        std::fs::write(&tmp, next.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| HostError::Unavailable(format!("cannot write {}: {e}", path.display())))
    }
}
