"""The processes of a benchmark: the nginx origin and the contenders.

Every process is started by this module with its own temporary directory and stopped by its
own pid (never by name). Ports are chosen free on 127.0.0.1; all traffic stays on loopback.

Origin latency: this kernel has no `sch_netem`, so latency cannot be added with `tc netem`.
It is added inside the origin instead: each nginx server block that needs a delay answers
every request with the echo module's `echo_sleep` and then an internal redirect to the file
(`echo_exec @file`), so each upstream request waits the delay before its first byte, once per
request (netem would delay every packet, so a TCP handshake and a large body would pay more).
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import private_client

ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # /usr/sbin may be missing from PATH


_HANDED_OUT = set()


def _ephemeral_low():
    """The lowest port of the kernel's range for outgoing connections' local ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago, not handed out before by this
    process, and below the range the kernel takes outgoing connections' local ports from: a
    port from that range (what binding port 0 gives) can be taken by any process's connect()
    between this choice and the server's bind (the smoke run saw a member's peer port go so)."""
    low = _ephemeral_low()
    if low > 11000:
        for _ in range(200):
            port = random.randint(10000, low - 1)
            if port in _HANDED_OUT:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _HANDED_OUT.add(port)
    return port


def wait_http(url, timeout=30.0, proc=None):
    """Waits until url answers below 500; raises if proc exits or time runs out."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
            last = e
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last}")


def vm_hwm_kib(pid):
    """Peak resident set size (VmHWM) of a process, in KiB; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    """User + system CPU seconds of a process and of its children it has waited for (a
    proxy's `git` or `go` subprocesses, the Git host's `git http-backend` runs); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state): comm may hold spaces
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def children(pid):
    """Direct children of a process (for nginx's workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


@dataclass
class Proc:
    """A started process with its working directory; stop() ends it by pid."""

    name: str
    popen: subprocess.Popen
    workdir: Path
    url: str  # GOPROXY URL clients use
    log_path: Path
    rss_pids: list = field(default_factory=list)

    def peak_rss_kib(self):
        """VmHWM of the process and its children (nginx: master + workers), summed."""
        pids = [self.popen.pid] + children(self.popen.pid)
        return sum(vm_hwm_kib(p) for p in pids)

    def alive(self):
        return self.popen.poll() is None

    def cpu_seconds(self):
        """CPU seconds so far of the process and its waited-for children (see cpu_seconds)."""
        return cpu_seconds(self.popen.pid)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, n=15):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _spawn(name, args, workdir, env=None, cwd=None):
    log_path = workdir / f"{name}.log"
    log = open(log_path, "wb")
    popen = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, cwd=cwd or workdir, start_new_session=True,
    )
    return popen, log_path


# ---------------------------------------------------------------------------- nginx


@dataclass(frozen=True)
class Backend:
    """An HTTP server nginx passes every request to, instead of serving a directory (the Git
    origin: nginx in front of `githost.py`, so its latency is injected the same way)."""

    url: str  # http://127.0.0.1:PORT


def _nginx_conf(workdir, servers, workers, host="127.0.0.1"):
    """nginx.conf text; servers: list of (port, root, delay_seconds, access_log_path), root a
    directory to serve or a Backend to pass requests to."""
    blocks = []
    for port, root, delay, access_log in servers:
        if isinstance(root, Backend):
            # Bodies buffered whole (the backend gets a Content-Length), answers streamed.
            serve = f"proxy_pass {root.url};"
            head = "    client_max_body_size 64m;\n    proxy_buffering off;\n    proxy_read_timeout 300s;\n"
        else:
            serve = "try_files $uri =404;"
            head = f"    root {root};\n"
        if delay > 0:
            location = (
                f"    location / {{ echo_sleep {delay:.3f}; echo_exec @file; }}\n"
                f"    location @file {{ {serve} }}\n"
            )
        else:
            location = f"    location / {{ {serve} }}\n"
        blocks.append(
            f"  server {{\n    listen {host}:{port} reuseport backlog=4096;\n{head}"
            f"    access_log {access_log} bench;\n{location}  }}\n"
        )
    tmp = workdir / "tmp"
    temps = " ".join(
        f"{k}_temp_path {tmp};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"load_module {ECHO_MODULE};\nuser root;\nworker_processes {workers};\ndaemon off;\n"
        f"pid {workdir}/nginx.pid;\nerror_log {workdir}/error.log warn;\n"
        "events { worker_connections 8192; }\n"
        "http {\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n"
        "  types { application/zip zip; application/json info; text/plain mod; }\n"
        "  default_type text/plain;\n"
        "  log_format bench '$request_method $uri $status $body_bytes_sent';\n"
        f"  {temps}\n" + "".join(blocks) + "}\n"
    )


def start_nginx(name, servers, workers=1, link=None):
    """Starts nginx with the given server blocks; returns (Proc, [urls]). With `link` (an
    Uplink), nginx runs in the link's network namespace and listens on its address there."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    (workdir / "tmp").mkdir()
    conf = workdir / "nginx.conf"
    host = link.remote if link else "127.0.0.1"
    conf.write_text(_nginx_conf(workdir, servers, workers, host))
    argv = [NGINX, "-c", str(conf), "-p", str(workdir)]
    popen, log_path = _spawn(name, (link.exec_prefix() if link else []) + argv, workdir)
    urls = [f"http://{host}:{port}" for port, *_ in servers]
    proc = Proc(name, popen, workdir, urls[0], log_path)
    try:
        for url in urls:
            wait_http(url + "/", proc=popen, timeout=15)
    except RuntimeError as e:
        err = (workdir / "error.log").read_text(errors="replace") if (workdir / "error.log").exists() else ""
        proc.stop()
        raise RuntimeError(f"nginx {name}: {e}\n{err}")
    return proc, urls


class Uplink:
    """A network link of limited bandwidth to a server, as a site's uplink to the internet: a
    network namespace joined to this one by a veth pair, its end shaped by a token bucket
    (`tc tbf`) so that everything the server sends shares `mbit` Mbit/s. Needs root and
    iproute2."""

    def __init__(self, mbit):
        self.mbit = mbit
        n = os.getpid() % 100_000
        self.ns = f"bench-uplink-{n}"
        self.local, self.remote = "10.203.0.1", "10.203.0.2"
        host_end, ns_end = f"bu{n}h", f"bu{n}o"
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        for cmd in (
            ["ip", "netns", "add", self.ns],
            ["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", self.ns],
            ["ip", "addr", "add", f"{self.local}/30", "dev", host_end],
            ["ip", "link", "set", host_end, "up"],
            ["ip", "-n", self.ns, "addr", "add", f"{self.remote}/30", "dev", ns_end],
            ["ip", "-n", self.ns, "link", "set", ns_end, "up"],
            ["ip", "-n", self.ns, "link", "set", "lo", "up"],
            # What the server sends leaves through its end: the downloads share the rate.
            ["ip", "netns", "exec", self.ns, "tc", "qdisc", "add", "dev", ns_end, "root", "tbf",
             "rate", f"{mbit}mbit", "burst", "256kb", "latency", "100ms"],
        ):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                self.close()
                raise RuntimeError(f"uplink: {' '.join(cmd)}: {r.stderr.strip()} (needs root and iproute2)")

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.ns]

    def close(self):
        # The veth pair goes with the namespace.
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


class Origin:
    """The upstream of every proxy: nginx serving the corpus, with an optional delay, and
    optionally behind an Uplink of `uplink_mbit`.

    Each origin server block logs to its own access log, so upstream requests are counted
    from nginx's own records."""

    def __init__(self, corpus_root, delays, uplink_mbit=None):
        """delays: list of per-server delays in seconds (one server block per entry)."""
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-origin-logs-"))
        servers = []
        self.logs = []
        for i, delay in enumerate(delays):
            log = self.workdir / f"access-{i}.log"
            self.logs.append(log)
            servers.append((free_port(), corpus_root, delay, log))
        self.link = Uplink(uplink_mbit) if uplink_mbit else None
        try:
            self.proc, self.urls = start_nginx("origin", servers, workers=1, link=self.link)
        except Exception:
            if self.link:
                self.link.close()
            raise
        self.reset_counts()

    @property
    def url(self):
        """The first (or only) server block's URL."""
        return self.urls[0]

    def reset_counts(self):
        """Forgets the requests seen so far (truncates the access logs; nginx appends)."""
        for log in self.logs:
            if log.exists():
                with open(log, "r+") as f:
                    f.truncate(0)

    def _lines(self, server=None):
        """The access-log lines (split into fields) since the last reset."""
        logs = self.logs if server is None else [self.logs[server]]
        for log in logs:
            if log.exists():
                for line in log.read_text(errors="replace").splitlines():
                    yield line.split()

    def requests(self, server=None):
        """(method, path, status) of every request logged since the last reset."""
        return [(p[0], p[1], int(p[2])) for p in self._lines(server) if len(p) >= 3]

    def bytes_sent(self, server=None):
        """Body bytes the origin sent since the last reset (nginx's $body_bytes_sent)."""
        return sum(int(p[3]) for p in self._lines(server) if len(p) >= 4 and p[3].isdigit())

    def count(self, path, server=None):
        """Upstream GETs of exactly this path (any status)."""
        return sum(1 for m, p, _ in self.requests(server) if p == path and m in ("GET", "HEAD"))

    def stop(self):
        self.proc.stop()
        if self.link:
            self.link.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


GITHOST = Path(__file__).resolve().parent / "githost.py"


class GitOrigin:
    """git's own smart-HTTP server (`githost.py`: `git http-backend` as CGI) over the bare
    repositories in repo_root, behind an nginx Origin that injects `delay` seconds before every
    request, as for the module origins. Repository NAME is at `repo_url(NAME)`."""

    def __init__(self, repo_root, delay):
        workdir = Path(tempfile.mkdtemp(prefix="bench-githost-"))
        port = free_port()
        popen, log_path = _spawn("githost", [sys.executable, str(GITHOST), "--root", str(repo_root),
                                             "--port", str(port)], workdir)
        self.host = Proc("githost", popen, workdir, f"http://127.0.0.1:{port}", log_path)
        self.front = None
        try:
            _wait_or_stop(self.host, self.host.url + "/")
            self.front = Origin(Backend(self.host.url), [delay])
        except Exception:
            self.stop()
            raise

    @property
    def url(self):
        return self.front.url

    def repo_url(self, name):
        return f"{self.front.url}/{name}.git"

    def reset_counts(self):
        self.front.reset_counts()

    def requests(self):
        return self.front.requests()

    def bytes_sent(self):
        return self.front.bytes_sent()

    def cpu_seconds(self):
        """The Git server's CPU so far (the host and the `git` processes it ran)."""
        return self.host.cpu_seconds()

    def stop(self):
        if self.front:
            self.front.stop()
        self.host.stop()


# ---------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    """A proxy under test: how to start it fresh on a set of upstream URLs."""

    name: str
    version: str
    binary: Path = None
    multi_upstream: bool = True  # takes several upstreams (failover scenario)
    is_proxy: bool = True  # False for nginx (serves the corpus itself)
    unavailable: str = ""  # why it could not be built, if so
    kind: str = ""  # which starter (default: the name); a modfleet variant has kind "modfleet"
    args: tuple = ()  # extra command-line arguments (a modfleet setting under test)

    def start(self, upstreams, corpus_root):
        """Starts a fresh instance with an empty cache; returns a Proc."""
        return STARTERS[self.kind or self.name](self, upstreams, corpus_root)

    def start_private(self, upstreams, private):
        """Starts a fresh instance with an empty cache that serves the private modules of
        `private` (a PrivateRepos) from its Git server; returns a Proc."""
        starter = PRIVATE_STARTERS.get(self.kind or self.name)
        if starter is None:
            raise RuntimeError(f"{self.name} is not set up to serve private modules in this bench")
        return starter(self, upstreams, private)


@dataclass
class PrivateRepos:
    """The private modules' repositories: the Git server, their names, and the git config
    that sends `https://HOST/NAME` to it (for the go command going direct, and Athens's go)."""

    git: GitOrigin
    names: list
    gitconfig: Path

    def modfleet_yaml(self):
        """modfleet's `privateModules`: each module path with its repository (plain http:
        `insecure`), then the whole host, as proxy/tests/private_modules.rs configures it (the
        go command also asks for a path's prefixes, which must not reach an upstream)."""
        entries = "".join(
            f"  - pattern: {private_client.module_path(n)}\n    insecure: true\n"
            f"    repository: {{url: {self.git.repo_url(n)}, root: {private_client.module_path(n)}}}\n"
            for n in self.names)
        return f"privateModules:\n{entries}  - pattern: {private_client.HOST.split('/')[0]}\n"


def _clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODFLEET_", "ATHENS_", "GO"))}
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    return env


def _start_modfleet(c, upstreams, _root, private=None, config=""):
    """config: YAML for the proxy's --config file (a fleet member's objectStore, peerFill)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-modfleet-"))
    port, admin = free_port(), free_port()
    args = [str(c.binary), "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
            "--cache-dir", str(workdir / "cache"), "--log-format", "json",
            # The origins serve no checksum database (and the other contenders check none):
            # every contender serves the same unverified bytes, as goproxy's GOSUMDB=off does.
            "--verify-sumdb", "off", *c.args]
    config = (private.modfleet_yaml() if private else "") + config
    if config:
        path = workdir / "config.yaml"
        path.write_text(config)
        args += ["--config", str(path)]
    for u in upstreams:
        args += ["--upstream", u]
    popen, log = _spawn("modfleet", args, workdir, env=_clean_env())
    proc = Proc(c.name, popen, workdir, f"http://127.0.0.1:{port}", log)
    proc.admin = f"http://127.0.0.1:{admin}"
    _wait_or_stop(proc, proc.admin + "/readyz")
    return proc


def _start_goproxy(c, upstreams, _root):
    workdir = Path(tempfile.mkdtemp(prefix="bench-goproxy-"))
    port = free_port()
    env = _clean_env()
    # goproxy fetches from the proxies in its own GOPROXY; the go binary is not used for them.
    env.update(GOPROXY=",".join(upstreams), GOSUMDB="off", GOTOOLCHAIN="local",
               GOPATH=str(workdir / "gopath"), HOME=str(workdir))
    args = [str(c.binary), "server", "--address", f"127.0.0.1:{port}",
            "--cacher-dir", str(workdir / "cache")]
    popen, log = _spawn("goproxy", args, workdir, env=env)
    proc = Proc("goproxy", popen, workdir, f"http://127.0.0.1:{port}", log)
    _wait_or_stop(proc, proc.url + "/")
    return proc


def _start_athens(c, upstreams, _root, private=None):
    workdir = Path(tempfile.mkdtemp(prefix="bench-athens-"))
    port = free_port()
    env = _clean_env()
    # Athens fetches with `go mod download`; its GOPROXY (download through the origin) comes
    # from ATHENS_GO_BINARY_ENV_VARS (';'-separated; Athens passes on PATH and HOME besides).
    # Private modules: its go goes direct to the Git server, set up as the bench's own direct
    # go command is (GOPRIVATE, GONOSUMDB, GOINSECURE, the git config with url.insteadOf).
    go_env = {"GOPROXY": ",".join(upstreams), "GOSUMDB": "off"}
    if private:
        go_env.update(private_client.direct_vars(private.gitconfig), GOTOOLCHAIN="local",
                      GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    env.update(
        ATHENS_PORT=f"127.0.0.1:{port}", ATHENS_STORAGE_TYPE="disk",
        ATHENS_DISK_STORAGE_ROOT=str(workdir / "cache"), ATHENS_GOGET_WORKERS="32",
        ATHENS_GO_BINARY_ENV_VARS=";".join(f"{k}={v}" for k, v in go_env.items()),
        ATHENS_LOG_LEVEL="error", HOME=str(workdir), GOPATH=str(workdir / "gopath"),
    )
    (workdir / "cache").mkdir()
    popen, log = _spawn("athens", [str(c.binary)], workdir, env=env)
    proc = Proc("athens", popen, workdir, f"http://127.0.0.1:{port}", log)
    _wait_or_stop(proc, proc.url + "/healthz")
    return proc


def _start_nginx_contender(_c, _upstreams, corpus_root):
    port = free_port()
    workdir_log = Path(tempfile.mkdtemp(prefix="bench-nginx-log-"))
    proc, _ = start_nginx("nginx", [(port, corpus_root, 0, workdir_log / "access.log")], workers=2)
    shutil.rmtree(workdir_log, ignore_errors=True)
    return proc


def _wait_or_stop(proc, url):
    try:
        wait_http(url, proc=proc.popen, timeout=30)
    except RuntimeError as e:
        tail = proc.log_tail()
        proc.stop()
        raise RuntimeError(f"{proc.name} did not start: {e}\n{tail}")


def start_modfleet_member(c, upstreams, config):
    """A modfleet contender started fresh with extra --config YAML (a fleet member); the
    returned Proc has `admin` (the admin port's URL)."""
    return _start_modfleet(c, upstreams, None, config=config)


# ---------------------------------------------------------------------------- object store

S3_BUCKET = "modfleet"
S3_ACCESS_KEY = "modfleet-test"
S3_SECRET_KEY = "modfleet-test-secret"


def s3s_fs_binary():
    """The S3 server of the object-store tests, found as testkit/src/s3.rs finds it:
    `$MODFLEET_S3S_FS`, else `hack/tools.sh path s3s-fs`."""
    env = os.environ.get("MODFLEET_S3S_FS")
    if env:
        return Path(env)
    tools = Path(__file__).resolve().parent.parent / "hack" / "tools.sh"
    res = subprocess.run([str(tools), "path", "s3s-fs"], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"s3s-fs (the S3 server of the fleet scenario's store) is not built: run "
                           f"`hack/tools.sh build` (cargo install s3s-fs, about 4 minutes), or set "
                           f"MODFLEET_S3S_FS ({res.stderr.strip()})")
    return Path(res.stdout.strip())


class S3Store:
    """s3s-fs serving a fresh directory with one empty bucket on a free loopback port, with the
    flags testkit/src/s3.rs starts it with (SigV4 keys). Each object is the plain file
    `<root>/<bucket>/<key>`, so what the fleet stored is counted from the directory."""

    def __init__(self):
        binary = s3s_fs_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-s3-"))
        self.root = self.workdir / "data"
        (self.root / S3_BUCKET).mkdir(parents=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        popen, log_path = _spawn("s3s-fs", [str(binary), "--host", "127.0.0.1", "--port", str(self.port),
                                            "--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY,
                                            str(self.root)], self.workdir)
        self.proc = Proc("s3s-fs", popen, self.workdir, self.endpoint, log_path)
        _wait_or_stop(self.proc, self.endpoint + "/")

    def modfleet_yaml(self, prefix):
        """A member's `objectStore` (keys in files, as a mounted Secret holds them)."""
        key_id, secret = self.workdir / "access-key-id", self.workdir / "secret-access-key"
        key_id.write_text(S3_ACCESS_KEY + "\n")
        secret.write_text(S3_SECRET_KEY + "\n")
        return (f"objectStore:\n  url: s3://{S3_BUCKET}/{prefix}\n  endpoint: {self.endpoint}\n"
                f"  region: us-east-1\n  allowHttp: true\n"
                f"  credentials: {{accessKeyIdFile: {key_id}, secretAccessKeyFile: {secret}}}\n")

    def contents(self):
        """(objects, bytes) in the bucket (s3s-fs's own temporary files left out)."""
        objects = size = 0
        for dirpath, _, files in os.walk(self.root / S3_BUCKET):
            for name in files:
                try:
                    size += (Path(dirpath) / name).stat().st_size
                    objects += 1
                except OSError:
                    pass
        return objects, size

    def stop(self):
        self.proc.stop()  # removes the workdir, the bucket with it


STARTERS = {
    "modfleet": _start_modfleet,
    "goproxy": _start_goproxy,
    "athens": _start_athens,
    "nginx": _start_nginx_contender,
}
PRIVATE_STARTERS = {
    "modfleet": lambda c, upstreams, private: _start_modfleet(c, upstreams, None, private),
    "athens": lambda c, upstreams, private: _start_athens(c, upstreams, None, private),
}
