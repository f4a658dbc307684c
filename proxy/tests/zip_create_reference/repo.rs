//! Git repositories for tests/zip_create_reference.rs: written file by file and committed
//! with git, or written as raw tree objects git itself would refuse to make; and their files
//! as modfleet's code host reads them from `git archive`.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use modfleet_proxy::protocol::zip::Limits;
use modfleet_proxy::protocol::zip::create::SourceFile;
use modfleet_proxy::protocol::zip::create::git_archive::ArchivedFiles;

/// Environment for every git run, ours and Go's: no user or system configuration.
pub fn git_env(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_AUTHOR_DATE", "2006-01-02T15:04:05Z")
        .env("GIT_COMMITTER_DATE", "2006-01-02T15:04:05Z")
        .env("LC_ALL", "C");
}

/// A Git repository built for a case.
pub struct Repo {
    pub dir: PathBuf,
    pub home: PathBuf,
    pub gitlinks: Vec<&'static str>,
}

impl Repo {
    pub fn new(root: &Path, home: &Path, name: &str) -> Repo {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Repo {
            dir,
            home: home.to_path_buf(),
            gitlinks: Vec::new(),
        };
        repo.git(&["init", "-q", "."]);
        // What the go command's ensureGitAttributes appends before `git archive`.
        std::fs::write(
            repo.dir.join(".git/info/attributes"),
            "\n* -export-subst -export-ignore\n",
        )
        .unwrap();
        repo
    }

    pub fn git_output(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        let mut cmd = Command::new("git");
        git_env(&mut cmd, &self.home);
        let mut child = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("git is required for these tests; install it (see .ci/run)");
        let mut pipe = child.stdin.take().unwrap();
        let input = stdin.unwrap_or_default().to_vec();
        let writer = std::thread::spawn(move || pipe.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        out
    }

    pub fn git(&self, args: &[&str]) -> Vec<u8> {
        let out = self.git_output(args, None);
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn path(&self, path: &[u8]) -> PathBuf {
        let p = self.dir.join(OsStr::from_bytes(path));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    pub fn file(&mut self, path: impl AsRef<[u8]>, content: impl AsRef<[u8]>) -> &mut Self {
        std::fs::write(self.path(path.as_ref()), content).unwrap();
        self
    }

    pub fn exec(&mut self, path: &str, content: &str) -> &mut Self {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(path.as_bytes());
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        std::os::unix::fs::symlink(target, self.path(path.as_bytes())).unwrap();
        self
    }

    pub fn submodule(&mut self, path: &'static str) -> &mut Self {
        self.gitlinks.push(path);
        self
    }

    /// Commits everything written; returns the commit.
    pub fn commit(&mut self) -> String {
        self.git(&["add", "-A"]);
        for path in &self.gitlinks {
            let info = format!("160000,{},{path}", "1".repeat(40));
            self.git(&["update-index", "--add", "--cacheinfo", &info]);
        }
        self.git(&["commit", "-q", "--allow-empty", "-m", "case"]);
        self.rev("HEAD")
    }

    pub fn rev(&self, name: &str) -> String {
        String::from_utf8(self.git(&["rev-parse", name]))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn blob(&self, content: &[u8]) -> String {
        let out = self.git_output(&["hash-object", "-w", "--stdin"], Some(content));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A tree object written as is, whatever git would say of it: (mode, name, object).
    pub fn raw_tree(&self, entries: &[(&str, &[u8], &str)]) -> String {
        let mut raw = Vec::new();
        for (mode, name, oid) in entries {
            raw.extend_from_slice(mode.as_bytes());
            raw.push(b' ');
            raw.extend_from_slice(name);
            raw.push(0);
            raw.extend_from_slice(&hex(oid));
        }
        let out = self.git_output(
            &["hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
            Some(&raw),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn commit_tree(&self, tree: &str) -> String {
        String::from_utf8(self.git(&["commit-tree", "-m", "crafted", tree]))
            .unwrap()
            .trim()
            .to_string()
    }

    /// What the go command reads as the root LICENSE: `git cat-file blob REV:LICENSE`.
    pub fn root_license(&self, rev: &str) -> Option<Vec<u8>> {
        let out = self.git_output(&["cat-file", "blob", &format!("{rev}:LICENSE")], None);
        out.status.success().then_some(out.stdout)
    }

    /// The module's files as modfleet's code host gets them: `git archive` as the go
    /// command's `ReadZip` runs it, read by `git_archive::ArchivedFiles`.
    pub fn archive_listing(
        &self,
        rev: &str,
        subdir: &str,
    ) -> Result<(Vec<SourceFile>, Vec<Vec<u8>>), String> {
        let mut args = vec![
            "-c",
            "core.autocrlf=input",
            "-c",
            "core.eol=lf",
            "archive",
            "--format=zip",
            "--prefix=prefix/",
            "--end-of-options",
            rev,
        ];
        if !subdir.is_empty() {
            args.push(subdir);
        }
        let out = self.git_output(&args, None);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let zip = out.stdout;
        let mut archived =
            ArchivedFiles::read(&zip[..], zip.len() as u64, subdir, &Limits::default())
                .map_err(|e| e.to_string())?;
        let files = archived.files().to_vec();
        let contents = files
            .iter()
            .map(|f| archived.content(&f.path).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok((files, contents))
    }
}

fn hex(oid: &str) -> Vec<u8> {
    (0..oid.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&oid[i..i + 2], 16).unwrap())
        .collect()
}
