"""The dpkg database of a root: installed packages and who owns which file.

Read once into plain objects: ``status`` gives the packages, ``info/*.list``
the paths each one shipped, ``diversions`` where some of them really live.
Three things make ``dpkg-query --search`` the wrong tool for depmin:

* **Merged /usr.**  dpkg records paths as the package shipped them (bookworm's
  libc6 has ``/lib/x86_64-linux-gnu/libc.so.6``, trixie's has ``/usr/lib/...``)
  and never learned aliasing, so ``-S /usr/lib/x86_64-linux-gnu/libc.so.6``
  fails on bookworm.  Here both the recorded paths and the queries are
  canonicalised: ``/bin``, ``/sbin``, ``/lib``, ``/lib32``, ``/lib64`` and
  ``/libx32`` become ``/usr/...``, but only where that directory is a symlink to
  its ``/usr`` twin on the target root (a root with a real ``/lib`` keeps the two
  apart, because they are different files there).
* **Diversions.**  The diverted package's ``.list`` keeps the original name while
  its bytes live at the diverted-to path.  Inverted as apt.md §9 says: the file at
  a diverted-to path belongs to every package other than the diverter that lists
  the original (for a local diversion, to every package that lists it), plus
  anyone who lists the diverted-to path itself; the file at the original path is
  the diverter's own copy, so it belongs to the diverter if the diverter lists it
  and to nobody otherwise (a local diversion's original is the administrator's).
  dpkg-query instead prints only ``diversion by`` lines for the diverted-to path
  and every lister for the original.
* **Several owners.**  A path shipped by several packages (``Multi-Arch: same``
  or shared files) reports all of them.

Owners are named as ``dpkg-query`` prints ``${binary:Package}`` (what apt-mark
accepts): ``name:arch`` for ``Multi-Arch: same`` packages and for packages of a
foreign architecture (not the native one, which is the installed ``dpkg``
package's unless given), plain ``name`` otherwise.  :attr:`Package.key` is the
always-qualified ``name:arch``.

Problems never stop the load: :attr:`DpkgDatabase.warnings` names broken
status stanzas and fields, missing ``.list`` files of installed packages and
unreadable diversions; :attr:`FileIndex.warnings` the ``.list`` files that
could not be read when the index was built.  Only a missing or unreadable
status file (and, with ``strict=True``, a broken stanza) raises
:class:`~depmin.errors.DpkgError`.

Only non-directory entries are indexed: a path that is the parent of another
listed path is a directory, which hundreds of packages list (``/usr/share/doc``)
and which depmin never needs to attribute.  Listed paths of packages in state
``not-installed`` are ignored, as dpkg ignores them; ``config-files`` packages
keep their conffiles, as dpkg does.
"""

from __future__ import annotations

import io
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from depmin.debian.deb822 import Relation, Stanza, iter_stanzas, parse_relations
from depmin.errors import DpkgError
from depmin.rootfs import READ_FLAGS, Root

Relations = tuple[tuple[Relation, ...], ...]

WANTS = frozenset({"unknown", "install", "hold", "deinstall", "purge"})
FLAGS = frozenset({"ok", "reinstreq"})
STATES = frozenset(
    {
        "not-installed",
        "config-files",
        "half-installed",
        "unpacked",
        "half-configured",
        "triggers-awaited",
        "triggers-pending",
        "installed",
    }
)
#: apt counts every other state as installed.
NOT_INSTALLED = frozenset({"not-installed", "config-files"})
#: Top-level directories that merged-/usr turns into symlinks to /usr/<name>.
USR_ALIASES = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

#: dpkg's pkg_name_is_illegal: alphanumeric first, then also '-+._'.
_PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]*")
_RELATION_FIELDS = (
    ("Depends", "depends"),
    ("Pre-Depends", "pre_depends"),
    ("Recommends", "recommends"),
    ("Suggests", "suggests"),
    ("Provides", "provides"),
)


class Status(NamedTuple):
    """The three words of the ``Status`` field."""

    want: str
    flag: str
    state: str


@dataclass(frozen=True)
class Package:
    """One stanza of the status file."""

    name: str
    arch: str  # "" only for stanzas without Architecture (old not-installed ones)
    version: str  # "" when absent
    status: Status
    binary_package: str  # as dpkg-query prints ${binary:Package}
    essential: bool = False
    protected: bool = False
    important: bool = False
    priority: str | None = None
    section: str | None = None
    source: str = ""  # the binary name when there is no Source field
    source_version: str = ""  # the binary version when Source gives none
    multi_arch: str = "no"  # "no" when absent, as dpkg reads it
    depends: Relations = ()
    pre_depends: Relations = ()
    recommends: Relations = ()
    suggests: Relations = ()
    provides: Relations = ()
    installed_size: int | None = None  # KiB

    @property
    def installed(self) -> bool:
        """apt's notion: any state but not-installed and config-files."""
        return self.status.state not in NOT_INSTALLED

    @property
    def key(self) -> str:
        """``name:arch``, unique in a database."""
        return f"{self.name}:{self.arch}" if self.arch else self.name


@dataclass(frozen=True)
class Diversion:
    """One record of the diversions file (paths as recorded, not canonicalised)."""

    path: str
    diverted_to: str
    by: str | None  # diverting package's name; None for a local diversion


@dataclass(frozen=True, eq=False)
class FileIndex:
    """Canonical path -> owners, diversions already inverted."""

    owners: Mapping[str, tuple[str, ...]] = field(repr=False)
    warnings: tuple[str, ...] = ()  # .list files that could not be read

    def lookup(self, canonical: str) -> tuple[str, ...]:
        return self.owners.get(canonical, ())


def _normalise(path: str) -> str:
    """Absolute, no empty or '.' components, no trailing slash (as dpkg-query trims)."""
    if path.startswith("/") and "//" not in path and "/./" not in path:
        if path.endswith("/."):
            path = path[:-2]
        path = path.rstrip("/")
        return path or "/"
    parts = [p for p in path.split("/") if p and p != "."]
    return "/" + "/".join(parts)


def binary_package_name(name: str, arch: str, multi_arch: str, native: str | None) -> str:
    """dpkg's ``pkg_name(pnaw_nonambig)``: qualify ``same`` and foreign packages."""
    if not arch:
        return name
    if multi_arch == "same" or (native and arch not in (native, "all")):
        return f"{name}:{arch}"
    return name


class DpkgDatabase:
    """Packages and file ownership of one root; build it with :func:`load_dpkg_database`."""

    def __init__(
        self,
        root: Root,
        admindir: str,
        packages: tuple[Package, ...],
        diversions: tuple[Diversion, ...],
        warnings: tuple[str, ...],
        native_arch: str | None,
        multiarch_info: bool,
        aliases: tuple[str, ...],
        status_stamp: tuple[int, ...] = (),
    ) -> None:
        self.root = root
        #: (st_dev, st_ino, st_size, st_mtime_ns) of the status file read: dpkg replaces it by
        #: rename, so any change of the database changes the stamp
        self.status_stamp = status_stamp
        self.admindir = admindir
        #: every stanza of the status file, in file order
        self.packages = packages
        #: the installed ones (see :attr:`Package.installed`)
        self.installed = tuple(p for p in packages if p.installed)
        self.diversions = diversions
        #: broken stanzas, bad fields, missing .list files, unreadable diversions
        self.warnings = warnings
        self.native_arch = native_arch
        self.multiarch_info = multiarch_info
        #: the top-level directories that are symlinks to their /usr twin here
        self.aliases = aliases
        self._alias_prefixes = tuple(a + "/" for a in aliases)
        by_name: dict[str, list[Package]] = {}
        for p in packages:
            by_name.setdefault(p.name, []).append(p)
        self._by_name = {k: tuple(v) for k, v in by_name.items()}
        self._files: FileIndex | None = None
        self._some: FileIndex | None = None  # owners of the prefetched paths only

    def __repr__(self) -> str:
        return f"DpkgDatabase({self.root!r}, {len(self.installed)} installed)"

    def installed_packages(self) -> tuple[Package, ...]:
        return self.installed

    def package(self, name: str, arch: str | None = None) -> Package | None:
        """A package by name (``name:arch`` accepted); installed and native first."""
        if arch is None and ":" in name:
            name, _, arch = name.partition(":")
        candidates = self._by_name.get(name, ())
        if arch is not None:
            return next((p for p in candidates if p.arch == arch), None)
        if not candidates:
            return None
        return min(
            candidates,
            key=lambda p: (not p.installed, p.arch != self.native_arch, p.arch != "all"),
        )

    def list_file(self, pkg: Package) -> str:
        """Root-relative path of the package's ``.list``."""
        return _list_path(self.admindir, pkg, self.multiarch_info)

    def canonical(self, path: str) -> str:
        """The form paths are indexed in: normalised, merged-/usr aliases under /usr."""
        path = _normalise(path)
        if self._alias_prefixes and (path.startswith(self._alias_prefixes) or path in self.aliases):
            return "/usr" + path
        return path

    @property
    def files(self) -> FileIndex:
        """The ownership index, built from every ``.list`` on first use."""
        if self._files is None:
            self._files = self._build_index()
        return self._files

    @property
    def list_warnings(self) -> tuple[str, ...]:
        """The .list files that could not be read (by :meth:`prefetch` or the full index)."""
        if self._files is None and self._some is not None:
            return self._some.warnings
        return self.files.warnings

    def owners(self, path: str) -> tuple[str, ...]:
        """Packages owning the file at a root-relative path, sorted; () for none.

        Only the path is canonicalised (merged /usr, slashes); links inside the
        root are not followed, see :meth:`owners_of_file`.
        """
        c = self.canonical(path)
        if self._files is None and self._some is not None and c in self._some.owners:
            return self._some.owners[c]
        return self.files.lookup(c)

    def prefetch(self, paths: Iterable[str]) -> None:
        """Find the owners of these paths in one pass over the .list files, without the
        index of every path (the whole index costs more than the rest of a small run).

        Exact for paths that are not directories in the root (a directory is owned by
        no package in the index either; those are left to it): each list's lines are
        intersected with the paths in every form dpkg may have written them in
        (merged-/usr aliases), and diversions are inverted as in the index.
        """
        if self._files is not None:
            return
        forms: dict[str, str] = {}  # as a .list may write it -> canonical
        for path in [*paths, *(d.path for d in self.diversions), *(d.diverted_to for d in self.diversions)]:
            c = self.canonical(path)
            try:
                if stat.S_ISDIR(self.root.lstat(c).st_mode):
                    continue
            except OSError:
                pass
            forms[c] = c
            for a in self.aliases:
                if c.startswith("/usr" + a + "/"):
                    forms[c[4:]] = c
        as_listed: dict[bytes, str] = {}  # the forms as bytes, as a .list holds them
        for f, c in forms.items():
            try:
                as_listed[f.encode("utf-8", "surrogateescape")] = c
            except UnicodeEncodeError:
                pass  # not a file name (a lone surrogate from JSON): in no list
        wanted = frozenset(as_listed)
        warnings: list[str] = []
        owners: dict[str, tuple[str, ...]] = {c: () for c in forms.values()}
        for pkg, data in self._list_bytes(warnings):
            for hit in wanted.intersection(data.split(b"\n")):
                c = as_listed[hit]
                if pkg.binary_package not in owners[c]:
                    owners[c] = tuple(sorted((*owners[c], pkg.binary_package)))
        self._invert_diversions(owners)
        known = {c: owners.get(c, ()) for c in forms.values()}
        self._some = FileIndex(MappingProxyType(known), tuple(warnings))

    def owners_of_file(self, path: str) -> tuple[str, ...]:
        """Owners of the path as given, else with its directories resolved, else
        of the file it finally resolves to inside the root.

        Raises :class:`~depmin.errors.RootError` on a link loop.
        """
        found = self.owners(path)
        if found:
            return found
        for follow in (False, True):
            resolved = self.root.resolve(path, follow=follow)
            if resolved is not None:
                found = self.owners(resolved)
                if found:
                    return found
        return ()

    def _lists(self, warnings: list[str]) -> Iterator[tuple[Package, list[str]]]:
        """The lines of every package's .list (a missing or unreadable one is a warning)."""
        for pkg, data in self._list_bytes(warnings):
            yield pkg, data.decode("utf-8", "surrogateescape").split("\n")

    def _list_bytes(self, warnings: list[str]) -> Iterator[tuple[Package, bytes]]:
        """The bytes of every installed package's .list (a missing or unreadable one is a
        warning).

        The info directory is resolved once and each list opened relative to it
        (O_NOFOLLOW: a list that is a link takes the resolving path instead); the
        prefetch reads all of them on every run.
        """
        info = self.root.resolve(self.admindir + "/info")
        try:
            dfd = os.open(self.root.host(info), _DIR_FLAGS) if info is not None else -1
        except OSError:
            dfd = -1
        try:
            for pkg in self.packages:
                if pkg.status.state == "not-installed":
                    continue
                path = self.list_file(pkg)
                data = _read_in(dfd, path.rpartition("/")[2]) if dfd >= 0 else None
                if data is None:
                    data = _read_optional_bytes(self.root, path, warnings)
                    if data is None:
                        continue
                yield pkg, data
        finally:
            if dfd >= 0:
                os.close(dfd)

    def _build_index(self) -> FileIndex:
        warnings: list[str] = []
        listed: list[tuple[str, list[str]]] = []
        pre, tops = self._alias_prefixes, frozenset(self.aliases)
        for pkg, paths in self._lists(warnings):
            if pre:  # dpkg writes clean absolute paths: only the alias mapping is needed
                paths = [("/usr" + p if p.startswith(pre) or p in tops else p) for p in paths]
            listed.append((sys.intern(pkg.binary_package), paths))
        directories = {p.rpartition("/")[0] or "/" for _, paths in listed for p in paths}
        directories.update(("", "/."))  # blank lines; the "/." every list starts with
        owners: dict[str, tuple[str, ...]] = {}
        shared: set[str] = set()
        for owner, paths in listed:
            mine = (owner,)
            for p in paths:
                if p in directories:
                    continue
                cur = owners.get(p)
                if cur is None:
                    owners[p] = mine
                elif owner not in cur:
                    owners[p] = cur + mine
                    shared.add(p)
        for p in shared:
            owners[p] = tuple(sorted(owners[p]))
        self._invert_diversions(owners)
        return FileIndex(MappingProxyType(owners), tuple(warnings))

    def _invert_diversions(self, owners: dict[str, tuple[str, ...]]) -> None:
        """Apply the inversion rule of the module docstring, from the pre-diversion map."""
        name_of = {p.binary_package: p.name for p in self.packages}
        changes: dict[str, tuple[str, ...]] = {}
        for d in self.diversions:
            original, target = self.canonical(d.path), self.canonical(d.diverted_to)
            listers = owners.get(original, ())
            moved = tuple(o for o in listers if name_of.get(o) != d.by)
            kept = tuple(o for o in listers if d.by is not None and name_of.get(o) == d.by)
            changes[original] = kept
            changes[target] = tuple(sorted(set(moved) | set(owners.get(target, ()))))
        for path, who in changes.items():
            if who:
                owners[path] = who
            else:
                owners.pop(path, None)


def _list_path(admindir: str, pkg: Package, multiarch_info: bool) -> str:
    """dpkg's infodb naming: ``name:arch.list`` for ``same`` once info/format is 1."""
    qualified = pkg.multi_arch == "same" and multiarch_info and pkg.arch
    base = f"{pkg.name}:{pkg.arch}" if qualified else pkg.name
    return f"{admindir}/info/{base}.list"


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _read_in(dfd: int, name: str) -> bytes | None:
    """A regular file's bytes by name in an open directory; None for anything else
    (absent, a link, unreadable: the caller's slower path says which)."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dfd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return io.FileIO(fd, closefd=False).readall()  # sized by fstat, read to the end
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_optional(root: Root, path: str, warnings: list[str]) -> str | None:
    """Text of a root-relative file; None (and a warning unless absent) on failure."""
    data = _read_optional_bytes(root, path, warnings)
    return None if data is None else data.decode("utf-8", "surrogateescape")


def _read_optional_bytes(root: Root, path: str, warnings: list[str]) -> bytes | None:
    """:func:`_read_optional`'s bytes."""
    resolved = root.resolve(path)
    if resolved is None:
        return None
    try:
        fd = root.open_regular(resolved)
    except OSError as exc:
        warnings.append(f"{root.host(resolved)}: cannot read: {exc.strerror or exc}")
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    except OSError as exc:
        warnings.append(f"{root.host(resolved)}: cannot read: {exc.strerror or exc}")
        return None
    return data


def _usr_aliases(root: Root) -> tuple[str, ...]:
    """The merged-/usr directories: symlinks that resolve to their /usr twin."""
    found = []
    for alias in USR_ALIASES:
        try:
            if not stat.S_ISLNK(root.lstat(alias).st_mode):
                continue
        except OSError:
            continue
        if root.resolve(alias) == "/usr" + alias:
            found.append(alias)
    return tuple(found)


def _flag(stanza: Stanza, name: str) -> bool:
    return stanza.get(name, "").lower() == "yes"


def _package(
    stanza: Stanza, where: str, native: str | None, warnings: list[str]
) -> Package | None:
    """One status stanza as a Package, or None (with a warning) when unusable."""
    at = f"{where}:{stanza.line}"
    name = stanza.get("Package", "")
    if not name:
        warnings.append(f"{at}: stanza without a Package field, skipped")
        return None
    if not _PACKAGE_NAME.fullmatch(name):
        warnings.append(f"{at}: invalid package name {name!r}, skipped")
        return None
    words = stanza.get("Status", "").split()
    if len(words) != 3 or words[0] not in WANTS or words[1] not in FLAGS or words[2] not in STATES:
        warnings.append(f"{at}: package {name}: bad Status {stanza.get('Status')!r}, skipped")
        return None
    status = Status(*words)
    arch = stanza.get("Architecture", "")
    version = stanza.get("Version", "")
    multi_arch = stanza.get("Multi-Arch", "no").lower() or "no"
    source, source_version = name, version
    if "Source" in stanza:
        src_name, _, rest = stanza["Source"].partition("(")
        src_name, rest = src_name.strip(), rest.strip()
        if not src_name or " " in src_name or (rest and not rest.endswith(")")):
            warnings.append(f"{at}: package {name}: bad Source {stanza['Source']!r}")
        else:
            source = src_name
            if rest[:-1].strip():
                source_version = rest[:-1].strip()
    size: int | None = None
    if "Installed-Size" in stanza:
        raw = stanza["Installed-Size"]
        if raw.isdigit() and raw.isascii():
            size = int(raw)
        else:
            warnings.append(f"{at}: package {name}: bad Installed-Size {raw!r}")
    relations: dict[str, Relations] = {}
    for field_name, attr in _RELATION_FIELDS:
        value = stanza.get(field_name)
        if value is None:
            continue
        try:
            relations[attr] = parse_relations(value, f"{at}: {name} {field_name}")
        except DpkgError as exc:
            warnings.append(f"{exc}; field ignored")
    return Package(
        name=name,
        arch=arch,
        version=version,
        status=status,
        binary_package=binary_package_name(name, arch, multi_arch, native),
        essential=_flag(stanza, "Essential"),
        protected=_flag(stanza, "Protected"),
        important=_flag(stanza, "Important"),
        priority=stanza.get("Priority"),
        section=stanza.get("Section"),
        source=source,
        source_version=source_version,
        multi_arch=multi_arch,
        installed_size=size,
        depends=relations.get("depends", ()),
        pre_depends=relations.get("pre_depends", ()),
        recommends=relations.get("recommends", ()),
        suggests=relations.get("suggests", ()),
        provides=relations.get("provides", ()),
    )


def _native_arch(stanzas: list[Stanza]) -> str | None:
    """dpkg's own architecture is the native one (dpkg is never Arch: all)."""
    for s in stanzas:
        if s.get("Package") == "dpkg" and s.get("Status", "").split()[-1:] != ["not-installed"]:
            arch = s.get("Architecture", "")
            if arch and arch != "all":
                return arch
    return None


def _parse_diversions(text: str, where: str, warnings: list[str]) -> tuple[Diversion, ...]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 3:
        warnings.append(f"{where}: {len(lines)} lines, not a multiple of 3; last record ignored")
    found = []
    for i in range(0, len(lines) - 2, 3):
        path, to, by = lines[i : i + 3]
        if not path.startswith("/") or not to.startswith("/") or not by:
            warnings.append(f"{where}:{i + 1}: bad diversion record, ignored")
            continue
        found.append(Diversion(path, to, None if by == ":" else by))
    return tuple(found)


def load_dpkg_database(
    root: Root,
    admindir: str = "/var/lib/dpkg",
    *,
    native_arch: str | None = None,
    strict: bool = False,
) -> DpkgDatabase:
    """Read ``status``, ``diversions`` and ``info/format`` of a root's dpkg database.

    ``native_arch`` defaults to the architecture of the installed ``dpkg``
    package.  With ``strict=True`` a broken status stanza raises instead of
    becoming a warning.  Raises :class:`DpkgError` when the status file is
    missing or unreadable.
    """
    admindir = _normalise(admindir)
    warnings: list[str] = []
    status_path = f"{admindir}/status"
    resolved = root.resolve(status_path)
    if resolved is None:
        raise DpkgError("no dpkg status file", root.host(status_path))
    try:
        fd = root.open_regular(resolved)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise DpkgError(f"cannot read: {exc.strerror or exc}", root.host(resolved)) from None
    where = root.host(resolved)
    stanzas = list(iter_stanzas(text, where, strict=strict, warn=warnings.append))
    native = native_arch or _native_arch(stanzas)

    by_key: dict[tuple[str, str], Package] = {}
    for stanza in stanzas:
        pkg = _package(stanza, where, native, warnings)
        if pkg is None:
            continue
        if (pkg.name, pkg.arch) in by_key:
            warnings.append(
                f"{where}:{stanza.line}: second stanza for {pkg.key}; it replaces the first"
                " (as in dpkg)"
            )
        by_key[(pkg.name, pkg.arch)] = pkg
    packages = tuple(by_key.values())

    fmt = _read_optional(root, f"{admindir}/info/format", warnings)
    multiarch_info = fmt is not None and fmt.strip() == "1"
    for pkg in packages:
        list_path = _list_path(admindir, pkg, multiarch_info)
        if pkg.installed and root.resolve(list_path, follow=False) is None:
            warnings.append(
                f"{root.host(list_path)}: missing file list of installed package"
                f" {pkg.binary_package}; it is taken to own no files"
            )
    div_text = _read_optional(root, f"{admindir}/diversions", warnings)
    diversions: tuple[Diversion, ...] = ()
    if div_text:
        diversions = _parse_diversions(div_text, root.host(f"{admindir}/diversions"), warnings)
    return DpkgDatabase(
        root,
        admindir,
        packages,
        diversions,
        tuple(warnings),
        native,
        multiarch_info,
        _usr_aliases(root),
        status_stamp(st),
    )


def status_stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def current_status_stamp(db: DpkgDatabase) -> tuple[int, ...] | None:
    """The stamp of the status file now (None if it is gone): compare with ``db.status_stamp``."""
    resolved = db.root.resolve(f"{db.admindir}/status")
    if resolved is None:
        return None
    try:
        return status_stamp(db.root.lstat(resolved))
    except OSError:
        return None
