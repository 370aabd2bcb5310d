"""The records of a simulated process: its settings, its link map and every request.

Plain frozen data shared by the loader's steps and by everything that reads a
load (needs, the reports).  glibc keeps the same facts in ``struct link_map``
(``l_name``, ``l_origin``, ``l_loader``) and in ld.so's debug output.
"""

from __future__ import annotations

from dataclasses import dataclass

from depmin.loader.arch import Arch
from depmin.loader.elf import ElfFile
from depmin.words import Word


class Step(Word):
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


class Outcome(Word):
    FOUND = "found"  # a new object was loaded
    LOADED = "loaded"  # satisfied by an object already in the process
    MISSING = "missing"  # not found anywhere: ld.so reports "not found"
    FAILED = "failed"  # a candidate exists but the load would fail
    IGNORED = "ignored"  # missing, but ld.so carries on (preload, auxiliary, optional dlopen)
    REPORTED = "reported"  # looked up only (a suggested dlopen): not loaded, not needed


class RequestKind(Word):
    """Why an object asks for a library: a dynamic tag, the kernel, or a load at run time."""

    NEEDED = "needed"  # DT_NEEDED
    AUXILIARY = "auxiliary"  # DT_AUXILIARY
    FILTER = "filter"  # DT_FILTER
    PRELOAD = "preload"  # LD_PRELOAD, /etc/ld.so.preload
    INTERPRETER = "interpreter"  # PT_INTERP, or a script's #!
    DLOPEN_REQUIRED = "dlopen-required"  # .note.dlopen, by priority
    DLOPEN_RECOMMENDED = "dlopen-recommended"
    DLOPEN_SUGGESTED = "dlopen-suggested"
    GLIBC_DLOPEN = "glibc-dlopen"  # libgcc_s.so.1, dlopened by libc itself
    NSS = "nss"  # an NSS module of /etc/nsswitch.conf
    HINT = "hint"  # declared in a hints file

    @classmethod
    def dlopen(cls, priority: str) -> RequestKind:
        """The kind of a .note.dlopen entry of this priority."""
        return cls(f"dlopen-{priority}")


#: Request kinds that come from dlopen, not DT_NEEDED: the object found has no loader.
DLOPEN_KINDS = frozenset(
    {RequestKind.DLOPEN_REQUIRED, RequestKind.DLOPEN_RECOMMENDED, RequestKind.DLOPEN_SUGGESTED,
     RequestKind.GLIBC_DLOPEN, RequestKind.NSS, RequestKind.HINT}
)  # fmt: skip
#: Kinds whose absence the program survives (a warning, not a failure).
OPTIONAL_KINDS = frozenset(
    {RequestKind.PRELOAD, RequestKind.AUXILIARY, RequestKind.DLOPEN_RECOMMENDED,
     RequestKind.GLIBC_DLOPEN, RequestKind.NSS}
)  # fmt: skip


@dataclass(frozen=True)
class LoaderSettings:
    """Everything about the target process that is not in the files themselves."""

    arch: Arch | None = None  # default: from the main object
    ld_library_path: str | None = None  # the image's LD_LIBRARY_PATH; off by default
    preload: tuple[str, ...] = ()  # LD_PRELOAD entries
    isa_level: int = 1  # 1 = baseline (no glibc-hwcaps dir active), 2..4 = x86-64-v2..v4
    platform: str | None = None  # $PLATFORM / AT_PLATFORM; default from the arch
    glibc: tuple[int, int] = (2, 36)  # legacy hwcaps dirs exist up to 2.36
    working_dir: str | None = None  # for relative paths; None = unknown
    use_cache: bool = True
    check_isa: bool = True  # x86 GNU_PROPERTY_X86_ISA_1_NEEDED above isa_level fails
    # Run-time loads beyond ld.so's start-up (off by default, so a load is what ldd shows;
    # keep/plan turn them on):
    dlopen_priorities: frozenset[str] = frozenset()  # .note.dlopen priorities to load
    glibc_dlopens: bool = False  # libgcc_s.so.1 and NSS modules, dlopened by libc itself
    nss_modules: tuple[str, ...] | None = None  # None: from the root's nsswitch.conf


@dataclass(frozen=True)
class LoadedObject:
    """One object in the simulated process (its link map entry)."""

    index: int
    path: str  # as opened, root-relative: what ldd prints and $ORIGIN uses
    realpath: str  # canonical, root-relative: identity and package lookups
    names: tuple[str, ...]  # every name it was requested by (aliases)
    loader: int | None  # index of the object whose request first loaded it
    step: Step
    elf: ElfFile

    @property
    def soname(self) -> str | None:
        return self.elf.soname


@dataclass(frozen=True)
class Request:
    """One DT_NEEDED (or auxiliary, filter, preload) string and what became of it."""

    requester: int
    name: str  # as written in the requester
    kind: RequestKind
    outcome: Outcome
    step: Step | None = None
    target: int | None = None
    tried: tuple[str, ...] = ()  # candidate paths, in order
    problem: str | None = None
    path: str | None = None  # the failing candidate for FAILED
    expanded: str | None = None  # DSTs substituted: the name ld.so keeps, matches and prints


@dataclass(frozen=True)
class LoadResult:
    """A whole simulated load: objects in load order (main first) and every request."""

    main: str  # the path given
    objects: tuple[LoadedObject, ...]
    requests: tuple[Request, ...]
    arch: Arch | None
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
