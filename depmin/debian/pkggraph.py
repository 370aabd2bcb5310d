"""The installed packages as apt's autoremove sees them: nodes, followed edges, intrinsic roots.

Built from the dpkg database (plus what the package lists say, apt.md §5).  The
edge rules are apt's ``MarkPackage`` (apt.md §3–§4): each alternative of an OR
group is its own record and every installed package satisfying any alternative
is followed; candidates are the target's installed version and every installed
provider, a versioned relation is satisfied only by a real version or a
versioned Provides; Multi-Arch decides which architecture satisfies what; among
candidates of one record only the highest source version of each source
package is followed.  The result is plain data; nothing here knows about marks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from depmin.debian.archive import ArchiveIndex
from depmin.debian.deb822 import Relation
from depmin.debian.debversion import check_relation, compare_versions
from depmin.debian.dpkg import DpkgDatabase, Package
from depmin.errors import ConfigError, DpkgError
from depmin.words import Word

DEPENDS, PRE_DEPENDS, RECOMMENDS, SUGGESTS = "Depends", "Pre-Depends", "Recommends", "Suggests"


class RootReason(Word):
    """Why apt keeps a package whatever else is kept: ``Debug::pkgAutoRemove``'s words."""

    MANUAL = "Manual-Installed"
    ESSENTIAL = "Essential"
    IMPORTANT = "Important"
    REQUIRED = "Required"
    NEVER_AUTOREMOVE = "Blacklisted [APT::NeverAutoRemove]"
    HOLD = "Hold"
KINDS = (PRE_DEPENDS, DEPENDS, RECOMMENDS, SUGGESTS)


@dataclass(frozen=True)
class PkgNode:
    """An installed package with the attributes autoremove looks at (apt's view)."""

    key: str  # name:arch
    name: str
    arch: str
    version: str
    apt_name: str  # what apt-mark accepts: name, or name:arch for Multi-Arch: same
    source: str
    source_version: str
    multi_arch: str
    priority: str | None
    essential: bool
    important: bool
    hold: bool
    section: str | None
    installed_size: int  # KiB, 0 when unknown


@dataclass(frozen=True)
class Edge:
    """``source`` has a ``kind`` relation (one alternative, as written) satisfied by ``target``."""

    source: str
    target: str
    kind: str
    relation: str


@dataclass(frozen=True)
class Policy:
    """The apt configuration that decides roots and followed edges (apt.md §2, §3, §7)."""

    recommends_important: bool = True
    suggests_important: bool = True
    never_autoremove: tuple[str, ...] = ()
    ignore_hold: bool = False

    def follows(self, kind: str) -> bool:
        if kind in (DEPENDS, PRE_DEPENDS):
            return True
        if kind == RECOMMENDS:
            return self.recommends_important
        return kind == SUGGESTS and self.suggests_important

    def config_key(self, kind: str) -> str | None:
        """The apt option responsible for (not) following an edge of this kind."""
        return {
            RECOMMENDS: "APT::AutoRemove::RecommendsImportant",
            SUGGESTS: "APT::AutoRemove::SuggestsImportant",
        }.get(kind)


@dataclass(frozen=True)
class PackageGraph:
    nodes: dict[str, PkgNode]
    edges: dict[str, tuple[Edge, ...]] = field(repr=False)  # by source key, every kind
    native_arch: str = ""
    by_apt_name: dict[str, str] = field(default_factory=dict, repr=False)
    name_count: dict[str, int] = field(default_factory=dict, repr=False)
    warnings: tuple[str, ...] = ()  # relations that could not be evaluated
    _roots: dict[tuple[tuple[str, ...], bool], dict[str, RootReason]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def display_name(self, key: str) -> str:
        """Bare name unless another architecture of it is installed (qualify only where needed)."""
        node = self.nodes[key]
        if self.name_count.get(node.name, 1) == 1:
            return node.name
        return f"{node.name}:{self.native_arch if node.arch == 'all' else node.arch}"

    def out_edges(self, key: str, policy: Policy) -> Iterable[Edge]:
        return (e for e in self.edges.get(key, ()) if policy.follows(e.kind))

    def in_edges(self, key: str) -> list[Edge]:
        return [e for es in self.edges.values() for e in es if e.target == key]

    def intrinsic_roots(self, policy: Policy) -> Mapping[str, RootReason]:
        """Roots other than manual marks, with apt's ``Debug::pkgAutoRemove`` reason.

        Kept per policy: a plan and its caveats ask for them a few dozen times.
        """
        key = (policy.never_autoremove, policy.ignore_hold)
        cached = self._roots.get(key)
        if cached is not None:
            return MappingProxyType(cached)
        patterns = [posix_regex(p) for p in policy.never_autoremove]
        roots: dict[str, RootReason] = {}
        for k, n in self.nodes.items():
            if n.essential:
                roots[k] = RootReason.ESSENTIAL
            elif n.important:
                roots[k] = RootReason.IMPORTANT
            elif n.priority == "required":
                roots[k] = RootReason.REQUIRED
            elif any(p.search(n.name) for p in patterns):
                roots[k] = RootReason.NEVER_AUTOREMOVE
            elif n.hold and not policy.ignore_hold:
                roots[k] = RootReason.HOLD
        self._roots[key] = roots
        return MappingProxyType(roots)

    def lookup(self, name: str) -> str | None:
        """A node key for ``name``, ``name:arch`` or a key; None if not installed."""
        if name in self.nodes:
            return name
        if name in self.by_apt_name:
            return self.by_apt_name[name]
        native = f"{name}:{self.native_arch}"
        if native in self.nodes:
            return native
        matches = [k for k, n in self.nodes.items() if n.name == name]
        return matches[0] if len(matches) == 1 else None


def _apt_view(pkg: Package, archive: ArchiveIndex | None) -> tuple[str | None, bool, bool]:
    """Priority, Essential and Important as apt's cache has them (apt.md §5)."""
    priority = pkg.priority
    essential: bool | None = None
    important: bool | None = None
    found_version = False
    if archive is not None:
        for rec in archive.for_package(pkg.name, pkg.arch):
            if rec.essential is not None:
                essential = rec.essential
            imp = rec.important if rec.important is not None else None
            if rec.protected is not None:
                imp = rec.protected or bool(imp)
            if imp is not None:
                important = imp
            if not found_version and rec.version == pkg.version and rec.arch in (pkg.arch, "all"):
                found_version = True
                priority = rec.priority or priority
    # The status file is parsed last: its fields override, absent fields leave the flag.
    essential = pkg.essential or (essential if essential is not None else False)
    important = pkg.important or pkg.protected or (important if important is not None else False)
    if pkg.name == "apt":  # pkgCacheGen::ForceEssential / ForceImportant
        essential = important = True
    return priority, essential, important


def build_package_graph(db: DpkgDatabase, archive: ArchiveIndex | None = None) -> PackageGraph:
    installed = [p for p in db.installed_packages()]
    native = db.native_arch or (installed[0].arch if installed else "")
    nodes: dict[str, PkgNode] = {}
    for p in installed:
        priority, essential, important = _apt_view(p, archive)
        nodes[p.key] = PkgNode(
            p.key,
            p.name,
            p.arch,
            p.version,
            p.binary_package,
            p.source or p.name,
            p.source_version or p.version,
            p.multi_arch,
            priority,
            essential,
            important,
            p.status.want == "hold",
            p.section,
            p.installed_size or 0,
        )
    by_name: dict[str, list[Package]] = {}
    providers: dict[str, list[tuple[Package, Relation]]] = {}
    for p in installed:
        by_name.setdefault(p.name, []).append(p)
        for group in p.provides:
            for prov in group:
                providers.setdefault(prov.name, []).append((p, prov))
    resolver = _Candidates(native, by_name, providers)
    edges: dict[str, tuple[Edge, ...]] = {}
    warnings: list[str] = []
    for p in installed:
        out: list[Edge] = []
        for kind, relations in (
            (PRE_DEPENDS, p.pre_depends),
            (DEPENDS, p.depends),
            (RECOMMENDS, p.recommends),
            (SUGGESTS, p.suggests),
        ):
            for group in relations:
                for alt in group:
                    try:
                        targets = resolver.candidates(alt, p)
                    except DpkgError as exc:  # a version dpkg itself would reject
                        warnings.append(f"{p.key}: {kind}: {alt}: {exc.problem} (not followed)")
                        continue
                    out.extend(Edge(p.key, t.key, kind, str(alt)) for t in targets)
        edges[p.key] = tuple(out)
    by_apt = {n.apt_name: k for k, n in nodes.items()}
    counts: dict[str, int] = {}
    for n in nodes.values():
        counts[n.name] = counts.get(n.name, 0) + 1
    return PackageGraph(nodes, edges, native, by_apt, counts, tuple(warnings))


def with_archive(graph: PackageGraph, db: DpkgDatabase, archive: ArchiveIndex) -> PackageGraph:
    """``build_package_graph(db, archive)``, from the graph built without the lists.

    The lists change only apt's view of each package (Priority, Essential,
    Important); the relations come from the status file alone.  So the graph can be
    built while the lists are still being read, and finished here.
    """
    nodes = dict(graph.nodes)
    for p in db.installed_packages():
        view = _apt_view(p, archive)
        n = nodes[p.key]
        if (n.priority, n.essential, n.important) != view:
            nodes[p.key] = replace(n, priority=view[0], essential=view[1], important=view[2])
    return PackageGraph(nodes, graph.edges, graph.native_arch, graph.by_apt_name, graph.name_count,
                        graph.warnings)  # fmt: skip


@dataclass(frozen=True)
class _Candidates:
    native: str
    by_name: dict[str, list[Package]]
    providers: dict[str, list[tuple[Package, Relation]]]

    def _arch(self, arch: str) -> str:
        return self.native if arch in ("all", "") else arch

    def _arch_ok(self, pkg: Package, rel_arch: str | None, dep_arch: str, via_any: bool) -> bool:
        """dpkg's deparchsatisfied, shared by real packages and (with MA rules) providers."""
        if pkg.multi_arch == "foreign":
            return True
        if rel_arch == "any":
            return via_any
        want = dep_arch if rel_arch is None else (self.native if rel_arch == "native" else rel_arch)
        return self._arch(pkg.arch) == self._arch(want)

    def candidates(self, rel: Relation, depender: Package) -> list[Package]:
        dep_arch = self._arch(depender.arch)
        found: list[Package] = []
        for pkg in self.by_name.get(rel.name, ()):
            if not self._arch_ok(pkg, rel.arch, dep_arch, pkg.multi_arch == "allowed"):
                continue
            if rel.op is None or check_relation(pkg.version, rel.op, rel.version or ""):
                found.append(pkg)
        for pkg, prov in self.providers.get(rel.name, ()):
            if prov.arch not in (None, "any") and self._arch(prov.arch) != dep_arch:
                continue
            if not self._arch_ok(pkg, rel.arch, dep_arch, pkg.multi_arch == "allowed"):
                continue
            if rel.op is not None and not (
                prov.op == "="
                and prov.version
                and check_relation(prov.version, rel.op, rel.version or "")
            ):
                continue  # an unversioned Provides never satisfies a versioned relation
            if pkg not in found:
                found.append(pkg)
        return _highest_source(found)


_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "space": r" \t\n\r\f\v", "blank": r" \t", "punct": r"!-/:-@\[-`{-~", "xdigit": "0-9A-Fa-f",
    "cntrl": r"\x00-\x1f\x7f", "print": r"\x20-\x7e", "graph": r"\x21-\x7e",
}  # fmt: skip


def posix_regex(pattern: str) -> re.Pattern[str]:
    """Compile an apt regex (POSIX ERE, REG_ICASE) with Python's engine.

    apt uses regcomp(3): bracket classes such as ``[[:alpha:]]`` are translated,
    since Python reads them as plain sets; a pattern Python cannot compile is a
    ConfigError naming it, not a traceback.
    """
    translated = re.sub(r"\[:([a-z]+):\]", lambda m: _POSIX_CLASSES.get(m.group(1), m.group(0)), pattern)
    try:
        return re.compile(translated, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"APT::NeverAutoRemove entry {pattern!r} is not a valid regex: {exc}") from None


def _highest_source(cands: list[Package]) -> list[Package]:
    """apt ≥ 1.3: per source package, follow only candidates of the highest source version."""
    if len(cands) < 2:
        return cands
    best: dict[str, str] = {}
    for c in cands:
        src, ver = c.source or c.name, c.source_version or c.version
        if src not in best or compare_versions(ver, best[src]) > 0:
            best[src] = ver
    return [
        c
        for c in cands
        if compare_versions(c.source_version or c.version, best[c.source or c.name]) == 0
    ]
