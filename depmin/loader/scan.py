"""Find the ELF objects and scripts in one or more trees, by content, never by mode bits.

The pipeline's ``find -type f -executable`` misses 0644 libraries and runs ldd
on scripts; here every regular file is opened (O_NONBLOCK, O_NOFOLLOW: FIFOs,
sockets and devices are never opened) and its first bytes decide.  The walk
stays on the tree's file system (like ``find -xdev``) so nothing mounted inside
an image root (/proc, /sys) is ever read, and problems (EACCES, a file that
vanished) are reported and skipped.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from depmin.errors import ElfError, RootError
from depmin.loader.elf import ET_DYN, ET_EXEC, ElfFile, read_elf_fd
from depmin.rootfs import Root

_HEAD = 256


@dataclass(frozen=True)
class Script:
    """A file starting with ``#!``: its interpreter is a run-time dependency."""

    path: str
    interpreter: str
    argument: str | None


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


def parse_shebang(head: bytes) -> tuple[str, str | None] | None:
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
    root: Root, trees: Sequence[str], exclude: Sequence[str] = (), jobs: int | None = None
) -> ScanResult:
    """Scan ``trees`` (root-relative paths) inside ``root`` for ELF objects and scripts.

    ``jobs``: processes for classifying files (default: one per core, for big trees).
    """
    return start_scan(root, trees, exclude, jobs).result()


class ScanJob:
    """A scan whose files are being classified by worker processes.

    ``start_scan`` walks the trees and hands the files to the workers; the caller
    may do other work (read the dpkg database, the loader cache) before asking for
    the ``result``.  Without workers the job is already complete.
    """

    def __init__(
        self,
        tops: list[str],
        skipped: list[Skipped],
        parts: list[_Part] | None,
        pending: Callable[[], list[_Part]] | None = None,
        cancel: Callable[[], None] = lambda: None,
    ) -> None:
        self._tops, self._skipped, self._parts, self._pending = tops, skipped, parts, pending
        self._cancel = cancel

    @property
    def running(self) -> bool:
        """True while worker processes classify files in the background."""
        return self._parts is None

    def cancel(self) -> None:
        """Stop the workers (the caller failed before asking for the result)."""
        if self._pending is not None:
            self._pending = None
            self._parts = []
            self._cancel()

    def result(self) -> ScanResult:
        if self._parts is None:
            self._parts = self._pending() if self._pending else []
            self._pending = None
        parts = self._parts
        objects: list[ElfFile] = []
        scripts: list[Script] = []
        others: list[str] = []
        skipped = list(self._skipped)
        for part in parts:
            objects.extend(part[0])
            scripts.extend(part[1])
            skipped.extend(part[2])
            others.extend(part[3])
        return ScanResult(tuple(self._tops), tuple(objects), tuple(scripts), tuple(skipped), tuple(others))


def start_scan(
    root: Root,
    trees: Sequence[str],
    exclude: Sequence[str] = (),
    jobs: int | None = None,
    keep_others: bool = True,
) -> ScanJob:
    """Walk ``trees`` now and start classifying their files (see ScanJob).

    ``keep_others=False`` drops the list of non-ELF, non-script files (memory).
    """
    pending: list[str] = []
    skipped: list[Skipped] = []
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
        files = [rel for rel, _host in _walk(root, top, skipped)] if is_dir else [top]
        for rel in files:
            if exclude and _excluded(rel, exclude):
                skipped.append(Skipped(rel, "excluded"))
                continue
            pending.append(rel)
    pending.sort()  # one order for every run, whatever the directories' order on disk
    prefix = root.host("/").rstrip("/")
    return _classify_all(tops, skipped, prefix, pending, jobs, keep_others)


_Part = tuple[list[ElfFile], list[Script], list[Skipped], list[str]]

#: Below this many files a second process costs more than it saves.
PARALLEL_MIN_FILES = 4000


def _classify_chunk(prefix: str, chunk: list[str], keep_others: bool) -> _Part:
    part: _Part = ([], [], [], [])
    for rel in chunk:
        _classify(rel, prefix + rel, *part)
    if not keep_others:
        part[3].clear()  # most files of a tree: only hints look at them
    return part


def _classify_all(
    tops: list[str],
    skipped: list[Skipped],
    prefix: str,
    files: list[str],
    jobs: int | None,
    keep_others: bool,
) -> ScanJob:
    """Open and classify files, on every core when the tree is big enough to pay.

    Opening files is system-call bound, so forked workers (each classifying
    contiguous slices, so results keep the sorted order) use both cores while
    the caller goes on; where processes cannot be made (no /dev/shm in a bare
    chroot) the work is done here.
    """
    n = jobs if jobs is not None else (os.cpu_count() or 1)
    if n <= 1 or len(files) < PARALLEL_MIN_FILES:
        return ScanJob(tops, skipped, [_classify_chunk(prefix, files, keep_others)])
    size = -(-len(files) // (n * 4))
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    try:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(n)
    except (OSError, ImportError, ValueError):
        return ScanJob(tops, skipped, [_classify_chunk(prefix, files, keep_others)])
    async_result = pool.starmap_async(_classify_chunk, [(prefix, c, keep_others) for c in chunks])

    def finish() -> list[_Part]:
        try:
            return async_result.get()
        finally:
            pool.close()
            pool.join()

    def cancel() -> None:
        pool.terminate()
        pool.join()

    return ScanJob(tops, skipped, None, finish, cancel)


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _classify(
    rel: str,
    host: str,
    objects: list[ElfFile],
    scripts: list[Script],
    skipped: list[Skipped],
    others: list[str],
) -> None:
    """Open one file the walk saw as regular (O_NOFOLLOW/O_NONBLOCK guard a swap).

    Three system calls for most files (open, pread, close); a FIFO swapped in
    fails the pread, and read_elf_fd and the #! branch check the type themselves.
    """
    try:
        fd = os.open(host, _OPEN_FLAGS)
    except OSError as exc:
        skipped.append(Skipped(rel, f"cannot open: {exc.strerror or exc}", True))
        return
    try:
        try:
            head = os.pread(fd, _HEAD, 0)
        except OSError as exc:
            if exc.errno != errno.ESPIPE:
                raise
            skipped.append(Skipped(rel, "no longer a regular file", True))
            return
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
        elif head[:2] == b"#!":
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                skipped.append(Skipped(rel, "no longer a regular file", True))
                return
            she = parse_shebang(head)
            # The kernel honours #! only when it executes the file: a 0644 module
            # with a #! line is read by an interpreter, never run through it.
            if she is not None and mode & 0o111:
                scripts.append(Script(rel, she[0], she[1]))
            else:
                others.append(rel)
        else:
            others.append(rel)
    except OSError as exc:
        skipped.append(Skipped(rel, f"cannot read: {exc.strerror}", True))
    finally:
        os.close(fd)
