//! Real Git servers for tests, serving repositories the tests make:
//!
//! - [`RepoRoot`] / [`TestRepo`]: bare repositories under one directory, changed through a
//!   work tree (files, executables, symlinks, gitlinks, lightweight and annotated tags,
//!   branches) with fixed dates, so hashes and times are the same on every run;
//! - [`GitHttpServer`]: git's own smart-HTTP server, `git http-backend`, run as CGI behind a
//!   small HTTP/1.1 host on loopback, with Basic auth (401 + `WWW-Authenticate` as real
//!   servers answer);
//! - [`Sshd`]: a real OpenSSH `sshd` on a loopback port with a generated host key and client
//!   key; repositories are reached by absolute path as the current user.
//!
//! The test's own git runs without the machine's configuration (`GIT_CONFIG_GLOBAL=/dev/null`,
//! `GIT_CONFIG_NOSYSTEM=1`).

mod http;
mod sshd;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use http::{BasicAuth, GitHttpServer, HttpRequest};
pub use sshd::Sshd;

/// A directory of bare repositories (`NAME.git`), what the servers export.
pub struct RepoRoot {
    dir: tempfile::TempDir,
}

impl Default for RepoRoot {
    fn default() -> RepoRoot {
        RepoRoot::new()
    }
}

impl RepoRoot {
    pub fn new() -> RepoRoot {
        RepoRoot {
            dir: tempfile::tempdir().expect("temporary directory for Git repositories"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new empty repository `NAME.git` whose default branch (HEAD) is `main`, with its
    /// work tree beside the exported ones.
    pub fn create(&self, name: &str) -> TestRepo {
        self.create_with_format(name, "sha1")
    }

    /// Like [`create`](RepoRoot::create), with SHA-256 object names.
    pub fn create_sha256(&self, name: &str) -> TestRepo {
        self.create_with_format(name, "sha256")
    }

    fn create_with_format(&self, name: &str, object_format: &str) -> TestRepo {
        let bare = self.path().join(format!("{name}.git"));
        let work = self.path().join(".work").join(name);
        std::fs::create_dir_all(&work).expect("work tree directory");
        let format = format!("--object-format={object_format}");
        git(
            self.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                &format,
                &bare.to_string_lossy(),
            ],
        );
        git(&work, &["init", "-q", "-b", "main", &format]);
        TestRepo {
            name: name.to_string(),
            bare,
            work,
        }
    }
}

/// A change to one path in [`TestRepo::commit`].
#[derive(Debug, Clone)]
pub enum Change {
    File(Vec<u8>),
    Executable(Vec<u8>),
    Symlink(String),
    /// A submodule entry (mode 160000) naming this commit of another repository.
    Gitlink(String),
    Delete,
}

impl Change {
    /// A regular file with this text.
    pub fn text(s: &str) -> Change {
        Change::File(s.as_bytes().to_vec())
    }
}

/// One exported repository. Every change is pushed to the bare repository at once (refs
/// deleted locally are deleted there too), so servers see it immediately.
pub struct TestRepo {
    pub name: String,
    /// The exported bare repository (`ROOT/NAME.git`).
    pub bare: PathBuf,
    work: PathBuf,
}

impl TestRepo {
    /// Commits `changes` on the current branch at `unix_time` (author and committer date)
    /// and returns the commit hash.
    pub fn commit(&self, message: &str, unix_time: i64, changes: &[(&str, Change)]) -> String {
        for (path, change) in changes {
            let file = self.work.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).expect("parent directory");
            }
            let remove = || {
                if file.symlink_metadata().is_ok() {
                    std::fs::remove_file(&file)
                        .or_else(|_| std::fs::remove_dir_all(&file))
                        .expect("remove old entry");
                }
            };
            match change {
                Change::File(data) | Change::Executable(data) => {
                    remove();
                    std::fs::write(&file, data).expect("write file");
                    let mode = if matches!(change, Change::Executable(_)) {
                        0o755
                    } else {
                        0o644
                    };
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
                        .expect("chmod");
                    git(&self.work, &["add", "--", path]);
                }
                Change::Symlink(target) => {
                    remove();
                    std::os::unix::fs::symlink(target, &file).expect("symlink");
                    git(&self.work, &["add", "--", path]);
                }
                Change::Gitlink(hash) => {
                    remove();
                    git(
                        &self.work,
                        &[
                            "update-index",
                            "--add",
                            "--cacheinfo",
                            &format!("160000,{hash},{path}"),
                        ],
                    );
                }
                Change::Delete => {
                    git(
                        &self.work,
                        &["rm", "-q", "-r", "--cached", "--ignore-unmatch", "--", path],
                    );
                    remove();
                }
            }
        }
        git_at(
            &self.work,
            unix_time,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.publish();
        self.rev_parse("HEAD")
    }

    /// A lightweight tag `name` at `rev` (moved if it exists).
    pub fn tag(&self, name: &str, rev: &str) {
        git(&self.work, &["tag", "-f", name, rev]);
        self.publish();
    }

    /// An annotated tag `name` at `rev`, dated `unix_time`.
    pub fn annotated_tag(&self, name: &str, rev: &str, message: &str, unix_time: i64) {
        git_at(
            &self.work,
            unix_time,
            &["tag", "-f", "-a", "-m", message, name, rev],
        );
        self.publish();
    }

    pub fn delete_tag(&self, name: &str) {
        git(&self.work, &["tag", "-d", name]);
        self.publish();
    }

    /// Creates or moves branch `name` to `rev`.
    pub fn branch(&self, name: &str, rev: &str) {
        git(&self.work, &["branch", "-f", name, rev]);
        self.publish();
    }

    /// Makes later commits go onto branch `name` (which must exist).
    pub fn switch(&self, name: &str) {
        git(&self.work, &["checkout", "-q", "-f", name]);
    }

    /// Makes `branch` the repository's default branch (its HEAD).
    pub fn set_head(&self, branch: &str) {
        git(
            &self.bare,
            &["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")],
        );
    }

    /// The full hash `rev` names.
    pub fn rev_parse(&self, rev: &str) -> String {
        let out = git(
            &self.work,
            &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
        );
        out.trim().to_string()
    }

    fn publish(&self) {
        git(
            &self.work,
            &[
                "push",
                "-q",
                "--force",
                "--prune",
                &self.bare.to_string_lossy(),
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
        );
    }
}

/// Runs the test's git in `dir` and returns stdout; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run_git(git_command(dir), args)
}

/// Like [`git`], with author and committer date `unix_time`.
fn git_at(dir: &Path, unix_time: i64, args: &[&str]) -> String {
    let mut cmd = git_command(dir);
    let date = format!("@{unix_time} +0000");
    cmd.env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date);
    run_git(cmd, args)
}

fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Modfleet Test")
        .env("GIT_AUTHOR_EMAIL", "test@modfleet.invalid")
        .env("GIT_COMMITTER_NAME", "Modfleet Test")
        .env("GIT_COMMITTER_EMAIL", "test@modfleet.invalid")
        .env("GIT_AUTHOR_DATE", "@1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "@1700000000 +0000");
    cmd
}

fn run_git(mut cmd: Command, args: &[&str]) -> String {
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git (install it: apt-get install -y git): {e}"));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
