//! A network namespace of a test's own (`ip netns add`, loopback up), removed when dropped.
//!
//! Inside it every port is free, 80 and 443 included, so servers can stand where the real
//! ones stand (a go-get page on `http://127.0.0.1/`), whatever else runs on the machine.
//! [`Netns::enter`] runs a closure on a thread that has entered the namespace: sockets it
//! opens, and threads and processes it starts, belong to the namespace; the test's other
//! threads stay where they are. Needs root and iproute2; without them the test fails saying so.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The prefix of every namespace made here: `NAME_PREFIX-PID-N`.
const NAME_PREFIX: &str = "mftk";

/// A network namespace with only `lo`, up.
pub struct Netns {
    name: String,
}

impl Default for Netns {
    fn default() -> Netns {
        Netns::new()
    }
}

impl Netns {
    /// Creates the namespace (removing those a killed test run left behind).
    pub fn new() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let name = format!(
            "{NAME_PREFIX}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a thread inside the namespace and returns its result.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        enter(&self.name, f).unwrap_or_else(|e| {
            panic!(
                "cannot enter network namespace {} (needs root): {e}",
                self.name
            )
        })
    }

    /// Runs the future to completion inside the namespace, on a runtime of its own (its
    /// connections are made from inside).
    pub fn block_on<F: std::future::Future + Send>(&self, future: F) -> F::Output
    where
        F::Output: Send,
    {
        self.enter(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime inside the namespace")
                .block_on(future)
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs `f` on a thread that has entered the network namespace `name` (`/var/run/netns/NAME`).
pub fn enter<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let path = PathBuf::from("/var/run/netns").join(name);
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let ns = std::fs::File::open(&path)?;
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&ns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `ip ARGS`, failing the test with its error output.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (install iproute2): {e}"));
    assert!(
        out.status.success(),
        "`ip {}` failed (network namespaces need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes namespaces made here by processes that are gone.
fn remove_stale() {
    let Ok(listed) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.split('-');
        if parts.next() != Some(NAME_PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Port 80 is free inside, and what is bound inside cannot be reached from outside.
    #[test]
    fn a_namespace_has_its_own_ports() {
        let ns = Netns::new();
        let listener = ns.enter(|| std::net::TcpListener::bind("127.0.0.1:80").unwrap());
        let inside = ns.enter(|| std::net::TcpStream::connect("127.0.0.1:80").is_ok());
        assert!(inside);
        let addr = listener.local_addr().unwrap();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "reached from outside"
        );
        let name = ns.name().to_string();
        drop(ns);
        assert!(!PathBuf::from("/var/run/netns").join(name).exists());
    }
}
