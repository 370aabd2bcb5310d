"""Render load results as ldd's lines, as a tree that explains each step, or as JSON.

The JSON shape is versioned (``schema: "depmin.ldd/1"``) and documented in
README.md; file names are strings in which a byte that is not UTF-8 appears as
the lone surrogate U+DC80+byte (PEP 383), so ``os.fsencode`` restores it exactly.
"""

from __future__ import annotations

from typing import Any

from depmin.loader.resolve import LoadResult, Outcome, Request, Step

LDD_SCHEMA = "depmin.ldd/1"


def ldd_lines(result: LoadResult) -> list[str]:
    """ldd's own lines without load addresses, in ld.so's link-map order.

    That is load order, with a "not found" line for every request that fails
    (ld.so never matches a later request against a missing one), except for
    ld.so itself: rtld.c puts it back after the object before it in the
    breadth-first search list, i.e. after the last object newly loaded before the
    first request it satisfies, so "not found" lines of that stretch follow it.
    Names are printed as ld.so keeps them (DSTs substituted), alone when they
    equal the path.
    """
    if result.static or not (result.libraries or result.missing or result.failed):
        return ["\tstatically linked"]
    interps = {o.index for o in result.libraries if o.step is Step.INTERPRETER}
    lines: list[str] = []
    after_last_new = 0
    interp_at: int | None = None
    for req in result.requests:
        if req.kind == "interpreter":
            continue  # said once, below
        name = req.expanded or req.name
        if req.target in interps and interp_at is None:
            interp_at = after_last_new
        if req.outcome is Outcome.FOUND and req.target is not None:
            path = result.objects[req.target].path
            lines.append(f"\t{path}" if name == path else f"\t{name} => {path}")
            after_last_new = len(lines)
        elif req.outcome is Outcome.MISSING:
            lines.append(f"\t{name} => not found")
        elif req.outcome is Outcome.FAILED:
            lines.append(f"\t{name} => {req.path} (load would fail: {req.problem})")
    for idx in sorted(interps):
        at = len(lines) if interp_at is None else interp_at
        lines.insert(at, f"\t{result.objects[idx].path}")
    for req in result.requests:
        if req.kind == "interpreter":
            lines.append(f"\t{req.name} => interpreter {req.outcome.value}: {req.problem}")
    return lines


def tree_lines(result: LoadResult) -> list[str]:
    """Each object under the object that first loaded it, with the step that found it."""
    by_requester: dict[int, list[Request]] = {}
    for req in result.requests:
        by_requester.setdefault(req.requester, []).append(req)
    main = result.objects[0]
    lines = [f"{main.path} [{result.arch.name if result.arch else '?'}]"]
    if result.static:
        lines.append("└── (statically linked)")
        return lines

    # Depth first with an explicit stack: a chain of thousands of libraries is no recursion.
    stack: list[tuple[list[Request], int, str]] = [(by_requester.get(0, []), 0, "")]
    while stack:
        reqs, n, prefix = stack.pop()
        if n >= len(reqs):
            continue
        stack.append((reqs, n + 1, prefix))
        req = reqs[n]
        last = n == len(reqs) - 1
        lines.append(prefix + ("└── " if last else "├── ") + _describe(result, req))
        if req.outcome is Outcome.FOUND and req.target is not None:
            stack.append((by_requester.get(req.target, []), 0, prefix + ("    " if last else "│   ")))
    return lines


def _describe(result: LoadResult, req: Request) -> str:
    kind = "" if req.kind == "needed" else f" ({req.kind})"
    if req.outcome is Outcome.FOUND and req.target is not None:
        step = req.step.value if req.step else ""
        return f"{req.name}{kind} => {result.objects[req.target].path} [{step}]"
    if req.outcome is Outcome.LOADED and req.target is not None:
        return f"{req.name}{kind} => {result.objects[req.target].path} [already loaded]"
    if req.outcome is Outcome.FAILED:
        return f"{req.name}{kind} => {req.path} [LOAD WOULD FAIL: {req.problem}]"
    if req.outcome is Outcome.REPORTED:  # looked up only: say where, not "not found"
        return f"{req.name}{kind} => {req.path or 'not found'} [reported, not loaded]"
    tried = f"; tried {len(req.tried)} paths" if req.tried else ""
    what = "not found" if req.outcome is Outcome.MISSING else "not found, ignored"
    return f"{req.name}{kind} => {what.upper() if req.outcome is Outcome.MISSING else what}{tried}"


def result_json(result: LoadResult) -> dict[str, Any]:
    return {
        "file": result.main,
        "arch": result.arch.name if result.arch else None,
        "static": result.static,
        "ok": result.ok,
        "objects": [
            {
                "index": o.index,
                "path": o.path,
                "realpath": o.realpath,
                "names": list(o.names),
                "soname": o.soname,
                "loader": o.loader,
                "step": o.step.value,
            }
            for o in result.objects
        ],
        "requests": [
            {
                "requester": r.requester,
                "name": r.name,
                "kind": r.kind,
                "outcome": r.outcome.value,
                "step": r.step.value if r.step else None,
                "target": r.target,
                "path": r.path,
                "problem": r.problem,
                "tried": list(r.tried),
            }
            for r in result.requests
        ],
        "notes": list(result.notes),
    }
