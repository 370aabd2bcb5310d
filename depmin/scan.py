"""Find the ELF objects and scripts in one or more trees, by content, never by mode bits.

The pipeline's ``find -type f -executable`` misses 0644 libraries and runs ldd
on scripts; here every regular file is opened (O_NONBLOCK, O_NOFOLLOW: FIFOs,
sockets and devices are never opened) and its first bytes decide.  The walk
stays on the tree's file system (like ``find -xdev``) so nothing mounted inside
an image root (/proc, /sys) is ever read, and problems (EACCES, a file that
vanished) are reported and skipped.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

from depmin.elf import ET_DYN, ET_EXEC, ElfFile, read_elf_fd
from depmin.errors import ElfError, RootError
from depmin.rootfs import Root

_HEAD = 256


@dataclass(frozen=True)
class Script:
    """A file starting with ``#!``: its interpreter is a run-time dependency."""

    path: str
    interpreter: str
    argument: Optional[str]


@dataclass(frozen=True)
class Skipped:
    """A file that was looked at and left out, with the reason (shown as a note)."""

    path: str
    reason: str
    problem: bool = False  # True for errors (unreadable, malformed); False for plain notes


@dataclass(frozen=True)
class ScanResult:
    trees: tuple[str, ...]  # canonical root-relative tree tops
    objects: tuple[ElfFile, ...]  # loadable ELF objects (ET_EXEC, ET_DYN), paths root-relative
    scripts: tuple[Script, ...]
    skipped: tuple[Skipped, ...]
    others: tuple[str, ...] = ()  # other regular files (modules, data): hints may name them

    def in_trees(self, path: str) -> bool:
        """True when a canonical root-relative path lies inside one of the scanned trees."""
        return any(path == t or path.startswith(t.rstrip("/") + "/") for t in self.trees)


def _excluded(path: str, patterns: Sequence[str]) -> bool:
    """A pattern matches the base name (like ``find -name``) or the whole path."""
    base = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(base, p) or fnmatch.fnmatchcase(path, p) for p in patterns)


def parse_shebang(head: bytes) -> Optional[tuple[str, Optional[str]]]:
    """The kernel's reading of a ``#!`` line: interpreter and one optional argument."""
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].split(b"\0", 1)[0].strip(b" \t\r")  # the kernel stops at NUL
    if not line:
        return None
    parts = line.replace(b"\t", b" ").split(b" ", 1)
    interp = parts[0].decode("utf-8", "surrogateescape")
    arg = parts[1].strip().decode("utf-8", "surrogateescape") if len(parts) > 1 else None
    return interp, (arg or None)


def _walk(root: Root, top: str, skipped: list[Skipped]) -> Iterator[tuple[str, str]]:
    """(root-relative, host) paths of regular files under ``top``, one file system only."""
    host_top = root.host(top)
    try:
        dev = os.lstat(host_top).st_dev
    except OSError as exc:
        skipped.append(Skipped(top, f"cannot stat: {exc.strerror}", True))
        return
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(root.host(d)) as it:
                entries = list(it)  # scan() sorts all paths once, in C
        except OSError as exc:
            skipped.append(Skipped(d, f"cannot read directory: {exc.strerror}", True))
            continue
        subdirs = []
        for e in entries:
            rel = d.rstrip("/") + "/" + e.name
            try:
                if e.is_dir(follow_symlinks=False):
                    if e.stat(follow_symlinks=False).st_dev != dev:
                        skipped.append(
                            Skipped(rel, "another file system is mounted here; not scanned")
                        )
                        continue
                    subdirs.append(rel)
                elif e.is_file(follow_symlinks=False):
                    yield rel, e.path
            except OSError as exc:
                skipped.append(Skipped(rel, f"cannot stat: {exc.strerror}", True))
        stack.extend(subdirs)


def scan(
    root: Root, trees: Sequence[str], exclude: Sequence[str] = (), jobs: Optional[int] = None
) -> ScanResult:
    """Scan ``trees`` (root-relative paths) inside ``root`` for ELF objects and scripts.

    ``jobs``: processes for classifying files (default: one per core, for big trees).
    """
    pending: list[tuple[str, str]] = []
    skipped: list[Skipped] = []
    objects: list[ElfFile] = []
    scripts: list[Script] = []
    others: list[str] = []
    tops: list[str] = []
    for tree in trees:
        try:
            top = root.resolve(tree)
        except RootError as exc:
            skipped.append(Skipped(tree, exc.problem, True))
            continue
        if top is None:
            skipped.append(Skipped(tree, "no such directory inside the root", True))
            continue
        if top in tops:
            continue
        tops.append(top)
        try:
            is_dir = stat.S_ISDIR(root.lstat(top).st_mode)
        except OSError as exc:
            skipped.append(Skipped(tree, f"cannot stat: {exc.strerror}", True))
            continue
        files = list(_walk(root, top, skipped)) if is_dir else [(top, root.host(top))]
        for rel, host in files:
            if exclude and _excluded(rel, exclude):
                skipped.append(Skipped(rel, "excluded"))
                continue
            pending.append((rel, host))
    pending.sort()  # one order for every run, whatever the directories' order on disk
    for part in _classify_all(pending, jobs):
        objects.extend(part[0])
        scripts.extend(part[1])
        skipped.extend(part[2])
        others.extend(part[3])
    return ScanResult(tuple(tops), tuple(objects), tuple(scripts), tuple(skipped), tuple(others))


_Part = tuple[list[ElfFile], list[Script], list[Skipped], list[str]]

#: Below this many files a second process costs more than it saves.
PARALLEL_MIN_FILES = 4000


def _classify_chunk(chunk: list[tuple[str, str]]) -> _Part:
    part: _Part = ([], [], [], [])
    for rel, host in chunk:
        _classify(rel, host, *part)
    return part


def _classify_all(files: list[tuple[str, str]], jobs: Optional[int]) -> list[_Part]:
    """Open and classify files, on every core when the tree is big enough to pay.

    Opening files is system-call bound, so forked workers (each classifying
    contiguous slices, so the order of results is the walk's order) use both
    cores; where processes cannot be made (no /dev/shm in a bare chroot) the
    work is done here.
    """
    n = jobs if jobs is not None else (os.cpu_count() or 1)
    if n <= 1 or len(files) < PARALLEL_MIN_FILES:
        return [_classify_chunk(files)]
    size = -(-len(files) // (n * 4))
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    try:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(n) as pool:
            return pool.map(_classify_chunk, chunks)
    except (OSError, ImportError, ValueError):
        return [_classify_chunk(files)]


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _classify(
    rel: str,
    host: str,
    objects: list[ElfFile],
    scripts: list[Script],
    skipped: list[Skipped],
    others: list[str],
) -> None:
    """Open one file the walk saw as regular; O_NOFOLLOW/O_NONBLOCK and fstat guard races."""
    try:
        fd = os.open(host, _OPEN_FLAGS)
    except OSError as exc:
        skipped.append(Skipped(rel, f"cannot open: {exc.strerror or exc}", True))
        return
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            skipped.append(Skipped(rel, "no longer a regular file", True))
            return
        head = os.pread(fd, _HEAD, 0)
        if head[:4] == b"\x7fELF":
            try:
                elf = read_elf_fd(fd, rel)
            except ElfError as exc:
                skipped.append(Skipped(rel, exc.problem, True))
                return
            if elf.type in (ET_EXEC, ET_DYN):
                objects.append(elf)
            else:
                kind = {1: "relocatable object (ET_REL)", 4: "core file"}.get(
                    elf.type, f"ELF type {elf.type}"
                )
                skipped.append(Skipped(rel, f"{kind}: the loader cannot load it"))
        else:
            she = parse_shebang(head)
            # The kernel honours #! only when it executes the file: a 0644 module
            # with a #! line is read by an interpreter, never run through it.
            if she is not None and mode & 0o111:
                scripts.append(Script(rel, she[0], she[1]))
            else:
                others.append(rel)
    except OSError as exc:
        skipped.append(Skipped(rel, f"cannot read: {exc.strerror}", True))
    finally:
        os.close(fd)
