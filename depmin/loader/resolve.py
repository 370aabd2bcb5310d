"""Which files ld.so would load for a program, computed without running anything.

This mirrors glibc 2.36's ``elf/dl-deps.c`` and ``elf/dl-load.c`` as described in
``loader.md``: a breadth-first queue of objects; each request matched first
against names already loaded (request names, opened paths, SONAMEs), then by
search (RPATH chain unless the requester has DT_RUNPATH, LD_LIBRARY_PATH, the
requester's own RUNPATH, ld.so.cache, the system directories), every directory
tried with its hwcaps subdirectories; candidates checked like ``open_verify``
(skip on class or machine mismatch, fail on any other defect); identity by
(st_dev, st_ino).  "Not found" and "would fail" are results, not exceptions.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Optional, Union

from depmin.errors import CacheError, DepminError, ElfError, RootError
from depmin.loader.arch import Arch, all_arches, arch_for
from depmin.loader.dlopen import LIBGCC_S, dlopen_entries, glibc_version, nss_modules
from depmin.loader.elf import EHDR_SIZE, ET_DYN, ET_EXEC, ElfFile, read_elf_fd
from depmin.loader.ldcache import LdCache, load_ldcache
from depmin.rootfs import Root


class Step(str, Enum):
    """How a request was satisfied: the search step that found the object."""

    MAIN = "main"
    INTERPRETER = "interpreter"
    PRELOAD = "preload"
    RPATH = "rpath"
    LD_LIBRARY_PATH = "ld_library_path"
    RUNPATH = "runpath"
    CACHE = "cache"
    SYSTEM_DIR = "system_dir"
    DIRECT_PATH = "direct_path"
    ALREADY_LOADED = "already_loaded"


class Outcome(str, Enum):
    FOUND = "found"  # a new object was loaded
    LOADED = "loaded"  # satisfied by an object already in the process
    MISSING = "missing"  # not found anywhere: ld.so reports "not found"
    FAILED = "failed"  # a candidate exists but the load would fail
    IGNORED = "ignored"  # missing, but ld.so carries on (preload, auxiliary, optional dlopen)
    REPORTED = "reported"  # looked up only (a suggested dlopen): not loaded, not needed


#: Request kinds that come from dlopen, not DT_NEEDED: the object found has no loader.
DLOPEN_KINDS = frozenset(
    {"dlopen-required", "dlopen-recommended", "dlopen-suggested", "glibc-dlopen", "nss", "hint"}
)
#: dlopen kinds whose absence the program survives (a warning, not a failure).
OPTIONAL_KINDS = frozenset({"preload", "auxiliary", "dlopen-recommended", "glibc-dlopen", "nss"})


@dataclass(frozen=True)
class LoaderSettings:
    """Everything about the target process that is not in the files themselves."""

    arch: Optional[Arch] = None  # default: from the main object
    ld_library_path: Optional[str] = None  # the image's LD_LIBRARY_PATH; off by default
    preload: tuple[str, ...] = ()  # LD_PRELOAD entries
    isa_level: int = 1  # 1 = baseline (no glibc-hwcaps dir active), 2..4 = x86-64-v2..v4
    platform: Optional[str] = None  # $PLATFORM / AT_PLATFORM; default from the arch
    glibc: tuple[int, int] = (2, 36)  # legacy hwcaps dirs exist up to 2.36
    working_dir: Optional[str] = None  # for relative paths; None = unknown
    use_cache: bool = True
    check_isa: bool = True  # x86 GNU_PROPERTY_X86_ISA_1_NEEDED above isa_level fails
    # Run-time loads beyond ld.so's start-up (off by default, so a load is what ldd shows;
    # keep/plan turn them on):
    dlopen_priorities: frozenset[str] = frozenset()  # .note.dlopen priorities to load
    glibc_dlopens: bool = False  # libgcc_s.so.1 and NSS modules, dlopened by libc itself
    nss_modules: Optional[tuple[str, ...]] = None  # None: from the root's nsswitch.conf


@dataclass(frozen=True)
class LoadedObject:
    """One object in the simulated process (its link map entry)."""

    index: int
    path: str  # as opened, root-relative: what ldd prints and $ORIGIN uses
    realpath: str  # canonical, root-relative: identity and package lookups
    names: tuple[str, ...]  # every name it was requested by (aliases)
    loader: Optional[int]  # index of the object whose request first loaded it
    step: Step
    elf: ElfFile

    @property
    def soname(self) -> Optional[str]:
        return self.elf.soname


@dataclass(frozen=True)
class Request:
    """One DT_NEEDED (or auxiliary, filter, preload) string and what became of it."""

    requester: int
    name: str  # as written in the requester
    kind: str  # needed, auxiliary, filter, preload
    outcome: Outcome
    step: Optional[Step] = None
    target: Optional[int] = None
    tried: tuple[str, ...] = ()  # candidate paths, in order
    problem: Optional[str] = None
    path: Optional[str] = None  # the failing candidate for FAILED
    expanded: Optional[str] = None  # DSTs substituted: the name ld.so keeps, matches and prints


@dataclass(frozen=True)
class LoadResult:
    """A whole simulated load: objects in load order (main first) and every request."""

    main: str  # the path given
    objects: tuple[LoadedObject, ...]
    requests: tuple[Request, ...]
    arch: Optional[Arch]
    static: bool = False
    notes: tuple[str, ...] = ()
    interpreter_referenced: bool = False

    @property
    def missing(self) -> tuple[Request, ...]:
        return tuple(r for r in self.requests if r.outcome is Outcome.MISSING)

    @property
    def failed(self) -> tuple[Request, ...]:
        return tuple(r for r in self.requests if r.outcome is Outcome.FAILED)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.failed

    @property
    def libraries(self) -> tuple[LoadedObject, ...]:
        """What ldd lists: every object but the main one.

        ld.so unlinks itself from the list when no object names it in DT_NEEDED, so
        then the interpreter is not listed (ldd says "statically linked" for a
        library without dependencies).
        """
        return tuple(
            o
            for o in self.objects[1:]
            if o.step is not Step.INTERPRETER or self.interpreter_referenced
        )

    @property
    def runtime_files(self) -> tuple[LoadedObject, ...]:
        """Every file the process needs: the libraries, plus the PT_INTERP the kernel opens."""
        main = self.objects[0]
        return tuple(
            o
            for o in self.objects[1:]
            if o.step is not Step.INTERPRETER or self.interpreter_referenced or main.elf.interp
        )


# -- candidate verification (open_verify) -----------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    verdict: str  # "ok", "missing", "skip", "fail"
    realpath: Optional[str] = None
    ident: Optional[tuple[int, int]] = None
    elf: Optional[ElfFile] = None
    problem: Optional[str] = None




def verify_header(elf: ElfFile, arch: Arch) -> tuple[str, Optional[str]]:
    """``open_verify``'s checks in glibc's order: ("ok"|"skip"|"fail", problem)."""
    if elf.elfclass != arch.elfclass:
        return "skip", "wrong ELF class"
    if elf.data != arch.data:
        order = "big" if arch.data == 2 else "little"
        return "fail", f"ELF file data encoding not {order}-endian"
    if elf.ident_version != 1:
        return "fail", "ELF file version ident does not match current one"
    if elf.osabi not in (0, 3):
        return "fail", "ELF file OS ABI invalid"
    if not (elf.abiversion == 0 or (elf.osabi == 3 and elf.abiversion < 5)):
        return "fail", "ELF file ABI version invalid"
    if not elf.ident_padding_zero:
        return "fail", "nonzero padding in e_ident"
    if elf.version != 1:
        return "fail", "ELF file version does not match current one"
    if not arch.accepts(elf.elfclass, elf.machine):
        return "skip", f"wrong machine {elf.machine}"
    if elf.type not in (ET_DYN, ET_EXEC):
        return "fail", "only ET_DYN and ET_EXEC can be loaded"
    if not elf.phentsize_ok:
        return "fail", "ELF file's phentsize not the expected size"
    return "ok", None


def expand_dst(text: str, origin: Optional[str], lib: str, platform: str) -> Optional[str]:
    """Substitute $ORIGIN, $LIB, $PLATFORM (or ${...}); None if a token has no value.

    Only those three names are tokens; ``$NAME`` must not run on into
    ``[A-Za-z0-9_]`` (``$ORIGINX`` is literal) and unknown ``$FOO`` is copied.
    """
    if "$" not in text:
        return text
    values = {"ORIGIN": origin, "LIB": lib, "PLATFORM": platform}
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        matched = None
        if text.startswith("{", i + 1):
            close = text.find("}", i + 2)
            if close > 0 and text[i + 2 : close] in values:
                matched = (text[i + 2 : close], close + 1)
        else:
            for name in values:
                end = i + 1 + len(name)
                if text.startswith(name, i + 1) and not (
                    end < n and (text[end].isalnum() or text[end] == "_")
                ):
                    matched = (name, end)
                    break
        if matched is None:
            out.append(c)
            i += 1
            continue
        value = values[matched[0]]
        if value is None:
            return None
        out.append(value)
        i = matched[1]
    return "".join(out)


def legacy_subdirs(platform: str, hwcap_names: tuple[str, ...] = ()) -> tuple[str, ...]:
    """glibc ≤ 2.36's legacy hwcap subdirectories, best first, ending with "".

    Every subset of [tls, hwcap names..., platform] in descending bitmask order,
    tls being the most significant bit; on x86-64 (hwcap "x86_64", platform
    "x86_64") this gives the verified order tls/x86_64/x86_64, tls/x86_64, tls,
    x86_64/x86_64, x86_64, "".
    """
    parts = ("tls",) + hwcap_names + (platform,)
    k = len(parts)
    seen: list[str] = []
    for mask in range((1 << k) - 1, -1, -1):
        sub = "/".join(p for bit, p in enumerate(parts) if mask & (1 << (k - 1 - bit)))
        if sub not in seen:
            seen.append(sub)
    return tuple(seen)


# -- the resolver ---------------------------------------------------------------------------


class Resolver:
    """Simulates loads inside one root; caches files and directories across loads.

    One instance per root and settings: scanning a whole tree reads libc once.
    """

    def __init__(
        self,
        root: Root,
        settings: LoaderSettings = LoaderSettings(),
        ldcache: Optional[LdCache] = None,
        preload_file: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.settings = settings
        self.ldcache = ldcache
        self.preload_file = preload_file  # entries of <root>/etc/ld.so.preload
        self.warnings = warnings  # about the root's loader configuration
        self._elves: dict[str, Union[ElfFile, ElfError]] = {}
        self._cands: dict[tuple[str, str], _Candidate] = {}
        self._subdirs: dict[tuple[str, str], tuple[str, ...]] = {}
        self._hits: dict[tuple[str, str], Optional[str]] = {}  # ld.so.cache answers

    @classmethod
    def for_root(cls, root: Root, settings: LoaderSettings = LoaderSettings()) -> Resolver:
        """A resolver reading the root's own ld.so.cache and ld.so.preload.

        A corrupt cache is ignored with a warning, as ld.so ignores it.
        """
        warnings: list[str] = []
        cache = None
        if settings.use_cache:
            try:
                cache = load_ldcache(root)
            except CacheError as exc:
                where = root.host(exc.path) if exc.path else root.top  # the root's, not ours
                warnings.append(f"{where}: {exc.problem} (ignored, as ld.so would)")
        text = root.read_text("/etc/ld.so.preload") or ""
        lines = (line.split("#", 1)[0] for line in text.splitlines())  # rtld.c drops comments
        preload = tuple(" ".join(lines).replace(":", " ").split())
        triplets = tuple(a.triplet for a in ([settings.arch] if settings.arch else all_arches()))
        glibc = glibc_version(root, triplets)
        if glibc is not None and glibc != settings.glibc:
            settings = replace(settings, glibc=glibc)
        if settings.nss_modules is None and settings.glibc_dlopens:
            settings = replace(settings, nss_modules=nss_modules(root, settings.glibc))
        return cls(root, settings, cache, preload, tuple(warnings))

    # file access, cached ---------------------------------------------------------------

    def read_elf(self, realpath: str) -> ElfFile:
        """Read (once) the ELF object at a canonical root-relative path."""
        got = self._elves.get(realpath)
        if got is None:
            try:
                fd = self.root.open_regular(realpath)
            except OSError as exc:
                got = ElfError(realpath, f"cannot open: {exc.strerror or exc}", "unreadable")
            else:
                try:
                    got = read_elf_fd(fd, realpath)
                except ElfError as exc:
                    got = exc
                finally:
                    os.close(fd)
            self._elves[realpath] = got
        if isinstance(got, ElfError):
            raise got
        return got

    def _candidate(self, path: str, arch: Arch) -> _Candidate:
        key = (path, arch.name)  # the verdict depends on the loader's class and machine
        got = self._cands.get(key)
        if got is None:
            got = self._verify(path, arch)
            self._cands[key] = got
        return got

    def _verify(self, path: str, arch: Arch) -> _Candidate:
        try:
            real = self.root.resolve(path)
        except RootError as exc:
            return _Candidate("missing", problem=exc.problem)
        if real is None:
            return _Candidate("missing")
        try:
            st = self.root.lstat(real)
        except OSError:
            return _Candidate("missing")
        if not stat.S_ISREG(st.st_mode):
            kind = "directory" if stat.S_ISDIR(st.st_mode) else "special file"
            return _Candidate("fail", real, problem=f"cannot read file data: {kind}")
        if st.st_size < EHDR_SIZE[arch.elfclass]:
            return _Candidate("fail", real, problem="file too short")
        try:
            elf = self.read_elf(real)
        except ElfError as exc:
            if exc.kind == "bad-class":
                return _Candidate("skip", real, problem="wrong ELF class")
            if exc.kind == "unreadable":
                return _Candidate("missing", problem=exc.problem)
            if exc.kind in ("not-elf", "too-short"):
                return _Candidate("fail", real, problem="invalid ELF header")
            return _Candidate("fail", real, problem=exc.problem)
        verdict, problem = verify_header(elf, arch)
        if verdict == "ok" and self.settings.check_isa and arch.name == "amd64":
            needed = elf.x86_isa_needed
            if needed and needed.bit_length() > max(self.settings.isa_level, 1):
                verdict = "fail"
                problem = f"CPU ISA level is lower than required (x86-64-v{needed.bit_length()})"
        return _Candidate(verdict, real, (st.st_dev, st.st_ino), elf, problem)

    def _prefixes(self, directory: str, arch: Arch) -> tuple[str, ...]:
        """The hwcaps subdirectories of ``directory`` that exist, best first, then ""."""
        key = (directory, arch.name)
        got = self._subdirs.get(key)
        if got is None:
            s = self.settings
            names = []
            if s.glibc >= (2, 33):  # glibc-hwcaps subdirectories arrived in 2.33
                names += [f"glibc-hwcaps/{h}" for h in arch.active_hwcaps(s.isa_level)]
            if s.glibc <= (2, 36):
                hw = ("x86_64",) if arch.name == "amd64" else ()
                names += [d for d in legacy_subdirs(self._platform(arch), hw) if d]
            found = []
            for sub in names:
                try:
                    real = self.root.resolve(directory + sub)
                except RootError:
                    real = None
                if real is not None:
                    found.append(sub + "/")
            got = tuple(found) + ("",)
            self._subdirs[key] = got
        return got

    def _platform(self, arch: Arch) -> str:
        return self.settings.platform or arch.platform

    # loading -------------------------------------------------------------------------------

    def load(
        self, path: str, *, dlopen: bool = False, extra: tuple[str, ...] = ()
    ) -> LoadResult:
        """Simulate running ``path`` (or, with ``dlopen``, opening it by path).

        ``path`` is root-relative.  As a program, $ORIGIN of the main object is its
        canonical directory; as a dlopened object it is the directory as opened,
        and the object has no loader.  ``extra`` names are dlopened by the main
        object once its dependencies are loaded (user hints).  Raises DepminError
        only when the main file itself cannot be read as ELF.
        """
        try:
            real = self.root.resolve(path)
        except RootError as exc:
            raise DepminError(exc.problem, path) from None
        if real is None:
            raise DepminError("no such file inside the root", path)
        main_elf = self.read_elf(real)
        arch = self.settings.arch or arch_for(
            main_elf.elfclass, main_elf.data, main_elf.machine, main_elf.interp
        )
        if arch is None:
            raise ElfError(path, f"unsupported machine {main_elf.machine}", "bad-header")
        st = self.root.lstat(real)
        run = _Load(self, arch, path, real, main_elf, (st.st_dev, st.st_ino), dlopen, extra)
        return run.run()

    def load_name(
        self, name: str, caller: Optional[str] = None, caller_dlopen: bool = True
    ) -> Optional[LoadResult]:
        """dlopen ``name`` from ``caller`` (a scanned object), or by name from no object.

        With a caller the result is the caller's whole load plus the named object;
        without one (a Python module using ctypes) the library is looked up in the
        cache and the system directories and loaded as opened by path.
        Returns None when the name is not found.
        """
        if caller is not None:
            res = self.load(caller, dlopen=caller_dlopen, extra=(name,))
            ok = any(r.kind == "hint" and r.target is not None for r in res.requests)
            return res if ok else None
        arch = self.settings.arch or self.default_arch()
        if arch is None:
            return None
        hit = self.cache_lookup(name, arch)
        cands = ([hit] if hit else []) + [d + name for d in arch.system_dirs]
        for path in cands:
            if self._candidate(path, arch).verdict == "ok":
                return self.load(path, dlopen=True)
        return None

    def cache_lookup(self, name: str, arch: Arch) -> Optional[str]:
        """ld.so.cache's answer for ``name``; a cache of the other byte order is ignored, as ld.so does."""
        cache = self.ldcache
        order = "little" if arch.data == 1 else "big"
        if cache is None or not self.settings.use_cache or cache.byteorder != order:
            return None
        key = (name, arch.name)
        if key not in self._hits:  # a tree asks for libc.so.6 hundreds of times
            self._hits[key] = cache.lookup(
                name,
                arch.cache_flags,
                arch.active_hwcaps(self.settings.isa_level),
                self.settings.glibc < (2, 40),  # legacy hwcap entries are skipped from 2.40
            )
        return self._hits[key]

    def default_arch(self) -> Optional[Arch]:
        """The architecture whose libc the root has, for loads with no object to go by."""
        for a in all_arches():
            with contextlib.suppress(RootError):
                if self.root.resolve(f"/lib/{a.triplet}/libc.so.6") is not None:
                    return a
        return None


@dataclass
class _Load:
    """The mutable state of one simulated process; lives only inside Resolver.load."""

    res: Resolver
    arch: Arch
    main_path: str
    main_real: str
    main_elf: ElfFile
    main_ident: tuple[int, int]
    dlopen: bool
    extra: tuple[str, ...] = ()  # names the main object dlopens (hints)
    objects: list[LoadedObject] = field(default_factory=list)
    names: list[list[str]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    by_name: dict[str, int] = field(default_factory=dict)
    by_ident: dict[tuple[int, int], int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

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
        preloads = list(self.res.settings.preload) + list(self.res.preload_file)
        for name in preloads:
            idx = self._request(0, name, "preload")
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
                ("needed", obj.elf.needed),
                ("auxiliary", obj.elf.auxiliary),
                ("filter", obj.elf.filter),
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
        settings = self.res.settings
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
                    kind = f"dlopen-{entry.priority}"
                    if entry.priority in settings.dlopen_priorities:
                        new.append(self._request_any(idx, entry.sonames, kind))
                    else:
                        self._report(idx, entry.sonames, kind)
                if settings.glibc_dlopens and obj.elf.soname == "libc.so.6":
                    new.append(self._request_any(idx, (LIBGCC_S,), "glibc-dlopen"))
                    for module in settings.nss_modules or ():
                        new.append(self._request_any(idx, (module,), "nss"))
                if idx == 0:
                    for name in self.extra:
                        new.append(self._request_any(0, (name,), "hint"))
            visited = len(self.objects)
            fresh = [i for i in new if i >= 0 and i not in queue]
            queue.extend(fresh)
            self._bfs(queue, len(queue) - len(fresh))

    def _request_any(self, requester: int, names: tuple[str, ...], kind: str) -> int:
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

    def _report(self, requester: int, names: tuple[str, ...], kind: str) -> None:
        """A suggested dlopen: say where it would be found, load nothing."""
        for name in names:
            hit = self.by_name.get(name)
            if hit is not None:
                path = self.objects[hit].path
                self.requests.append(Request(requester, name, kind, Outcome.REPORTED, path=path))
                return
            for step, path in self._search(name, requester):
                if self.res._candidate(path, self.arch).verdict == "ok":
                    self.requests.append(
                        Request(requester, name, kind, Outcome.REPORTED, step, path=path)
                    )
                    return
        self.requests.append(
            Request(requester, "|".join(names), kind, Outcome.REPORTED, problem="not found")
        )

    def _result(self, static: bool = False) -> LoadResult:
        objs = tuple(
            LoadedObject(
                o.index, o.path, o.realpath, tuple(self.names[o.index]), o.loader, o.step, o.elf
            )
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
        loader: Optional[int],
        step: Step,
        name: Optional[str],
    ) -> int:
        idx = len(self.objects)
        self.objects.append(LoadedObject(idx, path, real, (), loader, step, elf))
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
        cand = self.res._candidate(interp, self.arch)
        if cand.verdict != "ok" or cand.elf is None or cand.ident is None:
            if not required:
                return
            self.requests.append(
                Request(
                    0,
                    interp,
                    "interpreter",
                    Outcome.FAILED if cand.verdict == "fail" else Outcome.MISSING,
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

    def _origin(self, idx: int) -> Optional[str]:
        obj = self.objects[idx]
        if obj.step is Step.MAIN and not self.dlopen:
            return os.path.dirname(obj.realpath)
        base = obj.path
        if not base.startswith("/"):
            wd = self.res.settings.working_dir
            if wd is None:
                return None
            base = os.path.join(wd, base)
        return os.path.dirname(base) or "/"

    def _expand(self, text: str, idx: int) -> Optional[str]:
        return expand_dst(
            text,
            self._origin(idx) if "$" in text else None,
            self.arch.lib,
            self.res._platform(self.arch),
        )

    def _request(self, requester: int, name: str, kind: str) -> Optional[int]:
        """Resolve one request; return the object index that satisfies it, if any."""
        expanded = self._expand(name, requester)
        if expanded is None:
            return self._unresolved(requester, name, kind, (), "dynamic string token has no value")
        hit = self.by_name.get(expanded)
        if hit is not None:
            self._record(requester, name, kind, Outcome.LOADED, Step.ALREADY_LOADED, hit, expanded=expanded)
            return hit
        if "/" in expanded:
            path = expanded
            if not path.startswith("/"):
                wd = self.res.settings.working_dir
                if wd is None:
                    self.notes.append(f"{name}: relative path and unknown working directory")
                    return self._unresolved(
                        requester, name, kind, (path,), "unknown working directory", expanded
                    )
                path = os.path.normpath(os.path.join(wd, path))
            return self._try(requester, name, expanded, kind, [(Step.DIRECT_PATH, path)])
        return self._try(requester, name, expanded, kind, self._search(expanded, requester))

    def _try(
        self,
        requester: int,
        name: str,
        expanded: str,
        kind: str,
        candidates: Union[list[tuple[Step, str]], Iterator[tuple[Step, str]]],
    ) -> Optional[int]:
        tried: list[str] = []
        for step, path in candidates:
            tried.append(path)
            cand = self.res._candidate(path, self.arch)
            if cand.verdict in ("missing", "skip"):
                continue
            if cand.verdict == "fail":
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
        kind: str,
        tried: tuple[str, ...],
        problem: Optional[str],
        expanded: Optional[str] = None,
    ) -> Optional[int]:
        """Record a request nothing satisfies; returns None for the caller to pass on."""
        outcome = Outcome.IGNORED if kind in OPTIONAL_KINDS else Outcome.MISSING
        self._record(requester, name, kind, outcome, None, None, tried, problem, expanded=expanded)
        return None

    def _record(
        self,
        requester: int,
        name: str,
        kind: str,
        outcome: Outcome,
        step: Optional[Step] = None,
        target: Optional[int] = None,
        tried: Sequence[str] = (),
        problem: Optional[str] = None,
        path: Optional[str] = None,
        expanded: Optional[str] = None,
    ) -> None:
        self.requests.append(
            Request(requester, name, kind, outcome, step, target, tuple(tried), problem, path, expanded)
        )

    # the search order ------------------------------------------------------------------------

    def _dirs(self, text: str, idx: int, env: bool = False) -> list[str]:
        """Split a search path (LD_LIBRARY_PATH also on ';') and expand tokens against ``idx``.

        An empty element means the working directory, as in glibc's fillin_rpath.
        """
        out: list[str] = []
        for element in (text.replace(";", ":") if env else text).split(":"):
            expanded = self._expand(element, idx) if element else ""
            if expanded is None:
                continue  # a token without a value drops the element
            if not expanded.startswith("/"):
                wd = self.res.settings.working_dir
                if wd is None:
                    continue
                expanded = os.path.join(wd, expanded)
            expanded = expanded.rstrip("/") + "/"
            if expanded not in out:
                out.append(expanded)
        return out

    def _search(self, name: str, requester: int) -> Iterator[tuple[Step, str]]:
        arch = self.arch
        req = self.objects[requester]
        res = self.res
        if req.elf.runpath is None:
            did_main = False
            link: Optional[int] = requester
            while link is not None:
                obj = self.objects[link]
                if obj.elf.runpath is None and obj.elf.rpath:
                    for d in self._dirs(obj.elf.rpath, link):
                        for p in res._prefixes(d, arch):
                            yield Step.RPATH, d + p + name
                    did_main |= link == 0
                link = obj.loader
            main = self.objects[0]
            if not did_main and not self.dlopen and main.elf.runpath is None and main.elf.rpath:
                for d in self._dirs(main.elf.rpath, 0):
                    for p in res._prefixes(d, arch):
                        yield Step.RPATH, d + p + name
        llp = res.settings.ld_library_path
        if llp is not None:
            for d in self._dirs(llp, 0, env=True):
                for p in res._prefixes(d, arch):
                    yield Step.LD_LIBRARY_PATH, d + p + name
        if req.elf.runpath:
            for d in self._dirs(req.elf.runpath, requester):
                for p in res._prefixes(d, arch):
                    yield Step.RUNPATH, d + p + name
        nodeflib = req.elf.nodeflib
        hit = res.cache_lookup(name, arch)
        # DF_1_NODEFLIB drops a hit below a system directory (a byte prefix, trailing '/').
        if hit is not None and not (nodeflib and any(hit.startswith(d) for d in arch.system_dirs)):
            yield Step.CACHE, hit
        if not nodeflib:
            for d in arch.system_dirs:
                for p in res._prefixes(d, arch):
                    yield Step.SYSTEM_DIR, d + p + name
