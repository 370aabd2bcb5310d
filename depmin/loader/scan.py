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
import functools
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from depmin import forked
from depmin.errors import ElfError, RootError, ScanError
from depmin.loader.elf import ET_DYN, ET_EXEC, ElfFile, read_elf_fd
from depmin.rootfs import READ_FLAGS, Root

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
        root: Root,
        tops: list[str],
        skipped: list[Skipped],
        parts: list[_Part] | None,
        pending: Callable[[Callable[[list[ElfFile]], None] | None], list[_Part]] | None = None,
        cancel: Callable[[], None] = lambda: None,
    ) -> None:
        self.root = root  # the root scanned: the one the rest of the run reads
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

    def result(self, found: Callable[[list[ElfFile]], None] | None = None) -> ScanResult:
        """The whole scan; this process walks what the workers have not taken yet.

        ``found``: called with this process's objects so far after each subtree it
        walks here, so their resolution can start while the workers still scan
        (it is given the same list again, longer each time).
        """
        if self._parts is None:
            self._parts = self._pending(found) if self._pending else []
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
    """Start walking ``trees`` and classifying their files (see ScanJob).

    This process takes the first directories; once more than a few are waiting (a big
    tree) it hands them to worker processes, one subtree each, and returns while they
    work.  ``keep_others=False`` drops the list of non-ELF, non-script files (memory).
    """
    skipped: list[Skipped] = []
    tops: list[str] = []
    part: _Part = ([], [], skipped, [])
    walker = _Walker(root.host("/").rstrip("/"), tuple(exclude), keep_others)
    queue: list[tuple[str, int]] = []  # (root-relative directory, st_dev of its tree)
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
            st = root.lstat(top)
        except OSError as exc:
            skipped.append(Skipped(tree, f"cannot stat: {exc.strerror}", True))
            continue
        if stat.S_ISDIR(st.st_mode):
            queue.append((top, st.st_dev))
        elif walker.wanted(top, skipped):
            _classify(top, walker.prefix + top, part)
    n = jobs if jobs is not None else forked.cores()
    while queue and (n <= 1 or len(queue) < PARALLEL_MIN_DIRS):
        queue.extend(walker.directory(*queue.pop(0), part))
    workers = _Workers.start(walker, queue, n) if queue else None
    if workers is None:
        while queue:
            queue.extend(walker.directory(*queue.pop(0), part))
        return ScanJob(root, tops, [], [_sorted(part, keep_others)])

    def finish(found: Callable[[list[ElfFile]], None] | None) -> list[_Part]:
        merged: _Part = part
        for p in workers.results(part, found):
            for mine, theirs in zip(merged, p):
                mine.extend(theirs)  # type: ignore[attr-defined]
        return [_sorted(merged, keep_others)]

    return ScanJob(root, tops, [], None, finish, workers.cancel)


class _Workers:
    """Forked processes that walk subtrees, handing out the subtrees as they ask.

    A bare ``fork`` and pipes rather than multiprocessing, whose import and
    threads cost more than the files of a small tree: the subtrees are numbered
    before the fork, every number is written to one pipe that the workers read
    four bytes at a time (reads of whole records from a pipe are atomic, so each
    subtree goes to exactly one reader, the next to whichever is free), and each
    worker pickles its part to its own pipe and exits.  This process reads the
    same pipe when it asks for the result, so it walks what is left instead of
    waiting.
    """

    def __init__(
        self,
        walker: _Walker,
        pids: list[int],
        fds: list[int],
        tasks: list[list[tuple[str, int]]],
        task_r: int,
    ) -> None:
        self._walker, self._pids, self._fds, self._tasks, self._task_r = walker, pids, fds, tasks, task_r

    @classmethod
    def start(cls, walker: _Walker, queue: list[tuple[str, int]], n: int) -> _Workers | None:
        """None where this system cannot fork (the caller walks the trees itself)."""
        if not forked.can_fork() or n <= 1:
            return None
        per = -(-len(queue) // _MAX_TASKS)  # subtrees per task: the numbers fit in the pipe
        tasks = [queue[i : i + per] for i in range(0, len(queue), per)]
        pids: list[int] = []
        fds: list[int] = []
        task_r = -1
        try:
            task_r, task_w = os.pipe()
            try:
                os.write(task_w, b"".join(i.to_bytes(4, "little") for i in range(len(tasks))))
            finally:
                os.close(task_w)
            # This process is a reader too: one fewer worker than cores.
            work = functools.partial(_walk_tasks, walker, tasks, task_r)
            for _ in range(min(n - 1, len(tasks))):
                pid, out_r = forked.spawn(work, "scan worker", ScanError, close=fds)
                pids.append(pid)
                fds.append(out_r)
        except OSError:
            if task_r >= 0:
                os.close(task_r)
            cls(walker, pids, fds, [], -1).cancel()
            return None
        return cls(walker, pids, fds, tasks, task_r)

    def results(self, part: _Part, found: Callable[[list[ElfFile]], None] | None = None) -> list[_Part]:
        """Walk what no worker has taken yet into ``part``, then every worker's part.

        A worker's own exception is raised here.
        """
        parts: list[_Part] = []
        failure: BaseException | None = None
        try:
            _take_tasks(self._walker, self._tasks, self._task_r, part, found)
        except BaseException:
            self.cancel()
            raise
        waiting = list(self._pids)
        try:
            for pid, fd in zip(self._pids, self._fds):
                waiting.remove(pid)  # receive reaps it, or kills it if interrupted
                ok, value = forked.receive(pid, fd, "scan worker", ScanError)
                if ok:
                    parts.append(value)  # type: ignore[arg-type]
                else:
                    assert isinstance(value, BaseException)
                    failure = failure or value
        except BaseException:
            for pid in waiting:
                forked.kill(pid)
            raise
        finally:
            self._close()
        if failure is not None:
            raise failure
        return parts

    def cancel(self) -> None:
        for pid in self._pids:
            forked.kill(pid)
        self._close()

    def _close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        if self._task_r >= 0:
            os.close(self._task_r)
        self._pids, self._fds, self._task_r = [], [], -1


def _take_tasks(
    walker: _Walker,
    tasks: list[list[tuple[str, int]]],
    task_r: int,
    part: _Part,
    found: Callable[[list[ElfFile]], None] | None = None,
) -> None:
    """Walk subtrees into ``part`` for as long as the task pipe has numbers (``found``:
    see :meth:`ScanJob.result`)."""
    while record := os.read(task_r, 4):
        for rel, dev in tasks[int.from_bytes(record, "little")]:
            stack = [(rel, dev)]
            while stack:
                stack.extend(walker.directory(*stack.pop(), part))
        if found is not None:
            found(part[0])


#: At most this many task numbers (4 bytes each) go to the pipe: well under the
#: 64 KiB a Linux pipe holds, so they are written before any worker starts.
_MAX_TASKS = 4096


def _walk_tasks(walker: _Walker, tasks: list[list[tuple[str, int]]], task_r: int) -> _Part:
    """A worker's work: subtrees until the task pipe is empty; its part goes back."""
    part: _Part = ([], [], [], [])
    _take_tasks(walker, tasks, task_r, part)
    if not walker.keep_others:
        part[3].clear()
    return part


_Part = tuple[list[ElfFile], list[Script], list[Skipped], list[str]]

#: Directories waiting before the walk goes to worker processes: a tree smaller than
#: that is done here, where a second process would cost more than it saves.
PARALLEL_MIN_DIRS = 48

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _sorted(part: _Part, keep_others: bool) -> _Part:
    """One order for every run, whatever the directories' order on disk or the workers'."""
    objects, scripts, skipped, others = part
    objects.sort(key=lambda o: o.path)
    scripts.sort(key=lambda s: s.path)
    skipped.sort(key=lambda s: s.path)
    others.sort()
    if not keep_others:
        others.clear()  # most files of a tree: only hints look at them
    return part


@dataclass(frozen=True)
class _Walker:
    """Walks directories and classifies their files (in this process or a forked worker)."""

    prefix: str  # the root's host path, without the trailing slash
    exclude: tuple[str, ...]
    keep_others: bool

    def wanted(self, rel: str, skipped: list[Skipped]) -> bool:
        if self.exclude and _excluded(rel, self.exclude):
            skipped.append(Skipped(rel, "excluded"))
            return False
        return True

    def directory(self, rel: str, dev: int, part: _Part) -> list[tuple[str, int]]:
        """Classify the regular files of one directory (opened by name relative to it,
        O_NOFOLLOW, so a directory swapped for a link is not followed); its
        subdirectories on the same file system, like ``find -xdev``."""
        skipped = part[2]
        try:
            dfd = os.open(self.prefix + rel, _DIR_FLAGS)
        except OSError as exc:
            skipped.append(Skipped(rel, f"cannot read directory: {exc.strerror}", True))
            return []
        subdirs: list[tuple[str, int]] = []
        base = rel.rstrip("/") + "/"
        exclude = self.exclude
        others = part[3] if self.keep_others else None
        try:
            with os.scandir(dfd) as it:
                entries = list(it)
            # The hot loop (every file of the trees, most neither ELF nor #!): three
            # system calls and one test per file; the path is built only when kept.
            for e in entries:
                try:
                    if e.is_file(follow_symlinks=False):
                        name = e.name
                        if exclude and not self.wanted(base + name, skipped):
                            continue
                        try:
                            fd = os.open(name, READ_FLAGS, dir_fd=dfd)
                        except OSError as exc:
                            skipped.append(Skipped(base + name, f"cannot open: {exc.strerror or exc}", True))
                            continue
                        try:
                            head = os.pread(fd, _HEAD, 0)
                            if head.startswith(_WANTED_HEADS):
                                _classify_head(base + name, fd, head, part)
                            elif others is not None:
                                others.append(base + name)
                        except OSError as exc:
                            skipped.append(Skipped(base + name, _read_problem(exc), True))
                        finally:
                            os.close(fd)
                    elif e.is_dir(follow_symlinks=False):
                        path = base + e.name
                        if e.stat(follow_symlinks=False).st_dev != dev:
                            why = "another file system is mounted here; not scanned"
                            skipped.append(Skipped(path, why))
                        else:
                            subdirs.append((path, dev))
                except OSError as exc:
                    skipped.append(Skipped(base + e.name, f"cannot stat: {exc.strerror}", True))
        except OSError as exc:
            skipped.append(Skipped(rel, f"cannot read directory: {exc.strerror}", True))
        finally:
            os.close(dfd)
        return subdirs


#: The first bytes of the files that are looked into: ELF objects and ``#!`` scripts.
_WANTED_HEADS = (b"\x7fELF", b"#!")


def _read_problem(exc: OSError) -> str:
    """The note for a file that opened but could not be read (a FIFO swapped in: ESPIPE)."""
    return "no longer a regular file" if exc.errno == errno.ESPIPE else f"cannot read: {exc.strerror}"


def _classify(rel: str, host: str, part: _Part) -> None:
    """Open one file seen as regular (a tree given as a file; O_NOFOLLOW/O_NONBLOCK
    guard a swap), as the walk's own loop does for the files of a directory.

    A FIFO swapped in fails the pread, and read_elf_fd and the #! branch check the
    type themselves.
    """
    try:
        fd = os.open(host, READ_FLAGS)
    except OSError as exc:
        part[2].append(Skipped(rel, f"cannot open: {exc.strerror or exc}", True))
        return
    try:
        head = os.pread(fd, _HEAD, 0)
        if head.startswith(_WANTED_HEADS):
            _classify_head(rel, fd, head, part)
        else:
            part[3].append(rel)
    except OSError as exc:
        part[2].append(Skipped(rel, _read_problem(exc), True))
    finally:
        os.close(fd)


def _classify_head(rel: str, fd: int, head: bytes, part: _Part) -> None:
    """An open file whose first bytes are an ELF magic or ``#!``; OSError from reading it."""
    objects, scripts, skipped, others = part
    if head.startswith(b"\x7fELF"):
        try:
            elf = read_elf_fd(fd, rel)
        except ElfError as exc:
            skipped.append(Skipped(rel, exc.problem, True))
            return
        if elf.type in (ET_EXEC, ET_DYN):
            objects.append(elf)
        else:
            kind = {1: "relocatable object (ET_REL)", 4: "core file"}.get(elf.type, f"ELF type {elf.type}")
            skipped.append(Skipped(rel, f"{kind}: the loader cannot load it"))
        return
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        skipped.append(Skipped(rel, "no longer a regular file", True))
        return
    she = parse_shebang(head)
    # The kernel honours #! only when it executes the file: a 0644 module with a
    # #! line is read by an interpreter, never run through it.
    if she is not None and mode & 0o111:
        scripts.append(Script(rel, she[0], she[1]))
    else:
        others.append(rel)
