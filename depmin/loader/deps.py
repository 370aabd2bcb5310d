"""The simulated process: ``_dl_map_object_deps`` (``elf/dl-deps.c``) and the loads after it.

A breadth-first queue of objects, each of its DT_NEEDED (then DT_AUXILIARY,
DT_FILTER) requests matched first against the names already in the process
(request names, opened paths, SONAMEs), then searched (:mod:`search`) and
verified (:mod:`verify`); identity by (st_dev, st_ino).  After start-up, the
loads no dynamic tag shows: .note.dlopen entries, libc's own dlopens (libgcc_s,
NSS modules) and hinted names, each resolved breadth first in turn.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from depmin.loader.arch import Arch
from depmin.loader.dlopen import LIBGCC_S, dlopen_entries
from depmin.loader.elf import ElfFile
from depmin.loader.linkmap import (
    DLOPEN_KINDS,
    OPTIONAL_KINDS,
    LoadedObject,
    LoadResult,
    Outcome,
    Request,
    RequestKind,
    Step,
)
from depmin.loader.search import SearchContext, search_order
from depmin.loader.verify import LoaderFiles, Verdict, Walk


@dataclass
class LinkMap:
    """The mutable state of one simulated process: objects in load order, names, requests."""

    files: LoaderFiles
    arch: Arch
    main_path: str
    main_real: str
    main_elf: ElfFile
    main_ident: tuple[int, int]
    dlopen: bool
    preload: tuple[str, ...] = ()  # LD_PRELOAD, then /etc/ld.so.preload
    extra: tuple[str, ...] = ()  # names the main object dlopens (hints)
    objects: list[LoadedObject] = field(default_factory=list)
    names: list[list[str]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    by_name: dict[str, int] = field(default_factory=dict)
    by_ident: dict[tuple[int, int], int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ctx: SearchContext = field(init=False)

    def __post_init__(self) -> None:
        self.ctx = SearchContext(self.files, self.arch, self.objects, self.dlopen)

    def run(self) -> LoadResult:
        elf = self.main_elf
        static = not elf.has_dynamic and elf.interp is None
        self._add(self.main_path, self.main_real, self.main_ident, elf, None, Step.MAIN, None)
        if static:
            return self._result(static=True)
        # Without PT_INTERP (a library, a static-pie program) ld.so is the process's own
        # loader only if it exists; its absence is no failure of this object.
        self._register_interpreter(elf.interp or self.arch.interpreter, required=bool(elf.interp))
        queue = [0]
        for name in self.preload:
            idx = self._request(0, name, RequestKind.PRELOAD)
            if idx is not None and idx not in queue:
                queue.append(idx)
        self._bfs(queue, 0)
        self._dlopen_phase(queue)
        return self._result()

    def _bfs(self, queue: list[int], head: int) -> None:
        """Walk the queue from ``head``, appending every newly loaded object."""
        while head < len(queue):
            idx = queue[head]
            head += 1
            obj = self.objects[idx]
            if obj.step is Step.INTERPRETER:
                continue  # the interpreter's own DT_NEEDED do not matter
            for kind, names in (
                (RequestKind.NEEDED, obj.elf.needed),
                (RequestKind.AUXILIARY, obj.elf.auxiliary),
                (RequestKind.FILTER, obj.elf.filter),
            ):
                for name in names:
                    before = len(self.objects)
                    got = self._request(idx, name, kind)
                    if got is not None and got >= before:
                        queue.append(got)

    def _dlopen_phase(self, queue: list[int]) -> None:
        """Loads no DT_NEEDED shows: .note.dlopen entries, glibc's own dlopens, extra names.

        Each object is visited once; what its dlopens load is resolved (breadth
        first again) and visited in turn, until nothing new appears.
        """
        settings = self.files.settings
        visited = 0
        while visited < len(self.objects):
            new: list[int] = []
            for idx in range(visited, len(self.objects)):
                obj = self.objects[idx]
                if obj.step is Step.INTERPRETER:
                    continue
                entries, problems = dlopen_entries(obj.elf)
                self.notes.extend(f"{p} (dlopen note ignored)" for p in problems)
                for entry in entries:
                    kind = RequestKind.dlopen(entry.priority)
                    if entry.priority in settings.dlopen_priorities:
                        new.append(self._request_any(idx, entry.sonames, kind))
                    else:
                        self._report(idx, entry.sonames, kind)
                if settings.glibc_dlopens and obj.elf.soname == "libc.so.6":
                    new.append(self._request_any(idx, (LIBGCC_S,), RequestKind.GLIBC_DLOPEN))
                    for module in settings.nss_modules or ():
                        new.append(self._request_any(idx, (module,), RequestKind.NSS))
                if idx == 0:
                    for name in self.extra:
                        new.append(self._request_any(0, (name,), RequestKind.HINT))
            visited = len(self.objects)
            fresh = [i for i in new if i >= 0 and i not in queue]
            queue.extend(fresh)
            self._bfs(queue, len(queue) - len(fresh))

    def _request_any(self, requester: int, names: tuple[str, ...], kind: RequestKind) -> int:
        """dlopen the first of ``names`` that loads; one record of failure if none does."""
        mark = len(self.requests)
        for name in names:
            got = self._request(requester, name, kind)
            if got is not None:
                del self.requests[mark:-1]  # earlier alternatives were only tried
                return got
        if len(names) > 1:
            tried = tuple(p for r in self.requests[mark:] for p in r.tried)
            failed = [r for r in self.requests[mark:] if r.outcome is Outcome.FAILED]
            del self.requests[mark:]
            if failed:
                self.requests.append(failed[0])
            else:
                self._unresolved(requester, "|".join(names), kind, tried, None)
        return -1

    def _report(self, requester: int, names: tuple[str, ...], kind: RequestKind) -> None:
        """A suggested dlopen: say where it would be found, load nothing."""
        for name in names:
            hit = self.by_name.get(name)
            if hit is not None:
                path = self.objects[hit].path
                self.requests.append(Request(requester, name, kind, Outcome.REPORTED, path=path))
                return
            for step, path in search_order(self.ctx, name, requester):
                if self.files.candidate(path, self.arch).verdict is Verdict.OK:
                    self.requests.append(
                        Request(requester, name, kind, Outcome.REPORTED, step, path=path)
                    )
                    return
        self.requests.append(
            Request(requester, "|".join(names), kind, Outcome.REPORTED, problem="not found")
        )

    def _result(self, static: bool = False) -> LoadResult:
        share = self.files.shared_object
        objs = tuple(
            share((o.index, o.path, o.realpath, tuple(self.names[o.index]), o.loader, o.step), o.elf)
            for o in self.objects
        )
        referenced = any(
            r.target is not None and objs[r.target].step is Step.INTERPRETER for r in self.requests
        )
        return LoadResult(
            self.main_path,
            objs,
            tuple(self.requests),
            self.arch,
            static,
            tuple(self.notes),
            referenced,
        )

    def _add(
        self,
        path: str,
        real: str,
        ident: tuple[int, int],
        elf: ElfFile,
        loader: int | None,
        step: Step,
        name: str | None,
    ) -> int:
        idx = len(self.objects)
        # The names come at the end (_result).
        self.objects.append(self.files.shared_object((idx, path, real, (), loader, step), elf))
        self.names.append([])
        for alias in (name, path, elf.soname):
            if alias:
                self._alias(idx, alias)
        self.by_ident.setdefault(ident, idx)
        return idx

    def _alias(self, idx: int, name: str) -> None:
        self.by_name.setdefault(name, idx)
        if name not in self.names[idx]:
            self.names[idx].append(name)

    def _register_interpreter(self, interp: str, required: bool = True) -> None:
        cand = self.files.candidate(interp, self.arch)
        if cand.verdict is not Verdict.OK or cand.elf is None or cand.ident is None:
            if not required:
                return
            self.requests.append(
                Request(
                    0,
                    interp,
                    RequestKind.INTERPRETER,
                    Outcome.FAILED if cand.verdict is Verdict.FAIL else Outcome.MISSING,
                    tried=(interp,),
                    problem=cand.problem or "interpreter not found",
                    path=cand.realpath,
                )
            )
            return
        if cand.ident in self.by_ident:  # the main object is the interpreter itself
            self._alias(self.by_ident[cand.ident], interp)
            return
        assert cand.realpath is not None
        self._add(interp, cand.realpath, cand.ident, cand.elf, None, Step.INTERPRETER, interp)

    def _request(self, requester: int, name: str, kind: RequestKind) -> int | None:
        """Resolve one request; return the object index that satisfies it, if any."""
        expanded = self.ctx.expand(name, requester)
        if expanded is None:
            return self._unresolved(requester, name, kind, (), "dynamic string token has no value")
        hit = self.by_name.get(expanded)
        if hit is not None:
            self._record(requester, name, kind, Outcome.LOADED, Step.ALREADY_LOADED, hit, expanded=expanded)
            return hit
        if "/" in expanded:
            path = expanded
            if not path.startswith("/"):
                wd = self.files.settings.working_dir
                if wd is None:
                    self.notes.append(f"{name}: relative path and unknown working directory")
                    return self._unresolved(
                        requester, name, kind, (path,), "unknown working directory", expanded
                    )
                path = os.path.normpath(os.path.join(wd, path))
            return self._try(requester, name, expanded, kind, [(Step.DIRECT_PATH, path)])
        nodeflib = self._plain(requester)
        if nodeflib is None:
            return self._try(requester, name, expanded, kind, search_order(self.ctx, expanded, requester))
        # The same search in every process: walked once per run (see LoaderFiles.plain_walks).
        key = (expanded, self.arch.name, nodeflib)
        walk = self.files.plain_walks.get(key)
        if walk is None:
            walk = self.files.plain_walks[key] = self._walk(search_order(self.ctx, expanded, requester))
        return self._take(requester, name, expanded, kind, walk)

    def _plain(self, requester: int) -> bool | None:
        """The requester's DF_1_NODEFLIB when its search reads no RPATH, RUNPATH or
        LD_LIBRARY_PATH (then only the name, the class and that flag decide it); else None."""
        objects = self.objects
        req = objects[requester]
        if req.elf.runpath is not None or self.files.settings.ld_library_path is not None:
            return None
        link: int | None = requester
        while link is not None:
            obj = objects[link]
            if obj.elf.rpath and obj.elf.runpath is None:
                return None
            link = obj.loader
        main = objects[0].elf
        if not self.dlopen and main.rpath and main.runpath is None:
            return None
        return req.elf.nodeflib

    def _walk(self, candidates: list[tuple[Step, str]] | Iterator[tuple[Step, str]]) -> Walk:
        """Try the candidates in order up to the first that is not missing or skipped."""
        tried: list[str] = []
        for step, path in candidates:
            tried.append(path)
            cand = self.files.candidate(path, self.arch)
            if cand.verdict not in (Verdict.MISSING, Verdict.SKIP):
                return Walk(tuple(tried), step, path, cand)
        return Walk(tuple(tried), None, None, None)

    def _try(
        self,
        requester: int,
        name: str,
        expanded: str,
        kind: RequestKind,
        candidates: list[tuple[Step, str]] | Iterator[tuple[Step, str]],
    ) -> int | None:
        return self._take(requester, name, expanded, kind, self._walk(candidates))

    def _take(
        self, requester: int, name: str, expanded: str, kind: RequestKind, walk: Walk
    ) -> int | None:
        """Load (or find loaded) what the walk stopped at, and record the request."""
        tried, step, path, cand = list(walk.tried), walk.step, walk.path, walk.cand
        if cand is not None:
            assert step is not None and path is not None
            if cand.verdict is Verdict.FAIL:
                self._record(requester, name, kind, Outcome.FAILED, step, None, tried, cand.problem,
                             cand.realpath, expanded)  # fmt: skip
                return None
            assert cand.ident is not None and cand.elf is not None and cand.realpath is not None
            same = self.by_ident.get(cand.ident)
            if same is not None:
                self._alias(same, expanded)
                self._record(requester, name, kind, Outcome.LOADED, step, same, tried, expanded=expanded)
                return same
            loader = None if kind in DLOPEN_KINDS else requester  # dlopen: no loader
            idx = self._add(path, cand.realpath, cand.ident, cand.elf, loader, step, expanded)
            self._record(requester, name, kind, Outcome.FOUND, step, idx, tried, expanded=expanded)
            return idx
        return self._unresolved(requester, name, kind, tuple(tried), None, expanded)

    def _unresolved(
        self,
        requester: int,
        name: str,
        kind: RequestKind,
        tried: tuple[str, ...],
        problem: str | None,
        expanded: str | None = None,
    ) -> int | None:
        """Record a request nothing satisfies; returns None for the caller to pass on."""
        outcome = Outcome.IGNORED if kind in OPTIONAL_KINDS else Outcome.MISSING
        self._record(requester, name, kind, outcome, None, None, tried, problem, expanded=expanded)
        return None

    def _record(
        self,
        requester: int,
        name: str,
        kind: RequestKind,
        outcome: Outcome,
        step: Step | None = None,
        target: int | None = None,
        tried: Sequence[str] = (),
        problem: str | None = None,
        path: str | None = None,
        expanded: str | None = None,
    ) -> None:
        self.requests.append(self.files.shared_request(
            (requester, name, kind, outcome, step, target, tuple(tried), problem, path, expanded)
        ))  # fmt: skip
