"""The minimal keep list (depmin.debian.plan) and ``depmin apply --dry-run`` / ``snapshot`` against apt.

For each CPython that pyenv built on this machine: depmin finds the packages its
files need (T) and plans the list M to mark manual on top of a baseline B.  apt
itself (python-apt in memory, nothing committed) must then keep all of T with
B ∪ M manual and everything else auto, must lose some package of T when any
single entry of M is left out, and must keep exactly what it keeps with all of
T marked (apt.md §7: Reach(R0 ∪ B ∪ T) is the unique smallest kept set).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depmin.api import PackageState, find_needs, find_requirements, load_package_state
from depmin.debian.plan import Plan, make_plan, required_keys, source_components
from depmin.loader.resolve import LoaderSettings
from depmin.rootfs import Root
from tests.oracles import pyenv_versions
from tests.test_autoremove_apt import (
    EXTENDED_STATES,
    RI,
    apt_get_purged,
    apt_names,
    apt_oracle,
    marks_file,
    needs_apt,
    needs_host_db,
    run_guarded,
    state_digest,
)

PIPELINE = [f"{RI}=false"]  # what the official images' pipeline runs apt with
VERSIONS = pyenv_versions()
REPO = Path(__file__).resolve().parent.parent

needs_pyenv = pytest.mark.skipif(not VERSIONS, reason="no pyenv-built CPython on this machine")


@pytest.fixture(autouse=True, scope="module")
def apt_state_untouched() -> Iterable[None]:
    before = state_digest()
    yield
    assert state_digest() == before, "the real extended_states or status file changed"


@pytest.fixture(scope="module")
def pipeline_state() -> PackageState:
    return load_package_state(Root("/"), PIPELINE)


def showmanual() -> list[str]:
    done = subprocess.run(["apt-mark", "showmanual"], capture_output=True, text=True, check=True)
    return done.stdout.split()


#: What ``depmin keep``/``plan`` resolve by default: start-up plus the run-time loads.
RUNTIME = LoaderSettings(dlopen_priorities=frozenset({"required", "recommended"}), glibc_dlopens=True)


def plan_for(state: PackageState, tree: Path, baseline: list[str]) -> Plan:
    analysis = find_needs(Root("/"), [str(tree)], settings=RUNTIME)
    req = find_requirements(analysis, state.db)
    keys, missing = required_keys(state.graph, req.names)
    assert not missing, missing
    return make_plan(state.graph, keys, baseline, state.policy)


def baselines(state: PackageState) -> dict[str, list[str]]:
    installed = sorted(n.apt_name for n in state.graph.nodes.values())
    return {
        "empty": [],
        "real manual": showmanual(),
        "random": random.Random(7).sample(installed, 12),
    }


@needs_apt
@needs_host_db
@needs_pyenv
@pytest.mark.parametrize("tree", VERSIONS, ids=[v.name for v in VERSIONS])
def test_plan_keeps_everything_and_nothing_is_redundant(
    pipeline_state: PackageState, tree: Path
) -> None:
    graph = pipeline_state.graph
    cases: list[frozenset[str]] = []
    checks = []
    for label, names in baselines(pipeline_state).items():
        plan = plan_for(pipeline_state, tree, names)
        assert not plan.unknown
        base = apt_names(graph, plan.baseline)
        keep = apt_names(graph, plan.keep)
        assert len(keep) == len(plan.keep)
        start = len(cases)
        cases.append(base | keep)
        cases.append(base | apt_names(graph, plan.required))
        cases += [base | (keep - {k}) for k in sorted(keep)]
        checks.append((label, plan, start, sorted(keep)))
    answer = apt_oracle(cases, recommends=False)
    summary = {}
    for label, plan, start, kept_list in checks:
        required = apt_names(graph, plan.required)
        with_plan, with_all_required = answer.cases[start], answer.cases[start + 1]
        assert not required & with_plan, (label, sorted(required & with_plan))
        # Minimal in what it keeps, not only in how many it marks.
        assert with_plan == with_all_required, (label, sorted(with_plan ^ with_all_required))
        assert with_plan == apt_names(graph, plan.purged)
        for i, dropped in enumerate(kept_list):
            lost = required & answer.cases[start + 2 + i]
            assert lost, f"{label}: {dropped} is not needed in the list"
        summary[label] = (len(plan.required), kept_list, len(with_plan))
    assert summary["empty"][1], "nothing to mark with an empty baseline: the check proves nothing"
    print(f"{tree.name}: {summary}")


# --- the command line ----------------------------------------------------------------------


def depmin(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, with apt's and dpkg's state read-only when we are root."""
    return run_guarded([sys.executable, "-m", "depmin", *args], {"PYTHONPATH": str(REPO)})


def _tree() -> Path:
    preferred = [v for v in VERSIONS if v.name.startswith("3.11")]
    return (preferred or VERSIONS)[-1]


def _dry_run_output(out: str) -> tuple[list[str], list[str]]:
    """(names given to apt-mark manual, names listed as purged) from ``apply --dry-run``."""
    manual: list[str] = []
    purged: list[str] = []
    in_list = False
    for line in out.splitlines():
        if line.startswith("Would mark manual ("):
            manual = line.split()[4:]
        elif "purge" in line.lower() and line.rstrip().endswith(":"):
            in_list = True
        elif in_list and line.startswith("  "):
            purged.append(line.strip())
        else:
            in_list = False
    return manual, purged


@needs_apt
@needs_host_db
@needs_pyenv
@pytest.mark.parametrize("with_baseline", [False, True], ids=["no-baseline", "baseline"])
def test_apply_dry_run_lists_what_apt_get_purges(with_baseline: bool, tmp_path: Path) -> None:
    args = ["apply", "--dry-run", "--allow-missing", str(_tree()), "-o", PIPELINE[0]]
    if with_baseline:
        saved = tmp_path / "baseline"
        saved.write_text(" ".join(showmanual()))
        args += ["--baseline", str(saved)]
    before = state_digest()
    done = depmin(*args)
    assert done.returncode == 0, done.stderr
    assert state_digest() == before
    manual, purged = _dry_run_output(done.stdout)
    assert purged, done.stdout
    assert len(purged) == len(set(purged))
    # The same marks, written and simulated without depmin.
    installed = apt_oracle([], recommends=False).installed
    full = {n if ":" in n else f"{n}:amd64" for n in manual}
    assert full <= installed
    if with_baseline:
        assert {n if ":" in n else f"{n}:amd64" for n in showmanual()} <= full
    apt_get = apt_get_purged(marks_file(installed, full), PIPELINE, tmp_path)
    assert sorted(purged) == sorted(apt_get)
    print(f"apply --dry-run baseline={with_baseline}: {len(manual)} manual, {len(purged)} purged")


@needs_host_db
def test_snapshot_equals_apt_mark_showmanual() -> None:
    done = depmin("snapshot")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == showmanual()
    as_json = depmin("snapshot", "--json")
    assert json.loads(as_json.stdout)["manual"] == showmanual()
    nul = depmin("snapshot", "-0")
    assert nul.stdout.split("\0")[:-1] == showmanual()
    with open(EXTENDED_STATES, encoding="utf-8") as f:  # not empty: apt-mark reads this file
        assert "Auto-Installed: 1" in f.read()


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n))))
def test_source_components_are_networkx_condensation_sources(graph: tuple[int, list[tuple[int, int]]]) -> None:  # noqa: E501
    """depmin's own Tarjan (the plan needs no networkx) against networkx's condensation."""
    import networkx as nx

    n, edges = graph
    names = [f"p{i:02d}" for i in range(n)]
    succ = {name: sorted({names[b] for a, b in edges if names[a] == name and a != b}) for name in names}
    g = nx.DiGraph()
    g.add_nodes_from(names)
    g.add_edges_from((names[a], names[b]) for a, b in edges if a != b)
    cond = nx.condensation(g)
    want = {frozenset(cond.nodes[c]["members"]) for c in cond.nodes if cond.in_degree(c) == 0}
    assert set(source_components(succ)) == want


def test_a_long_chain_is_no_recursion() -> None:
    names = [f"p{i:05d}" for i in range(20000)]
    succ = {a: [b] for a, b in zip(names, names[1:])}
    succ[names[-1]] = [names[0]]  # one cycle through all of them
    assert source_components(succ) == [frozenset(names)]
