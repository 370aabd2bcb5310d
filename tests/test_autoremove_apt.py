"""The autoremove model (pkggraph + autoremove) against apt itself.

Oracles: python-apt in a child interpreter (``is_garbage`` after marking in one
ActionGroup, apt.md §8.2) and ``apt-get -s purge --auto-remove`` with a scratch
``extended_states`` (§8.1).  Two databases: this machine's, with its own apt
configuration and package lists, and a copy of its status file changed by hand
under tmp_path, read by apt through an isolated ``APT_CONFIG`` (§8.3).

Every apt process runs with /var/lib/apt and /var/lib/dpkg bind-mounted
read-only in a private mount namespace when that is possible (we may be root),
and a fixture checks that the real marks and status file are unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from depmin.api import PackageState, load_package_state
from depmin.debian.aptbridge import garbage_with_apt
from depmin.debian.aptstate import normalise_apt_name, read_auto_marks, simulate_purge
from depmin.debian.autoremove import mark_and_sweep
from depmin.debian.pkggraph import PackageGraph
from depmin.rootfs import Root
from tests.test_apply_safety import apt_config_file

STATUS = "/var/lib/dpkg/status"
EXTENDED_STATES = "/var/lib/apt/extended_states"
RI = "APT::AutoRemove::RecommendsImportant"
SI = "APT::AutoRemove::SuggestsImportant"
FOUR = [(ri, si) for ri in (False, True) for si in (False, True)]


# --- running apt without any chance of changing this machine ------------------------------


@functools.cache
def apt_python() -> str | None:
    """An interpreter that can import apt_pkg (the project venv is Debian's python3)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if os.access(exe, os.X_OK):
            done = subprocess.run([exe, "-c", "import apt_pkg"], capture_output=True)
            if done.returncode == 0:
                return exe
    return None


_GUARD = (
    "mount --bind -o ro /var/lib/apt /var/lib/apt && "
    'mount --bind -o ro /var/lib/dpkg /var/lib/dpkg && exec "$@"'
)


@functools.cache
def guard_prefix() -> tuple[str, ...]:
    """``unshare`` prefix that makes apt's and dpkg's state read-only for one command.

    Empty when not root (nothing can be written anyway) or when namespaces are
    not permitted; the checksum fixture still guards the state then.
    """
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return ()
    prefix = ("unshare", "-m", "--propagation", "private", "sh", "-c", _GUARD, "sh")
    done = subprocess.run([*prefix, "sh", "-c", "! touch /var/lib/apt/.depmin-probe"],
                          capture_output=True)  # fmt: skip
    return prefix if done.returncode == 0 else ()


def run_guarded(
    argv: Sequence[str], env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "APT_CONFIG"}
    full.update(env or {})
    full["LC_ALL"] = "C"
    return subprocess.run(
        [*guard_prefix(), *argv], input=stdin, capture_output=True, text=True, env=full
    )


def state_digest() -> dict[str, str]:
    out = {}
    for path in (EXTENDED_STATES, STATUS):
        if os.path.exists(path):
            with open(path, "rb") as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(autouse=True, scope="module")
def apt_state_untouched() -> Iterable[None]:
    before = state_digest()
    yield
    assert state_digest() == before, "the real extended_states or status file changed"


needs_apt = pytest.mark.skipif(
    apt_python() is None or shutil.which("apt-get") is None,
    reason="needs apt-get and an interpreter that imports apt_pkg (python3-apt)",
)
needs_host_db = pytest.mark.skipif(not os.path.exists(STATUS), reason="no dpkg status file")


# --- python-apt oracle ---------------------------------------------------------------------

_ORACLE = r"""
import json, sys
import apt_pkg
req = json.load(sys.stdin)
apt_pkg.init_config()
for key, value in req["config"]:
    apt_pkg.config.set(key, value)
apt_pkg.init_system()
cache = apt_pkg.Cache(None)
dep = apt_pkg.DepCache(cache)
installed = [p for p in cache.packages if p.current_ver is not None]
def name(p):
    return p.name + ":" + p.architecture
def garbage():
    return sorted(name(p) for p in installed if dep.is_garbage(p))
out = {"installed": sorted(name(p) for p in installed), "cases": [], "unknown": []}
# The file's own marks first, before any mark below changes them.
with apt_pkg.ActionGroup(dep):
    pass
out["file_garbage"] = garbage()
out["file_manual"] = sorted(name(p) for p in installed if not dep.is_auto_installed(p))
names = set(out["installed"])
for manual in req["cases"]:
    wanted = set(manual)
    out["unknown"].append(sorted(wanted - names))
    with apt_pkg.ActionGroup(dep):
        for p in installed:
            dep.mark_auto(p, True)
        for p in installed:
            if name(p) in wanted:
                dep.mark_auto(p, False)
    out["cases"].append(garbage())
json.dump(out, sys.stdout)
"""


@dataclasses.dataclass(frozen=True)
class AptAnswer:
    installed: frozenset[str]
    file_garbage: frozenset[str]  # with the marks of the extended_states file apt reads
    file_manual: frozenset[str]
    cases: tuple[frozenset[str], ...]  # one per manual set, everything else auto


def apt_oracle(
    cases: Sequence[Iterable[str]],
    recommends: bool,
    suggests: bool | None = None,
    apt_config: str | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> AptAnswer:
    """python-apt's garbage for each manual set (``name:arch``, apt's spelling).

    A fresh child process per configuration: ``init_config`` is process-global
    and list options would accumulate.  ``suggests=None`` keeps the configured
    value.  ``apt_config`` is an APT_CONFIG file (for a root other than '/').
    """
    exe = apt_python()
    assert exe is not None
    config = [("Dir::Cache::pkgcache", ""), ("Dir::Cache::srcpkgcache", "")]
    config.append((RI, "true" if recommends else "false"))
    if suggests is not None:
        config.append((SI, "true" if suggests else "false"))
    config += extra
    payload = json.dumps({"config": config, "cases": [sorted(set(c)) for c in cases]})
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    if apt_config:
        env["APT_CONFIG"] = apt_config
    done = run_guarded([exe, "-c", _ORACLE], env, payload)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert not any(out["unknown"]), f"apt does not know {out['unknown']}"
    return AptAnswer(
        frozenset(out["installed"]),
        frozenset(out["file_garbage"]),
        frozenset(out["file_manual"]),
        tuple(frozenset(c) for c in out["cases"]),
    )


def apt_name(graph: PackageGraph, key: str) -> str:
    """python-apt's ``name:arch`` for a node: Architecture: all is the native one."""
    node = graph.nodes[key]
    return f"{node.name}:{graph.native_arch if node.arch == 'all' else node.arch}"


def apt_names(graph: PackageGraph, keys: Iterable[str]) -> frozenset[str]:
    return frozenset(apt_name(graph, k) for k in keys)


def model_garbage(state: PackageState, manual: Iterable[str]) -> frozenset[str]:
    return apt_names(state.graph, mark_and_sweep(state.graph, manual, state.policy).garbage)


def overrides_for(recommends: bool, suggests: bool | None) -> list[str]:
    out = [f"{RI}={'true' if recommends else 'false'}"]
    if suggests is not None:
        out.append(f"{SI}={'true' if suggests else 'false'}")
    return out


def apt_get_purged(
    marks_text: str | None,
    overrides: Sequence[str],
    tmp: Path,
    apt_config: str | None = None,
) -> frozenset[str]:
    """``Purg`` lines of ``apt-get -s purge --auto-remove``, written independently of depmin.

    ``marks_text`` goes to a scratch extended_states; None reads the configured file.
    """
    cmd = ["apt-get", "-s", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
    if marks_text is not None:
        marks = tmp / "extended_states.scratch"
        marks.write_text(marks_text)
        cmd += ["-o", f"Dir::State::extended_states={marks}"]
    for o in overrides:
        cmd += ["-o", o]
    done = run_guarded(cmd + ["purge", "--auto-remove"], {"APT_CONFIG": apt_config or ""}
                       if apt_config else None)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    purged = frozenset(line.split()[1] for line in done.stdout.splitlines()
                       if line.startswith("Purg "))  # fmt: skip
    if marks_text is not None:
        assert (tmp / "extended_states.scratch").read_text() == marks_text
    return purged


def marks_file(apt_installed: Iterable[str], manual: Iterable[str]) -> str:
    """An extended_states with every installed package auto except ``manual`` (apt names)."""
    keep = set(manual)
    stanzas = []
    for full in sorted(apt_installed):
        if full in keep:
            continue
        name, _, arch = full.partition(":")
        stanzas.append(f"Package: {name}\nArchitecture: {arch}\nAuto-Installed: 1\n")
    return "\n".join(stanzas)


def printed(graph: PackageGraph, apt_full_names: Iterable[str]) -> frozenset[str]:
    """python-apt's ``name:arch`` as apt-get prints it (bare for the native architecture)."""
    return frozenset(normalise_apt_name(graph, n) for n in apt_full_names)


# --- this machine --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host() -> PackageState:
    return load_package_state(Root("/"))


def host_state(recommends: bool, suggests: bool | None) -> PackageState:
    return load_package_state(Root("/"), overrides_for(recommends, suggests))


def seeded_sets(graph: PackageGraph, seeds: Iterable[int], size: int = 10) -> list[list[str]]:
    keys = sorted(graph.nodes)
    return [random.Random(seed).sample(keys, size) for seed in seeds]


META = ("build-essential", "gcc", "g++", "python3", "curl", "git", "make", "libpq-dev")


def host_cases(graph: PackageGraph) -> dict[str, list[str]]:
    """Named manual sets (node keys)."""
    cases: dict[str, list[str]] = {"all auto": []}
    for i, keys in enumerate(seeded_sets(graph, range(5))):
        cases[f"seed {i}"] = keys
    meta = [k for k in (graph.lookup(n) for n in META) if k is not None]
    cases["metapackages"] = meta
    be = graph.lookup("build-essential")
    if be is not None:
        cases["build-essential"] = [be]
    return cases


def compare_cases(state: PackageState, cases: dict[str, Any], garbages: Any) -> dict[str, int]:
    """The model's garbage equals apt's for every case; garbage counts by case label."""
    counts = {}
    for (label, manual), garbage in zip(cases.items(), garbages):
        model = model_garbage(state, manual)
        assert model == garbage, (label, sorted(model - garbage), sorted(garbage - model))
        counts[label] = len(garbage)
    return counts


@needs_apt
@needs_host_db
@pytest.mark.parametrize("recommends,suggests", FOUR)
def test_host_garbage_equals_python_apt(recommends: bool, suggests: bool) -> None:
    state = host_state(recommends, suggests)
    graph = state.graph
    assert state.policy.recommends_important is recommends
    assert state.policy.suggests_important is suggests
    cases = host_cases(graph)
    answer = apt_oracle([apt_names(graph, m) for m in cases.values()], recommends, suggests)
    assert answer.installed == apt_names(graph, graph.nodes)
    counts = compare_cases(state, cases, answer.cases)
    # Not vacuous: everything auto leaves real garbage and real survivors.
    assert 0 < counts["all auto"] < len(graph.nodes)
    print(f"RI={recommends} SI={suggests}: {counts} of {len(graph.nodes)}")


@needs_apt
@needs_host_db
def test_host_default_configuration_equals_python_apt(host: PackageState) -> None:
    """No overrides at all: the configuration read from /etc/apt, as apt reads it."""
    cfg = subprocess.run(["apt-config", "dump"], capture_output=True, text=True).stdout
    ri_false = re.search(rf'^{RI} "(false|no|0|off)";$', cfg, re.M | re.I) is not None
    assert host.policy.recommends_important is (not ri_false)
    manual = host_cases(host.graph)["seed 0"]
    answer = apt_oracle([apt_names(host.graph, manual), ()], host.policy.recommends_important)
    assert model_garbage(host, manual) == answer.cases[0]
    assert model_garbage(host, ()) == answer.cases[1]


@needs_apt
@needs_host_db
@pytest.mark.parametrize("recommends,suggests", FOUR)
def test_host_real_marks_equal_python_apt(recommends: bool, suggests: bool) -> None:
    state = host_state(recommends, suggests)
    graph = state.graph
    with open(EXTENDED_STATES, encoding="utf-8") as f:
        auto = read_auto_marks(f.read(), graph)
    manual = [k for k in graph.nodes if k not in auto]
    shown = subprocess.run(["apt-mark", "showmanual"], capture_output=True, text=True, check=True)
    assert printed(graph, apt_names(graph, manual)) == frozenset(shown.stdout.split())
    answer = apt_oracle([], recommends, suggests)
    assert apt_names(graph, manual) == answer.file_manual
    model = model_garbage(state, manual)
    assert model == answer.file_garbage, (sorted(model - answer.file_garbage),
                                          sorted(answer.file_garbage - model))  # fmt: skip
    print(f"real marks RI={recommends} SI={suggests}: {len(model)} garbage")


@needs_apt
@needs_host_db
def test_host_bridge_equals_oracle(host: PackageState) -> None:
    """depmin.aptbridge.garbage_with_apt (used by ``apply --check-with-apt``) agrees."""
    manual = host_cases(host.graph)["seed 1"]
    overrides = overrides_for(False, None)
    state = load_package_state(Root("/"), overrides)
    got = garbage_with_apt(Root("/"), apt_names(host.graph, manual), overrides)
    assert got == apt_oracle([apt_names(host.graph, manual)], False).cases[0]
    assert got == model_garbage(state, manual)


@needs_apt
@needs_host_db
@pytest.mark.parametrize(
    "label,recommends,suggests",
    [("all auto", False, None), ("seed 2", True, True), ("metapackages", False, True)],
)
def test_host_apt_get_simulation(
    label: str, recommends: bool, suggests: bool | None, tmp_path: Path
) -> None:
    overrides = overrides_for(recommends, suggests)
    state = load_package_state(Root("/"), overrides)
    graph = state.graph
    manual = host_cases(graph)[label]
    model = printed(graph, model_garbage(state, manual))
    sim = simulate_purge(Root("/"), graph, manual, overrides)
    assert frozenset(sim.purged) == model, sorted(set(sim.purged) ^ model)
    marks = marks_file(apt_names(graph, graph.nodes), apt_names(graph, manual))
    assert apt_get_purged(marks, overrides, tmp_path) == model
    print(f"apt-get -s {label} {overrides}: {len(model)} purged")


@needs_apt
@needs_host_db
@pytest.mark.parametrize("recommends", [False, True])
def test_host_apt_get_real_marks(recommends: bool, tmp_path: Path) -> None:
    overrides = overrides_for(recommends, None)
    state = load_package_state(Root("/"), overrides)
    with open(EXTENDED_STATES, encoding="utf-8") as f:
        auto = read_auto_marks(f.read(), state.graph)
    manual = [k for k in state.graph.nodes if k not in auto]
    model = printed(state.graph, model_garbage(state, manual))
    assert apt_get_purged(None, overrides, tmp_path) == model
    print(f"apt-get -s real marks RI={recommends}: {len(model)} purged")


# --- a second database: this machine's status, changed by hand -----------------------------

_STANZA = """Package: {name}
Status: {status}
Priority: {priority}
Section: misc
Installed-Size: {size}
Maintainer: depmin tests <tests@example.invalid>
Architecture: {arch}
Version: {version}
{extra}Description: depmin fixture package
 Hand-written to exercise one autoremove rule.
"""

# name, arch, extra fields.  "fb-*" fallbacks keep OR groups satisfiable, so the
# consistent variant has no broken Depends (apt-get refuses to act on those).
_FIXTURE: list[tuple[str, str, dict[str, str]]] = [
    # roots other than manual marks
    ("dmx-ess", "amd64", {"Essential": "yes", "Depends": "dmx-ess-dep"}),
    ("dmx-ess-dep", "amd64", {}),
    ("dmx-prot", "amd64", {"Protected": "yes", "Depends": "dmx-prot-dep"}),
    ("dmx-prot-dep", "amd64", {}),
    ("dmx-imp", "amd64", {"Important": "yes", "Depends": "dmx-imp-dep"}),
    ("dmx-imp-dep", "amd64", {}),
    ("dmx-req", "amd64", {"Priority": "required", "Depends": "dmx-req-dep"}),
    ("dmx-req-dep", "amd64", {}),
    ("dmx-req-orphan", "amd64", {"Priority": "required"}),
    ("dmx-held", "amd64", {"Status": "hold ok installed", "Depends": "dmx-held-dep"}),
    ("dmx-held-dep", "amd64", {}),
    ("dmx-never-1", "amd64", {"Depends": "dmx-never-dep"}),
    ("dmx-never-dep", "amd64", {}),
    ("dmx-nevermore", "amd64", {}),  # the pattern is anchored: not a root
    # states
    ("dmx-unpacked", "amd64", {"Status": "install ok unpacked", "Depends": "dmx-unp-dep"}),
    ("dmx-unp-dep", "amd64", {"Status": "install ok half-configured"}),
    ("dmx-cfgonly", "amd64", {"Status": "deinstall ok config-files"}),
    ("dmx-cfg-user", "amd64", {"Suggests": "dmx-cfgonly"}),
    # OR groups: every installed alternative is followed
    ("dmx-or", "amd64", {"Depends": "dmx-missing | dmx-alt-a | dmx-alt-b",
                         "Recommends": "dmx-alt-c | dmx-alt-d"}),  # fmt: skip
    ("dmx-alt-a", "amd64", {}),
    ("dmx-alt-b", "amd64", {}),
    ("dmx-alt-c", "amd64", {}),
    ("dmx-alt-d", "amd64", {}),
    ("dmx-pre", "amd64", {"Pre-Depends": "dmx-pre-dep"}),
    ("dmx-pre-dep", "amd64", {}),
    ("dmx-rs", "amd64", {"Recommends": "dmx-rec-t", "Suggests": "dmx-sug-t"}),
    ("dmx-rec-t", "amd64", {"Depends": "dmx-rec-t-dep"}),
    ("dmx-rec-t-dep", "amd64", {}),
    ("dmx-sug-t", "amd64", {}),
    ("dmx-cyc-a", "amd64", {"Depends": "dmx-cyc-b"}),
    ("dmx-cyc-b", "amd64", {"Depends": "dmx-cyc-a, dmx-cyc-leaf"}),
    ("dmx-cyc-leaf", "amd64", {}),
    # versions: real versions, versioned and unversioned Provides
    ("dmx-vtarget", "amd64", {}),
    ("dmx-verok", "amd64", {"Depends": "dmx-vtarget (<< 2)"}),
    ("dmx-btarget", "amd64", {}),
    ("dmx-verbad", "amd64", {"Depends": "dmx-btarget (>= 9) | fb-1"}),
    ("dmx-vprov", "amd64", {"Provides": "dmx-virt (= 2.0)"}),
    ("dmx-vuse", "amd64", {"Depends": "dmx-virt (>= 1.5)"}),
    ("dmx-vprov2", "amd64", {"Provides": "dmx-virt2 (= 2.0)"}),
    ("dmx-vuse-low", "amd64", {"Depends": "dmx-virt2 (>= 3) | fb-2"}),
    ("dmx-uprov", "amd64", {"Provides": "dmx-uvirt"}),
    ("dmx-uuse-ver", "amd64", {"Depends": "dmx-uvirt (>= 1) | fb-3"}),
    ("dmx-uprov-b", "amd64", {"Provides": "dmx-uvirt-b"}),
    ("dmx-uuse", "amd64", {"Depends": "dmx-uvirt-b"}),
    ("dmx-realname", "amd64", {}),
    ("dmx-realprov", "amd64", {"Provides": "dmx-realname (= 5)"}),
    ("dmx-realuse", "amd64", {"Depends": "dmx-realname (>= 2)"}),
    ("dmx-realname2", "amd64", {}),
    ("dmx-realprov2", "amd64", {"Provides": "dmx-realname2 (= 5)"}),
    ("dmx-realuse2", "amd64", {"Depends": "dmx-realname2"}),
    # Multi-Arch with a foreign architecture (i386)
    ("dmx-ftool", "i386", {"Multi-Arch": "foreign", "Provides": "dmx-ftool-virt"}),
    ("dmx-fuse", "amd64", {"Depends": "dmx-ftool"}),
    ("dmx-ftool2", "i386", {"Multi-Arch": "foreign", "Provides": "dmx-ftool2-virt"}),
    ("dmx-fuse-virt", "amd64", {"Depends": "dmx-ftool2-virt"}),
    ("dmx-nf", "i386", {}),
    ("dmx-nf-use", "amd64", {"Depends": "dmx-nf | fb-4"}),
    ("dmx-allowed", "i386", {"Multi-Arch": "allowed"}),
    ("dmx-any-use", "amd64", {"Depends": "dmx-allowed:any"}),
    ("dmx-allowed2", "i386", {"Multi-Arch": "allowed"}),
    ("dmx-plain-use", "amd64", {"Depends": "dmx-allowed2 | fb-5"}),
    ("dmx-allowed3", "i386", {"Multi-Arch": "allowed", "Provides": "dmx-a3virt"}),
    ("dmx-a3use", "amd64", {"Depends": "dmx-a3virt:any"}),
    ("dmx-same", "amd64", {"Multi-Arch": "same"}),
    ("dmx-same", "i386", {"Multi-Arch": "same"}),
    ("dmx-same-any", "amd64", {"Depends": "dmx-same:any | fb-6"}),
    ("dmx-i386-app", "i386", {"Depends": "dmx-same, libc6 | fb-foreign"}),
    ("dmx-all-app", "all", {"Depends": "dmx-same"}),
    ("dmx-q", "amd64", {"Multi-Arch": "same"}),
    ("dmx-q", "i386", {"Multi-Arch": "same"}),
    ("dmx-qual-use", "amd64", {"Depends": "dmx-q:i386"}),
    # same source, different versions: only the highest source version is followed
    ("dmx-src-old", "amd64", {"Source": "dmx-src (1.0)", "Provides": "dmx-src-virt"}),
    ("dmx-src-new", "amd64", {"Source": "dmx-src (2.0)", "Provides": "dmx-src-virt",
                              "Version": "2.0"}),  # fmt: skip
    ("dmx-src-use", "amd64", {"Depends": "dmx-src-virt"}),
    ("dmx-bin-a", "amd64", {"Source": "dmx-bsrc (2.0)", "Version": "2.0+b1",
                            "Provides": "dmx-bvirt"}),  # fmt: skip
    ("dmx-bin-b", "amd64", {"Source": "dmx-bsrc", "Version": "2.0", "Provides": "dmx-bvirt"}),
    ("dmx-buse", "amd64", {"Depends": "dmx-bvirt"}),
    ("dmx-xp1", "amd64", {"Provides": "dmx-xvirt"}),
    ("dmx-xp2", "amd64", {"Provides": "dmx-xvirt"}),
    ("dmx-xuse", "amd64", {"Depends": "dmx-xvirt"}),
    # fallbacks of the OR groups above
    ("fb-1", "amd64", {}),
    ("fb-2", "amd64", {}),
    ("fb-3", "amd64", {}),
    ("fb-4", "amd64", {}),
    ("fb-5", "amd64", {}),
    ("fb-6", "amd64", {}),
    ("fb-foreign", "amd64", {"Multi-Arch": "foreign"}),
]

# Only in the broken variant: unsatisfiable Depends (python-apt copes, apt-get refuses).
_BROKEN: list[tuple[str, str, dict[str, str]]] = [
    ("dmx-broken", "amd64", {"Depends": "dmx-btarget2 (>= 9)"}),
    ("dmx-btarget2", "amd64", {}),
    ("dmx-broken-virt", "amd64", {"Depends": "dmx-uvirt2 (>= 1)"}),
    ("dmx-uprov2", "amd64", {"Provides": "dmx-uvirt2"}),
    ("dmx-broken-arch", "amd64", {"Depends": "dmx-nf2"}),
    ("dmx-nf2", "i386", {}),
]

_CONF = {
    "10fixture": 'APT::Architectures:: "i386";\n'
    'APT::NeverAutoRemove { "^dmx-never-[0-9]+$"; };\n'
    'APT::AutoRemove::SuggestsImportant "true";\n',
    "20fixture": '// a later file wins\nAPT::AutoRemove::SuggestsImportant "false";\n',
    "30fixture.dpkg-old": 'APT::AutoRemove::SuggestsImportant "true";\n',  # ignored by apt
}
_REF = re.compile(r"(?:^|[,|])\s*([a-z0-9][a-z0-9+.-]*)")


def _stanza(name: str, arch: str, extra: dict[str, str]) -> str:
    fields = dict(extra)
    status = fields.pop("Status", "install ok installed")
    priority = fields.pop("Priority", "optional")
    version = fields.pop("Version", "1.0")
    size = str(sum(map(ord, name + arch)))
    lines = "".join(f"{k}: {v}\n" for k, v in fields.items())
    return _STANZA.format(name=name, status=status, priority=priority, size=size, arch=arch,
                          version=version, extra=lines)  # fmt: skip


def _host_stanzas() -> list[str]:
    with open(STATUS, encoding="utf-8") as f:
        return [s.strip("\n") + "\n" for s in f.read().split("\n\n") if s.strip()]


def _field(stanza: str, name: str) -> str:
    m = re.search(rf"^{name}: (.*(?:\n .*)*)", stanza, re.M)
    return m.group(1) if m else ""


def build_fixture_root(top: Path, broken: bool) -> Root:
    """A root with only var/lib/dpkg/status, etc/apt and an empty var/lib/apt.

    From this machine's status, drop every fourth package whose names (its own
    and its Provides) no other package names in a relation, so no Depends breaks;
    the broken variant also drops every eighth named one (so Depends break) and
    adds unsatisfiable Depends.
    """
    stanzas = _host_stanzas()
    referenced: set[str] = set()
    for s in stanzas:
        for fld in ("Depends", "Pre-Depends", "Recommends", "Suggests"):
            referenced.update(_REF.findall(_field(s, fld)))
    keep_always = {"dpkg", "apt", "base-files", "libc6"}
    free: list[str] = []
    named: list[str] = []
    for s in stanzas:
        name = _field(s, "Package")
        names = {name, *_REF.findall(_field(s, "Provides"))}
        if name in keep_always or _field(s, "Essential") == "yes":
            continue
        if _field(s, "Priority") == "required":
            continue
        (named if names & referenced else free).append(name)
    drop = set(sorted(free)[::4])
    if broken:
        drop |= set(sorted(named)[3::8])
    kept = [s for s in stanzas if _field(s, "Package") not in drop]
    extra = _FIXTURE + (_BROKEN if broken else [])
    kept += [_stanza(n, a, e) for n, a, e in extra]
    dpkg = top / "var/lib/dpkg"
    dpkg.mkdir(parents=True)
    (dpkg / "status").write_text("\n".join(kept))
    (top / "var/lib/apt/lists/partial").mkdir(parents=True)
    (top / "var/cache/apt/archives/partial").mkdir(parents=True)
    parts = top / "etc/apt/apt.conf.d"
    parts.mkdir(parents=True)
    (top / "etc/apt/preferences.d").mkdir()
    (top / "etc/apt/sources.list").write_text("")
    for name, text in _CONF.items():
        (parts / name).write_text(text)
    return Root(str(top))


def fixture_apt_config(root: Root, path: Path) -> str:
    """The oracle's own APT_CONFIG for the root (not depmin's view of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(apt_config_file(Path(root.top), path.parent))


@pytest.fixture(scope="module")
def fixture_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[Root, str]]:
    out = {}
    for broken in (False, True):
        top = tmp_path_factory.mktemp("broken" if broken else "consistent")
        root = build_fixture_root(top / "root", broken)
        out[broken] = (root, fixture_apt_config(root, top / "apt.conf"))
    return out


def fixture_cases(graph: PackageGraph) -> dict[str, list[str]]:
    def keys(*names: str) -> list[str]:
        found = [graph.lookup(n) for n in names]
        assert None not in found, names
        return [k for k in found if k is not None]

    cases: dict[str, list[str]] = {"all auto": []}
    cases["hand-picked"] = keys(
        "dmx-or", "dmx-src-use", "dmx-i386-app:i386", "dmx-any-use", "dmx-vuse", "dmx-realuse",
        "dmx-verbad", "dmx-uuse-ver", "dmx-vuse-low", "dmx-nf-use", "dmx-plain-use",
        "dmx-same-any", "dmx-fuse", "dmx-fuse-virt", "dmx-a3use", "dmx-qual-use", "dmx-buse",
        "dmx-xuse", "dmx-rs", "dmx-cyc-a", "dmx-verok", "dmx-uuse", "dmx-pre", "dmx-all-app",
        "dmx-unpacked", "dmx-cfg-user", "dmx-realuse2",
    )  # fmt: skip
    if "dmx-broken:amd64" in graph.nodes:
        cases["hand-picked"] += keys("dmx-broken", "dmx-broken-virt", "dmx-broken-arch")
    for i, chosen in enumerate(seeded_sets(graph, range(10, 13), 15)):
        cases[f"seed {i}"] = chosen
    return cases


@needs_apt
@pytest.mark.parametrize("broken", [False, True], ids=["consistent", "broken"])
@pytest.mark.parametrize("recommends,suggests", [*FOUR, (False, None), (True, None)])
def test_fixture_garbage_equals_python_apt(
    fixture_roots: dict[bool, tuple[Root, str]],
    broken: bool,
    recommends: bool,
    suggests: bool | None,
) -> None:
    root, conf = fixture_roots[broken]
    state = load_package_state(root, overrides_for(recommends, suggests))
    graph = state.graph
    # The root's apt.conf.d: the later file wins, the .dpkg-old one is ignored, host's unseen.
    assert state.policy.suggests_important is (False if suggests is None else suggests)
    assert state.policy.never_autoremove == ("^dmx-never-[0-9]+$",)
    cases = fixture_cases(graph)
    answer = apt_oracle([apt_names(graph, m) for m in cases.values()], recommends, suggests, conf)
    assert answer.installed == apt_names(graph, graph.nodes)
    assert "dmx-same:i386" in answer.installed and "dmx-cfgonly:amd64" not in answer.installed
    counts = compare_cases(state, cases, answer.cases)
    assert 0 < counts["all auto"] < len(graph.nodes)
    print(f"fixture broken={broken} RI={recommends} SI={suggests}: {counts}")


def apt_names_of(root: Root) -> frozenset[str]:
    graph = load_package_state(root).graph
    return apt_names(graph, graph.nodes)


def _fixture_verdicts(root: Root, conf: str, recommends: bool, suggests: bool) -> frozenset[str]:
    graph = load_package_state(root).graph
    manual = fixture_cases(graph)["hand-picked"]
    return apt_oracle([apt_names(graph, manual)], recommends, suggests, conf).cases[0]


@needs_apt
def test_fixture_rules_hold_in_apt(fixture_roots: dict[bool, tuple[Root, str]]) -> None:
    """The hand-written stanzas exercise what they claim to, in apt's own answer.

    This guards the fixture itself: if apt kept or dropped these for another
    reason, the comparison above would prove less than it seems.
    """
    root, conf = fixture_roots[True]
    garbage = _fixture_verdicts(root, conf, recommends=False, suggests=False)
    kept = {  # reached only through the rule named
        "dmx-ess-dep", "dmx-prot-dep", "dmx-imp-dep", "dmx-req-dep", "dmx-held-dep",
        "dmx-never-dep", "dmx-alt-a", "dmx-alt-b", "dmx-vprov", "dmx-uprov-b", "dmx-realprov",
        "dmx-realname2", "dmx-realprov2", "dmx-ftool:i386", "dmx-ftool2:i386",
        "dmx-allowed:i386", "dmx-allowed3:i386", "dmx-q:i386", "dmx-src-new", "dmx-bin-a",
        "dmx-bin-b", "dmx-xp1", "dmx-xp2", "dmx-vtarget", "dmx-cyc-b", "dmx-cyc-leaf",
        "dmx-pre-dep", "dmx-unp-dep", "dmx-req-orphan", "dmx-same:i386", "dmx-same:amd64",
        "fb-foreign",
    }  # fmt: skip
    dropped = {  # a relation names them, but apt does not follow it
        "dmx-btarget", "dmx-vprov2", "dmx-uprov", "dmx-realname", "dmx-nf:i386",
        "dmx-allowed2:i386", "dmx-src-old", "dmx-nevermore", "dmx-alt-c", "dmx-alt-d",
        "dmx-rec-t", "dmx-rec-t-dep", "dmx-sug-t", "dmx-btarget2", "dmx-uprov2", "dmx-nf2:i386",
    }  # fmt: skip

    def full(n: str) -> str:
        return n if ":" in n else f"{n}:amd64"

    assert not {full(n) for n in kept} & garbage
    assert {full(n) for n in dropped} <= garbage
    # The host's own NeverAutoRemove (^postgresql.*-15 on the reference) is not read.
    host_only = {f"{n}:amd64" for n in ("postgresql-15", "postgresql-client-15")}
    assert host_only & apt_names_of(root) <= garbage
    # And the optional kinds do matter when apt is told to follow them.
    garbage_ri = _fixture_verdicts(root, conf, recommends=True, suggests=True)
    assert not {"dmx-alt-c:amd64", "dmx-rec-t-dep:amd64", "dmx-sug-t:amd64"} & garbage_ri


@needs_apt
def test_fixture_marks_file_equals_python_apt(
    fixture_roots: dict[bool, tuple[Root, str]], tmp_path: Path
) -> None:
    """read_auto_marks against apt's reading of an odd extended_states in the root."""
    root, conf = fixture_roots[True]
    graph = load_package_state(root).graph
    marks = marks_file(apt_names(graph, graph.nodes), ())
    marks = marks.replace(  # stanzas apt reads in its own ways
        "Package: dmx-same\nArchitecture: i386\nAuto-Installed: 1\n",
        "Package: dmx-same\nArchitecture: i386\nAuto-Installed: 0\n",
    ).replace("Package: dmx-q\nArchitecture: amd64\nAuto-Installed: 1\n", "")
    marks = marks.replace("Package: dmx-q\nArchitecture: i386\n", "Package: dmx-q\n")
    marks += "\nPackage: dmx-not-installed\nArchitecture: amd64\nAuto-Installed: 1\n"
    marks += "\nPackage: dmx-or\nArchitecture: amd64\nAuto-Installed: 2\n"
    path = Path(root.top) / "var/lib/apt/extended_states"
    path.write_text(marks)
    try:
        for recommends in (False, True):
            state = load_package_state(root, overrides_for(recommends, None))
            auto = read_auto_marks(marks, state.graph)
            manual = [k for k in state.graph.nodes if k not in auto]
            answer = apt_oracle([], recommends, None, conf)
            assert apt_names(graph, manual) == answer.file_manual
            assert model_garbage(state, manual) == answer.file_garbage
            assert "dmx-same:i386" in answer.file_manual
            assert "dmx-q:amd64" not in answer.file_manual
    finally:
        path.unlink()


@needs_apt
@pytest.mark.parametrize("recommends,suggests", [(False, None), (True, True), (True, False)])
def test_fixture_apt_get_simulation(
    fixture_roots: dict[bool, tuple[Root, str]],
    recommends: bool,
    suggests: bool | None,
    tmp_path: Path,
) -> None:
    root, conf = fixture_roots[False]
    overrides = overrides_for(recommends, suggests)
    state = load_package_state(root, overrides)
    graph = state.graph
    counts = {}
    for label, manual in fixture_cases(graph).items():
        model = printed(graph, model_garbage(state, manual))
        marks = marks_file(apt_names(graph, graph.nodes), apt_names(graph, manual))
        got = apt_get_purged(marks, overrides, tmp_path, conf)
        assert got == model, (label, sorted(model - got), sorted(got - model))
        counts[label] = len(got)
    sim = simulate_purge(root, graph, [], overrides)  # depmin's own wrapper, same answer
    assert frozenset(sim.purged) == printed(graph, model_garbage(state, []))
    print(f"fixture apt-get -s RI={recommends} SI={suggests}: {counts}")


@needs_apt
def test_fixture_bridge_equals_oracle(fixture_roots: dict[bool, tuple[Root, str]]) -> None:
    root, conf = fixture_roots[True]
    overrides = overrides_for(False, None)
    state = load_package_state(root, overrides)
    manual = apt_names(state.graph, fixture_cases(state.graph)["hand-picked"])
    got = garbage_with_apt(root, manual, overrides)
    assert got == apt_oracle([manual], False, None, conf).cases[0]
    assert got == model_garbage(state, fixture_cases(state.graph)["hand-picked"])


# --- a third database: a debootstrap package set from this machine's mirror ----------------


def _mirror_and_suite() -> tuple[str, str]:
    """The host's first Debian mirror and its release codename."""
    suite = "bookworm"
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release", encoding="utf-8") as f:
            m = re.search(r"^VERSION_CODENAME=(\w+)", f.read(), re.M)
            suite = m.group(1) if m else suite
    mirror = "http://deb.debian.org/debian"
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                m = re.search(r"^(?:URIs:|deb)\s+(http\S+/debian)\s*$", f.read(), re.M)
            if m:
                mirror = m.group(1)
                break
    return mirror, suite


def _edit(stanza: str, name: str, value: str | None) -> str:
    """Set (or with None delete) one field of a status stanza."""
    stanza = re.sub(rf"^{name}: .*\n?", "", stanza, flags=re.M)
    if value is None:
        return stanza
    head, _, rest = stanza.partition("\n")
    return f"{head}\n{name}: {value}\n{rest}"


def build_debootstrap_root(top: Path) -> Root:
    """A root whose status holds the control records of a real minbase package set.

    ``debootstrap --download-only`` resolves the set, fetches the .debs and the
    mirror's Packages list, and never chroots, mounts or runs a maintainer
    script.  The status file is written from ``dpkg-deb -f`` of each .deb, then
    changed where apt.md §5 says the lists win: curl says ``Priority: required``
    (the archive says optional) and sed loses ``Essential: yes`` and says
    optional (the archive says Essential, required).
    """
    mirror, suite = _mirror_and_suite()
    cmd = ["debootstrap", "--download-only", "--variant=minbase",
           "--include=python3,curl,ca-certificates", suite, str(top), mirror]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("debootstrap --download-only took more than 15 minutes")
    if done.returncode != 0:
        pytest.skip(f"debootstrap --download-only failed (no network?): {done.stderr[-300:]}")
    stanzas = []
    for deb in sorted((top / "var/cache/apt/archives").glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                                 check=True).stdout.rstrip("\n") + "\n"  # fmt: skip
        stanza = _edit(control, "Status", "install ok installed")
        name = _field(stanza, "Package")
        if name == "curl":
            stanza = _edit(stanza, "Priority", "required")
        elif name == "sed":
            stanza = _edit(_edit(stanza, "Essential", None), "Priority", "optional")
        stanzas.append(stanza)
    (top / "var/lib/dpkg").mkdir(parents=True)
    (top / "var/lib/dpkg/status").write_text("\n".join(stanzas))
    (top / "var/lib/apt/empty-lists/partial").mkdir(parents=True)
    (top / "etc/apt/apt.conf.d").mkdir(parents=True, exist_ok=True)
    (top / "etc/apt/preferences.d").mkdir(exist_ok=True)
    (top / "etc/apt/sources.list").write_text(f"deb {mirror} {suite} main\n")
    lists = [p.name for p in (top / "var/lib/apt/lists").glob("*_Packages*")]
    assert lists, "debootstrap left no Packages list"
    return Root(str(top))


@needs_apt
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("debootstrap") is None, reason="needs debootstrap")
def test_debootstrap_set_with_and_without_lists(tmp_path: Path) -> None:
    root = build_debootstrap_root(tmp_path / "root")
    conf = fixture_apt_config(root, tmp_path / "apt.conf")
    hidden = ("Dir::State::lists", "empty-lists/")  # relative: under Dir::State, in the root
    results: dict[tuple[bool, bool], frozenset[str]] = {}
    for recommends in (False, True):
        for with_lists in (True, False):
            overrides = overrides_for(recommends, None)
            if not with_lists:
                overrides.append("=".join(hidden))
            state = load_package_state(root, overrides)
            graph = state.graph
            cases: dict[str, list[str]] = {"all auto": []}
            for i, chosen in enumerate(seeded_sets(graph, range(3), 8)):
                cases[f"seed {i}"] = chosen
            answer = apt_oracle([apt_names(graph, m) for m in cases.values()], recommends, None,
                                conf, [] if with_lists else [hidden])  # fmt: skip
            for (label, manual), garbage in zip(cases.items(), answer.cases):
                model = model_garbage(state, manual)
                assert model == garbage, (label, sorted(model ^ garbage))
                marks = marks_file(answer.installed, apt_names(graph, manual))
                assert apt_get_purged(marks, overrides, tmp_path, conf) == printed(graph, model)
            results[(recommends, with_lists)] = answer.cases[0]
            print(f"debootstrap set RI={recommends} lists={with_lists}: "
                  f"{len(answer.cases[0])} of {len(graph.nodes)} garbage")  # fmt: skip
    for recommends in (False, True):
        # The archive's Priority and Essential win over the status file while the lists exist.
        assert "curl:amd64" in results[(recommends, True)]
        assert "curl:amd64" not in results[(recommends, False)]
        assert "sed:amd64" not in results[(recommends, True)]
