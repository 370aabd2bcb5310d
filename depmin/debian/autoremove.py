"""apt's autoremove as a pure function: given the manual set, what is kept and what is garbage.

``pkgDepCache::MarkAndSweep`` (apt.md §1): mark everything reachable from the
roots (manual packages and the intrinsic roots) over the followed edges, then
every installed package that is unmarked and not ``Priority: required`` is
garbage.  One pass is complete.  Each kept package remembers how it was reached,
so ``depmin why`` can show the chain apt would follow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from depmin.debian.pkggraph import Edge, PackageGraph, Policy, RootReason


@dataclass(frozen=True)
class Marking:
    """The outcome of one mark-and-sweep."""

    kept: dict[str, Edge | None]  # key -> edge it was first reached by (None for a root)
    reasons: dict[str, RootReason]  # root key -> why apt keeps it
    garbage: frozenset[str]

    def chain(self, key: str) -> list[Edge]:
        """Edges from a root down to ``key`` (empty for a root or a garbage package)."""
        out: list[Edge] = []
        seen: set[str] = set()
        edge = self.kept.get(key)
        while edge is not None and edge.source not in seen:
            out.append(edge)
            seen.add(edge.source)
            edge = self.kept.get(edge.source)
        out.reverse()
        return out


def reach(graph: PackageGraph, roots: Iterable[str], policy: Policy) -> dict[str, Edge | None]:
    """Breadth-first closure from ``roots``: each reached key with the edge that reached it."""
    found: dict[str, Edge | None] = {}
    queue: deque[str] = deque()
    for r in roots:
        if r in graph.nodes and r not in found:
            found[r] = None
            queue.append(r)
    while queue:
        key = queue.popleft()
        for edge in graph.out_edges(key, policy):
            if edge.target not in found:
                found[edge.target] = edge
                queue.append(edge.target)
    return found


def mark_and_sweep(graph: PackageGraph, manual: Iterable[str], policy: Policy) -> Marking:
    """apt's verdict for a manual set (node keys)."""
    reasons = {k: RootReason.MANUAL for k in manual if k in graph.nodes}
    for k, why in graph.intrinsic_roots(policy).items():
        reasons.setdefault(k, why)
    kept = reach(graph, reasons, policy)
    garbage = frozenset(
        k for k, n in graph.nodes.items() if k not in kept and n.priority != "required"
    )
    return Marking(kept, reasons, garbage)
