"""What the scanned trees need at run time: every object resolved in the context it loads in.

Per-file ldd examines each library alone, so a bundled library that is found
only through the RPATH of the modules that load it (scipy's libgfortran) looks
"not found".  Here every scanned object is first loaded as its own root
(programs as programs, shared objects as ``dlopen`` would open them); an object
that another scanned object's load pulls in is then dropped as a root, because
the process that uses it resolves it in that context.  The needs of the
remaining roots are the answer, plus what DT_NEEDED cannot show: the
interpreters of scripts (``#!``, ``/usr/bin/env NAME`` looked up on the
image's PATH), the loads the resolver adds from ``.note.dlopen`` and glibc's
own dlopens, and the hints a user declares for ctypes-style loads.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from depmin import forked
from depmin.errors import DepminError, ElfError, RootError
from depmin.loader.elf import ElfFile
from depmin.loader.hints import Hint
from depmin.loader.ldconf import read_ld_so_conf
from depmin.loader.resolve import DLOPEN_KINDS, LoadResult, Outcome, RequestKind, Resolver, Step
from depmin.loader.scan import ScanResult, Script
from depmin.loader.wire import PackedLoads, pack_loads, unpack_loads

#: Docker's default PATH, where ``/usr/bin/env NAME`` looks in an image.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Which request kind explains a needed file best: a plain DT_NEEDED, then an interpreter.
_RANK = {RequestKind.NEEDED: 0, RequestKind.INTERPRETER: 1}

#: Kinds counted as a plain DT_NEEDED in a needed file's ``how``.
_AS_NEEDED = frozenset({RequestKind.AUXILIARY, RequestKind.FILTER, RequestKind.PRELOAD})

#: NSS services Debian's nsswitch.conf template names although no package ships them.
QUIET_NSS = frozenset({"libnss_db.so.2", "libnss_nis.so.2"})


@dataclass(frozen=True)
class NeededLibrary:
    """A file some scanned program needs at run time, with the programs that need it."""

    path: str  # as ld.so (or the kernel) opened it (root-relative)
    realpath: str  # canonical (root-relative)
    names: tuple[str, ...]  # names it was requested by, SONAME included
    needed_by: tuple[str, ...]  # scanned files (root objects, scripts) that need it
    in_trees: bool  # provided by the scanned trees, not by a package
    interpreter: bool = False  # PT_INTERP or a script's interpreter
    how: RequestKind = RequestKind.NEEDED  # what first asked for it


@dataclass(frozen=True)
class Unresolved:
    """A request that fails in the context of a root: missing or would fail to load."""

    file: str  # the scanned file whose load fails
    requester: str  # the object whose DT_NEEDED (or note, or #!) names it
    name: str
    outcome: Outcome  # MISSING or FAILED
    problem: str | None
    tried: tuple[str, ...]
    path: str | None  # the failing candidate (FAILED)
    kind: RequestKind = RequestKind.NEEDED
    note: str | None = None  # a likely cause, e.g. a stale ld.so.cache


@dataclass(frozen=True)
class Analysis:
    scan: ScanResult
    roots: tuple[LoadResult, ...]  # loads of objects nothing else in the trees loads
    inner: tuple[str, ...]  # scanned objects loaded as part of another object's load
    libraries: tuple[NeededLibrary, ...]
    unresolved: tuple[Unresolved, ...]
    errors: tuple[str, ...]  # scanned objects that could not be loaded at all
    warnings: tuple[str, ...] = ()  # optional dlopens missing, malformed notes
    suggested: tuple[tuple[str, str, str | None], ...] = ()  # (file, names, path found)
    hinted_packages: tuple[tuple[str, str], ...] = ()  # (package, file) from hints

    @property
    def ok(self) -> bool:
        return not self.unresolved


def _as_dlopen(elf: ElfFile) -> bool:
    """Shared objects without an interpreter are opened by path (modules, plugins)."""
    return elf.interp is None and elf.type == 3


class _Collector:
    """Accumulates needed files by canonical path, keeping first-seen order of users."""

    def __init__(self, scan: ScanResult) -> None:
        self.scan = scan
        self.path_of: dict[str, str] = {}
        self.names_of: dict[str, list[str]] = {}
        self.users_of: dict[str, dict[str, None]] = {}  # an ordered set: libc has thousands
        self.how_of: dict[str, RequestKind] = {}
        self.interps: set[str] = set()
        self.unresolved: list[Unresolved] = []
        self.warnings: list[str] = []
        self.suggested: list[tuple[str, str, str | None]] = []
        self.packages: list[tuple[str, str]] = []

    def add(self, path: str, real: str, names: Sequence[str], user: str, how: RequestKind) -> None:
        self.path_of.setdefault(real, path)
        known = self.names_of.setdefault(real, [])
        known.extend(n for n in names if n not in known)
        self.users_of.setdefault(real, {})[user] = None
        if how is RequestKind.INTERPRETER:
            self.interps.add(real)
        current = self.how_of.get(real)
        if current is None or _RANK.get(how, 2) < _RANK.get(current, 2):
            self.how_of[real] = how

    def add_load(self, res: LoadResult, user: str) -> None:
        # One pass over the requests (a big tree has thousands of roots, each with tens).
        kind_of: dict[int, RequestKind] = {}
        for req in res.requests:
            outcome = req.outcome
            if outcome is Outcome.FOUND:
                if req.target is not None:
                    kind_of.setdefault(req.target, req.kind)
            elif outcome is Outcome.LOADED:
                continue
            elif outcome is Outcome.MISSING or outcome is Outcome.FAILED:
                self.unresolved.append(
                    Unresolved(user, res.objects[req.requester].path, req.name, outcome, req.problem,
                               req.tried, req.path, req.kind)
                )  # fmt: skip
            elif outcome is Outcome.IGNORED and req.kind in DLOPEN_KINDS:
                if not (req.kind is RequestKind.NSS and req.name in QUIET_NSS):
                    requester = res.objects[req.requester].path
                    self.warnings.append(
                        f"{user}: {requester} may dlopen {req.name} ({req.kind}), not found"
                    )
            elif outcome is Outcome.REPORTED:
                self.suggested.append((user, req.name, req.path))
        for obj in res.runtime_files:
            how = (
                RequestKind.INTERPRETER
                if obj.step is Step.INTERPRETER
                else kind_of.get(obj.index, RequestKind.NEEDED)
            )
            if how in _AS_NEEDED:
                how = RequestKind.NEEDED
            self.add(obj.path, obj.realpath, obj.names, user, how)
        self.warnings.extend(f"{user}: {n}" for n in res.notes if "dlopen" in n)

    def libraries(self) -> tuple[NeededLibrary, ...]:
        return tuple(
            NeededLibrary(
                self.path_of[real],
                real,
                tuple(self.names_of[real]),
                tuple(self.users_of[real]),
                self.scan.in_trees(real),
                real in self.interps,
                self.how_of.get(real, RequestKind.NEEDED),
            )
            for real in sorted(self.path_of)
        )


def analyse(
    scan: ScanResult,
    resolver: Resolver,
    path_env: str = DEFAULT_PATH,
    hints: Sequence[Hint] = (),
    loaded: Mapping[str, LoadResult | DepminError] | None = None,
    jobs: int | None = 1,
) -> Analysis:
    """Resolve every scanned object in its load context (see the module docstring).

    ``scan`` is of the resolver's root (its objects stand for the files at their paths).
    ``loaded``: objects already loaded by the same resolver (:func:`load_objects`),
    while the scan went on; the others are loaded with ``jobs`` (see there).
    """
    done = dict(loaded or {})
    load_objects(resolver, [e for e in scan.objects if e.path not in done], done, jobs)
    loads: dict[str, LoadResult] = {}
    errors: list[str] = []
    for elf in scan.objects:
        res = done[elf.path]
        if isinstance(res, DepminError):
            errors.append(str(res))
        else:
            loads[elf.path] = res
    by_real = {res.objects[0].realpath: path for path, res in loads.items()}
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

    out = _Collector(scan)
    out.warnings.extend(resolver.warnings)  # the root's loader setup, e.g. a corrupt cache
    for res in roots:
        out.add_load(res, res.main)
    _scripts(scan, resolver, path_env, out)
    _hints(scan, resolver, hints, loads, out)
    return Analysis(
        scan,
        roots,
        tuple(sorted(nonroots)),
        out.libraries(),
        tuple(_stale_cache_notes(resolver, out.unresolved)),
        tuple(errors),
        tuple(dict.fromkeys(out.warnings)),
        tuple(out.suggested),
        tuple(out.packages),
    )


def load_object(resolver: Resolver, elf: ElfFile) -> LoadResult | DepminError:
    """A scanned object loaded as its own root (a program, or a module as dlopen opens it)."""
    try:
        return resolver.load(elf.path, dlopen=_as_dlopen(elf))
    except DepminError as exc:
        return exc


def load_objects(
    resolver: Resolver,
    objects: Sequence[ElfFile],
    into: dict[str, LoadResult | DepminError],
    jobs: int | None = 1,
) -> None:
    """Load each object into ``into`` (for :func:`analyse`'s ``loaded``); ``objects`` are
    a scan's of the resolver's root.

    ``jobs`` above 1 (None: one per core): with many objects, a forked copy of the
    resolver loads part of them beside this process and sends them back packed
    (:mod:`~depmin.loader.wire`); what it could not send is loaded here.
    """
    resolver.files.know(objects)
    n = jobs if jobs is not None else forked.cores()
    job: forked.Forked[PackedLoads] | None = None
    mine, theirs = objects, objects[:0]
    got: dict[str, LoadResult] = {}
    try:
        if n > 1 and len(objects) >= SPLIT_MIN:
            # The child's share is a little less than half: packing its loads and
            # rebuilding them here cost about a sixth of computing them.
            cut = len(objects) * 11 // 20
            job = forked.Forked.fork(lambda: _packed_loads(resolver, objects[cut:]), "resolver")
            if job is not None:
                mine, theirs = objects[:cut], objects[cut:]
        for elf in mine:
            into[elf.path] = load_object(resolver, elf)
        if job is not None:
            try:
                got = unpack_loads(job.result(), resolver.files)
            except Exception:  # the child died or failed: only a shortcut is lost
                pass
    except BaseException:
        if job is not None:
            job.cancel()
        raise
    for elf in theirs:
        res = got.get(elf.path)
        into[elf.path] = res if res is not None else load_object(resolver, elf)


#: Objects to load from which a forked child takes part (fewer are loaded faster here).
SPLIT_MIN = 400


def _packed_loads(resolver: Resolver, objects: Sequence[ElfFile]) -> PackedLoads:
    before = resolver.files.known()  # what the parent has too
    loads: dict[str, LoadResult] = {}
    for elf in objects:
        res = load_object(resolver, elf)
        if isinstance(res, LoadResult):
            loads[elf.path] = res  # an error is computed again by the parent, with its message
    read = [e for p, e in resolver.files.known().items() if p not in before]
    return pack_loads(loads, read)


def _stale_cache_notes(resolver: Resolver, unresolved: list[Unresolved]) -> list[Unresolved]:
    """Say "run ldconfig" where a missing library sits in a directory of ld.so.conf.

    ld.so searches those directories only through ld.so.cache, so a library installed
    there after the last ``ldconfig`` (a forgotten step in many builds) is "not found".
    """
    if not any(u.outcome is Outcome.MISSING and "/" not in u.name for u in unresolved):
        return unresolved
    dirs = read_ld_so_conf(resolver.root)
    out = []
    for u in unresolved:
        if u.outcome is Outcome.MISSING and "/" not in u.name:
            for d in dirs:
                path = d.rstrip("/") + "/" + u.name
                try:
                    present = resolver.root.resolve(path) is not None
                except RootError:
                    present = False
                if present and path not in u.tried:
                    u = replace(u, note=f"{path} exists but ld.so.cache does not list it: run ldconfig")
                    break
        out.append(u)
    return out


def _env_command(argument: str | None) -> str | None:
    """The command ``/usr/bin/env [-S] [-i] [VAR=value]... NAME`` runs."""
    if not argument:
        return None
    words = argument.split()
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-u", "--unset", "-C", "--chdir"):
            i += 2
            continue
        if w.startswith("-") or ("=" in w and not w.startswith("/")):
            i += 1
            continue
        return w
    return None


def find_on_path(
    resolver: Resolver, command: str, path_env: str
) -> tuple[str | None, list[str]]:
    """First executable regular file named ``command`` on ``path_env`` inside the root."""
    tried: list[str] = []
    for d in path_env.split(":"):
        if not d.startswith("/"):
            continue
        cand = d.rstrip("/") + "/" + command
        tried.append(cand)
        try:
            real = resolver.root.resolve(cand)
            if real is None:
                continue
            st = resolver.root.lstat(real)
        except (RootError, OSError):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return cand, tried
    return None, tried


def is_program(path: str) -> bool:
    """A script meant to be run: in a bin, sbin or libexec directory.

    Elsewhere an executable script is usually a module with a stray mode bit (CPython's
    own lib/python3.X/cgi.py says ``#! /usr/local/bin/python``, a link the official
    image creates only after its purge), so its missing interpreter is a warning.
    """
    parent = path.rsplit("/", 2)[-2] if path.count("/") >= 2 else ""
    return parent in ("bin", "sbin") or "/libexec/" in path


def _scripts(scan: ScanResult, resolver: Resolver, path_env: str, out: _Collector) -> None:
    interp_loads: dict[str, LoadResult | None] = {}
    for script in scan.scripts:
        for path, name, tried in _interpreters(script, resolver, path_env):
            if path is None:
                if not is_program(script.path):
                    out.warnings.append(
                        f"{script.path}: interpreter {name} not found (not a program directory:"
                        " a warning, not a failure)"
                    )
                    continue
                out.unresolved.append(
                    Unresolved(script.path, script.path, name, Outcome.MISSING,
                               "interpreter not found", tuple(tried), None, RequestKind.INTERPRETER)
                )  # fmt: skip
                continue
            try:
                real = resolver.root.resolve(path)
            except RootError as exc:
                out.unresolved.append(
                    Unresolved(script.path, script.path, name, Outcome.FAILED, exc.problem,
                               (path,), path, RequestKind.INTERPRETER)
                )  # fmt: skip
                continue
            if real is None and not is_program(script.path):
                out.warnings.append(f"{script.path}: interpreter {name} not found (not a program)")
                continue
            if real is None:
                out.unresolved.append(
                    Unresolved(script.path, script.path, name, Outcome.MISSING,
                               "interpreter not found", (path,), None, RequestKind.INTERPRETER)
                )  # fmt: skip
                continue
            if scan.in_trees(real):
                continue  # scanned itself: an ELF is a root, a script has its own #!
            out.add(path, real, (name,), script.path, RequestKind.INTERPRETER)
            if real not in interp_loads:
                try:
                    interp_loads[real] = resolver.load(real)
                except ElfError:
                    interp_loads[real] = None  # a script interpreter that is itself a script
                except DepminError as exc:
                    out.warnings.append(f"{script.path}: interpreter {path}: {exc.problem}")
                    interp_loads[real] = None
            res = interp_loads[real]
            if res is not None:
                out.add_load(res, script.path)


def _interpreters(
    script: Script, resolver: Resolver, path_env: str
) -> list[tuple[str | None, str, list[str]]]:
    """(path found or None, name as written, paths tried) for a script's #! line."""
    interp = script.interpreter
    if not interp.startswith("/"):
        return [(None, interp, [interp])]
    found: list[tuple[str | None, str, list[str]]] = [(interp, interp, [interp])]
    if os.path.basename(interp) == "env":
        command = _env_command(script.argument)
        if command is None:
            return found
        if "/" in command:
            found.append((command, command, [command]))
        else:
            path, tried = find_on_path(resolver, command, path_env)
            found.append((path, command, tried))
    return found


def _hints(
    scan: ScanResult,
    resolver: Resolver,
    hints: Sequence[Hint],
    loads: dict[str, LoadResult],
    out: _Collector,
) -> None:
    """Hinted sonames are dlopened from the matching object (or by name from no object)."""
    if not hints:
        return
    files = [e.path for e in scan.objects] + [s.path for s in scan.scripts] + list(scan.others)
    for hint in hints:
        matched = [f for f in files if hint.matches(f)]
        if matched:
            out.packages.extend((pkg, matched[0]) for pkg in hint.packages)
        for f in matched:
            for soname in hint.sonames:
                elf = next((e for e in scan.objects if e.path == f), None)
                if elf is not None:
                    res = resolver.load_name(soname, f, _as_dlopen(elf))
                else:
                    res = resolver.load_name(soname)
                if res is None:
                    out.unresolved.append(
                        Unresolved(f, f, soname, Outcome.MISSING,
                                   f"declared in hints ({hint.pattern})", (), None, RequestKind.HINT)
                    )  # fmt: skip
                    continue
                out.add_load(res, f)
                if elf is None:
                    main = res.objects[0]
                    out.add(main.path, main.realpath, (soname,), f, RequestKind.HINT)
