"""Which files ld.so would load for a program, computed without running anything.

The facade of the loader half.  It mirrors glibc's ``elf/rtld.c``,
``elf/dl-deps.c`` and ``elf/dl-load.c`` as ``loader.md`` describes them, one
module per step:

- :mod:`~depmin.loader.linkmap` — the records: settings, loaded objects, requests;
- :mod:`~depmin.loader.deps` — the breadth-first load and the dlopens after it;
- :mod:`~depmin.loader.search` — the search order for a name;
- :mod:`~depmin.loader.dst` — $ORIGIN, $LIB, $PLATFORM and search-path strings;
- :mod:`~depmin.loader.hwcaps` — the hwcaps subdirectories of every directory;
- :mod:`~depmin.loader.verify` — open_verify's skip-or-fail, and the memoised file view.

"Not found" and "would fail" are results, not exceptions.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from depmin.errors import CacheError, DepminError, ElfError, RootError
from depmin.loader.arch import Arch, all_arches, arch_for
from depmin.loader.deps import LinkMap
from depmin.loader.dlopen import glibc_version, nss_modules
from depmin.loader.elf import ElfFile
from depmin.loader.ldcache import LdCache, load_ldcache
from depmin.loader.linkmap import (
    DLOPEN_KINDS,
    OPTIONAL_KINDS,
    LoadedObject,
    LoaderSettings,
    LoadResult,
    Outcome,
    Request,
    RequestKind,
    Step,
)
from depmin.loader.verify import LoaderFiles, Verdict
from depmin.rootfs import Root

__all__ = [
    "DLOPEN_KINDS",
    "OPTIONAL_KINDS",
    "LoadResult",
    "LoadedObject",
    "LoaderSettings",
    "Outcome",
    "Request",
    "RequestKind",
    "Resolver",
    "Step",
]


class Resolver:
    """Simulates loads inside one root; what it reads is kept across loads.

    One instance per root and settings: scanning a whole tree reads libc once.
    """

    def __init__(
        self,
        root: Root,
        settings: LoaderSettings = LoaderSettings(),
        ldcache: LdCache | None = None,
        preload_file: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.settings = settings
        self.ldcache = ldcache
        self.preload_file = preload_file  # entries of <root>/etc/ld.so.preload
        self.warnings = warnings  # about the root's loader configuration
        self.files = LoaderFiles(root, settings, ldcache)

    @classmethod
    def for_root(cls, root: Root, settings: LoaderSettings = LoaderSettings()) -> Resolver:
        """A resolver reading the root's own ld.so.cache, ld.so.preload, glibc version and NSS setup.

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

    def read_elf(self, realpath: str) -> ElfFile:
        """Read (once) the ELF object at a canonical root-relative path."""
        return self.files.read_elf(realpath)

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
        main_elf = self.files.read_elf(real)
        arch = self.settings.arch or arch_for(
            main_elf.elfclass, main_elf.data, main_elf.machine, main_elf.interp
        )
        if arch is None:
            raise ElfError(path, f"unsupported machine {main_elf.machine}", "bad-header")
        st = self.root.lstat(real)
        preload = self.settings.preload + self.preload_file
        run = LinkMap(self.files, arch, path, real, main_elf, (st.st_dev, st.st_ino), dlopen,
                      preload, extra)  # fmt: skip
        return run.run()

    def load_name(
        self, name: str, caller: str | None = None, caller_dlopen: bool = True
    ) -> LoadResult | None:
        """dlopen ``name`` from ``caller`` (a scanned object), or by name from no object.

        With a caller the result is the caller's whole load plus the named object;
        without one (a Python module using ctypes) the library is looked up in the
        cache and the system directories and loaded as opened by path.
        Returns None when the name is not found.
        """
        if caller is not None:
            res = self.load(caller, dlopen=caller_dlopen, extra=(name,))
            ok = any(r.kind is RequestKind.HINT and r.target is not None for r in res.requests)
            return res if ok else None
        arch = self.settings.arch or self.default_arch()
        if arch is None:
            return None
        hit = self.files.cache_lookup(name, arch)
        cands = ([hit] if hit else []) + [d + name for d in arch.system_dirs]
        for path in cands:
            if self.files.candidate(path, arch).verdict is Verdict.OK:
                return self.load(path, dlopen=True)
        return None

    def cache_lookup(self, name: str, arch: Arch) -> str | None:
        """ld.so.cache's answer for ``name`` (see :meth:`LoaderFiles.cache_lookup`)."""
        return self.files.cache_lookup(name, arch)

    def default_arch(self) -> Arch | None:
        """The architecture whose libc the root has, for loads with no object to go by."""
        for a in all_arches():
            with contextlib.suppress(RootError):
                if self.root.resolve(f"/lib/{a.triplet}/libc.so.6") is not None:
                    return a
        return None
