"""Warm-cache load with wrk (Debian's package) and a Lua script for the URL mix.

The mix is the corpus itself: every .info, .mod and .zip that a cold `go mod download all` of
the graph asks for, each equally likely (so many small .mod files and fewer, larger zips, as a
real build sees them). wrk's Lua `done()` hook prints its figures as JSON.

wrk counts a response that is not 2xx/3xx ("status" errors) and every connect/read/write
error and timeout; those are the errors reported for the load. Bodies under load are not
hashed (a Lua `response()` hook that copies every body would make wrk, not the proxy, the
bottleneck on a small machine); every artifact of the mix is fetched and checked against the
corpus's SHA-256 right before and right after the load instead (see run.py).
"""

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = r"""
local paths = {%(paths)s}
local n = #paths
local threads = {}

function setup(thread)
  thread:set("seed", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(seed * 7919 + os.time())
end

function request()
  return wrk.format("GET", paths[math.random(n)])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "bytes": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass
class LoadResult:
    """One wrk run."""

    connections: int
    requests: int
    rps: float
    mbps: float  # MB/s of bodies + headers, as wrk counts bytes
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: str


def have_wrk():
    return shutil.which("wrk") is not None


def write_script(artifacts, directory):
    """The Lua script for this mix; returns its path."""
    paths = ",".join(json.dumps(a.path) for a in artifacts)
    path = Path(directory) / "mix.lua"
    path.write_text(LUA % {"paths": paths})
    return path


def run_wrk(base, script, connections, seconds, threads=2):
    """Runs wrk against base for `seconds` with `connections`; returns a LoadResult."""
    threads = min(threads, connections)
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", "30s", "-s", str(script), base]
    res = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stderr.strip()[-300:]} {res.stdout[-300:]}")
    d = json.loads(line[len("WRKJSON "):])
    secs = d["duration_us"] / 1e6
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    detail = ", ".join(f"{k} {d[k]}" for k in ("connect", "read", "write", "status", "timeout") if d[k])
    return LoadResult(connections, d["requests"], d["requests"] / secs, d["bytes"] / secs / 1e6,
                      d["p50_us"] / 1000, d["p99_us"] / 1000, d["max_us"] / 1000, errors, detail)


def scratch_dir():
    return Path(tempfile.mkdtemp(prefix="bench-wrk-"))
