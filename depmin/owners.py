"""From needed files to the installed packages that own them.

Each library is looked up by the path ld.so opened, its merged-/usr twin and
its canonical path (the dpkg database does the aliasing and the diversions), so
``/lib/...`` versus ``/usr/lib/...`` never loses a package.  A library found
outside the scanned trees that no package owns is a warning, not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from depmin.errors import RootError

if TYPE_CHECKING:
    from depmin.debian.dpkg import DpkgDatabase
    from depmin.loader.needs import Analysis


@dataclass(frozen=True)
class PackageNeed:
    """One installed package the trees need, and why."""

    package: str  # as dpkg-query/apt-mark name it (name, or name:arch for Multi-Arch: same)
    libraries: tuple[str, ...]  # needed files it owns (paths as opened)
    files: tuple[str, ...]  # scanned objects whose load needs them


@dataclass(frozen=True)
class Requirements:
    packages: tuple[PackageNeed, ...]  # sorted by package name
    in_trees: tuple[str, ...]  # needed libraries the scanned trees provide themselves
    unowned: tuple[str, ...]  # needed libraries outside the trees that no package owns
    hinted_packages: tuple[str, ...] = ()  # packages a hints file asks for

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.package for p in self.packages)


def file_owners(db: DpkgDatabase, path: str, realpath: str) -> tuple[str, ...]:
    """Owners of the path ld.so opened and of the file it leads to, sorted.

    Both must stay: llvm-14-dev ships /usr/lib/llvm-14/lib/libLLVM-14.so.1, the
    link that $ORIGIN/../lib finds, while libllvm14 ships the file it points to.
    """
    try:
        opened = db.owners_of_file(path)
    except RootError:
        opened = ()
    return tuple(sorted(set(opened) | set(db.owners(realpath))))


def _forms(db: DpkgDatabase, path: str, realpath: str) -> list[str]:
    """Every path :func:`file_owners` may ask about, for :meth:`DpkgDatabase.prefetch`."""
    out = [path, realpath]
    for follow in (False, True):
        try:
            resolved = db.root.resolve(path, follow=follow)
        except RootError:
            continue
        if resolved is not None:
            out.append(resolved)
    return out


def map_requirements(analysis: Analysis, db: DpkgDatabase) -> Requirements:
    outside = [lib for lib in analysis.libraries if not lib.in_trees]
    db.prefetch(f for lib in outside for f in _forms(db, lib.path, lib.realpath))
    libs: dict[str, list[str]] = {}
    files: dict[str, list[str]] = {}
    in_trees: list[str] = []
    unowned: list[str] = []
    for lib in analysis.libraries:
        if lib.in_trees:
            in_trees.append(lib.path)
            continue
        owners = file_owners(db, lib.path, lib.realpath)
        if not owners:
            unowned.append(lib.path)
            continue
        for pkg in owners:
            ls = libs.setdefault(pkg, [])
            if lib.path not in ls:
                ls.append(lib.path)
            fs = files.setdefault(pkg, [])
            fs.extend(f for f in lib.needed_by if f not in fs)
    packages = tuple(
        PackageNeed(p, tuple(sorted(libs[p])), tuple(sorted(files[p]))) for p in sorted(libs)
    )
    hinted = tuple(sorted({pkg for pkg, _file in analysis.hinted_packages}))
    return Requirements(packages, tuple(sorted(in_trees)), tuple(sorted(unowned)), hinted)
