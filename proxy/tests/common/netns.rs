//! A small lab of network namespaces for fault injection: the test process (in the root
//! namespace) is the client; the proxy and two upstream origins each get a namespace, joined by
//! veth pairs. Faults are injected in the kernel: packet loss with an nftables `numgen random`
//! drop rule, bandwidth limits with a `tbf` qdisc, and links taken down (partitions).
//!
//! This machine's kernel has no `sch_netem` (`tc qdisc add ... netem` answers "Specified qdisc
//! kind is unknown"), so network *delay* cannot be made by the kernel here; the chaos test
//! delays answers in the upstream origin instead (the fake upstream's `set_fault`).
//!
//! ```text
//!  root (client) ──c0/p0── proxy ──p1/u1── upstream 1
//!   10.231.0.1      10.231.0.2 │  10.231.1.1   10.231.1.2
//!                              └──p2/u2── upstream 2
//!                          10.231.2.1        10.231.2.2
//! ```
//! Needs root and iproute2; a lab that cannot be built fails the test loudly.

use std::process::Command;

/// Which link of the proxy a fault applies to.
#[derive(Debug, Clone, Copy)]
pub enum Link {
    Upstream1,
    Upstream2,
}

pub struct Lab {
    tag: String,
    /// Held for the lab's lifetime: labs use fixed addresses, so one at a time per machine
    /// (two clones of the repo testing at once would otherwise route into each other's lab).
    _lock: std::fs::File,
}

pub const PROXY_IP: &str = "10.231.0.2";
pub const UPSTREAM1_IP: &str = "10.231.1.2";
pub const UPSTREAM2_IP: &str = "10.231.2.2";

fn ip(args: &[&str]) {
    run("ip", args);
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install iproute2): {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed (these tests need root and iproute2): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// Builds the namespaces and links, waiting for any other lab on this machine to finish.
    pub fn new() -> Lab {
        let lock = std::fs::File::create(std::env::temp_dir().join("modfleet-netns-lab.lock"))
            .expect("create the lab lock file");
        lock.lock().expect("lock the lab lock file");
        let tag = format!("mf{}", std::process::id() % 100_000);
        let lab = Lab { tag, _lock: lock };
        // With the lock held, any lab still there was left by a killed run: remove it.
        remove_stale_labs();
        lab.teardown();
        let (p, u1, u2) = (lab.ns("p"), lab.ns("u1"), lab.ns("u2"));
        for ns in [&p, &u1, &u2] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lab.pair("c0", None, "10.231.0.1/30", "p0", &p, "10.231.0.2/30");
        lab.pair("p1", Some(&p), "10.231.1.1/30", "u1", &u1, "10.231.1.2/30");
        lab.pair("p2", Some(&p), "10.231.2.1/30", "u2", &u2, "10.231.2.2/30");
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.tag)
    }

    fn dev(&self, name: &str) -> String {
        format!("{}{name}", self.tag)
    }

    /// A veth pair: `a` in `a_ns` (None: the root namespace), `b` in `b_ns`.
    fn pair(&self, a: &str, a_ns: Option<&str>, a_ip: &str, b: &str, b_ns: &str, b_ip: &str) {
        let (a, b) = (self.dev(a), self.dev(b));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &b, "netns", b_ns]);
        if let Some(ns) = a_ns {
            ip(&["link", "set", &a, "netns", ns]);
            ip(&["-n", ns, "addr", "add", a_ip, "dev", &a]);
            ip(&["-n", ns, "link", "set", &a, "up"]);
        } else {
            ip(&["addr", "add", a_ip, "dev", &a]);
            ip(&["link", "set", &a, "up"]);
        }
        ip(&["-n", b_ns, "addr", "add", b_ip, "dev", &b]);
        ip(&["-n", b_ns, "link", "set", &b, "up"]);
    }

    /// The command prefix that runs a program in a namespace: "proxy", "up1" or "up2".
    pub fn exec(&self, host: &str) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.netns(host)]
    }

    /// The network namespace of `host` ("proxy", "up1", "up2").
    pub fn netns(&self, host: &str) -> String {
        match host {
            "proxy" => self.ns("p"),
            "up1" => self.ns("u1"),
            "up2" => self.ns("u2"),
            other => panic!("no host {other} in the lab"),
        }
    }

    fn proxy_side(&self, link: Link) -> String {
        self.dev(match link {
            Link::Upstream1 => "p1",
            Link::Upstream2 => "p2",
        })
    }

    /// The upstream's end of a link: (device, namespace).
    fn upstream_side(&self, link: Link) -> (String, String) {
        let host = match link {
            Link::Upstream1 => "u1",
            Link::Upstream2 => "u2",
        };
        (self.dev(host), self.ns(host))
    }

    fn peer_ip(link: Link) -> &'static str {
        match link {
            Link::Upstream1 => UPSTREAM1_IP,
            Link::Upstream2 => UPSTREAM2_IP,
        }
    }

    /// Drops `percent`% of the packets the proxy sends to that upstream (nftables).
    pub fn loss(&self, link: Link, percent: u32) {
        let ns = self.ns("p");
        let table = format!("loss{}", self.proxy_side(link));
        let ip_ = Self::peer_ip(link);
        run(
            "ip",
            &["netns", "exec", &ns, "nft", "add", "table", "inet", &table],
        );
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "nft",
                &format!("add chain inet {table} out {{ type filter hook output priority 0; }}"),
            ],
        );
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "nft",
                &format!(
                    "add rule inet {table} out ip daddr {ip_} numgen random mod 100 < {percent} drop"
                ),
            ],
        );
    }

    /// Limits what that upstream sends to the proxy (a tbf qdisc on the upstream's side), e.g.
    /// "16mbit": downloads from it slow down.
    pub fn rate(&self, link: Link, rate: &str) {
        let (dev, ns) = self.upstream_side(link);
        run(
            "tc",
            &[
                "-n", &ns, "qdisc", "replace", "dev", &dev, "root", "tbf", "rate", rate, "burst",
                "16kbit", "latency", "500ms",
            ],
        );
    }

    /// Removes loss rules and rate limits from the link.
    pub fn clear(&self, link: Link) {
        let dev = self.proxy_side(link);
        let ns = self.ns("p");
        let (peer_dev, peer_ns) = self.upstream_side(link);
        let _ = Command::new("tc")
            .args(["-n", &peer_ns, "qdisc", "del", "dev", &peer_dev, "root"])
            .output();
        let table = format!("loss{dev}");
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &ns, "nft", "delete", "table", "inet", &table,
            ])
            .output();
    }

    /// Takes the proxy's side of a link down (a partition) or up again.
    pub fn set_link(&self, link: Link, up: bool) {
        let dev = self.proxy_side(link);
        ip(&[
            "-n",
            &self.ns("p"),
            "link",
            "set",
            &dev,
            if up { "up" } else { "down" },
        ]);
    }

    fn teardown(&self) {
        for ns in ["p", "u1", "u2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(ns)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.dev("c0")])
            .output();
    }
}

/// Removes namespaces and root-side links of labs whose test process died without cleaning up.
fn remove_stale_labs() {
    // `field`: which whitespace-separated field of each line holds the name.
    let names = |args: &[&str], field: usize| -> Vec<String> {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(field).map(str::to_string))
            .collect()
    };
    for ns in names(&["netns", "list"], 0) {
        if ns.starts_with("mf") && (ns.ends_with('p') || ns.ends_with("u1") || ns.ends_with("u2")) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
    // Lines look like "12: mf123c0@if11: <BROADCAST,...".
    for link in names(&["-o", "link", "show", "type", "veth"], 1) {
        let dev = link
            .trim_end_matches(':')
            .split('@')
            .next()
            .unwrap_or("")
            .to_string();
        if dev.starts_with("mf") && dev.ends_with("c0") {
            let _ = Command::new("ip").args(["link", "del", &dev]).output();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}
