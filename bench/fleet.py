"""Scenario 8: a fleet of three modfleet members on loopback, three concurrent cold graphs.

Three `modfleet-proxy` members, each with its own empty disk cache, all with the same origin
as upstream; three `go mod download all` of the corpus graph start at the same instant, each
through a different member. Four variants of the fleet:

- `independent`: the members share nothing (every member fetches what its client asks for);
- `store`: a shared object store under the disk caches (s3s-fs, one bucket, fresh per run);
- `peers`: peer fill (each artifact has one owner among the members; a member that misses asks
  the owner before any upstream);
- `store+peers`: both.

What it costs is counted where it happens: upstream requests and bytes in the origin nginx's
access log, store reads and writes and peer asks in each member's `/status` (`store`, `peers`),
what the store holds in s3s-fs's directory. A variant with peer fill whose members' `/status`
has no `peers` section is an error (the build does not have peer fill), not a figure.
"""

import json
import os
import secrets
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import client
import procs

VARIANTS = ("independent", "store", "peers", "store+peers")
LABELS = {"independent": "(a) independent", "store": "(b) shared store", "peers": "(c) peer fill",
          "store+peers": "(d) store + peer fill"}
MEMBERS = 3
# After the go commands: how long the members may take to drain their store write queues
# before the counters are read (writes are in the background; none is dropped by waiting).
DRAIN_TIMEOUT_S = 120.0
ARTIFACT_SUFFIXES = (".info", ".mod", ".zip")


def uses(variant):
    """(shared store, peer fill) of a variant."""
    return "store" in variant, "peers" in variant


def rounds_order(variants, rounds):
    """The variants in order for each round, reversed every other round (a b c d, d c b a, ...),
    so that neither end of the list always runs on a warmer or busier machine."""
    return [list(variants) if i % 2 == 0 else list(reversed(variants)) for i in range(rounds)]


def status(member):
    """The member's /status (admin port) as a dict."""
    with urllib.request.urlopen(member.admin + "/status", timeout=10) as r:
        return json.loads(r.read())


def _peer_yaml(i, peer_ports, token_file):
    members = ", ".join(f"127.0.0.1:{p}" for p in peer_ports)
    return (f"peerFill:\n  listen: 127.0.0.1:{peer_ports[i]}\n  advertise: 127.0.0.1:{peer_ports[i]}\n"
            f"  tokenFile: {token_file}\n  members: [{members}]\n")


def start_fleet(contender, origin_url, store, peers, workdir):
    """Three members on fresh disk caches; with `store` (an S3Store) under them, with peer fill
    among them when `peers`. Stops what it started if one fails to start."""
    peer_ports = [procs.free_port() for _ in range(MEMBERS)]
    token_file = workdir / "peer-token"
    token_file.write_text(secrets.token_hex(32) + "\n")  # 64 characters; the contract wants >= 32
    started = []
    try:
        for i in range(MEMBERS):
            config = (store.modfleet_yaml("fleet") if store else "") + (
                _peer_yaml(i, peer_ports, token_file) if peers else "")
            started.append(procs.start_modfleet_member(contender, [origin_url], config))
        if peers:
            missing = [m.url for m in started if not status(m).get("peers")]
            if missing:
                raise RuntimeError("peer fill is not in this build: the members' /status has no `peers` "
                                   f"section ({len(missing)} of {MEMBERS}); rebuild from a commit with peer fill")
        return started
    except Exception:
        for m in started:
            m.stop()
        raise


def drain(members, timeout=DRAIN_TIMEOUT_S):
    """Waits until no member has store writes queued; returns the seconds it took (None: the
    queues were not empty by the timeout, the counters are read anyway)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        stores = [status(m).get("store") for m in members]
        if all(s is None or s.get("queueDepth", 0) == 0 for s in stores):
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def concurrent_downloads(members, corpus):
    """One cold `go mod download all` per member, all released at the same instant; returns
    ([ColdResult per member], seconds from the release to the last one's end)."""
    barrier = threading.Barrier(len(members) + 1)
    results = [None] * len(members)

    def one(i):
        barrier.wait()
        try:
            results[i] = client.cold_download(members[i].url, corpus)
        except Exception as e:  # a harness failure in one thread is that client's error
            results[i] = client.ColdResult(0.0, False, error=f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(members))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def _kind(path):
    """What an upstream request asked for: .info, .mod, .zip, list, latest or other."""
    for k in ARTIFACT_SUFFIXES:
        if path.endswith(k):
            return k
    if path.endswith("/@v/list"):
        return "list"
    return "latest" if path.endswith("/@latest") else "other"


def upstream_counts(origin):
    """What the origin served since its last reset: requests, body bytes, the distinct artifact
    paths fetched with 200, and those of them fetched more than once."""
    reqs = origin.requests()
    per_path = Counter(p for m, p, st in reqs if m == "GET" and st == 200 and p.endswith(ARTIFACT_SUFFIXES))
    dup = {p: n for p, n in per_path.items() if n > 1}
    return {"upstream_requests": len(reqs), "upstream_bytes": origin.bytes_sent(),
            "upstream_by_kind": dict(sorted(Counter(f"{_kind(p)} {st}" for _, p, st in reqs).items())),
            "upstream_artifacts": len(per_path), "upstream_artifacts_repeated": len(dup),
            "upstream_artifact_fetches": sum(per_path.values()),
            "upstream_max_per_artifact": max(per_path.values(), default=0)}


def late_member(contender, corpus, origin, store):
    """A fourth member started empty on the store the fleet just filled (store only, no peer
    fill), one cold `go mod download all` through it: what a member added or emptied later
    costs the origin."""
    member = procs.start_modfleet_member(contender, [origin.url], store.modfleet_yaml("fleet"))
    try:
        origin.reset_counts()
        r = client.cold_download(member.url, corpus)
        counts = upstream_counts(origin)
        return {"seconds": r.seconds, "ok": r.ok, "error": r.error, "store": status(member).get("store"),
                **{k: counts[k] for k in ("upstream_requests", "upstream_bytes", "upstream_by_kind",
                                          "upstream_artifacts")}}
    finally:
        member.stop()


def run_variant(contender, corpus, origin, variant, late=False):
    """One run of one variant: a fresh store (if any) and three fresh members."""
    want_store, want_peers = uses(variant)
    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    store = members = None
    out = {"variant": variant, "ok": False, "error": ""}
    try:
        store = procs.S3Store() if want_store else None
        members = start_fleet(contender, origin.url, store, want_peers, workdir)
        origin.reset_counts()
        load_before = os.getloadavg()[0]
        cpu_before = [m.cpu_seconds() or 0.0 for m in members]
        results, wall = concurrent_downloads(members, corpus)
        out["load"] = [load_before, os.getloadavg()[0]]
        out["drain_s"] = drain(members) if want_store else 0.0
        statuses = [status(m) for m in members]
        out.update(upstream_counts(origin))
        out.update(
            clients=[asdict(r) for r in results],
            slowest_s=max(r.seconds for r in results),
            wall_s=wall,
            members=[{"store": s.get("store"), "peers": s.get("peers"),
                      "cpu_s": (m.cpu_seconds() or 0.0) - before}
                     for m, s, before in zip(members, statuses, cpu_before)],
        )
        if store:
            out["store_objects"], out["store_bytes"] = store.contents()
        dead = [m.url for m in members if not m.alive()]
        for m in members:  # the fleet's work is done: the late member has the cores to itself
            m.stop()
        if store and late:
            out["late"] = late_member(contender, corpus, origin, store)
        bad = [f"client {i + 1} (member {i + 1}): {r.error}" for i, r in enumerate(results) if not r.ok]
        if out.get("late") and not out["late"]["ok"]:
            bad.append(f"the late member's client: {out['late']['error']}")
        if dead:
            bad.append(f"members exited: {dead}")
        out["ok"] = not bad
        out["error"] = "; ".join(bad)
    except Exception as e:  # a failed run is a result, not a crash
        out["error"] = f"{e}"
    finally:
        for m in members or []:
            m.stop()
        if store:
            store.stop()
        subprocess.run(["rm", "-rf", str(workdir)], capture_output=True)
    return out


def summary(run):
    """One log line for a run."""
    if not run.get("slowest_s"):
        return f"ERROR {run['error']}"
    stores = [m["store"] for m in run["members"] if m.get("store")]
    peers = [m["peers"] for m in run["members"] if m.get("peers")]
    each = ", ".join(f"{c['seconds']:.1f}" for c in run["clients"])
    s = (f"slowest go {run['slowest_s']:.1f}s ({each}), "
         f"upstream {run['upstream_requests']} requests, {run['upstream_bytes'] / 1e6:.0f} MB, "
         f"{run['upstream_artifacts_repeated']} artifacts fetched more than once")
    if stores:
        s += (f"; store reads hit {sum(x['reads']['hit'] for x in stores)} miss {sum(x['reads']['miss'] for x in stores)}"
              f", writes ok {sum(x['writes']['ok'] for x in stores)}")
    if peers:
        s += (f"; peer asks hit {sum(x['asked']['hit'] for x in peers)} "
              f"fallback {sum(x['asked']['fallback'] for x in peers)}")
    if run.get("late"):
        lt = run["late"]
        s += (f"; late member on the warm store: go {lt['seconds']:.1f}s, upstream {lt['upstream_requests']} "
              f"requests, {lt['upstream_bytes'] / 1e6:.0f} MB")
    return s + (f"; load {run['load'][0]:.1f}-{run['load'][1]:.1f}" if run.get("load") else "") + (
        f" ERROR {run['error']}" if run["error"] else "")


def scenario(contenders, corpus, cfg, log, variants=VARIANTS, rounds=None, late=False):
    """Scenario 8: every variant `rounds` times (order reversed every other round), through the
    `modfleet` contender's binary; with `late`, a store variant's run ends with a fourth member
    started empty on the store (see late_member)."""
    modfleet = next((c for c in contenders if c.name == "modfleet"), None)
    if modfleet is None:
        return {"harness_error": "the fleet scenario runs modfleet only: add modfleet to --contenders"}
    rounds = rounds or cfg["fleet_rounds"]
    order = rounds_order(variants, rounds)
    lat = cfg["fleet_latency_ms"]
    uplink = cfg.get("fleet_uplink_mbit")
    out = {v: [] for v in variants}
    origin = procs.Origin(str(corpus.root), [lat / 1000.0], uplink_mbit=uplink)
    link = f", uplink {uplink} Mbit/s" if uplink else ""
    try:
        for i, vs in enumerate(order):
            for v in vs:
                log(f"  fleet round {i + 1}/{rounds}: {LABELS[v]}, {MEMBERS} members, origin {lat} ms{link}")
                run = run_variant(modfleet, corpus, origin, v, late=late)
                run["round"] = i + 1
                out[v].append(run)
                log(f"  fleet {v}: {summary(run)}")
    finally:
        origin.stop()
    return {"members": MEMBERS, "latency_ms": lat, "uplink_mbit": uplink, "rounds": rounds, "order": order,
            "results": out}
