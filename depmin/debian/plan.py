"""The minimal ``apt-mark manual`` list, and what ``apt-get purge --auto-remove`` will then do.

apt.md §7: Kept(M) = Reach(R0 ∪ M) ∪ {Priority: required} is union-distributive,
so Reach(R0 ∪ B ∪ T) is the unique smallest kept set that keeps every required
package T on top of the baseline B, and the fewest marks that reach it are: the
targets not already kept by the roots or the baseline, minus those reachable
from another target, one per cycle.  That is the source components of the
condensation of the followed edges restricted to H = Reach(T') \\ Kept(B).
(Minimising |M| without fixing the kept set would be set cover, and would keep
extra packages such as a metapackage; depmin never does that.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from depmin.debian.autoremove import Marking, mark_and_sweep, reach
from depmin.debian.pkggraph import Edge, PackageGraph, Policy, RootReason
from depmin.words import Word


class KeptBy(Word):
    """What keeps a needed package through the purge (``kept_by`` in the JSON documents)."""

    KEEP_LIST = "keep-list"  # depmin marks it manual
    BASELINE = "baseline"  # manual before the build, or reached from a baseline package
    DEPENDENCY = "dependency"  # reached from a package of the keep list
    PURGED = "purged"  # nothing keeps it: apt would purge it
    ESSENTIAL = RootReason.ESSENTIAL.value  # or reached from one of apt's own roots
    IMPORTANT = RootReason.IMPORTANT.value
    REQUIRED = RootReason.REQUIRED.value
    NEVER_AUTOREMOVE = RootReason.NEVER_AUTOREMOVE.value
    HOLD = RootReason.HOLD.value


@dataclass(frozen=True)
class KeepReason:
    """Why a required package survives the purge."""

    package: str  # node key
    how: KeptBy
    chain: tuple[Edge, ...]  # from the root that keeps it down to the package


@dataclass(frozen=True)
class Plan:
    required: tuple[str, ...]  # node keys of packages the trees need
    baseline: tuple[str, ...]  # node keys kept manual from before the build
    keep: tuple[str, ...]  # the minimal list (node keys), sorted
    marking: Marking  # apt's verdict with baseline + keep manual
    reasons: tuple[KeepReason, ...]  # one per required package
    purged: tuple[str, ...]  # node keys apt would purge, sorted
    freed_kib: int  # Installed-Size of the purged packages
    unknown: tuple[str, ...]  # names given (baseline, --keep) that are not installed
    policy: Policy

    @property
    def kept(self) -> frozenset[str]:
        return frozenset(self.marking.kept)


def minimal_keep(
    graph: PackageGraph, required: Iterable[str], baseline: Iterable[str], policy: Policy
) -> tuple[str, ...]:
    """The fewest targets to mark manual so that apt keeps every required package."""
    base = set(baseline)
    roots = set(graph.intrinsic_roots(policy)) | base
    kept_base = set(reach(graph, roots, policy))
    kept_base |= {k for k, n in graph.nodes.items() if n.priority == "required"}
    targets = {t for t in required if t in graph.nodes and t not in kept_base}
    if not targets:
        return ()
    hull = set(reach(graph, targets, policy)) - kept_base
    succ = {
        key: sorted({e.target for e in graph.out_edges(key, policy) if e.target in hull and e.target != key})
        for key in hull
    }
    keep: list[str] = []
    for members in source_components(succ):
        # Every source component holds a target; prefer one, then the smallest name.
        keep.append(min(members, key=lambda k: (k not in targets, k)))
    return tuple(sorted(keep))


def source_components(succ: dict[str, list[str]]) -> list[frozenset[str]]:
    """Strongly connected components that no edge from another component enters.

    The sources of the condensation, found with Tarjan's algorithm run iteratively
    (a chain of thousands of packages is no recursion), in a stable order.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    comp_of: dict[str, int] = {}
    comps: list[list[str]] = []
    stack: list[str] = []
    on_stack: set[str] = set()
    for start in sorted(succ):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            nxt = succ[node]
            while i < len(nxt) and nxt[i] in index:
                if nxt[i] in on_stack:
                    low[node] = min(low[node], index[nxt[i]])
                i += 1
            if i < len(nxt):
                work.append((node, i + 1))
                work.append((nxt[i], 0))
                continue
            if low[node] == index[node]:
                members = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp_of[m] = len(comps)
                    members.append(m)
                    if m == node:
                        break
                comps.append(members)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    entered = {comp_of[b] for a, bs in succ.items() for b in bs if comp_of[a] != comp_of[b]}
    return [frozenset(c) for i, c in enumerate(comps) if i not in entered]


def make_plan(
    graph: PackageGraph,
    required: Iterable[str],
    baseline_names: Iterable[str],
    policy: Policy,
    extra_keep: Iterable[str] = (),
) -> Plan:
    """``required`` are package names or keys (the owners of needed files); baseline names are
    what ``apt-mark showmanual`` printed; ``extra_keep`` are --keep names."""
    baseline, unknown = required_keys(graph, baseline_names)
    extra, unknown_extra = required_keys(graph, extra_keep)
    req, _ = required_keys(graph, required)  # owners only in config-files state are not installed
    req += [k for k in extra if k not in req]
    unknown += unknown_extra
    keep = minimal_keep(graph, req, baseline, policy)
    marking = mark_and_sweep(graph, list(baseline) + list(keep), policy)
    reasons = []
    keep_set, base_set = set(keep), set(baseline)
    for key in sorted(set(req)):
        chain = tuple(marking.chain(key))
        top = chain[0].source if chain else key
        if key in keep_set:
            how = KeptBy.KEEP_LIST
        elif not chain and key in base_set:
            how = KeptBy.BASELINE
        elif top in keep_set and chain:
            how = KeptBy.DEPENDENCY
        elif top in base_set:
            how = KeptBy.BASELINE
        elif top in marking.reasons:
            how = KeptBy(marking.reasons[top].value)
        else:  # kept only as Priority: required, or not at all
            how = KeptBy.REQUIRED if key in marking.kept else KeptBy.PURGED
        reasons.append(KeepReason(key, how, chain))
    purged = tuple(sorted(marking.garbage))
    freed = sum(graph.nodes[k].installed_size for k in purged)
    return Plan(
        tuple(sorted(set(req))),
        tuple(baseline),
        keep,
        marking,
        tuple(reasons),
        purged,
        freed,
        tuple(unknown),
        policy,
    )


def required_keys(graph: PackageGraph, owner_names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Node keys for package names (bare, name:arch, or dpkg's), in order without repeats,
    and the names that are not installed packages."""
    keys: list[str] = []
    missing: list[str] = []
    for name in owner_names:
        key: str | None = graph.lookup(name)
        if key is None:
            missing.append(name)
        elif key not in keys:
            keys.append(key)
    return keys, missing
