"""Building the contenders: modfleet-proxy from this workspace, the Go proxies from their modules.

The Go proxies are built once per version into `${XDG_CACHE_HOME:-$HOME/.cache}/modfleet/
bench-tools/<name>-<version>/`. `go install module/cmd@version` is tried first; when it cannot
work here (it insists on reading the module's version list to look for a deprecation notice,
and a module proxy may refuse list requests), a tiny wrapper module that requires the pinned
version and runs `go build` on the command is used instead. Either way the binary is built
from the module's own source as the Go module proxy serves it.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from corpus import cache_home

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class GoTool:
    """A Go proxy to build: its module, command package and pinned version."""

    name: str
    module: str
    package: str
    version: str


# Pinned: the newest releases the machine's Go module proxy serves (see docs/benchmarks.md).
GOPROXY_TOOL = GoTool("goproxy", "github.com/goproxy/goproxy", "github.com/goproxy/goproxy/cmd/goproxy", "v0.23.0")
# Athens: the proxy here refuses its version list and v0.14-v0.16, but serves v0.18.0.
ATHENS_TOOL = GoTool("athens", "github.com/gomods/athens", "github.com/gomods/athens/cmd/proxy", "v0.18.0")


class BuildError(Exception):
    """A contender could not be built; the message says why (reported, not fatal)."""


def _go_env(tool, gobin=None):
    """The go command's environment for building `tool`.

    The checksum database the machine reaches may not know a module (it answers 404 for
    goproxy's), so the tool's own module is exempted from it (GONOSUMDB); its dependencies
    are still checked."""
    env = dict(os.environ)
    env.update(GOTOOLCHAIN="local", GOWORK="off", GOFLAGS="-mod=mod", GONOSUMDB=tool.module)
    if gobin:
        env["GOBIN"] = str(gobin)
    return env


def _tail(text, lines=4):
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def build_go_tool(tool, log=print):
    """Path to the tool's binary, building it once if needed; BuildError if it can't be."""
    out_dir = cache_home() / "bench-tools" / f"{tool.name}-{tool.version}"
    binary = out_dir / tool.name
    if binary.exists():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"building {tool.name} {tool.version} (once; cached in {out_dir})")
    nice = ["nice", "-n", "10"]
    first = subprocess.run(
        nice + ["go", "install", f"{tool.package}@{tool.version}"],
        env=_go_env(tool, out_dir), capture_output=True, text=True,
    )
    built = out_dir / tool.package.rsplit("/", 1)[-1]
    if first.returncode == 0 and built.exists():
        built.rename(binary)
        return binary
    # The wrapper module: require the pinned version, build the command from it.
    wrap = out_dir / "wrapper"
    shutil.rmtree(wrap, ignore_errors=True)
    wrap.mkdir()
    (wrap / "go.mod").write_text(f"module modfleet.bench/wrapper\n\ngo 1.22\n\nrequire {tool.module} {tool.version}\n")
    (wrap / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{tool.package}"\n')
    steps = [["go", "mod", "tidy"], nice + ["go", "build", "-o", str(binary), tool.package]]
    for args in steps:
        res = subprocess.run(args, cwd=wrap, env=_go_env(tool), capture_output=True, text=True)
        if res.returncode != 0:
            raise BuildError(
                f"`go install` failed ({_tail(first.stderr, 2)}); wrapper module `{' '.join(args)}` "
                f"failed too: {_tail(res.stderr)}"
            )
    return binary


def build_modfleet(release=True, log=print):
    """Path to modfleet-proxy, built with cargo (respecting CARGO_TARGET_DIR)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    profile = "release" if release else "debug"
    args = ["nice", "-n", "10", "cargo", "build", "-p", "modfleet-proxy"] + (["--release"] if release else [])
    log(f"building modfleet-proxy ({profile}): {' '.join(args[3:])}")
    subprocess.run(args, cwd=ROOT, check=True)
    binary = target / profile / "modfleet-proxy"
    if not binary.exists():
        raise SystemExit(f"bench: {binary} was not built")
    return binary


def go_version():
    return subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
