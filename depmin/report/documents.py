"""Machine-readable (JSON, schemas documented in README.md) and human views of keep/plan/why.

Schemas are versioned by their ``schema`` key; fields are only ever added within
a version.  Paths may carry non-UTF-8 bytes as lone surrogates (PEP 383).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from depmin.api import ApplyCheck, KeepList, PlanRun, Scanned, Snapshot
from depmin.loader.needs import Analysis, Unresolved

if TYPE_CHECKING:  # the package half is imported only by runs that read it
    from depmin.debian.pkggraph import Edge, PackageGraph
    from depmin.debian.plan import KeptBy

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
            "note": u.note,
        }
        for u in analysis.unresolved
    ]


def unresolved_lines(unresolved: Sequence[Unresolved]) -> list[str]:
    """One line per failing request: the file, the library, and where ld.so would have looked."""
    lines = []
    for u in unresolved:
        what = "not found" if u.outcome.value == "missing" else f"would fail to load ({u.problem})"
        where = f"; searched {', '.join(u.tried)}" if u.tried else ""
        via = "" if u.requester == u.file else f" (needed by {u.requester})"
        kind = "" if u.kind == "needed" else f" [{u.kind}]"
        note = f"; {u.note}" if u.note else ""
        lines.append(f"{u.file}: {u.name}{kind} {what}{via}{where}{note}")
    return lines


def _edge(e: Edge, graph: PackageGraph | None) -> dict[str, str]:
    name = graph.display_name if graph is not None else (lambda k: k)
    return {"from": name(e.source), "kind": e.kind, "relation": e.relation, "to": name(e.target)}


def keep_json(result: KeepList) -> dict[str, Any]:
    """The depmin.keep/1 document."""
    how: dict[str, KeptBy] = {}
    if result.plan is not None and result.graph is not None:
        for r in result.plan.reasons:
            how[result.graph.nodes[r.package].apt_name] = r.how
    analysis, req = result.analysis, result.requirements
    return {
        "schema": KEEP_SCHEMA,
        "root": result.root.top,
        "trees": list(analysis.scan.trees),
        "minimal": result.minimal,
        "keep": list(result.names),
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
        "warnings": [*analysis.warnings, *result.warnings],
    }


def plan_json(run: PlanRun) -> dict[str, Any]:
    """The depmin.plan/1 document."""
    analysis, req, plan, graph = run.analysis, run.requirements, run.plan, run.graph
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
        "root": run.root.top,
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
        "warnings": [*analysis.warnings, *run.warnings],
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


def plan_text(run: PlanRun) -> list[str]:
    from depmin.debian.plan import KeptBy

    req, plan, graph = run.requirements, run.plan, run.graph
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
        elif r.how is KeptBy.KEEP_LIST:
            lines.append(f"  {name:<28}marked manual")
        elif r.how is KeptBy.DEPENDENCY:
            lines.append(f"  {name:<28}{chain_text(r.chain, graph)}")
        elif r.how is KeptBy.BASELINE:
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
    for w in run.warnings:
        lines.append(f"warning: {w}")
    return lines


VERIFY_SCHEMA = "depmin.verify/1"
SNAPSHOT_SCHEMA = "depmin.snapshot/1"


def verify_json(done: Scanned) -> dict[str, Any]:
    analysis = done.analysis
    return {
        "schema": VERIFY_SCHEMA,
        "root": done.root.top,
        "trees": list(analysis.scan.trees),
        "ok": analysis.ok,
        "objects": len(analysis.scan.objects),
        "scripts": len(analysis.scan.scripts),
        "unresolved": _unresolved(analysis),
        "warnings": list(analysis.warnings),
    }


def verify_summary(done: Scanned) -> str:
    scan, analysis = done.analysis.scan, done.analysis
    return f"{len(scan.objects)} ELF objects and {len(scan.scripts)} scripts checked: " + (
        "all resolve" if analysis.ok else f"{len(analysis.unresolved)} problems"
    )


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    return {"schema": SNAPSHOT_SCHEMA, "root": snap.root.top, "manual": list(snap.manual)}


def dry_run_lines(check: ApplyCheck, purge: bool) -> list[str]:
    """What ``apply --dry-run`` says it would do, and apt-get -s's own purge list."""
    manual = sorted(check.manual)
    lines = [f"Would mark manual ({len(manual)}): " + " ".join(manual),
             f"Would mark auto: the other {check.installed - len(manual)} installed packages"]  # fmt: skip
    verb = "Would purge" if purge else "apt-get purge --auto-remove would then purge"
    lines.append(f"{verb} ({len(check.simulation.purged)}, as apt-get -s prints them):")
    lines += [f"  {name}" for name in check.simulation.purged]
    return lines
