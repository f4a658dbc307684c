"""Clients of the benchmark that check what they get: verified fetches, the herd, failover,
and the cold `go mod download`.

Every body is compared with the corpus file it stands for: `.mod` and `.zip` byte for byte
(SHA-256); `.info` by its JSON `Version` (a proxy may re-serialise the JSON). A response that is
not 200 or whose body does not match is an error, so no contender wins by failing fast.
"""

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Fetch:
    """One verified GET."""

    path: str
    status: int
    seconds: float
    size: int
    ok: bool
    error: str = ""


def _connect(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=120)


def check_body(artifact, body_sha, body, status, size):
    """'' when the response is the artifact, else the reason it is not."""
    if status != 200:
        return f"status {status}"
    if artifact.path.endswith(".info"):
        try:
            version = json.loads(body)["Version"]
        except (ValueError, KeyError, TypeError):
            return "invalid .info JSON"
        want = artifact.path.rsplit("/", 1)[-1][: -len(".info")]
        return "" if version == want else f".info names {version}, not {want}"
    if body_sha != artifact.sha256:
        return f"checksum mismatch ({size} bytes, want {artifact.size})"
    return ""


def fetch(base, artifact, conn=None):
    """GETs one artifact and verifies it; reuses conn (keep-alive) when given."""
    own = conn is None
    conn = conn or _connect(base)
    start = time.perf_counter()
    try:
        conn.request("GET", artifact.path)
        resp = conn.getresponse()
        # Streamed and hashed as it arrives: 200 clients of a 25 MB zip must not hold 5 GB.
        h, size, keep = hashlib.sha256(), 0, []
        while True:
            chunk = resp.read(1 << 16)
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
            if artifact.path.endswith(".info") or resp.status != 200:
                keep.append(chunk)
        seconds = time.perf_counter() - start
        body = b"".join(keep)
        err = check_body(artifact, h.hexdigest(), body, resp.status, size)
        return Fetch(artifact.path, resp.status, seconds, size, not err, err)
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        return Fetch(artifact.path, 0, time.perf_counter() - start, 0, False, f"{type(e).__name__}: {e}")
    finally:
        if own:
            conn.close()


def fetch_all(base, artifacts, concurrency=8):
    """Verified GETs of every artifact, concurrency at a time, one keep-alive connection each."""
    local = threading.local()

    def one(a):
        if not hasattr(local, "conn"):
            local.conn = _connect(base)
        f = fetch(base, a, local.conn)
        if f.status == 0:
            local.conn = _connect(base)
        return f

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, artifacts))


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def herd(base, artifact, clients):
    """`clients` threads GET the same artifact at the same instant; returns their Fetches."""
    barrier = threading.Barrier(clients)
    results = [None] * clients

    def one(i):
        conn = _connect(base)
        conn.connect()
        barrier.wait()
        results[i] = fetch(base, artifact, conn)
        conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@dataclass
class ColdResult:
    """A cold `go mod download all` through one proxy."""

    seconds: float
    ok: bool
    modules: int = 0
    checked: int = 0
    error: str = ""


def cold_download(base, corpus, timeout=1800):
    """Runs `go mod download all` of the corpus graph with an empty GOMODCACHE through base.

    The go command checks every module against go.sum; afterwards every downloaded .mod and
    .zip is also compared with the corpus."""
    work = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    try:
        project = work / "project"
        shutil.copytree(corpus.project, project)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
        env.update(GOMODCACHE=str(work / "modcache"), GOPROXY=base, GOSUMDB="off",
                   GOFLAGS="-mod=mod", GOTOOLCHAIN="local", GOWORK="off",
                   GOPATH=str(work / "gopath"), GOCACHE=str(work / "gocache"))
        start = time.perf_counter()
        try:
            res = subprocess.run(["go", "mod", "download", "-json", "all"], cwd=project, env=env,
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return ColdResult(time.perf_counter() - start, False, error=f"timed out after {timeout}s")
        seconds = time.perf_counter() - start
        modules = res.stdout.count('"Path"')
        if res.returncode != 0:
            errs = [ln for ln in (res.stdout + res.stderr).splitlines() if '"Error"' in ln or "go:" in ln]
            return ColdResult(seconds, False, modules, error=" | ".join(errs[:3]) or res.stderr[-300:])
        checked, bad = _compare_downloads(work / "modcache" / "cache" / "download", corpus)
        if bad:
            return ColdResult(seconds, False, modules, checked, f"{len(bad)} files differ from the corpus: {bad[:3]}")
        return ColdResult(seconds, True, modules, checked)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def _compare_downloads(root, corpus):
    """(files checked, [paths that differ]) for every .mod/.zip the go command stored."""
    index = corpus.by_path()
    checked, bad = 0, []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith((".mod", ".zip")):
                continue
            full = Path(dirpath) / name
            rel = "/" + full.relative_to(root).as_posix()
            want = index.get(rel)
            h = hashlib.sha256(full.read_bytes()).hexdigest()
            checked += 1
            if want is None or h != want.sha256:
                bad.append(rel)
    return checked, bad


@dataclass
class Summary:
    """Latency and error summary of a list of Fetches."""

    count: int
    errors: int
    p50: float
    p99: float
    max: float
    first_errors: list = field(default_factory=list)


def summarize(fetches):
    secs = [f.seconds for f in fetches]
    errs = [f for f in fetches if not f.ok]
    return Summary(len(fetches), len(errs), percentile(secs, 50), percentile(secs, 99),
                   max(secs) if secs else float("nan"),
                   [f"{f.path}: {f.error}" for f in errs[:3]])


@dataclass
class SlowResult:
    """Clients that open a download and never read, and a small file fetched meanwhile."""

    clients: int  # slow clients asked for
    answered: int  # of them, those whose response began with 200 (peeked, never read)
    refused: int  # of them, those answered otherwise or closed before any answer
    still_open: int  # of the answered, those the contender still held open after the probes
    probe: Summary  # the small file's fetches
    probe_timeouts: int
    seconds_to_answer_all: float


# An Ethernet path's segment size. Loopback's 64 KiB MTU lets the contenders' kernels autotune
# each stalled download's send buffer to megabytes: with 1,000 slow clients that is gigabytes
# of kernel memory, past the host's tcp_mem pressure limit, which would stall every TCP
# connection on the machine (the probes' included). Real clients do not sit on loopback.
ETHERNET_MSS = 1448


def _slow_socket(address, port, local, rcvbuf):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, ETHERNET_MSS)
    s.bind((local, 0))
    s.connect((address, port))
    return s


def _peek(s):
    """What the peer sent so far without taking it: the receive window stays shut."""
    try:
        return s.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None  # nothing yet
    except OSError:
        return b""  # reset: closed


def slow_readers(base, artifact, clients, locals_, probe, probes, rcvbuf=16384, timeout=60.0,
                 probe_timeout=10.0):
    """`clients` connections (spread over the loopback addresses `locals_`) each send a GET of
    `artifact` and never read the body; once every one has an answer, `probes` GETs of `probe`
    are timed one after another on one keep-alive connection. Answers are looked at with
    MSG_PEEK only, so no slow client ever opens its receive window."""
    u = urllib.parse.urlsplit(base)
    request = f"GET {artifact.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n\r\n".encode()
    socks = []
    try:
        start = time.perf_counter()
        for i in range(clients):
            s = _slow_socket(u.hostname, u.port, locals_[i % len(locals_)], rcvbuf)
            s.sendall(request)
            socks.append(s)
        pending = dict(enumerate(socks))
        answered = refused = 0
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for i, s in list(pending.items()):
                head = _peek(s)
                if head is None:
                    continue
                del pending[i]
                if head.startswith(b"HTTP/1.1 200"):
                    answered += 1
                else:
                    refused += 1
            if pending:
                time.sleep(0.01)
        refused += len(pending)
        to_answer = time.perf_counter() - start

        fetches, timeouts, in_a_row = [], 0, 0
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=probe_timeout)
        for _ in range(probes):
            f = fetch(base, probe, conn)
            fetches.append(f)
            if f.status == 0:
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=probe_timeout)
                if "timed out" in f.error:
                    timeouts += 1
                    in_a_row += 1
                    if in_a_row >= 3:
                        break  # it hangs: three in a row are enough to say so
            else:
                in_a_row = 0
        conn.close()
        still_open = sum(1 for s in socks if _peek(s) not in (b"",))
        return SlowResult(clients, answered, refused, still_open, summarize(fetches), timeouts, to_answer)
    finally:
        for s in socks:
            s.close()
