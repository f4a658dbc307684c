"""The private benchmark corpus: a generated graph of private modules in Git repositories.

Deterministic from a seed: the same repositories (the same commit hashes) on every machine.
Each module `git.modfleet.test/private/NAME.git` is one repository with several tagged
versions; modules sit in layers and each version requires a few modules of deeper layers at
some of their versions, so `go mod download all` reads the go.mod of several versions of a
module and the zip of the one MVS selects. Each version is a tree of Go packages (the root
package imports the root package of each module it requires), a README, a LICENSE and, for
some modules, incompressible test data; each version changes part of the files of the one
before. The main module requires the top layer.

The corpus is made once into `${XDG_CACHE_HOME:-$HOME/.cache}/modfleet/bench-corpus/private-*`:
`repos/NAME.git` (bare, what the Git server exports), `project/` (go.mod, go.sum and main.go of
the main module, tidied by the go command going direct to the Git server), and
`manifest.json` with the reference: what `go mod download -json all` going direct printed
(every module's version and h1: sums), which every contender's run must print too.
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import private_client
import procs
from corpus import cache_home


@dataclass(frozen=True)
class Spec:
    """The shape of a generated graph."""

    modules: int
    versions: int  # tagged versions per module: v1.0.0, v1.1.0, ...
    tops: int  # modules the main module requires
    packages: tuple  # (min, max) packages per module
    files: tuple  # (min, max) Go files per package
    blob_every: int  # every Nth module carries incompressible test data (0: none)
    blob_bytes: tuple = (200_000, 1_500_000)  # (min, max) size of that test data
    seed: int = 20261130


FULL_SPEC = Spec(modules=30, versions=4, tops=5, packages=(2, 7), files=(3, 12), blob_every=6)
SMOKE_SPEC = Spec(modules=4, versions=2, tops=1, packages=(1, 2), files=(1, 3), blob_every=0)

FORMAT = 2  # bump when the way the graph is generated changes
T0 = 1_700_000_000

WORDS = ("auth billing cache config crypto events flags geo health httpx identity invoice jobs "
         "ledger limits logging mail metrics notify orders payments policy queue ratelimit "
         "registry reports retry search secrets session shipping storage tenant tracing users "
         "webhook workflow audit catalog").split()
VOCAB = ("request response client server value result error context buffer record entry index "
         "count total limit offset window token handler option state store batch item key name "
         "path size time retry status level stream frame").split()


@dataclass
class Version:
    tag: str
    requires: dict = field(default_factory=dict)  # module name -> version index


@dataclass
class Module:
    name: str
    layer: int
    versions: list = field(default_factory=list)


def plan(spec):
    """The modules, their layers and each version's direct requirements (pure)."""
    rng = random.Random(spec.seed)
    names = WORDS[: spec.modules]
    rest = spec.modules - spec.tops
    deeper = [rest // 3 + (1 if i < rest % 3 else 0) for i in range(3)] if rest >= 3 else [rest]
    layers = [0] * spec.tops + [i + 1 for i, n in enumerate(deeper) for _ in range(n)]
    mods = [Module(n, layer) for n, layer in zip(names, layers)]
    bases = {}
    for m in mods:
        below = [d for d in mods if d.layer > m.layer]
        bases[m.name] = rng.sample(below, min(len(below), rng.randint(1, 4))) if below else []
    for d in mods:  # every module is in the graph: one above requires it
        if d.layer and not any(d in b for b in bases.values()):
            bases[rng.choice([m for m in mods if m.layer < d.layer]).name].append(d)
    for m in mods:
        below = [d for d in mods if d.layer > m.layer]
        base = bases[m.name]
        for k in range(spec.versions):
            deps = list(base)
            if below and k and rng.random() < 0.3:  # a later version adds a requirement
                extra = rng.choice(below)
                if extra not in deps:
                    deps.append(extra)
                    base = deps
            m.versions.append(Version(f"v1.{k}.0", {
                d.name: max(0, min(spec.versions - 1, k + rng.randint(-2, 0) + rng.randint(0, 1)))
                for d in deps}))
    return mods


def build_list(mods, name, k):
    """MVS over the requirement graph from name@k: {module: version index}, name excluded."""
    by = {m.name: m for m in mods}
    selected, todo = {}, [(name, k)]
    while todo:
        n, v = todo.pop()
        for d, dv in by[n].versions[v].requires.items():
            if selected.get(d, -1) < dv:
                selected[d] = dv
                todo.append((d, dv))
    selected.pop(name, None)
    return selected


def go_mod(mods, m, k):
    """A tidy go.mod of m@k: its direct requirements, then the rest of its build list as
    `// indirect` (a go 1.17+ module lists every module its packages need)."""
    by = {x.name: x for x in mods}
    direct = m.versions[k].requires
    bl = build_list(mods, m.name, k)
    lines = [f"module {private_client.module_path(m.name)}", "", "go 1.21", ""]
    if direct:
        lines += ["require ("] + [f"\t{private_client.module_path(d)} {by[d].versions[bl[d]].tag}"
                                  for d in sorted(direct)] + [")", ""]
    indirect = sorted(set(bl) - set(direct))
    if indirect:
        lines += ["require ("] + [f"\t{private_client.module_path(d)} {by[d].versions[bl[d]].tag} // indirect"
                                  for d in indirect] + [")", ""]
    return "\n".join(lines)


def _go_file(rng, package, imports, size):
    """Go source of about `size` bytes: functions with comments, as code reads."""
    lines = [f"// Package {package} is generated by the modfleet benchmark.", f"package {package}", ""]
    if imports:
        lines += ["import ("] + [f'\t{alias} "{path}"' for alias, path in imports] + [")", ""]
        lines += [f"var _ = {alias}.Version" for alias, _ in imports] + [""]
    n = 0
    while sum(len(x) + 1 for x in lines) < size:
        a, b, c = rng.choice(VOCAB), rng.choice(VOCAB), rng.choice(VOCAB)
        fn = f"{a.capitalize()}{b.capitalize()}{n}"
        lines += [f"// {fn} returns the {a} {b} of the {c}, or an error when the {c} has no {b}.",
                  f"func {fn}({a} string, {b} int) (int, error) {{",
                  f"\tif {b} < {rng.randint(0, 999)} {{",
                  f'\t\treturn 0, fmt.Errorf("{a}: {c} %q has no {b}", {a})',
                  "\t}",
                  f"\treturn len({a}) + {b}*{rng.randint(2, 97)}, nil",
                  "}", ""]
        n += 1
    if n:
        lines.insert(lines.index("") + 1, 'import "fmt"\n')
    return "\n".join(lines).encode()


def tree(spec, mods, m, k, rng, previous):
    """The files of m@k: {path: bytes}; about a third of `previous`'s Go files change."""
    files = dict(previous)
    pkg = m.name
    root_imports = [(d, private_client.module_path(d)) for d in sorted(m.versions[k].requires)]
    files["go.mod"] = go_mod(mods, m, k).encode()
    files["version.go"] = (f"package {pkg}\n\nimport (\n"
                           + "".join(f'\t{a} "{p}"\n' for a, p in root_imports)
                           + ")\n\n// Version is this module's version.\nconst Version = \"" + m.versions[k].tag + "\"\n"
                           + "".join(f"\nvar _ = {a}.Version\n" for a, _ in root_imports)).encode()
    if k == 0:
        files["LICENSE"] = b"Copyright the modfleet benchmark. Generated, no rights reserved.\n" * 20
        files["README.md"] = f"# {pkg}\n\nA generated private module of the modfleet benchmark.\n".encode()
        for p in range(rng.randint(*spec.packages)):
            d = "" if p == 0 else f"internal/{rng.choice(VOCAB)}{p}/"
            name = pkg if p == 0 else d.rstrip("/").rsplit("/", 1)[-1]
            for f in range(rng.randint(*spec.files)):
                size = int(min(40_000, max(600, rng.lognormvariate(8.6, 0.8))))
                files[f"{d}{rng.choice(VOCAB)}_{f}.go"] = _go_file(rng, name, [], size)
        if spec.blob_every and (WORDS.index(pkg) % spec.blob_every) == spec.blob_every - 1:
            files["testdata/fixture.bin"] = rng.randbytes(rng.randint(*spec.blob_bytes))
    else:
        for path in sorted(p for p in files if p.endswith(".go") and p != "version.go"):
            if rng.random() < 0.33:
                name = pkg if "/" not in path else path.rsplit("/", 2)[-2]
                files[path] = _go_file(rng, name, [], len(files[path]) + rng.randint(-500, 1500))
    return files


def _git(cwd, *args, date=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    d = f"@{date or T0} +0000"
    env.update(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="Modfleet Bench",
               GIT_AUTHOR_EMAIL="bench@modfleet.invalid", GIT_COMMITTER_NAME="Modfleet Bench",
               GIT_COMMITTER_EMAIL="bench@modfleet.invalid", GIT_AUTHOR_DATE=d, GIT_COMMITTER_DATE=d)
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def write_repos(spec, mods, repos, scratch):
    """Each module as a bare repository repos/NAME.git, one commit and tag per version."""
    rng = random.Random(spec.seed + 1)
    for i, m in enumerate(mods):
        work = scratch / m.name
        work.mkdir(parents=True)
        _git(work, "init", "-q", "-b", "main")
        files = {}
        for k, v in enumerate(m.versions):
            new = tree(spec, mods, m, k, rng, files)
            for path in set(files) - set(new):
                (work / path).unlink()
            for path, data in new.items():
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_bytes(data)
            files = new
            date = T0 + i * 10_000 + k * 1_000
            _git(work, "add", "-A")
            _git(work, "commit", "-q", "-m", f"{m.name} {v.tag}", date=date)
            _git(work, "tag", v.tag)
        _git(scratch, "clone", "-q", "--bare", str(work), str(repos / f"{m.name}.git"))


def write_project(mods, project):
    """The main module: requires the top layer, main.go imports each top's root package."""
    by = {m.name: m for m in mods}
    tops = [m for m in mods if m.layer == 0]
    project.mkdir(parents=True)
    (project / "go.mod").write_text(
        "module modfleet.bench/private\n\ngo 1.22\n\nrequire (\n"
        + "".join(f"\t{private_client.module_path(m.name)} {by[m.name].versions[-1].tag}\n" for m in tops) + ")\n")
    (project / "main.go").write_text(
        "package main\n\nimport (\n" + "".join(f'\t_ "{private_client.module_path(m.name)}"\n' for m in tops)
        + ")\n\nfunc main() {}\n")


@dataclass
class PrivateCorpus:
    name: str
    repos: Path  # bare repositories NAME.git, what the Git server exports
    project: Path  # go.mod, go.sum, main.go of the main module
    names: list  # repository names
    reference: list  # `go mod download -json all` direct: Path, Version, Sum, GoModSum
    stats: dict  # sizes, for the report
    spec: dict  # the Spec it was generated from


def _key(spec):
    return hashlib.sha256(json.dumps([FORMAT, asdict(spec)]).encode()).hexdigest()[:10]


def _dir_bytes(root):
    return sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())


def _load(name, base):
    data = json.loads((base / "manifest.json").read_text())
    return PrivateCorpus(name, base / "repos", base / "project", data["names"], data["reference"], data["stats"],
                         data["spec"])


def ensure(smoke, log=print):
    """The private corpus, generated (and tidied through the Git server) first if not cached."""
    spec = SMOKE_SPEC if smoke else FULL_SPEC
    name = ("private-smoke-" if smoke else "private-full-") + _key(spec)
    base = cache_home() / "bench-corpus" / name
    if (base / "manifest.json").exists():
        return _load(name, base)
    log(f"corpus {name}: generating {spec.modules} private modules x {spec.versions} versions (once)")
    tmp = base.with_name(name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "repos").mkdir(parents=True)
    mods = plan(spec)
    scratch = Path(tempfile.mkdtemp(prefix="bench-private-gen-"))
    try:
        write_repos(spec, mods, tmp / "repos", scratch)
        write_project(mods, tmp / "project")
        names = [m.name for m in mods]
        origin = procs.GitOrigin(tmp / "repos", 0)
        home = scratch / "home"
        home.mkdir()
        try:
            env = private_client.base_env(home)
            env.update(private_client.direct_vars(private_client.write_gitconfig(home / "gitconfig", origin, names)))
            for args in (["go", "mod", "tidy"], ["go", "mod", "download", "-json", "all"]):
                res = subprocess.run(args, cwd=tmp / "project", env=env, capture_output=True, text=True)
                if res.returncode != 0:
                    raise SystemExit(f"bench: `{' '.join(args)}` of the private corpus failed: {res.stderr[-2000:]}")
            reference = private_client.records(res.stdout)
            cache = home / "modcache" / "cache" / "download"
            zips = [f for f in cache.rglob("*.zip")]
            stats = {
                "modules": len(mods), "versions_per_module": spec.versions,
                "tops": spec.tops, "selected": len(reference),
                "mods_in_graph": sum(1 for _ in cache.rglob("*.mod")),
                "zip_bytes": sum(f.stat().st_size for f in zips),
                "largest_zip": max((f.stat().st_size for f in zips), default=0),
                "repo_bytes": _dir_bytes(tmp / "repos"),
                "go_files": sum(1 for m in names for _ in (scratch / m).rglob("*.go")),
            }
        finally:
            origin.stop()
            subprocess.run(["chmod", "-R", "u+w", str(home)], capture_output=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (tmp / "manifest.json").write_text(json.dumps(
        {"spec": asdict(spec), "names": names, "reference": reference, "stats": stats}, indent=1))
    shutil.rmtree(base, ignore_errors=True)
    tmp.rename(base)
    return _load(name, base)
