"""The benchmark corpus: real module graphs in GOPROXY layout, downloaded once.

A corpus is the full dependency graph of a few Go projects, fetched with `go mod download all`
into a private GOMODCACHE from the machine's Go module proxy (read from `go env GOPROXY` at run
time; nothing here names a registry). `$GOMODCACHE/cache/download` is then exactly a GOPROXY
directory, which nginx serves as the origin. The corpus is cached outside the repository under
`${XDG_CACHE_HOME:-$HOME/.cache}/modfleet/bench-corpus/<name>` and reused by later runs.

Besides the files, a corpus keeps:
- `project/go.mod`, `project/go.sum`: the module whose graph it is, for the cold
  `go mod download` scenario;
- `manifest.json`: every .info/.mod/.zip file with its size and SHA-256, so every response
  body of every contender can be checked against the origin's bytes.
"""

import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Pinned so every run measures the same graph. Popular projects from three corners of the
# ecosystem: a web framework, the Kubernetes client, the Prometheus client, gRPC and viper.
FULL_PROJECTS = {
    "github.com/gin-gonic/gin": ("v1.10.0", ["github.com/gin-gonic/gin"]),
    "k8s.io/client-go": ("v0.31.0", ["k8s.io/client-go/kubernetes", "k8s.io/client-go/tools/clientcmd"]),
    "github.com/prometheus/client_golang": ("v1.20.5", ["github.com/prometheus/client_golang/prometheus/promhttp"]),
    "google.golang.org/grpc": ("v1.65.0", ["google.golang.org/grpc"]),
    "github.com/spf13/viper": ("v1.19.0", ["github.com/spf13/viper"]),
    # Modules whose zips are over 10 MB, so large bodies are part of the mix and the herd
    # scenario has a big target.
    "github.com/aws/aws-sdk-go": ("v1.55.5", ["github.com/aws/aws-sdk-go/aws"]),
}

# The smoke corpus (CI): a handful of small modules.
SMOKE_PROJECTS = {
    "github.com/google/go-cmp": ("v0.6.0", ["github.com/google/go-cmp/cmp"]),
    "github.com/spf13/cobra": ("v1.8.1", ["github.com/spf13/cobra"]),
}

ARTIFACT_SUFFIXES = (".info", ".mod", ".zip")


@dataclass
class Artifact:
    """One file of the corpus, as the GOPROXY path a client asks for."""

    path: str  # URL path, e.g. /github.com/spf13/cobra/@v/v1.8.1.zip
    size: int
    sha256: str
    filler: bool = False  # served by the origin, not asked for by `go mod download all`


@dataclass
class Corpus:
    """A downloaded corpus: where its GOPROXY directory is and what it holds."""

    name: str
    root: Path  # the GOPROXY-layout directory nginx serves
    project: Path  # go.mod + go.sum of the graph
    artifacts: list = field(default_factory=list)

    @property
    def mix(self):
        """What a cold `go mod download all` of the graph asks for (the load mix)."""
        return [a for a in self.artifacts if not a.filler]

    @property
    def zips(self):
        return [a for a in self.mix if a.path.endswith(".zip")]

    def by_path(self):
        return {a.path: a for a in self.artifacts}

    def module_versions(self):
        """Module versions with a .mod in the corpus (the graph go walks)."""
        return sorted({a.path[: -len(".mod")] for a in self.artifacts if a.path.endswith(".mod")})

    def total_bytes(self):
        return sum(a.size for a in self.artifacts)


def cache_home():
    """`${XDG_CACHE_HOME:-$HOME/.cache}/modfleet`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modfleet"


def upstream_goproxy():
    """The machine's Go module proxy: the first http(s) entry of `go env GOPROXY`."""
    value = subprocess.run(["go", "env", "GOPROXY"], check=True, capture_output=True, text=True).stdout
    for entry in value.strip().replace("|", ",").split(","):
        if entry.startswith("http://") or entry.startswith("https://"):
            return entry
    raise SystemExit("bench: `go env GOPROXY` has no http(s) proxy to download the corpus from")


CORPUS_FORMAT = 3  # bump when the way a corpus is built changes


def _key(projects):
    text = json.dumps([CORPUS_FORMAT, projects], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _write_project(project_dir, projects):
    """A main package importing one package of each project, pinned in go.mod."""
    project_dir.mkdir(parents=True, exist_ok=True)
    requires = "\n".join(f"\t{mod} {ver}" for mod, (ver, _) in sorted(projects.items()))
    (project_dir / "go.mod").write_text(
        f"module modfleet.bench/corpus\n\ngo 1.22\n\nrequire (\n{requires}\n)\n"
    )
    imports = "\n".join(f'\t_ "{pkg}"' for _, (_, pkgs) in sorted(projects.items()) for pkg in pkgs)
    (project_dir / "main.go").write_text(f"package main\n\nimport (\n{imports}\n)\n\nfunc main() {{}}\n")


def _go_env(modcache, goproxy):
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(modcache),
        GOPROXY=goproxy,
        GOFLAGS="-mod=mod",
        GOTOOLCHAIN="local",
        GOWORK="off",
    )
    return env


def _complete(root, goproxy, log):
    """Fetches the .info and .zip of every version the go command only took the .mod of.

    The go command reads only go.mod files for the parts of the graph it does not build, so its
    cache lacks their .info and .zip; a real proxy has them, and some proxies (goproxy) fetch a
    whole version (.info, .mod and .zip) when asked for its .mod. They are fetched from the same
    upstream, as they are, and marked as filler: the origin serves them, the load mix leaves
    them out. Returns their URL paths."""
    missing = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".mod"):
                stem = name[: -len(".mod")]
                missing += [Path(dirpath) / (stem + ext) for ext in (".info", ".zip") if stem + ext not in files]
    log(f"fetching {len(missing)} .info/.zip files of versions the go command only read the go.mod of")
    for path in missing:
        rel = path.relative_to(root).as_posix()
        with urllib.request.urlopen(f"{goproxy.rstrip('/')}/{rel}", timeout=300) as r:
            path.write_bytes(r.read())
    return {"/" + p.relative_to(root).as_posix() for p in missing}


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manifest(root):
    """Every .info/.mod/.zip under root, with size and SHA-256."""
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(ARTIFACT_SUFFIXES):
                continue
            full = Path(dirpath) / name
            rel = "/" + full.relative_to(root).as_posix()
            if rel.startswith("/sumdb/"):
                continue
            out.append(Artifact(rel, full.stat().st_size, _sha256(full)))
    out.sort(key=lambda a: a.path)
    return out


def _load(name, base):
    data = json.loads((base / "manifest.json").read_text())
    return Corpus(
        name=name,
        root=base / "modcache" / "cache" / "download",
        project=base / "project",
        artifacts=[Artifact(**a) for a in data["artifacts"]],
    )


def ensure(smoke, log=print):
    """Returns the corpus, downloading it first if it is not in the cache yet."""
    projects = SMOKE_PROJECTS if smoke else FULL_PROJECTS
    name = ("smoke-" if smoke else "full-") + _key(projects)
    base = cache_home() / "bench-corpus" / name
    if (base / "manifest.json").exists():
        return _load(name, base)
    log(f"corpus {name}: downloading {', '.join(projects)} and their graphs (once)")
    tmp = base.with_name(name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    project_dir, modcache = tmp / "project", tmp / "modcache"
    _write_project(project_dir, projects)
    env = _go_env(modcache, upstream_goproxy())
    for args in (["go", "mod", "tidy"], ["go", "mod", "download", "all"]):
        subprocess.run(args, cwd=project_dir, env=env, check=True)
    # The module cache is read-only by default; make it removable, then drop go's lock files.
    subprocess.run(["chmod", "-R", "u+w", str(modcache)], check=True)
    root = modcache / "cache" / "download"
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".lock"):
                os.remove(os.path.join(dirpath, f))
    filler = _complete(root, env["GOPROXY"], log)
    artifacts = _manifest(root)
    for a in artifacts:
        a.filler = a.path in filler
    (tmp / "manifest.json").write_text(
        json.dumps({"projects": projects, "artifacts": [a.__dict__ for a in artifacts]}, indent=0)
    )
    shutil.rmtree(modcache / "pkg", ignore_errors=True)
    for child in modcache.iterdir():
        if child.name != "cache":
            shutil.rmtree(child, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    tmp.rename(base)
    return _load(name, base)
