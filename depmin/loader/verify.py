"""Is this file the library ld.so wants?  ``open_verify`` (``elf/dl-load.c``) and the file view.

For every candidate path ld.so opens the file and checks its header: a file of
the other ELF class or another machine is *skipped* (the search goes on), any
other defect *fails* the whole request (ld.so stops and reports it), a missing
file is passed over.  :class:`LoaderFiles` is what the loader sees of a root,
read once per run: ELF headers, candidate verdicts per architecture, which
hwcaps subdirectories exist, and ld.so.cache's answers.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from depmin.errors import ElfError, RootError
from depmin.loader.arch import Arch
from depmin.loader.elf import EHDR_SIZE, ET_DYN, ET_EXEC, ElfFile, read_elf_fd
from depmin.loader.hwcaps import subdir_names
from depmin.loader.ldcache import LdCache
from depmin.loader.linkmap import LoadedObject, LoaderSettings, Request, Step
from depmin.rootfs import Root
from depmin.words import Word


class Verdict(Word):
    """What ld.so does with a candidate path."""

    OK = "ok"  # load it
    MISSING = "missing"  # nothing there (or unreadable): try the next candidate
    SKIP = "skip"  # another class or machine: try the next candidate
    FAIL = "fail"  # anything else wrong: the request fails here


@dataclass(frozen=True)
class Candidate:
    """The verdict on one path, with the file it leads to."""

    verdict: Verdict
    realpath: str | None = None
    ident: tuple[int, int] | None = None  # (st_dev, st_ino): ld.so's identity of objects
    elf: ElfFile | None = None
    problem: str | None = None


def verify_header(elf: ElfFile, arch: Arch) -> tuple[Verdict, str | None]:
    """``open_verify``'s header checks in glibc's order, and the problem ld.so would print."""
    if elf.elfclass != arch.elfclass:
        return Verdict.SKIP, "wrong ELF class"
    if elf.data != arch.data:
        order = "big" if arch.data == 2 else "little"
        return Verdict.FAIL, f"ELF file data encoding not {order}-endian"
    if elf.ident_version != 1:
        return Verdict.FAIL, "ELF file version ident does not match current one"
    if elf.osabi not in (0, 3):
        return Verdict.FAIL, "ELF file OS ABI invalid"
    if not (elf.abiversion == 0 or (elf.osabi == 3 and elf.abiversion < 5)):
        return Verdict.FAIL, "ELF file ABI version invalid"
    if not elf.ident_padding_zero:
        return Verdict.FAIL, "nonzero padding in e_ident"
    if elf.version != 1:
        return Verdict.FAIL, "ELF file version does not match current one"
    if not arch.accepts(elf.elfclass, elf.machine):
        return Verdict.SKIP, f"wrong machine {elf.machine}"
    if elf.type not in (ET_DYN, ET_EXEC):
        return Verdict.FAIL, "only ET_DYN and ET_EXEC can be loaded"
    if not elf.phentsize_ok:
        return Verdict.FAIL, "ELF file's phentsize not the expected size"
    return Verdict.OK, None


@dataclass(frozen=True)
class Walk:
    """Where a search stopped: the paths tried (the stop included), its step and candidate
    (None for both when nothing was found)."""

    tried: tuple[str, ...]
    step: Step | None
    path: str | None
    cand: Candidate | None


class LoaderFiles:
    """What the loader sees of one root, each fact read once per run.

    A tree asks for libc.so.6 hundreds of times; every answer here is memoised by
    path (and architecture, where the loader's class and machine decide).
    """

    def __init__(self, root: Root, settings: LoaderSettings, ldcache: LdCache | None) -> None:
        self.root = root
        self.settings = settings
        self.ldcache = ldcache
        self._elves: dict[str, ElfFile | ElfError] = {}
        self._cands: dict[tuple[str, str], Candidate] = {}
        self._subdirs: dict[tuple[str, str], tuple[str, ...]] = {}
        self._hits: dict[tuple[str, str], str | None] = {}
        #: (name, arch, nodeflib) -> the walk of a search with no RPATH, RUNPATH or
        #: LD_LIBRARY_PATH in play (the cache, then the system directories), see deps
        self.plain_walks: dict[tuple[str, str, bool], Walk] = {}
        #: one instance of each equal record across the run's loads: most requests and
        #: objects of a big tree's loads repeat (libc asking for ld.so at the same place),
        #: and a shared frozen record is cheaper than a new one, in time and in memory
        self.requests: dict[tuple[object, ...], Request] = {}
        self.objects: dict[tuple[object, ...], LoadedObject] = {}

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

    def shared_request(self, key: tuple[object, ...]) -> Request:
        """The run's one :class:`Request` of these fields (see ``requests``)."""
        got = self.requests.get(key)
        if got is None:
            got = self.requests[key] = Request(*key)  # type: ignore[arg-type]
        return got

    def shared_object(self, key: tuple[object, ...], elf: ElfFile) -> LoadedObject:
        """The run's one :class:`LoadedObject` of these fields and ``elf``: the key leaves
        the ELF out, since the object at a realpath is always the ELF read there."""
        got = self.objects.get(key)
        if got is None:
            got = self.objects[key] = LoadedObject(*key, elf)  # type: ignore[arg-type, call-arg]
        return got

    def known(self) -> dict[str, ElfFile]:
        """The objects read so far, by canonical path (a copy; failed reads left out)."""
        return {p: e for p, e in self._elves.items() if isinstance(e, ElfFile)}

    def know(self, elves: Iterable[ElfFile]) -> None:
        """Objects read already at their canonical paths in this root (the scan's): a big
        tree's libraries are then parsed once, not again by every load that opens them."""
        known = self._elves
        for elf in elves:
            known.setdefault(elf.path, elf)

    def candidate(self, path: str, arch: Arch) -> Candidate:
        """ld.so's verdict on ``path`` for a process of ``arch``."""
        key = (path, arch.name)
        got = self._cands.get(key)
        if got is None:
            got = self._verify(path, arch)
            self._cands[key] = got
        return got

    def _verify(self, path: str, arch: Arch) -> Candidate:
        try:
            real = self.root.resolve(path)
        except RootError as exc:
            return Candidate(Verdict.MISSING, problem=exc.problem)
        if real is None:
            return Candidate(Verdict.MISSING)
        try:
            st = self.root.lstat(real)
        except OSError:
            return Candidate(Verdict.MISSING)
        if not stat.S_ISREG(st.st_mode):
            kind = "directory" if stat.S_ISDIR(st.st_mode) else "special file"
            return Candidate(Verdict.FAIL, real, problem=f"cannot read file data: {kind}")
        if st.st_size < EHDR_SIZE[arch.elfclass]:
            return Candidate(Verdict.FAIL, real, problem="file too short")
        try:
            elf = self.read_elf(real)
        except ElfError as exc:
            if exc.kind == "bad-class":
                return Candidate(Verdict.SKIP, real, problem="wrong ELF class")
            if exc.kind == "unreadable":
                return Candidate(Verdict.MISSING, problem=exc.problem)
            if exc.kind in ("not-elf", "too-short"):
                return Candidate(Verdict.FAIL, real, problem="invalid ELF header")
            return Candidate(Verdict.FAIL, real, problem=exc.problem)
        verdict, problem = verify_header(elf, arch)
        if verdict is Verdict.OK and self.settings.check_isa and arch.name == "amd64":
            needed = elf.x86_isa_needed
            if needed and needed.bit_length() > max(self.settings.isa_level, 1):
                verdict = Verdict.FAIL
                problem = f"CPU ISA level is lower than required (x86-64-v{needed.bit_length()})"
        return Candidate(verdict, real, (st.st_dev, st.st_ino), elf, problem)

    def platform(self, arch: Arch) -> str:
        """$PLATFORM: AT_PLATFORM as the kernel would pass it, unless the settings say."""
        return self.settings.platform or arch.platform

    def hwcaps_prefixes(self, directory: str, arch: Arch) -> tuple[str, ...]:
        """The hwcaps subdirectories of ``directory`` that exist, best first, then ""."""
        key = (directory, arch.name)
        got = self._subdirs.get(key)
        if got is None:
            s = self.settings
            found = []
            for sub in subdir_names(arch, s.glibc, s.isa_level, self.platform(arch)):
                try:
                    real = self.root.resolve(directory + sub)
                except RootError:
                    real = None
                if real is not None:
                    found.append(sub + "/")
            got = tuple(found) + ("",)
            self._subdirs[key] = got
        return got

    def cache_lookup(self, name: str, arch: Arch) -> str | None:
        """ld.so.cache's answer for ``name``; a cache of the other byte order is ignored, as ld.so does."""
        cache = self.ldcache
        order = "little" if arch.data == 1 else "big"
        if cache is None or not self.settings.use_cache or cache.byteorder != order:
            return None
        key = (name, arch.name)
        if key not in self._hits:
            self._hits[key] = cache.lookup(
                name,
                arch.cache_flags,
                arch.active_hwcaps(self.settings.isa_level),
                self.settings.glibc < (2, 40),  # legacy hwcap entries are skipped from 2.40
            )
        return self._hits[key]
