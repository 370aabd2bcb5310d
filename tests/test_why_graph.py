"""``depmin why`` and ``depmin graph`` on real output, checked against dpkg and apt.

Every run is the real command on a CPython tree that pyenv built on this
machine, with the pipeline's RecommendsImportant=false.  What the output claims
is checked independently: relations against ``dpkg-query -W`` fields, owners
against ``dpkg-query -S``, libraries against ldd, marks and purges against
python-apt with the same marks.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from tests.oracles import ldd
from tests.test_autoremove_apt import apt_oracle, needs_apt, needs_host_db, state_digest
from tests.test_plan import PIPELINE, VERSIONS, _tree, depmin

KINDS = ("Depends", "Pre-Depends", "Recommends", "Suggests")
OPTION = "APT::AutoRemove::RecommendsImportant"

pytestmark = [
    needs_apt,
    needs_host_db,
    pytest.mark.skipif(not VERSIONS, reason="no pyenv-built CPython on this machine"),
]


@pytest.fixture(autouse=True, scope="module")
def apt_state_untouched() -> Iterable[None]:
    before = state_digest()
    yield
    assert state_digest() == before, "the real extended_states or status file changed"


def run(*args: str) -> str:
    done = depmin(*args, "--allow-missing", str(_tree()), "-o", PIPELINE[0])
    assert done.returncode == 0, done.stderr
    return done.stdout


@cache
def cli_keep() -> tuple[str, ...]:
    return tuple(run("keep").split())


@cache
def cli_plan() -> Any:
    return json.loads(run("plan", "--json"))


def native(names: Iterable[str]) -> frozenset[str]:
    """apt_pkg's ``name:arch`` for names as apt-get prints them (this machine is amd64 only)."""
    return frozenset(n if ":" in n else f"{n}:amd64" for n in names)


@cache
def garbage(recommends: bool, without: str = "") -> frozenset[str]:
    """python-apt's garbage with depmin's keep list manual (minus ``without``), all else auto."""
    manual = native(k for k in cli_keep() if k != without)
    return apt_oracle([manual], recommends=recommends).cases[0]


# --- the dpkg database as dpkg-query prints it ---------------------------------------------


@cache
def dpkg_fields() -> dict[str, dict[str, str]]:
    """Installed package -> Provides and relation fields, as dpkg-query prints them."""
    fmt = "${db:Status-Abbrev}\t${Package}\t${Provides}\t" + "\t".join(f"${{{k}}}" for k in KINDS)
    out = subprocess.run(["dpkg-query", "-W", "-f", fmt + "\n"], capture_output=True,
                         text=True, check=True, env={**os.environ, "LC_ALL": "C"}).stdout  # fmt: skip
    fields: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        status, name, provides, *rels = line.split("\t")
        if status[1:2] not in ("i", "U", "F", "H", "W", "t"):  # apt's notion of installed
            continue
        fields[name] = {"Provides": provides, **dict(zip(KINDS, rels))}
    return fields


def alternatives(field: str) -> list[str]:
    return [" ".join(a.split()) for group in field.split(",") for a in group.split("|") if a.strip()]


def alt_name(alt: str) -> str:
    return re.split(r"[\s(:]", alt, maxsplit=1)[0]


def real_relation(source: str, kind: str, target: str, relation: str = "") -> bool:
    """``source`` really has ``kind`` on ``target`` (by name or a Provides of it) in dpkg."""
    fields = dpkg_fields()
    alts = alternatives(fields[source][kind])
    if relation and " ".join(relation.split()) not in alts:
        return False
    names = {alt_name(a) for a in ([relation] if relation else alts)}
    provided = {alt_name(a) for a in alternatives(fields[target]["Provides"])}
    return bool(names & ({target} | provided))


def dpkg_search(paths: Iterable[str]) -> dict[str, set[str]]:
    """``dpkg-query -S`` owners of each path, also under its merged-/usr twin (dpkg knows one)."""
    forms = {p: {p, p[4:] if p.startswith("/usr/") else "/usr" + p} for p in paths}
    asked = sorted(set().union(*forms.values()))
    done = subprocess.run(["dpkg-query", "-S", *asked], capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"})  # fmt: skip
    found: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        if line.startswith(("diversion by", "local diversion")):
            continue
        who, _, path = line.partition(": ")
        found.setdefault(path, set()).update(o.strip().split(":")[0] for o in who.split(","))
    return {p: set().union(*(found.get(f, set()) for f in fs)) for p, fs in forms.items()}


def dpkg_owners(path: str) -> set[str]:
    return dpkg_search([path])[path]


def chain_line(out: str) -> list[tuple[str, str, str]]:
    """The ``A -Kind-> B -Kind-> C`` line of ``why`` as (source, kind, target) edges."""
    lines = [ln.strip() for ln in out.splitlines() if re.search(r" -[A-Za-z-]+-> ", ln)]
    assert len(lines) == 1, out
    parts = re.split(r" -([A-Za-z-]+)-> ", lines[0])
    return [(parts[i], parts[i + 1], parts[i + 2]) for i in range(0, len(parts) - 2, 2)]


# --- why -----------------------------------------------------------------------------------


def test_why_library_package_names_the_module_and_the_manual_mark() -> None:
    modules = glob.glob(str(_tree() / "lib/python3*/lib-dynload/_sqlite3*.so"))
    assert len(modules) == 1, modules
    module = modules[0]
    libs, raw = ldd(module)
    sqlite = [p for p in libs if os.path.basename(p).startswith("libsqlite3.so")]
    assert len(sqlite) == 1, raw
    assert dpkg_owners(sqlite[0]) == {"libsqlite3-0"}

    out = run("why", "libsqlite3-0")
    assert out.splitlines()[0].startswith("libsqlite3-0 ")
    assert module in out
    assert re.search(r"kept: .*marks it manual", out), out
    # apt agrees: it keeps the package with the list, and loses it without it.
    assert "libsqlite3-0" in cli_keep()
    assert "libsqlite3-0:amd64" not in garbage(False)
    assert "libsqlite3-0:amd64" in garbage(False, without="libsqlite3-0")


def _chained() -> list[dict[str, Any]]:
    """Required packages the plan keeps through a chain: the longest, and one per root kind."""
    found = [r for r in cli_plan()["required"] if r["chain"]]
    picked: dict[str, dict[str, Any]] = {}
    for r in sorted(found, key=lambda r: (-len(r["chain"]), r["package"])):
        picked.setdefault(r["kept_by"], r)
    return list(picked.values())


def test_why_chain_edges_are_real_dpkg_relations() -> None:
    chained = _chained()
    assert any(r["kept_by"] == "dependency" and len(r["chain"]) >= 2 for r in chained), chained
    gone = garbage(False)
    for r in chained:
        for e in r["chain"]:  # the JSON chain, relation text included
            assert e["kind"] in ("Depends", "Pre-Depends"), e  # RI and SI false here
            assert real_relation(e["from"], e["kind"], e["to"], e["relation"]), e
        out = run("why", r["package"])
        edges = chain_line(out)
        assert edges[-1][2] == r["package"]
        assert [(a, k, b) for a, k, b in edges] == [(e["from"], e["kind"], e["to"]) for e in
                                                     r["chain"]]  # fmt: skip
        for a, k, b in edges:
            assert real_relation(a, k, b), (a, k, b)
        top = edges[0][0]
        if "marked manual by depmin" in out:
            assert top in cli_keep()
        elif "(Essential)" in out:
            assert subprocess.run(["dpkg-query", "-W", "-f", "${Essential}", top],
                                  capture_output=True, text=True).stdout == "yes"  # fmt: skip
        else:
            assert "a root apt always keeps" in out, out
        assert f"{r['package']}:amd64" not in gone  # and apt keeps it indeed
        assert all(f"{b}:amd64" not in gone for _, _, b in edges)


def test_why_unneeded_package_would_be_purged() -> None:
    if "gcc-12" not in dpkg_fields():
        pytest.skip("gcc-12 is not installed")
    out = run("why", "gcc-12")
    assert "WOULD BE PURGED" in out, out
    assert "gcc-12" not in {r["package"] for r in cli_plan()["required"]}
    assert "gcc-12:amd64" in garbage(False)


def _recommended_only() -> tuple[str, str]:
    """A package apt drops only because RecommendsImportant is false, and a kept recommender."""
    only = sorted(garbage(False) - garbage(True))
    assert only, "nothing here is kept through Recommends alone"
    kept = {n.split(":")[0] for n in apt_oracle([], False).installed} - {
        n.split(":")[0] for n in garbage(False)
    }
    for full in only:
        name = full.split(":")[0]
        for source in sorted(kept):
            if real_relation(source, "Recommends", name):
                return name, source
    raise AssertionError(f"no kept package directly Recommends any of {only}")


def test_why_recommended_package_names_the_option() -> None:
    name, recommender = _recommended_only()
    out = run("why", name)
    assert "WOULD BE PURGED" in out, out
    lines = [ln for ln in out.splitlines() if OPTION in ln and recommender in ln]
    assert lines, out
    assert "Recommends" in lines[0]
    # With the option true, apt keeps it: the option is the whole reason.
    done = depmin("why", name, "--allow-missing", str(_tree()), "-o", f"{OPTION}=true")
    assert done.returncode == 0 and "WOULD BE PURGED" not in done.stdout, done.stdout


# --- graph ---------------------------------------------------------------------------------


@cache
def graph_json() -> Any:
    return json.loads(run("graph", "--format", "json"))


def test_graph_json_package_edges_are_real_relations() -> None:
    data = graph_json()
    assert data["schema"] == "depmin.graph/1"
    g = data["graph"]
    nodes = {n["id"]: n for n in g["nodes"]}
    links = g["links"] if "links" in g else g["edges"]
    assert {n["kind"] for n in nodes.values()} == {"file", "library", "package"}
    pkg_edges = [e for e in links if nodes[e["source"]]["kind"] == "package"]
    assert pkg_edges
    for e in links:
        assert e["source"] in nodes and e["target"] in nodes
    for e in pkg_edges:
        src, dst = e["source"].removeprefix("pkg:"), e["target"].removeprefix("pkg:")
        assert e["kind"] in KINDS
        assert real_relation(src, e["kind"], dst, e["relation"]), e
        assert e["followed"] is (e["kind"] in ("Depends", "Pre-Depends"))
    # Every owner of the opened path and of the file it leads to, and no other.
    libs = {i: n for i, n in nodes.items() if n["kind"] == "library" and not n["in_trees"]}
    owned: dict[str, set[str]] = {i: set() for i in libs}
    for e in links:
        if e["kind"] == "owned-by":
            owned[e["source"]].add(e["target"].removeprefix("pkg:"))
    search = dpkg_search({n[k] for n in libs.values() for k in ("path", "realpath")})
    for i, n in libs.items():
        assert owned[i] == search[n["path"]] | search[n["realpath"]], (i, owned[i])
    packages = {i.removeprefix("pkg:"): n for i, n in nodes.items() if n["kind"] == "package"}
    assert {p for p, n in packages.items() if n["keep"]} == set(cli_keep())
    gone = garbage(False)
    for p, n in packages.items():
        assert n["purged"] is (f"{p}:amd64" in gone), p
    print(f"graph: {len(nodes)} nodes, {len(links)} edges, {len(pkg_edges)} package relations")


_DOT_NODE = re.compile(r'^  ("(?:[^"\\]|\\.)*") \[label="(?:[^"\\]|\\.)*"[^\]]*\];$')
_DOT_EDGE = re.compile(r'^  ("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*") \[label="[^"]*"[^\]]*\];$')


def test_graph_dot_is_parseable(tmp_path: Path) -> None:
    text = run("graph", "--format", "dot")
    g = graph_json()["graph"]
    if shutil.which("dot"):
        src = tmp_path / "g.dot"
        src.write_text(text)
        done = subprocess.run(["dot", "-Tsvg", str(src)], capture_output=True, text=True)
        assert done.returncode == 0 and "<svg" in done.stdout, done.stderr
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "digraph depmin {" and lines[-1] == "}"
    declared: set[str] = set()
    edges = 0
    for line in lines[1:-1]:
        if line.strip() in ("rankdir=LR;",):
            continue
        node, edge = _DOT_NODE.match(line), _DOT_EDGE.match(line)
        assert node or edge, line
        if node:
            declared.add(json.loads(node.group(1)))
        else:
            assert edge is not None
            edges += 1
            assert {json.loads(edge.group(1)), json.loads(edge.group(2))} <= declared, line
    links = g["links"] if "links" in g else g["edges"]
    assert declared == {n["id"] for n in g["nodes"]}
    assert edges == len(links)


def test_graph_graphml_loads_with_networkx() -> None:
    text = run("graph", "--format", "graphml")
    g = nx.read_graphml(io.BytesIO(text.encode()))
    data = graph_json()["graph"]
    links = data["links"] if "links" in data else data["edges"]
    assert set(g.nodes) == {n["id"] for n in data["nodes"]}
    assert g.number_of_edges() == len(links)
    kinds = nx.get_node_attributes(g, "kind")
    assert set(kinds.values()) == {"file", "library", "package"}
