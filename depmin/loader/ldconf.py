"""Reader of ``/etc/ld.so.conf``: the directories ldconfig scans, in its order.

The order decides which of two libraries with one SONAME the cache serves (the
earlier directory wins), so it must be ldconfig's exactly (glibc 2.36
``elf/ldconfig.c``: ``parse_conf``, ``parse_conf_include``, ``add_dir_1``).

Everything is read inside a :class:`~depmin.rootfs.Root`: include patterns are
expanded by listing directories resolved in the root and matching names with
:func:`fnmatch.fnmatchcase`, never with :mod:`glob`, which would follow links into
the host.  Directories are returned root-relative, as written in the file (the
text ldconfig puts in front of each SONAME in the cache).

Not covered here: the built-in system directories and ``glibc-hwcaps/*``
subdirectories ldconfig appends while scanning.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass

from depmin.errors import ConfigError, RootError
from depmin.rootfs import Root

#: C ``isspace`` in the C locale.
_SPACE = " \t\n\v\f\r"
_BLANKS = (" ", "\t")  # C isblank
_MAGIC = re.compile(r"[*?[]")
#: Deeper include nesting is reported and cut (ldconfig stops at its fd limit).
MAX_INCLUDE_DEPTH = 64
#: Largest configuration file read.
MAX_CONF_SIZE = 1 << 20


@dataclass(frozen=True)
class ConfLine:
    """One meaningful line of an ld.so.conf file.

    ``kind`` is ``include`` (``args`` = the glob patterns), ``dir`` (``args`` =
    the directory, blanks, trailing ``/`` and any ``=TYPE`` removed) or ``hwcap``
    (ignored by ldconfig since 2.37 and by depmin).
    """

    lineno: int
    kind: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class LdSoConf:
    """Result of reading ld.so.conf and its includes.

    ``files`` lists the configuration files read, in order; ``warnings`` are
    :class:`~depmin.errors.ConfigError` values (``path`` is ``file:line``) for what
    ldconfig would warn about or depmin had to decide: ``hwcap`` lines, include
    cycles, unreadable files, directories that are not directories, relative paths.
    """

    dirs: tuple[str, ...]
    files: tuple[str, ...]
    warnings: tuple[ConfigError, ...]


def parse_conf_text(text: str) -> tuple[ConfLine, ...]:
    """Split one ld.so.conf file into its directives, as ``parse_conf`` reads lines.

    ``#`` starts a comment anywhere (there is no quoting); ``include`` must be
    followed by a space or tab and takes every blank-separated word as a pattern;
    ``hwcap`` (any case) must be followed by a blank too.  Anything else is a
    directory: ``dir=TYPE`` drops ``=TYPE``, then trailing blanks, then trailing
    slashes go; ``/`` alone thus vanishes, as in ldconfig.
    """
    lines: list[ConfLine] = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.split("\0", 1)[0].split("#", 1)[0].lstrip(_SPACE)
        if not line:
            continue
        if line.startswith("include") and line[7:8] in _BLANKS:
            patterns = tuple(p for p in re.split("[ \t]", line[8:]) if p)
            lines.append(ConfLine(lineno, "include", patterns))
        elif line[:5].lower() == "hwcap" and line[5:6] in _BLANKS:
            lines.append(ConfLine(lineno, "hwcap", ()))
        else:
            path = line.split("=", 1)[0].rstrip(_SPACE).rstrip("/")
            if path:
                lines.append(ConfLine(lineno, "dir", (path,)))
    return tuple(lines)


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name


def _bytes_key(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def _resolve(root: Root, path: str, follow: bool = True) -> str | None:
    """Root.resolve, with a link loop counted as missing (ldconfig's ENOENT path)."""
    try:
        return root.resolve(path, follow)
    except RootError:
        return None


def glob_in_root(root: Root, pattern: str) -> tuple[str, ...]:
    """glob(3) of an absolute pattern inside a root, sorted in C collation.

    Components without ``*?[`` are taken literally; the others are matched
    against a listing of the directory resolved inside the root.  As glob does
    without GLOB_PERIOD, a leading ``.`` in a name must be matched by a literal
    ``.``.  Results are as-written paths (links not resolved) that exist (lstat).
    Backslash escapes are not supported (fnmatch has none); ld.so.conf files do
    not use them.
    """
    paths = ["/"]
    for component in (c for c in pattern.split("/") if c):
        if not _MAGIC.search(component):
            paths = [_join(p, component) for p in paths]
            continue
        matched: list[str] = []
        for parent in paths:
            resolved = _resolve(root, parent)
            if resolved is None:
                continue
            try:
                names = os.listdir(root.host(resolved))
            except OSError:
                continue
            for name in names:
                if name.startswith(".") and not component.startswith("."):
                    continue
                if fnmatch.fnmatchcase(name, component):
                    matched.append(_join(parent, name))
        paths = matched
    found = [p for p in paths if _resolve(root, p, follow=False) is not None]
    return tuple(sorted(found, key=_bytes_key))


class _Walker:
    """State of one ld.so.conf read: directories kept and files seen so far."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self.dirs: list[str] = []
        self.inodes: set[tuple[int, int]] = set()
        self.files: list[str] = []
        self.warnings: list[ConfigError] = []
        self.done: set[tuple[str, str]] = set()
        self.active: list[tuple[str, str]] = []

    def warn(self, where: str, problem: str) -> None:
        self.warnings.append(ConfigError(problem, where))

    def read(self, path: str) -> str | None:
        """Text of a config file; None when absent (silent) or unreadable (warned)."""
        try:
            resolved = self.root.resolve(path)
        except RootError as exc:
            self.warn(path, f"ignoring configuration file: {exc.problem}")
            return None
        if resolved is None:
            return None
        try:
            fd = self.root.open_regular(resolved)
        except IsADirectoryError:
            return None  # ldconfig's fopen succeeds and reads no line
        except OSError as exc:
            self.warn(path, f"ignoring configuration file that cannot be opened: {exc}")
            return None
        try:
            data = b""
            while len(data) <= MAX_CONF_SIZE:
                chunk = os.read(fd, MAX_CONF_SIZE + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            self.warn(path, f"ignoring configuration file that cannot be read: {exc}")
            return None
        finally:
            os.close(fd)
        if len(data) > MAX_CONF_SIZE:
            self.warn(path, f"configuration file larger than {MAX_CONF_SIZE} bytes ignored")
            return None
        return data.decode("utf-8", "surrogateescape")

    def parse_file(self, path: str, origin: str) -> None:
        """One file, depth first through its includes.

        A file is identified by its canonical path and the canonical directory its
        relative includes start from.  One already read is skipped: re-reading
        could add no directory, since duplicates by inode are dropped anyway.  One
        still being read (an include cycle) is skipped with a warning; ldconfig
        itself recurses until it runs out of file descriptors and ends with the
        same directory order.
        """
        canonical = _resolve(self.root, path)
        if canonical is None:
            self.read(path)  # warns about link loops; absent files are silent
            return
        base = _resolve(self.root, os.path.dirname(path) or "/") or "/"
        ident = (canonical, base)
        if ident in self.active:
            self.warn(origin, f"include cycle: {path} is already being read, skipped")
            return
        if ident in self.done:
            return
        if len(self.active) >= MAX_INCLUDE_DEPTH:
            self.warn(origin, f"includes nested deeper than {MAX_INCLUDE_DEPTH}, {path} skipped")
            return
        text = self.read(path)
        if text is None:
            return
        self.done.add(ident)
        self.files.append(path)
        self.active.append(ident)
        try:
            for line in parse_conf_text(text):
                self.apply(path, line)
        finally:
            self.active.pop()

    def apply(self, path: str, line: ConfLine) -> None:
        where = f"{path}:{line.lineno}"
        if line.kind == "hwcap":
            self.warn(where, "hwcap directive ignored")
        elif line.kind == "include":
            for pattern in line.args:
                if not pattern.startswith("/"):
                    pattern = _join(os.path.dirname(path) or "/", pattern)
                for match in glob_in_root(self.root, pattern):
                    self.parse_file(match, where)
        else:
            self.add_dir(line.args[0], where)

    def add_dir(self, directory: str, where: str) -> None:
        lookup = directory
        if not directory.startswith("/"):
            self.warn(where, f"relative path {directory!r} taken from / (ldconfig: its cwd)")
            lookup = "/" + directory
        resolved = _resolve(self.root, lookup)
        if resolved is None:
            return
        try:
            st = self.root.lstat(resolved)
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode):
            # ldconfig keeps it in its list too, and fails to open it later.
            self.warn(where, f"{directory} is not a directory")
        inode = (st.st_dev, st.st_ino)
        if inode not in self.inodes:
            self.inodes.add(inode)
            self.dirs.append(directory)


def parse_ld_so_conf(root: Root, path: str = "/etc/ld.so.conf") -> LdSoConf:
    """Directories ldconfig would scan from ``path`` (without built-ins), with notes.

    Missing directories are skipped silently, as ldconfig does without ``-v``; a
    directory seen again under another name (same st_dev, st_ino) keeps its
    first position and spelling.  An existing path that is not a directory stays
    in the list with a warning, as in ldconfig's (it contributes no library).  A
    missing ``path`` gives no directories.  Include cycles terminate: every file is
    read once, and an include of a file still being read is skipped with a
    ConfigError in ``warnings`` (ldconfig recurses until it runs out of file
    descriptors and lists the same directories in the same order).
    """
    walker = _Walker(root)
    walker.parse_file(path, path)
    return LdSoConf(tuple(walker.dirs), tuple(walker.files), tuple(walker.warnings))


def read_ld_so_conf(root: Root, path: str = "/etc/ld.so.conf") -> tuple[str, ...]:
    """Just the directories of :func:`parse_ld_so_conf`."""
    return parse_ld_so_conf(root, path).dirs
