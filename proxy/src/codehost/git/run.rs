//! One `git` process, bounded: a deadline after which its whole process group (git, its
//! `git-remote-https` or `ssh` children) is killed, stdout read by the caller (who bounds it),
//! stderr kept up to a cap, and nothing inherited that could change what git does.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::codehost::HostError;

/// Stderr kept for error messages and classification; the rest is drained and dropped.
const STDERR_CAP: usize = 64 * 1024;

/// Environment variables passed through to git: where to find programs, and the site's
/// network settings (proxies, CA bundles) that a deployment sets for every HTTPS client.
/// Everything else is dropped, so nothing like `GIT_DIR`, `GIT_SSH`, `GIT_ASKPASS` or
/// `GIT_CONFIG_*` from our own environment reaches git.
const PASSED_THROUGH: &[&str] = &[
    "PATH",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
];

/// How every git process starts: the program, a clean environment, and the `-c` settings
/// that come before the subcommand.
#[derive(Debug, Clone)]
pub(crate) struct GitCommand {
    pub(crate) program: PathBuf,
    /// Environment beyond the passed-through variables (HOME, GIT_* settings, credentials).
    pub(crate) env: Vec<(OsString, OsString)>,
    /// `-c key=value` pairs.
    pub(crate) config: Vec<String>,
}

impl GitCommand {
    /// `git -c ... ARGS` in our environment only; with `git_dir`, run in that repository.
    pub(crate) fn command<I, S>(&self, git_dir: Option<&Path>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.program);
        cmd.env_clear();
        for name in PASSED_THROUGH {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        // git's messages are matched in English.
        cmd.env("LC_ALL", "C").env("LANG", "C");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = git_dir {
            cmd.env("GIT_DIR", dir).current_dir(dir);
        }
        for c in &self.config {
            cmd.arg("-c").arg(c);
        }
        cmd.args(args);
        cmd
    }
}

/// How a run ended, when it was not a clean exit with output read.
#[derive(Debug)]
pub(crate) enum RunError {
    /// git could not be started (not installed?).
    Spawn(io::Error),
    /// The deadline passed; the process group was killed.
    TimedOut { stderr: Vec<u8> },
    /// The caller's reader gave up (too much output, a limit): its error, and the process
    /// group was killed.
    Aborted(HostError),
}

/// A finished run: what the caller's reader returned, the exit status, and stderr.
#[derive(Debug)]
pub(crate) struct Finished<R> {
    pub(crate) value: R,
    pub(crate) status: ExitStatus,
    pub(crate) stderr: Vec<u8>,
}

/// Shared between the run and its watchdog: whether the child has exited (then its process
/// group must not be signalled any more: the id may be reused) and whether it was killed.
#[derive(Default)]
struct Watch {
    state: Mutex<WatchState>,
    changed: Condvar,
}

#[derive(Default)]
struct WatchState {
    exited: bool,
    /// Set by the watchdog when the deadline passed and it killed the group.
    timed_out: bool,
}

impl Watch {
    /// Kills the process group unless the child already exited (not yet reaped, so its id
    /// still names our group).
    fn kill(&self, pid: Pid, deadline: bool) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.exited {
            st.timed_out |= deadline;
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
    }
}

/// Runs `cmd` (its stdio is set here), feeding `stdin` if given and handing stdout to
/// `read`. The deadline covers everything: when it passes, the process group is killed, so
/// `read` sees EOF and the result is [`RunError::TimedOut`] whatever `read` returned.
pub(crate) fn run<R>(
    mut cmd: Command,
    deadline: Duration,
    stdin: Option<Vec<u8>>,
    read: impl FnOnce(&mut ChildStdout) -> Result<R, HostError>,
) -> Result<Finished<R>, RunError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pid = Pid::from_child(&child);
    let watch = Arc::new(Watch::default());

    let watchdog = {
        let watch = watch.clone();
        thread::spawn(move || {
            let st = watch.state.lock().unwrap_or_else(|e| e.into_inner());
            let (st, timeout) = watch
                .changed
                .wait_timeout_while(st, deadline, |s| !s.exited)
                .unwrap_or_else(|e| e.into_inner());
            drop(st);
            if timeout.timed_out() {
                watch.kill(pid, true);
            }
        })
    };
    let writer = stdin.and_then(|input| {
        let mut pipe = child.stdin.take()?;
        // A write error is git having exited early; its status says why.
        Some(thread::spawn(move || {
            let _ = pipe.write_all(&input);
        }))
    });
    let stderr_reader = child.stderr.take().map(|mut pipe| {
        thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = STDERR_CAP.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
            kept
        })
    });

    let mut stdout = child.stdout.take().expect("stdout is piped");
    let value = read(&mut stdout);
    if value.is_err() {
        watch.kill(pid, false);
    }
    drop(stdout);
    let status = reap(&mut child, &watch);
    let _ = watchdog.join();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stderr = stderr_reader
        .and_then(|t| t.join().ok())
        .unwrap_or_default();
    let timed_out = watch
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .timed_out;
    if timed_out {
        // Whatever the reader made of a stream cut short, the deadline is the cause.
        return Err(RunError::TimedOut { stderr });
    }
    let value = value.map_err(RunError::Aborted)?;
    Ok(Finished {
        value,
        status: status.map_err(RunError::Spawn)?,
        stderr,
    })
}

/// Waits for the child to exit without reaping it, marks it exited (so the watchdog will not
/// signal a group id that could be reused), wakes the watchdog, then reaps it.
fn reap(child: &mut Child, watch: &Watch) -> io::Result<ExitStatus> {
    let pid = Pid::from_child(child);
    // ECHILD (already reaped elsewhere) ends it too; wait() below says so.
    while let Err(rustix::io::Errno::INTR) = rustix::process::waitid(
        WaitId::Pid(pid),
        WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
    ) {}
    {
        let mut st = watch.state.lock().unwrap_or_else(|e| e.into_inner());
        st.exited = true;
        watch.changed.notify_all();
    }
    child.wait()
}

/// Reads all of `r`, failing with `too_large` once past `cap` bytes.
pub(crate) fn read_capped(
    r: &mut impl Read,
    cap: u64,
    too_large: impl FnOnce() -> HostError,
) -> Result<Vec<u8>, HostError> {
    let mut out = Vec::new();
    let n = r
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| HostError::Unavailable(format!("reading git's output: {e}")))?;
    if n as u64 > cap {
        return Err(too_large());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    fn all(r: &mut ChildStdout) -> Result<Vec<u8>, HostError> {
        read_capped(r, 1 << 20, || HostError::TooLarge("big".into()))
    }

    #[test]
    fn output_status_and_stderr_are_returned() {
        let f = run(
            sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(30),
            None,
            all,
        )
        .unwrap();
        assert_eq!(f.value, b"out\n");
        assert_eq!(f.stderr, b"err\n");
        assert_eq!(f.status.code(), Some(3));
    }

    #[test]
    fn stdin_is_fed() {
        let f = run(
            sh("cat"),
            Duration::from_secs(30),
            Some(b"hello".to_vec()),
            all,
        )
        .unwrap();
        assert_eq!(f.value, b"hello");
    }

    #[test]
    fn the_deadline_kills_the_whole_group_even_a_grandchild_holding_stdout() {
        let start = Instant::now();
        // The grandchild keeps stdout open: only a group kill ends the read.
        let err = run(
            sh("sleep 60 & sleep 60; echo never"),
            Duration::from_millis(300),
            None,
            all,
        )
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_reader_error_kills_and_is_returned() {
        let err = run(
            sh("yes"),
            Duration::from_secs(30),
            None,
            |r: &mut ChildStdout| read_capped(r, 1000, || HostError::TooLarge("cap".into())),
        )
        .unwrap_err();
        assert!(
            matches!(err, RunError::Aborted(HostError::TooLarge(ref m)) if m == "cap"),
            "{err:?}"
        );
    }

    #[test]
    fn stderr_is_capped() {
        let f = run(
            sh("head -c 1000000 /dev/zero >&2"),
            Duration::from_secs(30),
            None,
            all,
        )
        .unwrap();
        assert_eq!(f.stderr.len(), STDERR_CAP);
        assert!(f.status.success());
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(
            Command::new("/nonexistent/git"),
            Duration::from_secs(5),
            None,
            all,
        )
        .unwrap_err();
        assert!(matches!(err, RunError::Spawn(_)));
    }
}
