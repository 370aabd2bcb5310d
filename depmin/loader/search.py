"""Where ld.so looks for a library name: ``_dl_map_object``'s search order (``elf/dl-load.c``).

For a name without '/': the DT_RPATH of the requester and of each object up its
chain of loaders, then of the main program (only when the requester has no
DT_RUNPATH, and without the program's for a dlopen by path); LD_LIBRARY_PATH;
the requester's own DT_RUNPATH; ld.so.cache; the system directories
(``DF_1_NODEFLIB`` drops the last two below the system directories).  Every
directory is tried with its hwcaps subdirectories first (``open_path``).  This
module only lists the candidate paths in order; :mod:`depmin.loader.verify`
judges each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from depmin.loader.arch import Arch
from depmin.loader.dst import expand_dst, origin, split_search_path
from depmin.loader.linkmap import LoadedObject, Step
from depmin.loader.verify import LoaderFiles


@dataclass(frozen=True)
class SearchContext:
    """One simulated process, as the search sees it: its files, its class, its link map so far."""

    files: LoaderFiles
    arch: Arch
    objects: Sequence[LoadedObject]  # the live link map: grows as objects load
    dlopened_main: bool  # the main object was opened by path (no program RPATH, no exe origin)

    def expand(self, text: str, idx: int) -> str | None:
        """DSTs of ``text`` substituted against the object at ``idx``."""
        if "$" not in text:
            return text
        wd = self.files.settings.working_dir
        return expand_dst(
            text, origin(self.objects[idx], self.dlopened_main, wd), self.arch.lib,
            self.files.platform(self.arch),
        )  # fmt: skip

    def dirs(self, text: str, idx: int, env: bool = False) -> list[str]:
        """A search path's directories, tokens expanded against the object at ``idx``."""
        return split_search_path(
            text, lambda element: self.expand(element, idx), self.files.settings.working_dir, env
        )

    def _in(self, step: Step, dirs: list[str], name: str) -> Iterator[tuple[Step, str]]:
        for d in dirs:
            for p in self.files.hwcaps_prefixes(d, self.arch):
                yield step, d + p + name


def search_order(ctx: SearchContext, name: str, requester: int) -> Iterator[tuple[Step, str]]:
    """Candidate paths for ``name`` asked for by the object at ``requester``, in ld.so's order."""
    objects, arch, files = ctx.objects, ctx.arch, ctx.files
    req = objects[requester]
    if req.elf.runpath is None:
        did_main = False
        link: int | None = requester
        while link is not None:
            obj = objects[link]
            if obj.elf.runpath is None and obj.elf.rpath:
                yield from ctx._in(Step.RPATH, ctx.dirs(obj.elf.rpath, link), name)
                did_main |= link == 0
            link = obj.loader
        main = objects[0]
        if not did_main and not ctx.dlopened_main and main.elf.runpath is None and main.elf.rpath:
            yield from ctx._in(Step.RPATH, ctx.dirs(main.elf.rpath, 0), name)
    llp = files.settings.ld_library_path
    if llp is not None:
        yield from ctx._in(Step.LD_LIBRARY_PATH, ctx.dirs(llp, 0, env=True), name)
    if req.elf.runpath:
        yield from ctx._in(Step.RUNPATH, ctx.dirs(req.elf.runpath, requester), name)
    nodeflib = req.elf.nodeflib
    hit = files.cache_lookup(name, arch)
    # DF_1_NODEFLIB drops a hit below a system directory (a byte prefix, trailing '/').
    if hit is not None and not (nodeflib and any(hit.startswith(d) for d in arch.system_dirs)):
        yield Step.CACHE, hit
    if not nodeflib:
        yield from ctx._in(Step.SYSTEM_DIR, list(arch.system_dirs), name)
