"""Machine-readable (JSON, schemas documented in README.md) and human views of keep/plan/why.

Schemas are versioned by their ``schema`` key; fields are only ever added within
a version.  Paths may carry non-UTF-8 bytes as lone surrogates (PEP 383).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from depmin.debian.pkggraph import Edge, PackageGraph
from depmin.debian.plan import Plan
from depmin.loader.needs import Analysis
from depmin.owners import Requirements
from depmin.rootfs import Root

KEEP_SCHEMA = "depmin.keep/1"
PLAN_SCHEMA = "depmin.plan/1"


def _unresolved(analysis: Analysis) -> list[dict[str, Any]]:
    return [
        {
            "file": u.file,
            "requester": u.requester,
            "name": u.name,
            "outcome": u.outcome.value,
            "problem": u.problem,
            "path": u.path,
            "tried": list(u.tried),
            "kind": u.kind,
        }
        for u in analysis.unresolved
    ]


def _edge(e: Edge, graph: Optional[PackageGraph]) -> dict[str, str]:
    name = graph.display_name if graph is not None else (lambda k: k)
    return {"from": name(e.source), "kind": e.kind, "relation": e.relation, "to": name(e.target)}


def keep_json(
    root: Root,
    analysis: Analysis,
    req: Requirements,
    names: list[str],
    plan: Optional[Plan],
    graph: Optional[PackageGraph],
    warnings: Sequence[str] = (),
    minimal: Optional[bool] = None,
) -> dict[str, Any]:
    """The depmin.keep/1 document; ``minimal`` defaults to whether a plan was made."""
    how: dict[str, str] = {}
    if plan is not None and graph is not None:
        for r in plan.reasons:
            how[graph.nodes[r.package].apt_name] = r.how
    return {
        "schema": KEEP_SCHEMA,
        "root": root.top,
        "trees": list(analysis.scan.trees),
        "minimal": plan is not None if minimal is None else minimal,
        "keep": names,
        "packages": [
            {
                "package": p.package,
                "libraries": list(p.libraries),
                "files": list(p.files),
                "kept_by": how.get(p.package),
            }
            for p in req.packages
        ],
        "provided_by_trees": list(req.in_trees),
        "unowned": list(req.unowned),
        "unresolved": _unresolved(analysis),
        "skipped": [
            {"path": s.path, "reason": s.reason, "problem": s.problem}
            for s in analysis.scan.skipped
        ],
        "errors": list(analysis.errors),
        "warnings": list(warnings),
    }


def plan_json(
    root: Root,
    analysis: Analysis,
    req: Requirements,
    plan: Plan,
    graph: PackageGraph,
    warnings: list[str],
) -> dict[str, Any]:
    needs = {p.package: p for p in req.packages}
    required = []
    for r in plan.reasons:
        node = graph.nodes[r.package]
        need = needs.get(node.apt_name)
        required.append(
            {
                "package": graph.display_name(r.package),
                "kept_by": r.how,
                "chain": [_edge(e, graph) for e in r.chain],
                "libraries": list(need.libraries) if need else [],
                "files": list(need.files) if need else [],
                "purged": r.package in plan.marking.garbage,
            }
        )
    return {
        "schema": PLAN_SCHEMA,
        "root": root.top,
        "trees": list(analysis.scan.trees),
        "config": {
            "APT::AutoRemove::RecommendsImportant": plan.policy.recommends_important,
            "APT::AutoRemove::SuggestsImportant": plan.policy.suggests_important,
            "APT::NeverAutoRemove": list(plan.policy.never_autoremove),
        },
        "baseline": [graph.display_name(k) for k in plan.baseline],
        "keep": [graph.display_name(k) for k in plan.keep],
        "required": required,
        "purged": [
            {"package": graph.display_name(k), "installed_size_kib": graph.nodes[k].installed_size}
            for k in plan.purged
        ],
        "freed_bytes": plan.freed_kib * 1024,
        "kept_count": len(plan.marking.kept)
        + len(
            [
                k
                for k, n in graph.nodes.items()
                if n.priority == "required" and k not in plan.marking.kept
            ]
        ),
        "provided_by_trees": list(req.in_trees),
        "unowned": list(req.unowned),
        "unresolved": _unresolved(analysis),
        "unknown_names": list(plan.unknown),
        "warnings": warnings,
    }


def chain_text(chain: tuple[Edge, ...] | list[Edge], graph: PackageGraph) -> str:
    if not chain:
        return ""
    parts = [graph.display_name(chain[0].source)]
    for e in chain:
        parts.append(f"-{e.kind}-> {graph.display_name(e.target)}")
    return " ".join(parts)


def _size(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB" if kib >= 1024 else f"{kib} KiB"


def plan_text(req: Requirements, plan: Plan, graph: PackageGraph, warnings: list[str]) -> list[str]:
    needs = {p.package: p for p in req.packages}
    lines = [f"Mark manual ({len(plan.keep)}): the minimal list"]
    for k in plan.keep:
        need = needs.get(graph.nodes[k].apt_name)
        why = (
            f"  needed by {need.files[0]}"
            + (f" (+{len(need.files) - 1} more)" if len(need.files) > 1 else "")
            if need
            else "  (--keep)"
        )
        lines.append(f"  {graph.display_name(k):<28}{why}")
    if plan.baseline:
        lines.append(
            f"Baseline kept manual ({len(plan.baseline)}): "
            + " ".join(graph.display_name(k) for k in plan.baseline)
        )
    lines.append(f"Required packages and why they stay ({len(plan.reasons)}):")
    for r in plan.reasons:
        name = graph.display_name(r.package)
        if r.package in plan.marking.garbage:
            lines.append(f"  {name:<28}WOULD BE PURGED")
        elif r.how == "keep-list":
            lines.append(f"  {name:<28}marked manual")
        elif r.how == "dependency":
            lines.append(f"  {name:<28}{chain_text(r.chain, graph)}")
        elif r.how == "baseline":
            via = chain_text(r.chain, graph)
            lines.append(f"  {name:<28}baseline" + (f": {via}" if via else ""))
        else:
            via = chain_text(r.chain, graph)
            lines.append(f"  {name:<28}{r.how}" + (f": {via}" if via else ""))
    size = _size(plan.freed_kib)
    count = len(plan.purged)
    lines.append(f"Purged by apt-get purge --auto-remove ({count} packages, {size} freed):")
    for k in plan.purged:
        lines.append(f"  {graph.display_name(k):<40}{_size(graph.nodes[k].installed_size):>12}")
    if req.in_trees:
        lines.append(f"Provided by the scanned trees ({len(req.in_trees)} libraries)")
    for w in warnings:
        lines.append(f"warning: {w}")
    return lines


VERIFY_SCHEMA = "depmin.verify/1"


def verify_json(root: Root, analysis: Analysis) -> dict[str, Any]:
    return {
        "schema": VERIFY_SCHEMA,
        "root": root.top,
        "trees": list(analysis.scan.trees),
        "ok": analysis.ok,
        "objects": len(analysis.scan.objects),
        "scripts": len(analysis.scan.scripts),
        "unresolved": _unresolved(analysis),
        "warnings": list(analysis.warnings),
    }
