"""What the scanned trees need at run time: every object resolved in the context it loads in.

Per-file ldd examines each library alone, so a bundled library that is found
only through the RPATH of the modules that load it (scipy's libgfortran) looks
"not found".  Here every scanned object is first loaded as its own root
(programs as programs, shared objects as ``dlopen`` would open them); an object
that another scanned object's load pulls in is then dropped as a root, because
the process that uses it resolves it in that context.  The needs of the
remaining roots are the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from depmin.elf import ElfFile
from depmin.errors import DepminError
from depmin.resolve import LoadResult, Outcome, Resolver, Step
from depmin.scan import ScanResult


@dataclass(frozen=True)
class NeededLibrary:
    """A file some scanned program loads, with the programs that load it."""

    path: str  # as ld.so opened it (root-relative)
    realpath: str  # canonical (root-relative)
    names: tuple[str, ...]  # names it was requested by, SONAME included
    needed_by: tuple[str, ...]  # scanned root objects whose load includes it
    in_trees: bool  # provided by the scanned trees, not by a package
    interpreter: bool = False


@dataclass(frozen=True)
class Unresolved:
    """A request that fails in the context of a root: missing or would fail to load."""

    file: str  # the scanned root object whose load fails
    requester: str  # the object whose DT_NEEDED names the library
    name: str
    outcome: Outcome  # MISSING or FAILED
    problem: Optional[str]
    tried: tuple[str, ...]
    path: Optional[str]  # the failing candidate (FAILED)


@dataclass(frozen=True)
class Analysis:
    scan: ScanResult
    roots: tuple[LoadResult, ...]  # loads of objects nothing else in the trees loads
    inner: tuple[str, ...]  # scanned objects loaded as part of another object's load
    libraries: tuple[NeededLibrary, ...]
    unresolved: tuple[Unresolved, ...]
    errors: tuple[str, ...]  # scanned objects that could not be loaded at all

    @property
    def ok(self) -> bool:
        return not self.unresolved


def _as_dlopen(elf: ElfFile) -> bool:
    """Shared objects without an interpreter are opened by path (modules, plugins)."""
    return elf.interp is None and elf.type == 3


def analyse(scan: ScanResult, resolver: Resolver) -> Analysis:
    """Resolve every scanned object in its load context (see the module docstring)."""
    loads: dict[str, LoadResult] = {}
    errors: list[str] = []
    for elf in scan.objects:
        try:
            loads[elf.path] = resolver.load(elf.path, dlopen=_as_dlopen(elf))
        except DepminError as exc:
            errors.append(str(exc))
    real_of = {path: res.objects[0].realpath for path, res in loads.items()}
    by_real = {real: path for path, real in real_of.items()}
    # contains[x] = scanned objects (by path) that the load of x pulls in.
    contains: dict[str, set[str]] = {}
    for path, res in loads.items():
        inner = {by_real[o.realpath] for o in res.objects[1:] if o.realpath in by_real}
        inner.discard(path)
        contains[path] = inner
    nonroots: set[str] = set()
    for x, inner in contains.items():
        for y in inner:
            if x not in contains.get(y, ()):  # mutual loads (a cycle) keep both as roots
                nonroots.add(y)
    roots = tuple(res for path, res in loads.items() if path not in nonroots)

    path_of: dict[str, str] = {}
    names_of: dict[str, list[str]] = {}
    users_of: dict[str, list[str]] = {}
    interps: set[str] = set()
    unresolved: list[Unresolved] = []
    for res in roots:
        for obj in res.runtime_files:
            real = obj.realpath
            path_of.setdefault(real, obj.path)
            names = names_of.setdefault(real, [])
            names.extend(n for n in obj.names if n not in names)
            users = users_of.setdefault(real, [])
            if res.main not in users:
                users.append(res.main)
            if obj.step is Step.INTERPRETER:
                interps.add(real)
        for req in res.requests:
            if req.outcome in (Outcome.MISSING, Outcome.FAILED):
                unresolved.append(
                    Unresolved(
                        res.main,
                        res.objects[req.requester].path,
                        req.name,
                        req.outcome,
                        req.problem,
                        req.tried,
                        req.path,
                    )
                )
    libraries = tuple(
        NeededLibrary(
            path_of[real],
            real,
            tuple(names_of[real]),
            tuple(users_of[real]),
            scan.in_trees(real),
            real in interps,
        )
        for real in sorted(path_of)
    )
    return Analysis(
        scan, roots, tuple(sorted(nonroots)), libraries, tuple(unresolved), tuple(errors)
    )
