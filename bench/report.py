"""docs/benchmarks.md and its charts from a results dictionary (see run.py).

Every figure is also given as a ratio to modfleet's figure in the same run. The goals of the
issue are reported here (met / not met / not measurable), never asserted.
"""

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"modfleet": "#1f77b4", "modfleet-prefetch-zips": "#9ecae1", "athens": "#d62728", "goproxy": "#2ca02c", "nginx": "#7f7f7f",
          "origin direct": "#7f7f7f", "direct": "#7f7f7f", "round 1": "#1f77b4", "round 2": "#9ecae1",
          "round 3": "#ff7f0e", "round 4": "#ffbb78"}

HOW_LATENCY = (
    "Origin latency is injected **inside the origin**, not by `tc netem`: this machine's kernel has "
    "no `sch_netem` (`tc qdisc add ... netem` answers \"Specified qdisc kind is unknown\"). Each "
    "delayed nginx server block answers every request with the echo module's `echo_sleep <delay>` "
    "followed by `echo_exec @file` (Debian's `libnginx-mod-http-echo`), so every upstream request "
    "waits the delay once before its first byte. netem would add the delay to every packet, so a "
    "TCP handshake and a long body would pay it more than once; these figures are therefore a "
    "lower bound on what the same round-trip time would cost over a real network."
)


def scrub(text):
    """Removes the address of any host but loopback (error messages quote the Go module proxy's
    URL; no registry address goes into the repository)."""
    return re.sub(r"https?://(?!127\.0\.0\.1|localhost)[A-Za-z0-9.-]+(:[0-9]+)?", "$GOPROXY", text)


def _ratio(value, base, higher_is_better=True):
    """'1.23×' of value to modfleet's base value, or '—'."""
    if value is None or base in (None, 0):
        return "—"
    return f"{value / base:.2f}×"


def _fmt(v, digits=1):
    return "—" if v is None else f"{v:,.{digits}f}"


def _mib(kib):
    return None if kib is None else kib / 1024


# ---------------------------------------------------------------------------- sections


def machine_section(r):
    m = r["machine"]
    c = r["corpus"]
    lines = [
        "## Machine and corpus",
        "",
        f"- Run: {m['date']}, {'smoke' if r['smoke'] else 'full'} run, {r['duration_s'] / 60:.0f} min.",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}; "
        f"load average at start {', '.join(f'{x:.1f}' for x in m['load_at_start'])} "
        "(the machine is shared with other developers' builds and tests: treat small differences as noise).",
        f"- Load generator and clients run on the same machine as the proxies and the origin, all on loopback.",
        f"- Tools: {m['go']}; {m['rustc']}; {m['wrk']}; Python {m['python']}.",
        "- Contenders: " + "; ".join(f"**{k}** {v}" for k, v in m["contenders"].items())
        + (f" (modfleet from commit {m['commit']})" if m.get("commit") else "") + ".",
        f"- Corpus `{c['name']}`: {c['module_versions']} module versions ({c['artifacts']} .info/.mod/.zip "
        f"files, {c['bytes'] / 1e6:.0f} MB; the {c['mix']} files a cold `go mod download all` asks for, "
        f"{c['mix_bytes'] / 1e6:.0f} MB, are the load mix, with {c['zips']} zips, {c['zips_over_10mb']} over 10 MB, the largest "
        f"{c['largest_zip'][0] / 1e6:.1f} MB) — the dependency graphs of "
        + ", ".join(f"`{p}@{v[0]}`" for p, v in c["projects"]) + ".",
    ]
    if r.get("unavailable"):
        lines += ["", "**Contenders that could not be built (no figures):**", ""]
        for name, why in r["unavailable"].items():
            lines.append(f"- **{name}**: {why}")
    return lines


def warm_section(r, charts):
    warm = r.get("warm") or {}
    if not warm or "harness_error" in warm:
        return ["## 1. Warm-cache throughput and latency", "", "Not run." if not warm else f"Harness error: `{warm['harness_error'][-300:]}`"]
    base = {lv["connections"]: lv for lv in warm.get("modfleet", {}).get("levels", [])}
    lines = [
        "## 1. Warm-cache throughput and latency",
        "",
        f"wrk ({r['config']['seconds']} s per level, 2 threads) on a warm cache; each request picks one of the "
        f"{r['corpus']['mix']} .info/.mod/.zip files at random (the files a cold `go mod "
        "download all` of the graph asks for, so many small .mod files and fewer large zips). Before the load "
        "every artifact is fetched through the contender once and checked against the corpus (SHA-256 for "
        ".mod/.zip, the JSON `Version` for .info), and again after the load; under load, wrk counts every "
        "non-2xx/3xx answer, connection error and timeout as an error.",
        "",
        "| contender | connections | req/s | MB/s | p50 ms | p99 ms | errors | req/s vs modfleet | p99 vs modfleet |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, res in warm.items():
        if res.get("error") and not res.get("levels"):
            lines.append(f"| {name} | — | **error** | | | | | | |")
            continue
        for lv in res["levels"]:
            b = base.get(lv["connections"], {})
            lines.append(
                f"| {name} | {lv['connections']} | {lv['rps']:,.0f} | {lv['mbps']:,.0f} | {lv['p50_ms']:.2f} | "
                f"{lv['p99_ms']:.2f} | {lv['errors']}{' (' + lv['error_detail'] + ')' if lv['errors'] else ''} | "
                f"{_ratio(lv['rps'], b.get('rps'))} | {_ratio(lv['p99_ms'], b.get('p99_ms'))} |"
            )
    errs = [(n, x["error"]) for n, x in warm.items() if x.get("error")]
    if errs:
        lines += [""] + [f"- **{n} errored**: {e}" for n, e in errs]
    lines += ["", f"![warm throughput]({charts['warm']})", ""]
    lines += ["## 4. Peak memory under scenario 1", "",
              "VmHWM (peak resident set) from `/proc/PID/status` after the warm-up and the three load levels "
              "(nginx: master and workers summed).", "",
              "| contender | peak RSS MiB | vs modfleet |", "| --- | ---: | ---: |"]
    base_rss = _mib(warm.get("modfleet", {}).get("rss_kib"))
    for name, res in warm.items():
        rss = _mib(res.get("rss_kib"))
        lines.append(f"| {name} | {_fmt(rss)} | {_ratio(rss, base_rss)} |")
    lines += ["", f"![peak RSS]({charts['rss']})"]
    return lines


def cold_section(r, charts):
    cold = r.get("cold") or {}
    if not cold:
        return ["## 2. Cold `go mod download`", "", "Not run."]
    lats = r["config"]["latencies_ms"]
    lines = [
        "## 2. Cold `go mod download` of the whole graph",
        "",
        "`go mod download -json all` of the corpus's module (its go.mod and go.sum) with an empty GOMODCACHE, "
        "through a contender started with an empty cache (`GOSUMDB=off`, `GOFLAGS=-mod=mod`: the go command "
        "still checks every module against go.sum, and afterwards every .mod and .zip it stored is compared "
        "with the corpus). `origin direct` is the go command talking to the origin itself, the floor. "
        "Wall time in seconds, origin latency per upstream request as below.",
        "",
        "| contender | " + " | ".join(f"{lat} ms: s" for lat in lats) + " | " + " | ".join(f"{lat} ms vs modfleet" for lat in lats) + " | upstream requests | upstream MB |",
        "| --- |" + " ---: |" * (2 * len(lats) + 2),
    ]
    base = cold.get("modfleet", {})
    for name, per in cold.items():
        label = "origin direct" if name == "nginx" else name
        cells, ratios, ups, mbs = [], [], [], []
        for lat in lats:
            x = per.get(str(lat), {})
            if not x.get("ok"):
                cells.append("**error**" if x else "—")
                ratios.append("—")
                continue
            cells.append(f"{x['seconds']:.1f}")
            b = base.get(str(lat), {})
            ratios.append(_ratio(x["seconds"], b.get("seconds") if b.get("ok") else None))
            ups.append(str(x.get("upstream_requests", "—")))
            mbs.append(f"{x['upstream_bytes'] / 1e6:.0f}" if x.get("upstream_bytes") is not None else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios)
                     + f" | {' / '.join(ups) or '—'} | {' / '.join(mbs) or '—'} |")
    errs = [(n, lat, x.get("error")) for n, per in cold.items() for lat, x in per.items() if not x.get("ok")]
    if errs:
        lines += [""] + [f"- **{n} @{lat} ms errored**: {e}" for n, lat, e in errs]
    lines += ["", f"![cold download]({charts['cold']})"]
    return lines


def herd_section(r, charts):
    herd = r.get("herd") or {}
    if not herd or "results" not in herd:
        return ["## 3. Thundering herd", "", "Not run."]
    t = herd["target"]
    lines = [
        "## 3. Thundering herd",
        "",
        f"{herd['clients']} clients, connected first, send the same request at the same instant for one "
        f"uncached zip (`{t['path']}`, {t['size'] / 1e6:.1f} MB) to a freshly started contender. Upstream "
        "fetches are counted from the origin nginx's access log (GETs of exactly that path); every body is "
        "checked against the corpus's SHA-256.",
        "",
        "| contender | origin latency ms | upstream fetches | p50 ms | p99 ms | errors | p99 vs modfleet |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = herd["results"].get("modfleet", {})
    for name, per in herd["results"].items():
        for lat, x in per.items():
            if x.get("error"):
                lines.append(f"| {name} | {lat} | **error** | | | | |")
                continue
            b = base.get(lat, {})
            lines.append(f"| {name} | {lat} | {x['upstream_fetches']} | {x['p50'] * 1000:.0f} | {x['p99'] * 1000:.0f} | "
                         f"{x['errors']} | {_ratio(x['p99'], b.get('p99'))} |")
    lines += ["", f"![herd]({charts['herd']})"]
    return lines


def failover_section(r):
    fo = r.get("failover") or {}
    if not fo or "results" not in fo:
        return ["## 5. Failover", "", "Not run."]
    lines = [
        "## 5. Failover: the primary upstream slow",
        "",
        f"Two origins serve the same corpus; the primary (first in each contender's upstream list) waits "
        f"{fo['delay_s']:.0f} s before answering every request (origin-side `echo_sleep`), the secondary answers at "
        f"once. {fo['artifacts']} distinct uncached artifacts under 2 MB, 8 at a time, each checked against "
        "the corpus. modfleet: `--upstream primary --upstream secondary` (hedging on its default `auto` delay); "
        "goproxy: `GOPROXY=primary,secondary` (the go command's list semantics: the next entry only after a "
        "404/410). nginx takes no upstream and is not in this scenario.",
        "",
        "| contender | p50 ms | p99 ms | errors | wall s | primary requests | secondary requests | p99 vs modfleet |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = fo["results"].get("modfleet", {})
    sec = fo.get("secondary")
    if sec:
        lines.append(f"| secondary direct (the floor) | {sec['p50'] * 1000:.0f} | {sec['p99'] * 1000:.0f} | "
                     f"{sec['errors']} | | | | {_ratio(sec['p99'], base.get('p99'))} |")
    for name, x in fo["results"].items():
        if x.get("error"):
            lines.append(f"| {name} | **error** | | | | | | |")
            continue
        lines.append(f"| {name} | {x['p50'] * 1000:.0f} | {x['p99'] * 1000:.0f} | {x['errors']} | {x['wall']:.1f} | "
                     f"{x['primary_requests']} | {x['secondary_requests']} | {_ratio(x['p99'], base.get('p99'))} |")
    return lines


def slow_section(r):
    slow = r.get("slow") or {}
    title = "## 6. Clients that never read"
    if not slow or "harness_error" in slow:
        return [title, "", "Not run." if not slow else f"Harness error: `{slow['harness_error'][-300:]}`"]
    t = slow["target"]
    lines = [
        title,
        "",
        f"{slow['clients']:,} clients (from {slow['addresses']} loopback addresses, as from that many build pods) "
        f"each open a download of a cached {t['size'] / 2**20:.1f} MiB zip (`{t['path']}`) and never read it: a "
        "16 KiB receive buffer and an Ethernet segment size (1448 bytes; on loopback's 64 KiB MTU the "
        "contenders' kernels would autotune each stalled send buffer to megabytes, gigabytes in all), the answer "
        "only peeked at (`MSG_PEEK`), so every download stalls once the socket buffers are full. When every one has its `200`, the same module's cached `.mod` "
        f"(`{slow['probe']}`) is fetched {slow['probes']:,} times, one after another on one keep-alive "
        "connection (10 s timeout each; after three timeouts in a row the contender is taken to hang), and "
        "checked against the corpus. Peak RSS is VmHWM after the probes (nginx: master and workers summed). "
        "Goal: `.mod` p99 under 50 ms and peak RSS under 128 MiB with 1,000 slow clients.",
        "",
        "| contender | slow clients answered | still open after | .mod fetches | p50 ms | p99 ms | max ms | errors (timeouts) | peak RSS MiB | p99 vs modfleet | RSS vs modfleet |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    res = slow.get("results", {})
    base = res.get("modfleet", {})
    for name, x in res.items():
        if x.get("error"):
            lines.append(f"| {name} | **error** | | | | | | | | | |")
            continue
        p = x["probe"]
        bp = None if base.get("probe_timeouts") else (base.get("probe") or {}).get("p99")
        if x["probe_timeouts"]:
            # Latency of requests that never finished is the timeout, not a figure.
            p50 = p99 = mx = "hangs"
            p99_ratio = "—"
        else:
            p50, p99, mx = f"{p['p50'] * 1000:.2f}", f"{p['p99'] * 1000:.2f}", f"{p['max'] * 1000:.1f}"
            p99_ratio = _ratio(p["p99"], bp)
        lines.append(
            f"| {name} | {x['answered']:,} / {x['clients']:,} | {x['still_open']:,} | {p['count']:,} | "
            f"{p50} | {p99} | {mx} | {p['errors']} ({x['probe_timeouts']}) | "
            f"{_fmt(_mib(x['rss_kib']))} | {p99_ratio} | {_ratio(_mib(x['rss_kib']), _mib(base.get('rss_kib')))} |"
        )
    errs = [(n, x["error"]) for n, x in res.items() if x.get("error")]
    if errs:
        lines += [""] + [f"- **{n} errored**: {e}" for n, e in errs]
    return lines


def private_section(r, charts):
    """Section 7: the cold fetch of a generated private module graph from its Git server."""
    pv = r.get("private") or {}
    title = "## 7. Cold fetch of a private module graph from Git"
    if not pv or "results" not in pv:
        return [title, "", "Not run." if not pv else f"Harness error: `{pv.get('harness_error', '')[-300:]}`"]
    c, run, lats, res = pv["corpus"], pv["run"], pv["latencies_ms"], pv["results"]
    md5 = ", ".join(f"{k} `{v}`" for k, v in run.get("binaries_md5", {}).items())
    spec = c["spec"]
    blobs = (f"; one module in {spec['blob_every']} carries {spec['blob_bytes'][0] / 1e6:.1f}-"
             f"{spec['blob_bytes'][1] / 1e6:.1f} MB of incompressible test data" if spec["blob_every"] else "")
    lines = [
        title,
        "",
        f"Run {run['date']}, modfleet from commit {run['commit']} (binary MD5 {md5 or '—'}), {run['go']}; "
        f"1-minute load average {pv['load_range'][0]:.1f}-{pv['load_range'][1]:.1f} during the downloads "
        f"(per download in the raw figures). Order within each latency: {', '.join(pv['order'])}.",
        "",
        f"A generated graph (`bench/private_corpus.py`, deterministic from a seed) of {c['modules']} private "
        f"modules, each its own Git repository with {c['versions_per_module']} tagged versions, in layers: each "
        f"version requires 1-4 modules of deeper layers, and the main module requires the top {c['tops']} "
        f"(go 1.21+ go.mod files, so the go command reads the go.mod of the {c['mods_in_graph']} selected "
        f"versions only). {c['go_files']:,} Go files in the latest trees, {c['repo_bytes'] / 1e6:.1f} MB of "
        f"repositories; the {c['selected']} selected versions' zips are {c['zip_bytes'] / 1e6:.1f} MB "
        f"(largest {c['largest_zip'] / 1e6:.1f} MB){blobs}. Module paths are "
        "`git.modfleet.test/private/NAME.git`. The Git server is git's own smart-HTTP backend "
        "(`git http-backend` as CGI behind `bench/githost.py`), behind nginx injecting the latency per "
        "HTTP request as for the other origins.",
        "",
        "`go mod download -json all` of the main module (its go.mod and go.sum) with an empty module cache, "
        "through a contender started with an empty cache: **modfleet** with `privateModules` naming each "
        "repository (the client with `GONOSUMDB`); **Athens** v0.18.0, whose `go mod download` goes direct to "
        "the Git server (`GOPROXY=direct`, `GOPRIVATE`, `GONOSUMDB`, `GOINSECURE` and the git config through "
        "`ATHENS_GO_BINARY_ENV_VARS`); **direct**: the go command itself going to the Git server "
        "(`GOPROXY=direct`, `GOPRIVATE`, `GOINSECURE`, `url.<base>.insteadOf`). The go command checks every "
        "module against go.sum, and the modules and `h1:` sums it prints must equal those of the go command "
        "direct when the corpus was made; the proxies' upstream is an empty origin that must see no private path.",
        "",
        "| contender | " + " | ".join(f"{lat} ms: s" for lat in lats) + " | "
        + " | ".join(f"{lat} ms vs direct" for lat in lats) + " | " + " | ".join(f"{lat} ms vs Athens" for lat in lats) + " |",
        "| --- |" + " ---: |" * (3 * len(lats)),
    ]

    def secs(name, lat):
        x = res.get(name, {}).get(str(lat), {})
        return x["seconds"] if x.get("ok") else None

    for name, per in res.items():
        cells = [_fmt(secs(name, lat)) if per.get(str(lat), {}).get("ok") else ("**error**" if per.get(str(lat)) else "—")
                 for lat in lats]
        lines.append(f"| {name} | " + " | ".join(cells) + " | "
                     + " | ".join(_ratio(secs(name, lat), secs("direct", lat)) for lat in lats) + " | "
                     + " | ".join(_ratio(secs(name, lat), secs("athens", lat)) for lat in lats) + " |")
    lines += [
        "",
        "What each download cost, per latency (CPU: user + system seconds, children included: the proxy's own "
        "`git` or `go` processes; the Git server: its Python CGI host with the `git http-backend` and `git upload-pack` "
        "it runs; the client's go "
        "command and, direct, the git it runs):",
        "",
        "| contender | latency ms | proxy CPU s | client go CPU s | Git server CPU s | Git server requests | Git server MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, per in res.items():
        for lat in lats:
            x = per.get(str(lat), {})
            if not x.get("ok"):
                continue
            lines.append(f"| {name} | {lat} | {_fmt(x.get('proxy_cpu_s'))} | {_fmt(x.get('client_cpu_s'))} | "
                         f"{_fmt(x.get('git_cpu_s'))} | {x.get('git_requests', '—')} | "
                         f"{x['git_bytes'] / 1e6:.1f} |")
    errs = [(n, lat, x.get("error")) for n, per in res.items() for lat, x in per.items() if not x.get("ok")]
    if errs:
        lines += [""] + [f"- **{n} @{lat} ms errored**: {e}" for n, lat, e in errs]
    if charts.get("private"):
        lines += ["", f"![private graph]({charts['private']})"]
    return lines


FLEET_LABELS = {"independent": "(a) independent", "store": "(b) shared store", "peers": "(c) peer fill",
                "store+peers": "(d) store + peer fill"}


def _sum(members, section, *keys):
    """The sum over the members of a /status counter (section `store` or `peers`), or None
    when no member has that section."""
    vals = []
    for m in members:
        x = m.get(section)
        if x is None:
            continue
        for k in keys:
            x = (x or {}).get(k, 0)
        vals.append(x or 0)
    return sum(vals) if vals else None


def _not_found(by_kind):
    """Upstream requests answered 404, from a run's `upstream_by_kind`."""
    return sum(n for k, n in by_kind.items() if k.endswith(" 404"))


def _span(values, fmt="{:.1f}"):
    """'a' or 'min-max' of the values."""
    if not values:
        return "—"
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"


def fleet_section(r, charts):
    """Section 8: three members, three concurrent cold graphs, four ways of sharing."""
    fl = r.get("fleet") or {}
    title = "## 8. Fleet: three members, three concurrent cold graphs"
    if not fl or "results" not in fl:
        return [title, "", "Not run." if not fl else f"Harness error: `{fl.get('harness_error', '')[-300:]}`"]
    run, res = fl["run"], fl["results"]
    late_runs = any(x.get("late") for runs in res.values() for x in runs)
    store_runs = any("store" in v and runs for v, runs in res.items())
    md5 = ", ".join(f"{k} `{v}`" for k, v in run.get("binaries_md5", {}).items())
    order = "; ".join(f"round {i + 1}: " + ", ".join(FLEET_LABELS[v][:3] for v in vs) for i, vs in enumerate(fl["order"]))
    lo, hi = fl.get("load_range", [0, 0])
    lines = [
        title,
        "",
        f"Run {run['date']}, modfleet from commit {run['commit']} (binary MD5 {md5 or '—'}), {run['go']}; "
        f"1-minute load average {lo:.1f}-{hi:.1f} during the downloads. {fl['rounds']} "
        f"round{'s, the order reversed every other round' if fl['rounds'] > 1 else ''} ({order}). Figures of one shared 2-core machine: each go command, each "
        "member and the origin compete for the same two cores.",
        "",
        f"{fl['members']} `modfleet-proxy` members on loopback, each with its own empty disk cache and the "
        f"origin (latency {fl['latency_ms']} ms per request"
        + (f"; behind a {fl['uplink_mbit']} Mbit/s link that everything it sends shares: a network namespace "
           "and a veth pair shaped by `tc tbf`, as a site's uplink" if fl.get("uplink_mbit") else "")
        + f") as upstream; {fl['members']} `go mod download -json all` "
        "of the corpus's module (as in section 2, each with its own empty GOMODCACHE, every .mod and .zip checked "
        "against the corpus) are released at the same instant, each through a different member. Variants: **(a)** "
        "the members share nothing; **(b)** a shared object store under the disk caches (`objectStore`: s3s-fs on "
        "loopback, one bucket, empty at the start); **(c)** peer fill among the members (`peerFill`: static "
        "membership, shared token; an artifact's owner fetches it, the others ask the owner); **(d)** both. "
        "Every run starts from empty members and an empty store. Upstream requests and bytes are counted in the "
        "origin's access log (every request, the members' health probes included); \"artifacts fetched more than "
        "once\" counts .info/.mod/.zip paths the origin answered with 200 more than once. Store and peer counters "
        "are the members' `/status` (`store`, `peers`) summed over the three, read after the members' store write "
        "queues drained; the store's contents are counted in s3s-fs's directory." + (
            " After a run with a store, the three members are stopped and a fourth is started empty on that store "
            "(store only), and one more cold `go mod download all` goes through it alone: what a member added or "
            "emptied later costs the origin." if late_runs else " (These runs predate the harness's late member: "
            "see the Analysis.)" if store_runs else ""),
        "",
        "| variant | slowest go command s | vs (a) | upstream requests | upstream MB | artifacts fetched more than once |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def ok_runs(v):
        return [x for x in res.get(v, []) if x.get("ok")]

    base = [x["slowest_s"] for x in ok_runs("independent")]
    base_mean = sum(base) / len(base) if base else None
    for v, runs in res.items():
        good = ok_runs(v)
        if not good:
            lines.append(f"| {FLEET_LABELS[v]} | **error** | | | | |")
            continue
        slow = [x["slowest_s"] for x in good]
        mean = sum(slow) / len(slow)
        lines.append(
            f"| {FLEET_LABELS[v]} | {_span(slow)} | {_ratio(mean, base_mean) if v != 'independent' else '1.00×'} | "
            f"{_span([x['upstream_requests'] for x in good], '{:,.0f}')} | "
            f"{_span([x['upstream_bytes'] / 1e6 for x in good], '{:,.0f}')} | "
            f"{_span([x['upstream_artifacts_repeated'] for x in good], '{:,.0f}')} of "
            f"{_span([x['upstream_artifacts'] for x in good], '{:,.0f}')} |")
    lines += [
        "",
        "(Ranges over the rounds; \"vs (a)\": mean slowest time over the mean of (a)'s.) Each run:",
        "",
        "| variant | round | go commands s | upstream requests (of which 404) | upstream MB | store reads hit / miss / invalid / error "
        "| store writes ok / error / dropped | store objects, MB | peer asks hit / not found / fallback | peer answers "
        "| members' CPU s | load | 4th member on the warm store: go s, upstream requests (404), MB |",
        "| --- | ---: | --- | ---: | ---: | --- | --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for v, runs in res.items():
        for x in runs:
            if not x.get("clients"):
                lines.append(f"| {FLEET_LABELS[v]} | {x.get('round')} | **error** | | | | | | | | | | |")
                continue
            ms = x["members"]
            reads = "—" if _sum(ms, "store", "reads", "hit") is None else " / ".join(
                str(_sum(ms, "store", "reads", k)) for k in ("hit", "miss", "invalid", "error"))
            writes = "—" if _sum(ms, "store", "writes", "ok") is None else " / ".join(
                str(_sum(ms, "store", "writes", k)) for k in ("ok", "error", "dropped"))
            asks = "—" if _sum(ms, "peers", "asked", "hit") is None else " / ".join(
                str(_sum(ms, "peers", "asked", k)) for k in ("hit", "not_found", "fallback"))
            served = _sum(ms, "peers", "served")
            objects = (f"{x['store_objects']:,}, {x['store_bytes'] / 1e6:.0f}" if x.get("store_objects") is not None
                       else "—")
            gos = " / ".join(f"{c['seconds']:.1f}" + ("" if c["ok"] else " **error**") for c in x["clients"])
            kinds = x.get("upstream_by_kind")
            missing = "" if kinds is None else f" ({_not_found(kinds):,})"
            lt = x.get("late")
            late = "—" if not lt else (
                f"{lt['seconds']:.1f}, {lt['upstream_requests']:,} ({_not_found(lt['upstream_by_kind']):,}), "
                f"{lt['upstream_bytes'] / 1e6:.1f}" if lt.get("ok") else "**error**")
            lines.append(
                f"| {FLEET_LABELS[v]} | {x['round']} | {gos} | {x['upstream_requests']:,}{missing} | "
                f"{x['upstream_bytes'] / 1e6:.0f} | {reads} | {writes} | {objects} | {asks} | "
                f"{'—' if served is None else served} | {sum(m['cpu_s'] for m in ms):.1f} | "
                f"{x['load'][0]:.1f}-{x['load'][1]:.1f} | {late} |")
    errs = [(v, x.get("round"), x.get("error")) for v, runs in res.items() for x in runs if not x.get("ok")]
    if errs:
        lines += [""] + [f"- **{FLEET_LABELS[v]}, round {rd}, errored**: {e}" for v, rd, e in errs]
    if charts.get("fleet"):
        lines += ["", f"![fleet]({charts['fleet']})"]
    return lines


def goals_section(r):
    """The issue's goals, each met / not met / not measurable in this run."""
    warm = r.get("warm") or {}
    def max_rps(name):
        lv = warm.get(name, {}).get("levels") or []
        return max((x["rps"] for x in lv), default=None) if not warm.get(name, {}).get("error") else None

    def verdict(ok):
        return "not measurable" if ok is None else ("**met**" if ok else "**not met**")

    m, a, n = max_rps("modfleet"), max_rps("athens"), max_rps("nginx")
    rows = []
    rows.append(("warm throughput ≥ 1.5× Athens (best level each)", f"{_fmt(m, 0)} vs {_fmt(a, 0)} req/s"
                 + (f" ({m / a:.2f}×)" if m and a else ""), verdict(None if not (m and a) else m >= 1.5 * a)))
    # The ceiling: nginx serving the same files, at every concurrency level, p99 no worse.
    lm = {x["connections"]: x for x in warm.get("modfleet", {}).get("levels") or []}
    ln = {x["connections"]: x for x in warm.get("nginx", {}).get("levels") or []}
    both = sorted(set(lm) & set(ln))
    rows.append(("warm throughput ≥ 1.0× nginx at every level, p99 no worse",
                 "; ".join(f"{c}: {lm[c]['rps'] / ln[c]['rps']:.2f}×, p99 {lm[c]['p99_ms']:.1f} vs {ln[c]['p99_ms']:.1f} ms"
                           for c in both) or "—",
                 verdict(None if not both else all(lm[c]["rps"] >= ln[c]["rps"] and lm[c]["p99_ms"] <= ln[c]["p99_ms"]
                                                   for c in both))))
    cold = r.get("cold") or {}
    cm, ca = cold.get("modfleet", {}), cold.get("athens", {})
    pairs = [(lat, cm[lat]["seconds"], ca[lat]["seconds"]) for lat in cm
             if cm[lat].get("ok") and ca.get(lat, {}).get("ok")]
    rows.append(("cold graph ≥ 1.5× faster than Athens", "; ".join(f"{lat} ms: {x:.1f} s vs {y:.1f} s" for lat, x, y in pairs) or "—",
                 verdict(None if not pairs else all(y >= 1.5 * x for _, x, y in pairs))))
    # Beyond every peer: an empty modfleet faster than the go command at the origin itself.
    cd = cold.get("nginx", {})
    hi = str(max(r["config"]["latencies_ms"])) if r.get("config", {}).get("latencies_ms") else None
    for name, how in (("modfleet", "default prefetch: .mod files"),
                      ("modfleet-prefetch-zips", "`--prefetch-zips on`: .mod, .info and zips")):
        xm, xd = cold.get(name, {}).get(hi, {}), cd.get(hi, {})
        okd = bool(hi and xm.get("ok") and xd.get("ok"))
        rows.append((f"cold graph at {hi} ms ≤ 0.7× the go command direct ({how})",
                     (f"{xm['seconds']:.1f} s vs {xd['seconds']:.1f} s ({xm['seconds'] / xd['seconds']:.2f}×)"
                      + (f", upstream {xm['upstream_bytes'] / 1e6:.0f} vs {xd['upstream_bytes'] / 1e6:.0f} MB"
                         if xm.get("upstream_bytes") is not None and xd.get("upstream_bytes") is not None else ""))
                     if okd else "—",
                     verdict(None if not okd else xm["seconds"] <= 0.7 * xd["seconds"])))
    fo = r.get("failover") or {}
    fm, fs = (fo.get("results") or {}).get("modfleet", {}), fo.get("secondary")
    okf = bool(fm and not fm.get("error") and fs)
    rows.append(("failover p99 within 150 ms of the secondary's own",
                 f"{fm['p99'] * 1000:.0f} vs {fs['p99'] * 1000:.0f} ms" if okf else "—",
                 verdict(None if not okf else fm["p99"] - fs["p99"] <= 0.150)))
    herd = (r.get("herd") or {}).get("results", {}).get("modfleet", {})
    counts = [x.get("upstream_fetches") for x in herd.values() if "upstream_fetches" in x]
    rows.append(("exactly 1 upstream fetch under the herd", ", ".join(map(str, counts)) or "—",
                 verdict(None if not counts else all(c == 1 for c in counts))))
    rm, ra = warm.get("modfleet", {}).get("rss_kib"), warm.get("athens", {}).get("rss_kib")
    rows.append(("peak RSS ≤ ¼ of Athens", f"{_fmt(_mib(rm))} vs {_fmt(_mib(ra))} MiB",
                 verdict(None if not (rm and ra) else rm * 4 <= ra)))
    sm = (r.get("slow") or {}).get("results", {}).get("modfleet", {})
    if sm and not sm.get("error"):
        p99 = sm["probe"]["p99"] * 1000
        ok = sm["probe"]["errors"] == 0 and sm["answered"] == sm["clients"]
        rows.append((f"{sm['clients']:,} clients that never read: cached .mod p99 < 50 ms",
                     f"{p99:.1f} ms, {sm['probe']['errors']} errors", verdict(ok and p99 < 50)))
        rows.append((f"{sm['clients']:,} clients that never read: peak RSS < 128 MiB",
                     f"{_fmt(_mib(sm['rss_kib']))} MiB", verdict(sm["rss_kib"] < 128 * 1024)))
    fl = (r.get("fleet") or {}).get("results", {})
    peer_runs = [(v, x) for v in ("peers", "store+peers") for x in fl.get(v, []) if x.get("ok")]
    if fl:
        rows.append(("fleet of 3, three concurrent cold graphs, peer fill: each artifact fetched from upstream once",
                     "; ".join(f"{FLEET_LABELS[v]} round {x['round']}: {x['upstream_artifacts_repeated']} of "
                               f"{x['upstream_artifacts']} fetched more than once" for v, x in peer_runs) or "—",
                     verdict(None if not peer_runs else all(x["upstream_artifacts_repeated"] == 0
                                                            for _, x in peer_runs))))
    if r.get("unavailable", {}).get("athens"):
        g = max_rps("goproxy")
        cg = cold.get("goproxy", {})
        gp = [(lat, cm[lat]["seconds"], cg[lat]["seconds"]) for lat in cm
              if cm[lat].get("ok") and cg.get(lat, {}).get("ok")]
        rg = warm.get("goproxy", {}).get("rss_kib")
        rows.append(("(reference, Athens missing) warm throughput vs goproxy", f"{_fmt(m, 0)} vs {_fmt(g, 0)} req/s"
                     + (f" ({m / g:.2f}×)" if m and g else ""), "—"))
        rows.append(("(reference) cold graph vs goproxy", "; ".join(f"{lat} ms: {x:.1f} s vs {y:.1f} s" for lat, x, y in gp) or "—", "—"))
        rows.append(("(reference) peak RSS vs goproxy", f"{_fmt(_mib(rm))} vs {_fmt(_mib(rg))} MiB", "—"))
    lines = ["## Goals", "", "Reported, not asserted. \"Not measurable\" means a contender it compares with has no figure in this run.", "",
             "| goal | measured | verdict |", "| --- | --- | --- |"]
    lines += [f"| {g} | {v} | {ok} |" for g, v, ok in rows]
    return lines


# ---------------------------------------------------------------------------- charts


def _color(name):
    # Variants (--variant LABEL=...) get a colour too, whatever their label.
    return COLORS.get(name, "#9ecae1" if name.startswith("modfleet") else "#bdbdbd")


def _bar_groups(ax, groups, series, values, ylabel, title, label_fmt="{:,.0f}"):
    """Grouped bars: one group per entry of groups, one bar per series, each labelled."""
    width = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ys = [values.get((s, g)) or 0 for g in groups]
        bars = ax.bar(xs, ys, width, label=s, color=_color(s))
        if label_fmt:
            ax.bar_label(bars, labels=[label_fmt.format(y) if y else "" for y in ys], fontsize=7)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([str(g) for g in groups])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if series:
        ax.legend()
    ax.grid(axis="y", alpha=0.3)


def charts(r, out_dir):
    """Writes the PNGs; returns {key: path relative to the markdown file}."""
    d = out_dir / "benchmarks"
    d.mkdir(parents=True, exist_ok=True)
    rel = {}
    warm = {k: v for k, v in (r.get("warm") or {}).items() if isinstance(v, dict) and v.get("levels")}
    conns = r["config"]["connections"]

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    _bar_groups(a1, conns, list(warm), {(n, lv["connections"]): lv["rps"] for n, x in warm.items() for lv in x["levels"]},
                "requests / s", "Warm cache: throughput (higher is better)")
    _bar_groups(a2, conns, list(warm), {(n, lv["connections"]): lv["p99_ms"] for n, x in warm.items() for lv in x["levels"]},
                "p99 latency, ms", "Warm cache: p99 latency (lower is better)")
    a1.set_xlabel("connections")
    a2.set_xlabel("connections")
    fig.tight_layout()
    fig.savefig(d / "warm.png", dpi=110)
    plt.close(fig)
    rel["warm"] = "benchmarks/warm.png"

    fig, ax = plt.subplots(figsize=(6, 4))
    names = [n for n, x in (r.get("warm") or {}).items() if isinstance(x, dict) and x.get("rss_kib")]
    ax.bar(names, [r["warm"][n]["rss_kib"] / 1024 for n in names], color=[_color(n) for n in names])
    ax.set_ylabel("peak RSS, MiB")
    ax.set_title("Peak RSS under the warm load (lower is better)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(d / "rss.png", dpi=110)
    plt.close(fig)
    rel["rss"] = "benchmarks/rss.png"

    cold = r.get("cold") or {}
    lats = r["config"]["latencies_ms"]
    fig, ax = plt.subplots(figsize=(7, 4))
    series = ["origin direct" if n == "nginx" else n for n in cold]
    vals = {("origin direct" if n == "nginx" else n, lat): (x.get(str(lat)) or {}).get("seconds") if (x.get(str(lat)) or {}).get("ok") else None
            for n, x in cold.items() for lat in lats}
    _bar_groups(ax, lats, series, vals, "wall time, s", "Cold `go mod download all` (lower is better)")
    ax.set_xlabel("origin latency per request, ms")
    fig.tight_layout()
    fig.savefig(d / "cold.png", dpi=110)
    plt.close(fig)
    rel["cold"] = "benchmarks/cold.png"

    herd = (r.get("herd") or {}).get("results", {})
    hl = r["config"]["herd_latencies_ms"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    _bar_groups(a1, hl, list(herd), {(n, int(lat)): x.get("upstream_fetches") for n, per in herd.items() for lat, x in per.items()},
                "upstream fetches of the zip", "Herd: upstream fetches (1 is ideal)")
    _bar_groups(a2, hl, list(herd), {(n, int(lat)): (x.get("p99") or 0) * 1000 for n, per in herd.items() for lat, x in per.items()},
                "p99 latency, ms", "Herd: client p99 (lower is better)")
    a1.set_ylim(top=max([a1.get_ylim()[1] * 1.08, 2]))
    a1.set_xlabel("origin latency, ms")
    a2.set_xlabel("origin latency, ms")
    fig.tight_layout()
    fig.savefig(d / "herd.png", dpi=110)
    plt.close(fig)
    rel["herd"] = "benchmarks/herd.png"

    pv = (r.get("private") or {}).get("results") or {}
    if pv:
        pl = r["private"]["latencies_ms"]
        fig, ax = plt.subplots(figsize=(7, 4))
        _bar_groups(ax, pl, list(pv), {(n, lat): (x.get(str(lat)) or {}).get("seconds")
                                       if (x.get(str(lat)) or {}).get("ok") else None
                                       for n, x in pv.items() for lat in pl},
                    "wall time, s", "Cold private graph from Git (lower is better)", label_fmt="{:,.1f}")
        ax.set_xlabel("Git server latency per request, ms")
        fig.tight_layout()
        fig.savefig(d / "private.png", dpi=110)
        plt.close(fig)
        rel["private"] = "benchmarks/private.png"
    fl = (r.get("fleet") or {}).get("results") or {}
    if any(x.get("ok") for runs in fl.values() for x in runs):
        rounds = sorted({x["round"] for runs in fl.values() for x in runs})
        labels = [FLEET_LABELS[v] for v in fl]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
        for ax, key, scale, ylabel, title in (
                (a1, "slowest_s", 1, "wall time of the slowest go command, s", "Fleet: slowest of 3 cold graphs"),
                (a2, "upstream_bytes", 1e-6, "upstream MB", "Fleet: bytes from the origin")):
            vals = {(f"round {x['round']}", FLEET_LABELS[v]): x[key] * scale
                    for v, runs in fl.items() for x in runs if x.get("ok")}
            _bar_groups(ax, labels, [f"round {n}" for n in rounds], vals, ylabel, title)
            ax.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        fig.savefig(d / "fleet.png", dpi=110)
        plt.close(fig)
        rel["fleet"] = "benchmarks/fleet.png"
    return rel


# ---------------------------------------------------------------------------- document


def write(r, out_dir, log=print):
    """Writes benchmarks.md, benchmarks/*.png and benchmarks/results.json under out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = charts(r, out_dir)
    notes = out_dir / "benchmarks" / "notes.md"
    (out_dir / "benchmarks" / "results.json").write_text(scrub(json.dumps(r, indent=1, default=str)))
    parts = [
        (["# Benchmarks: modfleet-proxy and the Go module proxies people use", "",
         "Generated by `python3 bench/run.py` (see [bench/README.md](../bench/README.md)); raw figures in "
         "[benchmarks/results.json](benchmarks/results.json). Every figure is also given as a ratio to "
         "modfleet's figure in the same run (for latency and time, below 1× means faster than modfleet; "
         "for throughput, above 1× means more than modfleet)."] if not r["smoke"] else
         ["# Benchmark smoke run (tiny corpus, few requests: not figures to quote)"]),
        machine_section(r),
        goals_section(r),
        ["## Origin and latency", "", HOW_LATENCY],
        warm_section(r, rel),
        cold_section(r, rel),
        herd_section(r, rel),
        failover_section(r),
        slow_section(r),
        private_section(r, rel),
        fleet_section(r, rel),
    ]
    if notes.exists() and not r["smoke"]:
        parts.append(["## Analysis", "", f"Written by hand from the run above ([benchmarks/notes.md](benchmarks/notes.md)).", "",
                      notes.read_text().strip()])
    # Measured by hand with this harness for the container images (Step 10); kept across runs.
    images = out_dir / "benchmarks" / "images.md"
    if images.exists() and not r["smoke"]:
        parts.append([images.read_text().strip()])
    text = "\n\n".join("\n".join(p) for p in parts) + "\n"
    md = out_dir / "benchmarks.md"
    md.write_text(scrub(text))
    return [md] + [out_dir / p for p in rel.values()] + [out_dir / "benchmarks" / "results.json"]
