//! A network namespace of its own for a container, as a kubelet gives each pod, and TCP
//! forwarders between it and the test's namespace. Everything listens and connects on loopback
//! on both sides: a container's `0.0.0.0:8080` is private to its namespace (so it never clashes
//! with anything else on this machine), and the test reaches it, and it reaches the test's
//! servers, through forwarders whose sockets are opened in one namespace or the other (a thread
//! that `setns`es into the pod's namespace opens them; a socket keeps its namespace).
//!
//! Needs root and iproute2 (`ip netns`); a namespace that cannot be made fails the test.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use modfleet_testkit::netns::{Netns, ip};

/// A network namespace with only `lo`, up; deleted on drop (testkit's, plus what the pod
/// runner needs of it: its path for podman and a kubelet's probe).
pub struct NetNs(Netns);

impl NetNs {
    /// Makes a namespace, first removing those left by test processes that are gone.
    pub fn create() -> NetNs {
        NetNs(Netns::new())
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// `/run/netns/NAME`, for `podman run --network ns:PATH`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(self.name())
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it opens stay in it.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.0.enter(f)
    }

    /// An HTTP/1.0 GET of `path` on 127.0.0.1:`port` inside the namespace, as a kubelet's
    /// httpGet probe: the status code, or `None` when nothing answers within `timeout`.
    pub fn http_status(&self, port: u16, path: &str, timeout: Duration) -> Option<u16> {
        self.run(move || {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
            s.set_read_timeout(Some(timeout)).ok()?;
            write!(
                s,
                "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\n\r\n"
            )
            .ok()?;
            let mut head = [0u8; 64];
            let n = s.read(&mut head).ok()?;
            let line = String::from_utf8_lossy(&head[..n]).into_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
    }
}

/// Joins two namespaces with a veth pair, `a_ip` on `a`'s end and `b_ip` on `b`'s, one /24
/// link (as two pods on one node's pod network): each reaches the other's ports at its
/// address. The pair goes away with the namespaces.
pub fn link(a: &NetNs, a_ip: Ipv4Addr, b: &NetNs, b_ip: Ipv4Addr) {
    static PAIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PAIRS.fetch_add(1, Ordering::Relaxed);
    // Interface names have at most 15 bytes.
    let (ea, eb) = (
        format!("mf{}x{n}a", std::process::id() % 100_000),
        format!("mf{}x{n}b", std::process::id() % 100_000),
    );
    ip(&[
        "link",
        "add",
        &ea,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        &eb,
        "netns",
        b.name(),
    ]);
    for (ns, end, addr) in [(a, &ea, a_ip), (b, &eb, b_ip)] {
        ip(&[
            "-n",
            ns.name(),
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            end,
        ]);
        ip(&["-n", ns.name(), "link", "set", end, "up"]);
    }
}

/// Where a forwarder's connections go.
#[derive(Clone)]
enum Target {
    /// An address in the test's (root) namespace.
    Root(SocketAddr),
    /// 127.0.0.1:port inside the namespace at this path.
    InNs(PathBuf, u16),
}

/// Forwards every TCP connection accepted on one side to the other; stopped on drop.
pub struct Forwarder {
    /// The listening address (in the namespace it was opened in).
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wake: Target,
    accept: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Listens on 127.0.0.1:`port` inside `ns` and forwards to `target` in the test's
    /// namespace: the pod reaches a server of the test at an address of its own.
    pub fn out_of(ns: &NetNs, port: u16, target: SocketAddr) -> Forwarder {
        let listener = ns.run(move || {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port} in the pod namespace: {e}"))
        });
        Forwarder::start(
            listener,
            Target::Root(target),
            Target::InNs(ns.path(), port),
        )
    }

    /// Listens on a free 127.0.0.1 port in the test's namespace and forwards to
    /// 127.0.0.1:`port` inside `ns`: the test reaches the pod's port.
    pub fn into(ns: &NetNs, port: u16) -> Forwarder {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port");
        let addr = listener.local_addr().expect("bound address");
        Forwarder::start(listener, Target::InNs(ns.path(), port), Target::Root(addr))
    }

    fn start(listener: TcpListener, target: Target, wake: Target) -> Forwarder {
        let addr = listener.local_addr().expect("bound address");
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let target = target.clone();
                    std::thread::spawn(move || {
                        if let Some(upstream) = connect(&target) {
                            pump(conn, upstream);
                        }
                    });
                }
            })
        };
        Forwarder {
            addr,
            stop,
            wake,
            accept: Some(accept),
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn connect(target: &Target) -> Option<TcpStream> {
    let timeout = Duration::from_secs(5);
    match target {
        Target::Root(addr) => TcpStream::connect_timeout(addr, timeout).ok(),
        Target::InNs(path, port) => {
            let (path, port) = (path.clone(), *port);
            std::thread::spawn(move || {
                let file = File::open(&path).ok()?;
                // SAFETY: as in NetNs::run; this thread only connects.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return None;
                }
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                TcpStream::connect_timeout(&addr, timeout).ok()
            })
            .join()
            .ok()
            .flatten()
        }
    }
}

/// Copies both ways until each side has closed.
fn pump(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one = std::thread::spawn(move || copy_then_close(a, b2));
    copy_then_close(b, a2);
    let _ = one.join();
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop (from the namespace it listens in) so it sees the flag.
        let _ = connect(&self.wake);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
