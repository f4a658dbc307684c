#!/usr/bin/env python3
"""modfleet benchmarks: modfleet-proxy side by side with the Go module proxies people use.

    python3 bench/run.py            # full run: writes docs/benchmarks.md and docs/benchmarks/*.png
    python3 bench/run.py --smoke    # CI: tiny corpus, few requests, output in a temporary dir

Needs go, cargo, nginx with the echo module and wrk (Debian: nginx-light,
libnginx-mod-http-echo, wrk) and matplotlib. See docs/benchmarks.md for what each scenario
measures and how; the corpus and the Go proxies' binaries are cached under
${XDG_CACHE_HOME:-$HOME/.cache}/modfleet/.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import client  # noqa: E402
import corpus as corpus_mod  # noqa: E402
import fleet  # noqa: E402
import load  # noqa: E402
import private_client  # noqa: E402
import private_corpus  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402
import tools  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

FULL = dict(connections=[16, 64, 256], seconds=15, latencies_ms=[0, 20, 80], herd_clients=200,
            herd_latencies_ms=[0, 20, 80], failover_artifacts=120, failover_delay_s=2.0,
            slow_clients=1000, slow_probes=1000, private_latencies_ms=[0, 80], fleet_latency_ms=80,
            fleet_rounds=2, fleet_uplink_mbit=None, smoke=False)
SMOKE = dict(connections=[16], seconds=2, latencies_ms=[20], herd_clients=50,
             herd_latencies_ms=[20], failover_artifacts=12, failover_delay_s=2.0,
             slow_clients=50, slow_probes=50, private_latencies_ms=[20], fleet_latency_ms=20,
             fleet_rounds=1, fleet_uplink_mbit=1000, smoke=True)
# The slow clients come from these loopback addresses, as from that many build pods.
SLOW_ADDRESSES = [f"127.0.1.{i}" for i in range(1, 21)]
SCENARIO_NAMES = "warm,cold,herd,failover,slow,private,fleet"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny corpus and few requests (CI)")
    p.add_argument("--out", type=Path, help="output directory (default: docs/, or a temp dir with --smoke)")
    p.add_argument("--contenders", default=None,
                   help="comma-separated subset of modfleet,athens,goproxy,nginx")
    p.add_argument("--scenarios", default=SCENARIO_NAMES,
                   help=f"comma-separated subset of {SCENARIO_NAMES}")
    p.add_argument("--modfleet-bin", type=Path,
                   help="use this modfleet-proxy binary instead of building it (must be a release build for figures)")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=BINARY",
                   help="also run this modfleet-proxy binary as contender LABEL (an experiment, e.g. a patch "
                        "not yet on main); repeatable")
    p.add_argument("--update", action="store_true",
                   help="keep the other scenarios' figures: the results of the scenarios run now replace "
                        "theirs in OUT/benchmarks/results.json (an earlier full run) and the report is "
                        "rewritten from that")
    p.add_argument("--fleet-variants", default=",".join(fleet.VARIANTS),
                   help=f"fleet scenario: comma-separated subset of {','.join(fleet.VARIANTS)}, in the order of "
                        "the first round")
    p.add_argument("--fleet-rounds", type=int, default=None,
                   help="fleet scenario: rounds over the variants, the order reversed every other round "
                        "(default: 2, smoke 1)")
    p.add_argument("--fleet-uplink-mbit", type=int, default=None,
                   help="fleet scenario: the origin behind a link of this many Mbit/s shared by everything it "
                        "sends (a network namespace and `tc tbf`; needs root), as a site's uplink; default: "
                        "loopback, no limit (the smoke run: 1000, so that the link is set up in CI)")
    p.add_argument("--debug-build", action="store_true",
                   help="benchmark modfleet's debug build (the smoke run does; never for figures)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- setup


def prepare_contenders(names, debug, modfleet_bin=None):
    """Builds every named contender; one that cannot be built is kept with the reason."""
    out = []
    for name in names:
        if name == "modfleet":
            binary = modfleet_bin or tools.build_modfleet(release=not debug, log=log)
            version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
            out.append(procs.Contender("modfleet", (version or "modfleet-proxy") + (" (debug build)" if debug else ""), binary))
        elif name == "nginx":
            v = subprocess.run([procs.NGINX, "-v"], capture_output=True, text=True).stderr.strip()
            out.append(procs.Contender("nginx", v.replace("nginx version: ", ""), multi_upstream=False, is_proxy=False))
        elif name in ("goproxy", "athens"):
            tool = tools.GOPROXY_TOOL if name == "goproxy" else tools.ATHENS_TOOL
            c = procs.Contender(name, f"{tool.module} {tool.version}")
            try:
                c.binary = tools.build_go_tool(tool, log=log)
            except tools.BuildError as e:
                c.unavailable = str(e)
                log(f"{name}: cannot be built: {e}")
            out.append(c)
        else:
            raise SystemExit(f"bench: unknown contender {name!r}")
    return out


def describe_machine(contenders):
    """Cores, memory, kernel, CPU, load and tool versions, for the report."""
    def cmd(args):
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    cpu = "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_kib = int(next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")))
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_at_start": os.getloadavg(),
        "go": tools.go_version(),
        "rustc": cmd(["rustc", "--version"]),
        "wrk": cmd(["wrk", "--version"]),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "contenders": {c.name: c.version for c in contenders},
        "commit": cmd(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        # The commit says what was checked out, not what was built: the binary's own checksum.
        "binaries_md5": binaries_md5(contenders),
    }


def binaries_md5(contenders):
    """MD5 of each modfleet binary measured (a build elsewhere can replace a binary)."""
    out = {}
    for c in contenders:
        if (c.kind or c.name) == "modfleet" and c.binary and Path(c.binary).exists():
            out[c.name] = hashlib.md5(Path(c.binary).read_bytes()).hexdigest()
    return out


# ---------------------------------------------------------------------------- scenarios


def _start(contender, upstreams, corpus):
    log(f"  starting {contender.name} (fresh, empty cache)")
    return contender.start(upstreams, str(corpus.root))


def scenario_warm(contenders, corpus, cfg):
    """Throughput and latency on a warm cache at each connection count; peak RSS after."""
    out = {}
    origin = procs.Origin(str(corpus.root), [0])
    scratch = load.scratch_dir()
    script = load.write_script(corpus.mix, scratch)
    try:
        for c in contenders:
            res = {"levels": [], "error": None, "rss_kib": None}
            out[c.name] = res
            proc = None
            try:
                proc = _start(c, [origin.url], corpus)
                log(f"  {c.name}: warming the cache with every artifact of the mix ({len(corpus.mix)}), checking each")
                s = client.summarize(client.fetch_all(proc.url, corpus.mix))
                res["warmup"] = asdict(s)
                if s.errors:
                    raise RuntimeError(f"{s.errors} of {s.count} warm-up fetches failed: {s.first_errors}")
                for conns in cfg["connections"]:
                    r = load.run_wrk(proc.url, script, conns, cfg["seconds"])
                    log(f"  {c.name} c={conns}: {r.rps:.0f} req/s, {r.mbps:.0f} MB/s, "
                        f"p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, errors {r.errors}")
                    res["levels"].append(asdict(r))
                s = client.summarize(client.fetch_all(proc.url, corpus.mix))
                res["after"] = asdict(s)
                res["rss_kib"] = proc.peak_rss_kib()
                if s.errors:
                    raise RuntimeError(f"{s.errors} of {s.count} fetches after the load failed: {s.first_errors}")
                if not proc.alive():
                    raise RuntimeError("the process died under load")
            except Exception as e:  # a contender's failure is a result, not a crash
                res["error"] = f"{e}"
                log(f"  {c.name}: ERROR {e}")
            finally:
                if proc:
                    proc.stop()
    finally:
        origin.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return out


# The cold scenario also runs modfleet with `.info` and zips prefetched (off by default).
PREFETCH_ZIPS = "modfleet-prefetch-zips"


def with_prefetch_zips(contenders):
    """The contenders, with modfleet `--prefetch-zips on` right after modfleet."""
    out = []
    for c in contenders:
        out.append(c)
        if c.name == "modfleet":
            out.append(dataclasses.replace(c, name=PREFETCH_ZIPS, kind="modfleet",
                                           args=("--prefetch-zips", "on")))
    return out


def scenario_cold(contenders, corpus, cfg):
    """Wall time of `go mod download all` with empty client and proxy caches, per latency."""
    out = {}
    contenders = with_prefetch_zips(contenders)
    for lat in cfg["latencies_ms"]:
        origin = procs.Origin(str(corpus.root), [lat / 1000.0])
        try:
            for c in contenders:
                proc = None
                entry = out.setdefault(c.name, {})
                try:
                    if c.is_proxy:
                        proc = _start(c, [origin.url], corpus)
                        url = proc.url
                    else:
                        url = origin.url  # the baseline: the go command straight at the origin
                    origin.reset_counts()
                    r = client.cold_download(url, corpus)
                    d = asdict(r)
                    d["upstream_requests"] = len(origin.requests())
                    # What it cost the origin (prefetch fetches more than the go command asks).
                    d["upstream_bytes"] = origin.bytes_sent()
                    entry[str(lat)] = d
                    log(f"  cold {c.name} @{lat}ms: {r.seconds:.1f}s ok={r.ok} modules={r.modules} "
                        f"upstream requests={d['upstream_requests']} "
                        f"bytes={d['upstream_bytes'] / 1e6:.1f} MB {r.error}")
                except Exception as e:
                    entry[str(lat)] = {"ok": False, "seconds": None, "error": f"{e}"}
                    log(f"  cold {c.name} @{lat}ms: ERROR {e}")
                finally:
                    if proc:
                        proc.stop()
        finally:
            origin.stop()
    return out


def herd_target(corpus):
    """The smallest zip over 10 MB (the largest zip if none is)."""
    zips = sorted(corpus.zips, key=lambda a: a.size)
    big = [z for z in zips if z.size > 10_000_000]
    return big[0] if big else zips[-1]


def scenario_herd(contenders, corpus, cfg):
    """N clients at once on one uncached large zip: upstream fetches of it, latency, errors."""
    out = {}
    target = herd_target(corpus)
    for lat in cfg["herd_latencies_ms"]:
        origin = procs.Origin(str(corpus.root), [lat / 1000.0])
        try:
            for c in [c for c in contenders if c.is_proxy]:
                proc = None
                entry = out.setdefault(c.name, {})
                try:
                    proc = _start(c, [origin.url], corpus)
                    origin.reset_counts()
                    fetches = client.herd(proc.url, target, cfg["herd_clients"])
                    time.sleep(0.5)  # let nginx write its log lines
                    s = client.summarize(fetches)
                    d = asdict(s)
                    d["upstream_fetches"] = origin.count(target.path)
                    entry[str(lat)] = d
                    log(f"  herd {c.name} @{lat}ms: upstream fetches {d['upstream_fetches']}, "
                        f"p99 {s.p99 * 1000:.0f} ms, errors {s.errors}")
                except Exception as e:
                    entry[str(lat)] = {"error": f"{e}"}
                    log(f"  herd {c.name}: ERROR {e}")
                finally:
                    if proc:
                        proc.stop()
        finally:
            origin.stop()
    return {"target": {"path": target.path, "size": target.size}, "clients": cfg["herd_clients"],
            "results": out}


def failover_set(corpus, n):
    """n distinct artifacts under 2 MB, spread over the corpus (deterministic)."""
    small = [a for a in corpus.mix if a.size < 2_000_000]
    step = max(1, len(small) // n)
    return small[::step][:n]


def scenario_failover(contenders, corpus, cfg):
    """Primary origin delayed, secondary prompt: uncached fetches' p99 and errors."""
    out = {}
    arts = failover_set(corpus, cfg["failover_artifacts"])
    origin = procs.Origin(str(corpus.root), [cfg["failover_delay_s"], 0])
    secondary = None
    try:
        # The floor: the same fetches straight from the prompt secondary, no proxy between.
        fetches = client.fetch_all(origin.urls[1], arts, concurrency=8)
        secondary = asdict(client.summarize(fetches))
        log(f"  failover secondary direct: p50 {secondary['p50'] * 1000:.0f} ms, "
            f"p99 {secondary['p99'] * 1000:.0f} ms, errors {secondary['errors']}")
        for c in [c for c in contenders if c.is_proxy and c.multi_upstream]:
            proc = None
            try:
                proc = _start(c, origin.urls, corpus)
                origin.reset_counts()
                start = time.perf_counter()
                fetches = client.fetch_all(proc.url, arts, concurrency=8)
                wall = time.perf_counter() - start
                s = client.summarize(fetches)
                d = asdict(s)
                d.update(wall=wall, primary_requests=len(origin.requests(0)),
                         secondary_requests=len(origin.requests(1)))
                out[c.name] = d
                log(f"  failover {c.name}: p50 {s.p50 * 1000:.0f} ms, p99 {s.p99 * 1000:.0f} ms, "
                    f"errors {s.errors}, wall {wall:.1f}s")
            except Exception as e:
                out[c.name] = {"error": f"{e}"}
                log(f"  failover {c.name}: ERROR {e}")
            finally:
                if proc:
                    proc.stop()
    finally:
        origin.stop()
    return {"artifacts": len(arts), "delay_s": cfg["failover_delay_s"], "secondary": secondary,
            "results": out}


def slow_target(corpus):
    """The zip nearest 12 MiB among those over 10 MB (the largest if none is), and the .mod of
    the same module version (the small cached file timed meanwhile)."""
    zips = sorted(corpus.zips, key=lambda a: a.size)
    big = [z for z in zips if z.size > 10_000_000]
    target = min(big, key=lambda z: abs(z.size - 12 * 2**20)) if big else zips[-1]
    probe = corpus.by_path()[target.path[: -len(".zip")] + ".mod"]
    return target, probe


def scenario_slow(contenders, corpus, cfg):
    """N clients open a cached large zip and never read; a cached .mod's latency meanwhile."""
    out = {}
    target, probe = slow_target(corpus)
    origin = procs.Origin(str(corpus.root), [0])
    try:
        for c in contenders:
            proc = None
            try:
                proc = _start(c, [origin.url], corpus)
                warm = client.summarize(client.fetch_all(proc.url, [target, probe], concurrency=1))
                if warm.errors:
                    raise RuntimeError(f"warming the cache failed: {warm.first_errors}")
                r = client.slow_readers(proc.url, target, cfg["slow_clients"], SLOW_ADDRESSES, probe,
                                        cfg["slow_probes"])
                d = asdict(r)
                d["rss_kib"] = proc.peak_rss_kib()
                d["alive"] = proc.alive()
                out[c.name] = d
                p = r.probe
                log(f"  slow {c.name}: {r.answered}/{r.clients} slow clients answered ({r.still_open} still open), "
                    f".mod p50 {p.p50 * 1000:.1f} ms, p99 {p.p99 * 1000:.1f} ms, errors {p.errors} "
                    f"(timeouts {r.probe_timeouts}), peak RSS {d['rss_kib'] / 1024:.0f} MiB")
            except Exception as e:
                out[c.name] = {"error": f"{e}"}
                log(f"  slow {c.name}: ERROR {e}")
            finally:
                if proc:
                    proc.stop()
    finally:
        origin.stop()
    return {"target": {"path": target.path, "size": target.size}, "probe": probe.path,
            "clients": cfg["slow_clients"], "probes": cfg["slow_probes"],
            "addresses": len(SLOW_ADDRESSES), "results": out}


# The go command going direct to the Git server, the private scenario's reference.
DIRECT = "direct"


def private_order(contenders):
    """Who runs in the private scenario, in order: modfleet (and its variants) and Athens as
    listed, and the go command going direct where nginx stands in the list (nginx is the cold
    scenario's "origin direct"), first when nginx is not listed. goproxy is left out."""
    order = [c for c in contenders if (c.kind or c.name) in procs.PRIVATE_STARTERS or c.name == "nginx"]
    order = [DIRECT if c.name == "nginx" else c for c in order]
    return order if DIRECT in order else [DIRECT] + order


def scenario_private(contenders, _corpus, cfg):
    """Cold `go mod download all` of a generated private module graph: each proxy started
    empty with the Git server as the modules' source, and the go command going direct to it."""
    pc = private_corpus.ensure(cfg["smoke"], log=log)
    log(f"  private corpus {pc.name}: {pc.stats}")
    out = {}
    order = private_order(contenders)
    work = Path(tempfile.mkdtemp(prefix="bench-private-"))
    empty = work / "empty"
    empty.mkdir()
    # The proxies' upstream serves nothing and is never to be asked for a private path.
    upstream = procs.Origin(str(empty), [0])
    loads = []
    try:
        for lat in cfg["private_latencies_ms"]:
            git = procs.GitOrigin(pc.repos, lat / 1000.0)
            try:
                private = procs.PrivateRepos(git, pc.names, private_client.write_gitconfig(
                    work / f"gitconfig-{lat}", git, pc.names))
                for c in order:
                    name = DIRECT if c == DIRECT else c.name
                    proc = None
                    entry = out.setdefault(name, {})
                    try:
                        if c == DIRECT:
                            env = private_client.direct_vars(private.gitconfig)
                        else:
                            log(f"  starting {c.name} (fresh, empty cache, private modules from Git)")
                            proc = c.start_private([upstream.url], private)
                            env = private_client.via_proxy_vars(proc.url)
                        git.reset_counts()
                        upstream.reset_counts()
                        git_cpu = git.cpu_seconds()
                        load_before = os.getloadavg()[0]
                        r = private_client.cold_download(pc.project, pc.reference, env)
                        d = asdict(r)
                        d.update(load=[load_before, os.getloadavg()[0]],
                                 git_requests=len(git.requests()), git_bytes=git.bytes_sent(),
                                 git_cpu_s=git.cpu_seconds() - git_cpu,
                                 proxy_cpu_s=proc.cpu_seconds() if proc else None)
                        loads += d["load"]
                        leaked = [p for _, p, _ in upstream.requests() if private_client.HOST.split("/")[0] in p]
                        if leaked:
                            d.update(ok=False, error=f"private paths reached the upstream: {leaked[:3]}")
                        entry[str(lat)] = d
                        cpu = f"proxy CPU {d['proxy_cpu_s']:.1f}s " if proc else ""
                        log(f"  private {name} @{lat}ms: {r.seconds:.1f}s ok={d['ok']} modules={r.modules} "
                            f"{cpu}go CPU {r.client_cpu_s or 0:.1f}s, Git server: {d['git_requests']} requests, "
                            f"{d['git_bytes'] / 1e6:.1f} MB, CPU {d['git_cpu_s']:.1f}s, "
                            f"load {d['load'][0]:.1f}-{d['load'][1]:.1f} {d['error']}")
                    except Exception as e:
                        entry[str(lat)] = {"ok": False, "seconds": None, "error": f"{e}"}
                        log(f"  private {name} @{lat}ms: ERROR {e}")
                    finally:
                        if proc:
                            proc.stop()
            finally:
                git.stop()
    finally:
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"corpus": {"name": pc.name, **pc.stats, "spec": pc.spec}, "latencies_ms": cfg["private_latencies_ms"],
            "order": [DIRECT if c == DIRECT else c.name for c in order],
            "run": run_info([c for c in contenders if c in order]),
            "load_range": [min(loads, default=0), max(loads, default=0)],
            "results": out}


def run_info(contenders):
    """When, from which commit and binaries a scenario ran (for a section that --update adds to
    an earlier run's report, whose Machine line says nothing of it)."""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                     capture_output=True, text=True).stdout.strip(),
            "binaries_md5": binaries_md5(contenders), "go": tools.go_version(),
            "contenders": {c.name: c.version for c in contenders}}


def scenario_fleet(contenders, corpus, cfg, variants=fleet.VARIANTS, rounds=None):
    """Three modfleet members, three concurrent cold `go mod download all`, four fleet variants."""
    out = fleet.scenario(contenders, corpus, cfg, log, variants=variants, rounds=rounds, late=True)
    if "harness_error" not in out:
        loads = [x for runs in out["results"].values() for r in runs for x in r.get("load", [])]
        out.update(run=run_info([c for c in contenders if c.name == "modfleet"]),
                   load_range=[min(loads, default=0), max(loads, default=0)])
    return out


SCENARIOS = {"warm": scenario_warm, "cold": scenario_cold, "herd": scenario_herd,
             "failover": scenario_failover, "slow": scenario_slow, "private": scenario_private,
             "fleet": scenario_fleet}


# ---------------------------------------------------------------------------- main


def check_prerequisites():
    missing = [t for t in ("go", "cargo", "wrk", "git") if not _which(t)]
    if not os.path.exists(procs.NGINX):
        missing.append("nginx")
    if not os.path.exists(procs.ECHO_MODULE):
        missing.append(f"nginx echo module ({procs.ECHO_MODULE}; Debian: libnginx-mod-http-echo)")
    if missing:
        raise SystemExit(f"bench: missing {', '.join(missing)} (Debian: nginx-light libnginx-mod-http-echo wrk git)")


def _which(tool):
    return shutil.which(tool)


def smoke_failures(results, contenders):
    """Everything that must fail the smoke run: any error of any contender in any scenario."""
    bad = [f"{c.name}: not built: {c.unavailable}" for c in contenders if c.unavailable]
    for name, r in results.get("warm", {}).items():
        if r.get("error"):
            bad.append(f"warm {name}: {r['error']}")
        bad += [f"warm {name} c={lv['connections']}: {lv['errors']} errors ({lv['error_detail']})"
                for lv in r.get("levels", []) if lv["errors"]]
    for name, per in results.get("cold", {}).items():
        bad += [f"cold {name} @{lat}ms: {r.get('error')}" for lat, r in per.items() if not r.get("ok")]
    for name, per in results.get("herd", {}).get("results", {}).items():
        for lat, r in per.items():
            if r.get("error") or r.get("errors"):
                bad.append(f"herd {name} @{lat}ms: {r.get('error') or r.get('first_errors')}")
            elif name == "modfleet" and r.get("upstream_fetches") != 1:
                bad.append(f"herd modfleet @{lat}ms: {r.get('upstream_fetches')} upstream fetches, want 1")
    for name, r in results.get("failover", {}).get("results", {}).items():
        if r.get("error") or r.get("errors"):
            bad.append(f"failover {name}: {r.get('error') or r.get('first_errors')}")
    for name, per in results.get("private", {}).get("results", {}).items():
        bad += [f"private {name} @{lat}ms: {r.get('error')}" for lat, r in per.items() if not r.get("ok")]
    fl = results.get("fleet", {})
    if fl.get("harness_error"):
        bad.append(f"fleet: {fl['harness_error'][-300:]}")
    bad += [f"fleet {v} round {r.get('round')}: {r.get('error')}"
            for v, runs in fl.get("results", {}).items() for r in runs if not r.get("ok")]
    for name, r in results.get("slow", {}).get("results", {}).items():
        if r.get("error") or r["probe"]["errors"] or r["answered"] != r["clients"]:
            bad.append(f"slow {name}: {r.get('error') or r['probe']['first_errors']} "
                       f"({r.get('answered')}/{r.get('clients')} slow clients answered)")
    return bad


def merged(path, results, scenarios):
    """The earlier run's results at path with the scenarios run now replaced (--update)."""
    try:
        base = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"bench: --update needs an earlier run's results at {path}: {e}")
    if base.get("smoke") != results["smoke"]:
        raise SystemExit(f"bench: --update: {path} is a {'smoke' if base.get('smoke') else 'full'} run, this is not")
    for s in scenarios:
        base[s] = results[s]
    return base


def raise_open_file_limit():
    """The slow-client scenario holds a thousand sockets: soft RLIMIT_NOFILE up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main(argv=None):
    args = parse_args(argv)
    # A SIGTERM (e.g. from `timeout`) unwinds like an exception, so every started process is
    # stopped by the scenarios' `finally` blocks instead of being left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cfg = SMOKE if args.smoke else FULL
    if args.fleet_uplink_mbit:
        cfg = dict(cfg, fleet_uplink_mbit=args.fleet_uplink_mbit)
    check_prerequisites()
    raise_open_file_limit()
    names = (args.contenders or ("modfleet,goproxy,nginx" if args.smoke else "modfleet,athens,goproxy,nginx")).split(",")
    scenarios = args.scenarios.split(",")
    unknown = [x for x in scenarios if x not in SCENARIOS]
    fleet_variants = [v for v in args.fleet_variants.split(",") if v]
    unknown += [f"fleet variant {v}" for v in fleet_variants if v not in fleet.VARIANTS]
    if unknown:
        raise SystemExit(f"bench: unknown {', '.join(unknown)} (scenarios: {SCENARIO_NAMES}; "
                         f"fleet variants: {','.join(fleet.VARIANTS)})")
    started = time.monotonic()

    corpus = corpus_mod.ensure(args.smoke, log=log)
    log(f"corpus {corpus.name}: {len(corpus.module_versions())} module versions, {len(corpus.artifacts)} "
        f"artifacts, {corpus.total_bytes() / 1e6:.0f} MB, in {corpus.root}")
    # Binaries given on the command line are relative to where the command was typed.
    modfleet_bin = Path(args.modfleet_bin).resolve() if args.modfleet_bin else None
    contenders = prepare_contenders(names, debug=args.debug_build or args.smoke, modfleet_bin=modfleet_bin)
    for v in args.variant:
        label, _, binary = v.partition("=")
        contenders.insert(1, procs.Contender(label, "experimental build, not on main (see Analysis)",
                                             Path(binary).resolve(), kind="modfleet"))
    ready = [c for c in contenders if not c.unavailable]
    results = {"smoke": args.smoke, "config": cfg, "machine": describe_machine(contenders),
               "corpus": {"name": corpus.name, "module_versions": len(corpus.module_versions()),
                          "artifacts": len(corpus.artifacts), "bytes": corpus.total_bytes(),
                          "mix": len(corpus.mix), "mix_bytes": sum(a.size for a in corpus.mix),
                          "zips": len(corpus.zips),
                          "zips_over_10mb": sum(1 for z in corpus.zips if z.size > 10_000_000),
                          "largest_zip": max((z.size, z.path) for z in corpus.zips),
                          "projects": list((corpus_mod.SMOKE_PROJECTS if args.smoke else corpus_mod.FULL_PROJECTS).items())},
               "unavailable": {c.name: c.unavailable for c in contenders if c.unavailable}}
    for s in scenarios:
        log(f"scenario {s}")
        try:
            if s == "fleet":
                results[s] = scenario_fleet(ready, corpus, cfg, variants=fleet_variants, rounds=args.fleet_rounds)
            else:
                results[s] = SCENARIOS[s](ready, corpus, cfg)
        except Exception:
            traceback.print_exc()
            results[s] = {"harness_error": traceback.format_exc()}
            if args.smoke:
                raise
    results["duration_s"] = seconds = time.monotonic() - started
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="bench-smoke-")) if args.smoke else ROOT / "docs")
    if args.update:
        results = merged(out_dir / "benchmarks" / "results.json", results, scenarios)
    written = report.write(results, out_dir, log=log)
    log(f"wrote {', '.join(str(p) for p in written)} in {seconds:.0f}s")
    if args.smoke:
        bad = smoke_failures(results, contenders)
        if bad:
            print("bench smoke: FAILED\n  " + "\n  ".join(bad), file=sys.stderr)
            return 1
        missing = [p for p in written if not Path(p).exists() or Path(p).stat().st_size == 0]
        if missing:
            print(f"bench smoke: FAILED: not written: {missing}", file=sys.stderr)
            return 1
        if args.out is None:
            shutil.rmtree(out_dir, ignore_errors=True)  # a passing smoke run leaves nothing behind
        print(f"bench smoke: ok ({seconds:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
