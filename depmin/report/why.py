"""``depmin why TARGET``: the chain that needs or keeps a package, library or file, or why it goes.

Every statement is derived from the same plan the other commands print: the
files that need a library (from the resolver), the package that owns it (from
the dpkg database), and the edges apt follows from a root to it (from the
autoremove model).  For a package that would be purged, the relations that
*would* have kept it are listed with the apt option that turns them off.
"""

from __future__ import annotations

import os
from types import MappingProxyType

from depmin.api import PlanRun
from depmin.debian.pkggraph import PackageGraph
from depmin.debian.plan import Plan
from depmin.errors import DepminError
from depmin.loader.needs import Analysis, NeededLibrary
from depmin.owners import Requirements
from depmin.report.documents import chain_text
from depmin.report.ldd import tree_lines

_MAX = 5


def _more(items: list[str] | tuple[str, ...]) -> str:
    return f" (+{len(items) - _MAX} more)" if len(items) > _MAX else ""


def explain_run(target: str, run: PlanRun) -> list[str]:
    """``depmin why``: the explanation, then the run's warnings that name the target."""
    lines = explain(target, run.analysis, run.requirements, run.graph, run.plan)
    lines += [f"  warning: {w}" for w in run.warnings if target in w]
    return lines


def explain(target: str, analysis: Analysis, req: Requirements, graph: PackageGraph, plan: Plan) -> list[str]:
    key = graph.lookup(target)
    if key is not None:
        return explain_package(key, analysis, req, graph, plan)
    libs = [
        lib
        for lib in analysis.libraries
        if target in lib.names or target in (lib.path, lib.realpath) or os.path.basename(lib.path) == target
    ]
    if libs:
        lines: list[str] = []
        for lib in libs:
            lines += explain_library(lib, analysis, req, graph, plan)
        return lines
    path = target if target.startswith("/") else os.path.abspath(target)
    for res in analysis.roots:
        if res.main == path:
            return [f"{path} is scanned and loaded as its own program or module:"] + tree_lines(res)
    for res in analysis.roots:
        for obj in res.objects[1:]:
            if path in (obj.path, obj.realpath):
                return [f"{path} is loaded by {res.main}:"] + tree_lines(res)
    raise DepminError(f"{target}: not an installed package, a needed library or a scanned file")


def explain_library(
    lib: NeededLibrary, analysis: Analysis, req: Requirements, graph: PackageGraph, plan: Plan
) -> list[str]:
    names = ", ".join(lib.names)
    lines = [f"{lib.path} ({names})"]
    step = _first_step(lib, analysis)
    if step:
        lines.append(f"  found by ld.so's {step} step")
    how = _how(lib, analysis)
    if how:
        lines.append(f"  not in any DT_NEEDED: {how}")
    users = list(lib.needed_by)
    lines.append(f"  needed by {len(users)} scanned file(s): " + ", ".join(users[:_MAX]) + _more(users))
    if lib.in_trees:
        lines.append("  provided by the scanned trees (no package needed)")
        return lines
    owners = [p.package for p in req.packages if lib.path in p.libraries]
    if not owners:
        lines.append("  owned by no installed package (warning)")
    for owner in owners:
        key = graph.lookup(owner)
        lines.append(f"  owned by {owner}")
        if key is not None:
            lines += ["  " + line for line in _fate(key, graph, plan)]
    return lines


#: How a needed file that no DT_NEEDED names came in; ``{who}`` is the object that asks for it.
_HOW = MappingProxyType(
    {
        "dlopen-required": "dlopened through a required .note.dlopen entry of {who}",
        "dlopen-recommended": "dlopened through a recommended .note.dlopen entry of {who}",
        "glibc-dlopen": "dlopened by {who} itself (pthread_exit, unwinding)",
        "nss": "dlopened by {who} for a service of /etc/nsswitch.conf",
        "hint": "declared in the hints file for {who}",
    }
)


def _how(lib: NeededLibrary, analysis: Analysis) -> str | None:
    """Why a run-time load counts although ldd cannot see it (the note, libc, a hint)."""
    text = _HOW.get(lib.how)
    if text is None:
        return None
    for res in analysis.roots:
        for r in res.requests:
            hit = r.target is not None and res.objects[r.target].realpath == lib.realpath
            if hit and r.kind == lib.how:
                return text.format(who=res.objects[r.requester].path)
    return text.format(who=lib.needed_by[0] if lib.needed_by else "a scanned file")


def _first_step(lib: NeededLibrary, analysis: Analysis) -> str | None:
    for res in analysis.roots:
        for req in res.requests:
            hit = req.target is not None and res.objects[req.target].realpath == lib.realpath
            if hit and req.step is not None and req.step.value != "already_loaded":
                return req.step.value
    return None


def explain_package(
    key: str, analysis: Analysis, req: Requirements, graph: PackageGraph, plan: Plan
) -> list[str]:
    node = graph.nodes[key]
    name = graph.display_name(key)
    lines = [f"{name} {node.version}"]
    need = next((p for p in req.packages if graph.lookup(p.package) == key), None)
    if need is not None:
        libs = list(need.libraries)
        lines.append("  needed: it owns " + ", ".join(libs[:_MAX]) + _more(libs))
        files = list(need.files)
        lines.append("  which are loaded by " + ", ".join(files[:_MAX]) + _more(files))
        for lib in analysis.libraries:
            how = _how(lib, analysis) if lib.path in need.libraries else None
            if how:
                lines.append(f"  {lib.path} is in no DT_NEEDED: {how}")
    elif any(graph.lookup(p) == key for p, _f in analysis.hinted_packages):
        hinted = next(f for p, f in analysis.hinted_packages if graph.lookup(p) == key)
        lines.append(f"  needed: a hints file asks for it (for {hinted})")
    elif key in plan.required:
        lines.append("  needed: kept on request (--keep)")
    else:
        lines.append("  not needed by any scanned file")
    lines += _fate(key, graph, plan)
    return lines


def _fate(key: str, graph: PackageGraph, plan: Plan) -> list[str]:
    """Kept (and by what chain) or purged (and which relations were not followed)."""
    marking = plan.marking
    if key in plan.keep:
        return ["  kept: depmin marks it manual (no other kept package reaches it)"]
    if key in marking.kept:
        chain = marking.chain(key)
        top = chain[0].source if chain else key
        reason = marking.reasons.get(top, "")
        if top in plan.keep:
            origin = "marked manual by depmin"
        elif top in plan.baseline:
            origin = "in the baseline (manual before the build)"
        else:
            origin = f"a root apt always keeps ({reason})"
        if not chain:
            return [f"  kept: {origin}"]
        return [f"  kept: {graph.display_name(top)} is {origin}", f"    {chain_text(chain, graph)}"]
    if key not in marking.garbage:
        return ["  kept: Priority required (apt never purges it)"]
    lines = ["  WOULD BE PURGED: no kept package reaches it through the relations apt follows"]
    for e in graph.in_edges(key):
        if e.source in marking.kept and not plan.policy.follows(e.kind):
            opt = plan.policy.config_key(e.kind)
            lines.append(f"    {graph.display_name(e.source)} {e.kind} {e.relation}, but {opt} is false")
    return lines
