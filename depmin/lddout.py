"""Render load results as ldd's lines, as a tree that explains each step, or as JSON.

The JSON shape is versioned (``schema: "depmin.ldd/1"``) and documented in
README.md; file names are strings in which a byte that is not UTF-8 appears as
the lone surrogate U+DC80+byte (PEP 383), so ``os.fsencode`` restores it exactly.
"""

from __future__ import annotations

from typing import Any, Optional

from depmin.resolve import LoadResult, Outcome, Request, Step

LDD_SCHEMA = "depmin.ldd/1"


def ldd_lines(result: LoadResult) -> list[str]:
    """ldd's own lines without load addresses: ``name => path`` in load order.

    Missing libraries print ``name => not found`` where ld.so's trace puts them;
    the interpreter comes last, as ldd prints it.
    """
    if result.static or not (result.libraries or result.missing or result.failed):
        return ["\tstatically linked"]
    lines: list[str] = []
    missing_seen: set[str] = set()
    interp: Optional[str] = None
    for obj in result.libraries:
        if obj.step is Step.INTERPRETER:
            interp = obj.path
    order: list[tuple[int, Request]] = []
    for req in result.requests:
        if req.outcome is Outcome.FOUND and req.target is not None:
            order.append((0, req))
        elif req.outcome is Outcome.MISSING and req.name not in missing_seen:
            missing_seen.add(req.name)
            order.append((1, req))
        elif req.outcome is Outcome.FAILED:
            order.append((2, req))
    for what, req in order:
        if what == 0:
            assert req.target is not None
            obj = result.objects[req.target]
            lines.append(f"\t{req.name} => {obj.path}")
        elif what == 1:
            lines.append(f"\t{req.name} => not found")
        else:
            lines.append(f"\t{req.name} => {req.path} (load would fail: {req.problem})")
    if interp is not None:
        lines.append(f"\t{interp}")
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

    def walk(idx: int, prefix: str) -> None:
        reqs = by_requester.get(idx, [])
        for n, req in enumerate(reqs):
            last = n == len(reqs) - 1
            branch = "└── " if last else "├── "
            lines.append(prefix + branch + _describe(result, req))
            if req.outcome is Outcome.FOUND and req.target is not None:
                walk(req.target, prefix + ("    " if last else "│   "))

    walk(0, "")
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
