"""The go command on a private module graph: going direct to the Git server, or through a
proxy, with a cold `go mod download all` checked against the reference.

Module paths cannot carry a port, so a private module is `git.modfleet.test/private/NAME.git`
(the `.git` path qualifier names its repository, `https://git.modfleet.test/private/NAME`), and
git's `url.<base>.insteadOf` sends that URL to the bench's Git server on loopback, with
`GOINSECURE` for the plain http. The same setup as proxy/tests/private_modules.rs.
"""

import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Every private module is HOST/NAME.git; HOST is what GOPRIVATE/GONOSUMDB name.
HOST = "git.modfleet.test/private"


def module_path(name):
    return f"{HOST}/{name}.git"


def write_gitconfig(path, git_origin, names):
    """A git config sending each repository's https URL (as the go command derives it from
    `HOST/NAME.git`) to the Git server; GIT_CONFIG_GLOBAL points at it."""
    path.write_text("".join(f'[url "{git_origin.repo_url(n)}"]\n\tinsteadOf = https://{HOST}/{n}\n'
                            for n in names))
    return path


def base_env(home):
    """The go command with its own caches and no user or system configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "GIT_"))}
    env.update(HOME=str(home), GOPATH=str(home / "gopath"), GOCACHE=str(home / "gocache"),
               GOMODCACHE=str(home / "modcache"), GOENV="off", GOWORK="off", GO111MODULE="on",
               GOTOOLCHAIN="local", GOTELEMETRY="off", GOFLAGS="-mod=mod", GOSUMDB="off",
               GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    return env


def direct_vars(gitconfig):
    """What makes the go command fetch private modules from Git itself (also Athens's go)."""
    return dict(GOPROXY="direct", GOPRIVATE=HOST, GONOSUMDB=HOST, GOINSECURE=HOST,
                GIT_CONFIG_GLOBAL=str(gitconfig))


def via_proxy_vars(proxy_url):
    """A client of a proxy that serves the private modules: GONOSUMDB, no GOPRIVATE (with it
    the go command would bypass the proxy)."""
    return dict(GOPROXY=proxy_url, GONOSUMDB=HOST)


@dataclass
class PrivateColdResult:
    """A cold `go mod download -json all` of the private graph."""

    seconds: float
    ok: bool
    modules: int = 0
    client_cpu_s: float = None  # the go command and the git it ran (direct), user + system
    error: str = ""


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def records(stdout):
    """Path, Version, Sum and GoModSum of each module `go mod download -json` printed, sorted;
    errors as they are."""
    out, dec, i = [], json.JSONDecoder(), 0
    text = stdout.strip()
    while i < len(text):
        obj, end = dec.raw_decode(text, i)
        out.append({k: obj.get(k) for k in ("Path", "Version", "Sum", "GoModSum", "Error") if obj.get(k)})
        i = end
        while i < len(text) and text[i].isspace():
            i += 1
    return sorted(out, key=lambda r: (r["Path"], r.get("Version", "")))


def cold_download(project, reference, extra_env, timeout=1800):
    """`go mod download -json all` of `project` (go.mod, go.sum, main.go) with an empty module
    cache and `extra_env` (direct_vars or via_proxy_vars). The go command checks every module
    against go.sum; the printed modules and h1: sums must also equal `reference` (the go command
    direct, when the corpus was made). Times the command; its CPU from RUSAGE_CHILDREN (no other
    child of the bench exits meanwhile)."""
    work = Path(tempfile.mkdtemp(prefix="bench-private-cold-"))
    try:
        shutil.copytree(project, work / "project")
        env = base_env(work)
        env.update(extra_env)
        cpu0 = _children_cpu()
        start = time.perf_counter()
        try:
            res = subprocess.run(["go", "mod", "download", "-json", "all"], cwd=work / "project", env=env,
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return PrivateColdResult(time.perf_counter() - start, False, error=f"timed out after {timeout}s")
        seconds = time.perf_counter() - start
        cpu = _children_cpu() - cpu0
        try:
            got = records(res.stdout)
        except ValueError:
            got = []
        if res.returncode != 0 or not got:
            errs = [r["Error"] for r in got if r.get("Error")] + res.stderr.strip().splitlines()[-3:]
            return PrivateColdResult(seconds, False, len(got), cpu, " | ".join(errs[:4]) or "no output")
        if got != reference:
            diff = [r for r in got if r not in reference] + [r for r in reference if r not in got]
            return PrivateColdResult(seconds, False, len(got), cpu,
                                     f"modules or h1: sums differ from the go command direct: {diff[:3]}")
        return PrivateColdResult(seconds, True, len(got), cpu)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
