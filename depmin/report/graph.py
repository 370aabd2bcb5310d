"""One networkx graph of the whole answer: files → libraries → packages → package relations.

Node ids are prefixed by kind (``file:``, ``lib:``, ``pkg:``) so a path and a
package name never collide.  Package relations are limited to what matters for
the plan (every package reachable from a required one, plus the roots that keep
them) unless all packages are asked for.  Exported as DOT, GraphML or
node-link JSON, all from networkx's own writers.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from depmin.debian.pkggraph import PackageGraph
from depmin.debian.plan import Plan
from depmin.errors import DepminError
from depmin.loader.needs import Analysis
from depmin.owners import Requirements

if TYPE_CHECKING:
    import networkx as nx

GRAPH_SCHEMA = "depmin.graph/1"


def build_graph(
    analysis: Analysis,
    req: Requirements,
    graph: PackageGraph,
    plan: Plan,
    all_packages: bool = False,
) -> nx.MultiDiGraph:
    try:
        import networkx as nx
    except ImportError as exc:  # e.g. python3-minimal, whose standard library networkx outgrows
        raise DepminError(f"depmin graph needs networkx, which this Python cannot import: {exc}") from None

    g = nx.MultiDiGraph()
    roots = {res.main for res in analysis.roots}
    for elf in analysis.scan.objects:
        g.add_node(f"file:{elf.path}", kind="file", path=elf.path, root=elf.path in roots)
    for script in analysis.scan.scripts:  # run as programs: their interpreter is needed
        g.add_node(f"file:{script.path}", kind="file", path=script.path, root=True)
    owners: dict[str, list[str]] = {}  # a link and its target may have different owners
    for need in req.packages:
        for lib_path in need.libraries:
            owners.setdefault(lib_path, []).append(need.package)
    for lib in analysis.libraries:
        lid = f"lib:{lib.path}"
        g.add_node(lid, kind="library", path=lib.path, realpath=lib.realpath,
                   names=" ".join(lib.names), in_trees=lib.in_trees)  # fmt: skip
        for f in lib.needed_by:
            g.add_edge(f"file:{f}", lid, kind="needs")
        for pkg in owners.get(lib.path, ()):
            key = graph.lookup(pkg)
            if key is not None:
                g.add_edge(lid, f"pkg:{graph.display_name(key)}", kind="owned-by")
    if all_packages:
        keys = set(graph.nodes)
    else:
        keys = set(plan.required)
        frontier = list(keys)
        while frontier:
            k = frontier.pop()
            for e in graph.edges.get(k, ()):
                if e.target not in keys:
                    keys.add(e.target)
                    frontier.append(e.target)
        keys |= {e.source for k in plan.required for e in plan.marking.chain(k)}
    keep = set(plan.keep)
    for k in sorted(keys):
        n = graph.nodes[k]
        g.add_node(
            f"pkg:{graph.display_name(k)}",
            kind="package",
            version=n.version,
            required=k in plan.required,
            keep=k in keep,
            baseline=k in plan.baseline,
            purged=k in plan.marking.garbage,
            root_reason=str(plan.marking.reasons.get(k, "")),
            installed_size_kib=n.installed_size,
        )
    for k in sorted(keys):
        for e in graph.edges.get(k, ()):
            if e.target in keys:
                g.add_edge(
                    f"pkg:{graph.display_name(k)}",
                    f"pkg:{graph.display_name(e.target)}",
                    kind=e.kind,
                    relation=e.relation,
                    followed=plan.policy.follows(e.kind),
                )
    return g


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(g: nx.MultiDiGraph) -> str:
    """DOT text; written here so no pydot/pygraphviz is needed."""
    shapes = {"file": "box", "library": "ellipse", "package": "component"}
    out = ["digraph depmin {", "  rankdir=LR;"]
    for node, data in g.nodes(data=True):
        attrs = [f"shape={shapes.get(data.get('kind', ''), 'plaintext')}"]
        if data.get("keep"):
            attrs.append("style=bold color=darkgreen")
        elif data.get("purged"):
            attrs.append("style=dashed color=gray")
        label = node.split(":", 1)[1]
        out.append(f"  {_dot_id(node)} [label={_dot_id(label)} {' '.join(attrs)}];")
    for a, b, data in g.edges(data=True):
        style = "" if data.get("followed", True) else " style=dotted"
        out.append(
            f"  {_dot_id(a)} -> {_dot_id(b)} [label={_dot_id(data.get('kind', ''))}{style}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"


def to_graphml(g: nx.MultiDiGraph) -> str:
    import networkx as nx

    buf = io.BytesIO()
    nx.write_graphml(g, buf)
    return buf.getvalue().decode("utf-8")


def to_json(g: nx.MultiDiGraph) -> dict[str, Any]:
    import networkx as nx

    data = nx.node_link_data(g, edges="links") if _has_edges_kw() else nx.node_link_data(g)
    return {"schema": GRAPH_SCHEMA, "graph": data}


def _has_edges_kw() -> bool:
    import inspect

    import networkx as nx

    return "edges" in inspect.signature(nx.node_link_data).parameters


def dumps_json(g: nx.MultiDiGraph) -> str:
    return json.dumps(to_json(g), indent=2)
