//! The go command as a client of private modules, with its own module cache and GOPATH and no
//! user configuration: through modfleet alone, or direct to the Git servers (the reference).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::GoEnv;

/// The go command for the private modules under `private` (a GOPRIVATE pattern).
pub struct Go {
    pub home: tempfile::TempDir,
    private: String,
}

impl Go {
    pub fn new(private: &str) -> Go {
        GoEnv::new(); // fails with how to install Go when it is missing
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("work")).unwrap();
        Go {
            home,
            private: private.to_string(),
        }
    }

    pub fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = modfleet_testkit::go::isolated(self.home.path());
        c.args(args)
            .current_dir(dir)
            .env("GOFLAGS", "-modcacherw -mod=mod")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0");
        c
    }

    /// Through modfleet alone: GOPROXY is modfleet, the checksum database is not asked for
    /// private paths (as a client's GONOSUMDB says), no GOPRIVATE (modfleet serves them).
    pub fn via(&self, proxy: &str, args: &[&str]) -> Command {
        let mut c = self.command(&self.home.path().join("work"), args);
        c.env("GOPROXY", proxy).env("GONOSUMDB", &self.private);
        c
    }

    /// Direct to the repositories (`GOPROXY=direct`), the private paths insecure: go-get
    /// pages over http:// when https:// fails, and http:// repositories.
    pub fn direct(&self, args: &[&str]) -> Command {
        let mut c = self.command(&self.home.path().join("work"), args);
        c.env("GOPROXY", "direct")
            .env("GOPRIVATE", &self.private)
            .env("GONOSUMDB", &self.private)
            .env("GOINSECURE", &self.private);
        c
    }

    /// Empties the module cache, so the next command fetches everything again.
    pub fn forget_modules(&self) {
        std::fs::remove_dir_all(self.home.path().join("modcache")).ok();
    }

    /// A main package `example.test/prog` with this `main.go`; its directory.
    pub fn program(&self, main_go: &str) -> PathBuf {
        let prog = self.home.path().join("prog");
        std::fs::create_dir_all(&prog).unwrap();
        std::fs::write(prog.join("go.mod"), "module example.test/prog\n\ngo 1.21\n").unwrap();
        std::fs::write(prog.join("main.go"), main_go).unwrap();
        prog
    }
}

/// Runs; returns (success, stdout, stderr).
pub fn run(mut c: Command) -> (bool, String, String) {
    let out = c.output().expect("run the go command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `go mod download -json ARG`'s whole answer, from its output.
pub fn parse_download(arg: &str, out: &str, err: &str) -> Value {
    serde_json::from_str(out)
        .unwrap_or_else(|e| panic!("go mod download -json {arg}: {e}\n{out}\n{err}"))
}

/// `go mod download -json ARG`: Version, Sum, GoModSum (or the Error).
pub fn download(c: Command, arg: &str) -> Value {
    let (_, out, err) = run(c);
    let json = parse_download(arg, &out, &err);
    serde_json::json!({
        "Version": json["Version"],
        "Sum": json["Sum"],
        "GoModSum": json["GoModSum"],
        "Error": json["Error"],
    })
}
