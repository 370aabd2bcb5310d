"""apt's marks of a root: reading them, and changing them crash-safely (``snapshot``, ``apply``).

Changing the marks never runs a program of the root.  depmin does what apt's
``pkgDepCache::writeStateFile`` does: under apt's own locks (``lock-frontend``,
then ``lock``, fcntl write locks as ``debSystem::Lock`` takes them) it writes the
whole new ``extended_states`` to a temporary file in the same directory, fsyncs
it, renames it over the old one and fsyncs the directory.  At every instant the
file is either the old marks or the new ones, so a kill -9 anywhere leaves no
state in between, and a rerun writes the same bytes.

The purge is the one step that needs the root's own ``apt-get`` and ``dpkg``
(maintainer scripts run inside the root): on the host it runs them directly;
for ``--root`` only when asked (``chroot``), in a private mount namespace whose
/proc vanishes with the command.  ``apt-get -s``, the check before any change,
is the host's apt shown the root through :func:`apt_view`: nothing it reads lies
outside the root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import struct
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Callable

from depmin.debian.deb822 import Stanza, iter_stanzas
from depmin.debian.dpkg import DpkgDatabase
from depmin.debian.pkggraph import PackageGraph
from depmin.errors import AptError, DepminError, DpkgError
from depmin.rootfs import Root

EXTENDED_STATES = "/var/lib/apt/extended_states"
ADMINDIR = "/var/lib/dpkg"
#: The order apt and dpkg take them (debSystem::Lock): the frontend lock first.
LOCKS = (f"{ADMINDIR}/lock-frontend", f"{ADMINDIR}/lock")
#: Prefix of depmin's temporary marks files (removed when a killed run left one).
#: depmin's record of a purge under way (see write_purging); gone once the purge is complete.
PURGING = "/var/lib/apt/depmin-purging"

#: A name apt-mark accepts: dpkg's package-name syntax, optionally ``:arch``.
PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]*(:[A-Za-z0-9][A-Za-z0-9-]*)?")


# -- reading ------------------------------------------------------------------------------------


def read_marks_text(root: Root, path: str = EXTENDED_STATES) -> tuple[str, str]:
    """(text, host path) of extended_states; a missing file (or a directory) is no marks, as in apt."""
    resolved = root.resolve(path)
    if resolved is None or stat.S_ISDIR(root.lstat(resolved).st_mode):
        return "", root.host(path) if root.is_host else path
    host = root.host(resolved)
    try:
        return root.read_bytes(resolved).decode("utf-8", "surrogateescape"), host
    except OSError as exc:
        raise DepminError(f"cannot read: {exc.strerror or exc}", host) from None


def manual_set(
    root: Root,
    graph: PackageGraph,
    path: str = EXTENDED_STATES,
    warn: Callable[[str], None] | None = None,
) -> list[str]:
    """Installed packages not marked auto, named as ``apt-mark showmanual`` prints them.

    apt prints the bare name for the native architecture (and all), even for
    Multi-Arch: same packages, and ``name:arch`` only for foreign ones.  Like apt,
    a missing file (or a directory) means no marks, but one that cannot be read
    is an error; malformed stanzas are skipped and described to ``warn``.
    """
    text, host = read_marks_text(root, path)
    auto = read_auto_marks(text, graph, host, warn)
    return sorted({apt_print_name(graph, k) for k in graph.nodes if k not in auto})


def _matches(graph: PackageGraph, by_name: dict[str, list[str]], st: Stanza) -> list[str]:
    """Installed keys a stanza speaks of: without Architecture, every architecture of the name."""
    arch = st.get("Architecture")
    out = []
    for key in by_name.get(st.get("Package", ""), ()):
        node = graph.nodes[key]
        if arch is None or node.arch == arch or (node.arch == "all" and arch == graph.native_arch):
            out.append(key)
    return out


def _names(graph: PackageGraph) -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = {}
    for key, node in graph.nodes.items():
        by_name.setdefault(node.name, []).append(key)
    return by_name


def _auto_flag(st: Stanza) -> bool:
    try:
        return int(st.get("Auto-Installed", "0").strip()) > 0
    except ValueError:
        return False


def read_auto_marks(
    text: str,
    graph: PackageGraph,
    where: str = "extended_states",
    warn: Callable[[str], None] | None = None,
    strict: bool = False,
) -> frozenset[str]:
    """Node keys marked auto by an ``extended_states`` file (apt.md §6).

    A stanza without Architecture applies to every architecture of that name;
    unknown packages are ignored; ``Auto-Installed`` > 0 means auto.  Malformed
    stanzas are skipped and described to ``warn`` as ``where:line: problem``
    (``strict``: DpkgError instead).
    """
    by_name = _names(graph)
    auto: set[str] = set()
    for st in iter_stanzas(text, where, warn=warn, strict=strict):
        if _auto_flag(st):
            auto.update(_matches(graph, by_name, st))
    return frozenset(auto)


def marks_text(old: str, where: str, graph: PackageGraph, manual: Iterable[str]) -> str:
    """The extended_states apt would write with ``manual`` (keys) manual and every other package auto.

    As ``writeStateFile`` does: the old stanzas first, in order, with Auto-Installed
    rewritten for installed packages (a stanza left with nothing but its name is
    dropped), then a stanza for every other auto package.  Stanzas of packages that
    are not installed are kept as they are.  A malformed old file is a DpkgError
    naming it: depmin never rewrites what it cannot read.
    """
    keep = set(manual)
    by_name = _names(graph)
    out: list[str] = []
    seen: set[str] = set()

    def stanza(key: str, auto: bool, extra: list[tuple[str, str]]) -> str:
        n = graph.nodes[key]
        arch = graph.native_arch if n.arch == "all" else n.arch
        lines = [f"Package: {n.name}", f"Architecture: {arch}"]
        lines += ["Auto-Installed: 1"] if auto else []
        lines += [f"{k}: {v}" for k, v in extra]
        return "\n".join(lines) + "\n"

    for st in iter_stanzas(old, where, strict=True):
        targets = _matches(graph, by_name, st)
        if not targets:
            out.append("".join(f"{k}: {v}\n" for k, v in st.items()))
            continue
        extra = [(k, v) for k, v in st.items()
                 if k.lower() not in ("package", "architecture", "auto-installed")]  # fmt: skip
        for key in targets:
            if key not in seen:
                seen.add(key)
                if key not in keep or extra:
                    out.append(stanza(key, key not in keep, extra))
    out += [stanza(k, True, []) for k in sorted(graph.nodes) if k not in seen and k not in keep]
    return "\n".join(out)


def apt_print_name(graph: PackageGraph, key: str) -> str:
    """How apt prints a package: bare for the native architecture (and all), else name:arch."""
    n = graph.nodes[key]
    return n.name if n.arch in (graph.native_arch, "all") else f"{n.name}:{n.arch}"


def normalise_apt_name(graph: PackageGraph, name: str) -> str:
    """apt's ``name:arch`` (python-apt) or bare name (apt-get) in apt_print_name's form."""
    base, _, arch = name.partition(":")
    return base if arch in ("", graph.native_arch, "all") else name


# -- the locks ----------------------------------------------------------------------------------


def _holder(fd: int) -> str:
    """Who holds the write lock on ``fd``: "process N (comm)", as apt says it."""
    query = struct.pack("@hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        got = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return "another process"
    pid = struct.unpack("@hhqqi", got)[4]
    if pid <= 0:
        return "a process outside this PID namespace"
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f"process {pid} ({f.read().strip()})"
    except OSError:
        return f"process {pid}"


class AptLock:
    """apt's locks of a root, held by this process: ``lock-frontend``, then ``lock``.

    The same fcntl write locks apt and dpkg take, so while depmin holds them no apt,
    dpkg or second depmin changes the root.  Acquiring waits up to ``timeout``
    seconds (apt's ``DPkg::Lock::Timeout``) and then fails naming the lock and its
    holder.  For ``dpkg --configure -a``, :meth:`release_inner` hands ``lock`` to dpkg,
    which runs with ``DPKG_FRONTEND_LOCKED`` set and leaves the frontend lock to depmin;
    apt-get does not read that variable and takes both locks itself, so the purge
    starts after :meth:`release` (with apt's own lock timeout, see :func:`purge_command`).
    """

    def __init__(self, root: Root, timeout: float = 0) -> None:
        self.root = root
        self.timeout = timeout
        self._fds: list[int] = []

    def __enter__(self) -> AptLock:
        deadline = time.monotonic() + self.timeout
        try:
            for lock in LOCKS:
                self._fds.append(self._take(lock, deadline))
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release_inner(self) -> None:
        """Let go of ``lock`` (dpkg's own), keeping ``lock-frontend``."""
        while len(self._fds) > 1:
            os.close(self._fds.pop())

    def release(self) -> None:
        while self._fds:
            os.close(self._fds.pop())

    def _take(self, lock: str, deadline: float) -> int:
        fd = _open_lock(self.root, lock)
        waited = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    os.close(fd)
                    raise AptError(f"cannot lock {self.root.host(lock)}: {exc.strerror}") from None
            if time.monotonic() >= deadline:
                who = _holder(fd)
                os.close(fd)
                after = f" after waiting {self.timeout:g} s" if waited else ""
                raise AptError(
                    f"could not get lock {lock} of {self.root.top}{after}: it is held by {who}; "
                    "nothing was changed (see --lock-timeout)"
                )
            waited = True
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _open_lock(root: Root, lock: str) -> int:
    """Open (or create, as apt does) a lock file inside the root; never a link, FIFO or device."""
    parent = root.resolve(os.path.dirname(lock))
    if parent is None:
        raise AptError(f"no {os.path.dirname(lock)} in {root.top}: not a dpkg root")
    dirfd = _open_dir(root, parent)
    try:
        fd = os.open(os.path.basename(lock), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o640, dir_fd=dirfd)  # fmt: skip
    except OSError as exc:
        raise AptError(f"cannot open {root.host(lock)}: {exc.strerror}") from None
    finally:
        os.close(dirfd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise AptError(f"{root.host(lock)} is not a regular file; nothing was changed")
    return fd


def _open_dir(root: Root, resolved: str) -> int:
    try:
        return os.open(root.host(resolved), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise AptError(f"cannot open {root.host(resolved)}: {exc.strerror}") from None


def lock_holder(root: Root) -> str | None:
    """The lock another process holds right now, or None (taking and releasing at once)."""
    try:
        with AptLock(root, 0):
            return None
    except AptError as exc:
        return exc.problem


# -- writing the marks --------------------------------------------------------------------------


def write_marks(root: Root, graph: PackageGraph, manual: Iterable[str], lock: AptLock) -> str:
    """Replace extended_states with the new marks in one atomic step; returns its host path.

    Must be called with ``lock`` held.  The old file is read again under the lock (its
    other stanzas are kept); the new one is written as writeStateFile writes it: a
    temporary file in the same directory, fsync, rename, fsync of the directory.  A
    temporary file a killed run left behind is removed first.
    """
    if not lock._fds:
        raise AptError("the marks are written only under apt's lock")
    old, where = read_marks_text(root)
    data = marks_text(old, where, graph, manual).encode("utf-8", "surrogateescape")
    return _replace(root, EXTENDED_STATES, data, "the marks are unchanged")


def _replace(root: Root, path: str, data: bytes | None, unchanged: str) -> str:
    """Replace (``data`` None: remove) the file at ``path`` of the root atomically: a temp
    file in the same directory, fsync, rename, fsync of the directory; temp files a
    killed run left behind go first.  Returns its host path."""
    parent = root.resolve(os.path.dirname(path))
    if parent is None:
        raise AptError(f"no {os.path.dirname(path)} in {root.top}")
    name = os.path.basename(path)
    prefix = f".{name}.depmin-"
    dirfd = _open_dir(root, parent)
    try:
        for leftover in os.listdir(dirfd):
            if leftover.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover, dir_fd=dirfd)
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dirfd)
        else:
            tmp = prefix + os.urandom(6).hex()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=dirfd)  # fmt: skip
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dirfd)
                raise
        os.fsync(dirfd)
    except OSError as exc:
        raise AptError(f"cannot write {root.host(parent)}/{name}: {exc.strerror}; {unchanged}") from None
    finally:
        os.close(dirfd)
    return f"{root.host(parent)}/{name}"


# -- the purge record ----------------------------------------------------------------------------
#
# apt-get drops the auto marks of what it is about to remove before dpkg starts, and
# removes (but cannot purge) a package a killed dpkg left half-installed.  So after a
# kill, what the purge was doing can no longer be read from apt's state; depmin writes
# it down first, and a rerun purges what the record lists and dpkg left in
# config-files.  The file goes when the purge is complete.


def write_purging(root: Root, names: Iterable[str], lock: AptLock) -> str:
    """Record (atomically, under ``lock``) the packages the purge is about to remove."""
    if not lock._fds:
        raise AptError("the purge record is written only under apt's lock")
    data = "".join(f"{n}\n" for n in sorted(set(names))).encode("utf-8", "surrogateescape")
    return _replace(root, PURGING, data, "nothing was purged")


def purging(root: Root) -> set[str]:
    """The packages a purge that did not finish was removing (apt's names), or none."""
    text, _ = read_marks_text(root, PURGING)
    return {line.strip() for line in text.splitlines() if PACKAGE_NAME.fullmatch(line.strip())}


def clear_purging(root: Root) -> None:
    """The purge is complete: forget the record."""
    _replace(root, PURGING, None, "the purge is complete")


def config_files(root: Root, native_arch: str) -> list[str]:
    """Packages dpkg has in config-files state now (removed, not purged), as apt names them."""
    resolved = root.resolve(f"{ADMINDIR}/status")
    if resolved is None:
        return []
    try:
        text = root.read_bytes(resolved).decode("utf-8", "surrogateescape")
    except OSError:
        return []
    out = []
    for st in iter_stanzas(text, root.host(resolved)):
        if st.get("Status", "").endswith(" config-files") and st.get("Package"):
            arch = st.get("Architecture", native_arch)
            out.append(st["Package"] if arch in (native_arch, "all") else f"{st['Package']}:{arch}")
    return sorted(out)


# -- asking apt-get ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulation:
    purged: tuple[str, ...]  # what the purge removes, as apt prints them (name, or name:arch)
    output: str


#: apt's configuration files of a root, copied into the view (files, then directories of parts).
_ETC_FILES = ("apt.conf", "preferences", "sources.list")
_ETC_DIRS = ("apt.conf.d", "preferences.d", "sources.list.d")
_INCLUDE = re.compile(r"^\s*#\s*include\b", re.M)


@dataclass(frozen=True)
class AptView:
    """How the host's apt sees one root: an APT_CONFIG, and options given after the root's own."""

    env: dict[str, str]
    options: tuple[str, ...]  # -o KEY=VALUE pairs, flattened


@contextlib.contextmanager
def apt_view(root: Root, native_arch: str, marks: str) -> Iterator[AptView]:
    """The root as the host's apt may read it: nothing outside the root, nothing that blocks.

    apt follows links with the host's rules, so it is never pointed at the root's
    tree itself.  The root's configuration (``etc/apt``) is copied, each file read
    inside the root, into a scratch directory; the status file and the package lists
    are named by the paths they resolve to inside the root, and every list must be a
    plain file there; the marks to check are a scratch file.  The state paths are
    given again on the command line, after the root's configuration, so no setting
    of the root can move them.  A configuration with ``#include`` (a host path to
    apt) is refused.
    """
    with scratch_dir("depmin-apt-") as tmp:
        marks_path = os.path.join(tmp, "extended_states")
        with open(marks_path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(marks)
        options = ["Dir::State::extended_states=" + marks_path]
        if root.is_host:
            yield AptView(_env(), ("-o", options[0]))
            return
        etc = os.path.join(tmp, "etc")
        for d in ("etc", "cache/archives/partial", "log", "state"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        for name in _ETC_FILES:
            _copy_config(root, f"/etc/apt/{name}", os.path.join(etc, name))
        for name in _ETC_DIRS:
            os.makedirs(os.path.join(etc, name))
            resolved = root.resolve(f"/etc/apt/{name}")
            if resolved is None or not stat.S_ISDIR(root.lstat(resolved).st_mode):
                continue
            for entry in sorted(os.listdir(root.host(resolved))):
                _copy_config(root, f"{resolved}/{entry}", os.path.join(etc, name, entry))
        status = _state_file(root, f"{ADMINDIR}/status")
        lists = _lists_dir(root)
        options += [f"Dir::State::status={status}", f"Dir::State::lists={lists}/"]
        conf = os.path.join(tmp, "apt.conf")
        with open(conf, "w") as f:
            f.write(f'Dir "{tmp}/";\nDir::Etc "{etc}/";\nDir::State "{tmp}/state/";\n'
                    f'Dir::Cache "{tmp}/cache/";\nDir::Log "{tmp}/log/";\n'
                    f'Dir::State::status "{status}";\nDir::State::lists "{lists}/";\n'
                    'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
                    f'APT::Architecture "{native_arch}";\n'
                    f'APT::Architectures {{ "{native_arch}"; }};\n')  # fmt: skip
        yield AptView(_env({"APT_CONFIG": conf}), tuple(o for kv in options for o in ("-o", kv)))


def _refuse(path: str, why: str) -> AptError:
    return AptError(f"{path} {why}: refused, nothing was changed")


def _copy_config(root: Root, path: str, dest: str) -> None:
    """Copy one configuration file of the root (resolved inside it) into the view; skip the rest."""
    resolved = root.resolve(path)
    if resolved is None:
        return
    mode = root.lstat(resolved).st_mode
    if stat.S_ISDIR(mode):
        return  # apt skips directories among its parts
    if not stat.S_ISREG(mode):
        raise _refuse(root.host(resolved), "is not a regular file")
    text = root.read_bytes(resolved, 16 << 20)
    if _INCLUDE.search(text.decode("utf-8", "replace")):
        raise _refuse(root.host(resolved), "has an #include, which apt would read on the host")
    with open(dest, "wb") as f:
        f.write(text)


def _state_file(root: Root, path: str) -> str:
    resolved = root.resolve(path)
    if resolved is None:
        raise DpkgError("no dpkg status file", root.host(path))
    if not stat.S_ISREG(root.lstat(resolved).st_mode):
        raise _refuse(root.host(resolved), "is not a regular file")
    return root.host(resolved)


def _lists_dir(root: Root) -> str:
    """The package lists directory as resolved inside the root; every entry a plain file there."""
    resolved = root.resolve("/var/lib/apt/lists")
    if resolved is None:
        return os.devnull  # no lists: apt reads none
    host = root.host(resolved)
    for entry in sorted(os.listdir(host)):
        naive = os.path.join(host, entry)
        inside = root.resolve(f"{resolved}/{entry}")
        real = os.path.realpath(naive)
        if inside is None or real != root.host(inside):
            raise _refuse(naive, f"leads out of the root (to {real}); apt would read the host's file")
        mode = os.lstat(real).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise _refuse(naive, "is not a regular file or directory")
    return host


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("APT_CONFIG", "DPKG_FRONTEND_LOCKED")}
    env["LC_ALL"] = "C"
    env.update(extra or {})
    return env


def _scratch_path(prefix: str) -> str:
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", prefix + os.urandom(6).hex())


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[str]:
    """A private directory under $TMPDIR, removed after; not tempfile's: python3-minimal's
    tempfile needs shutil, which that interpreter does not have."""
    path = _scratch_path(prefix)
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        for top, dirs, files in os.walk(path, topdown=False):
            for name in files:
                os.unlink(os.path.join(top, name))
            for name in dirs:
                d = os.path.join(top, name)
                os.unlink(d) if os.path.islink(d) else os.rmdir(d)
        os.rmdir(path)


@contextlib.contextmanager
def _scratch(text: str, prefix: str) -> Iterator[str]:
    path = _scratch_path(prefix)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        yield path
    finally:
        os.unlink(path)


def simulate_purge(
    root: Root, graph: PackageGraph, manual: Iterable[str], overrides: Sequence[str]
) -> Simulation:
    """``apt-get -s purge --auto-remove`` with the new marks in a scratch copy of extended_states.

    The host's apt-get, shown the root through :func:`apt_view` (apt.md §8.1): no
    privileges, no lock, no program of the root.
    """
    old, where = read_marks_text(root)
    new = marks_text(old, where, graph, manual)
    with apt_view(root, graph.native_arch, new) as view:
        cmd = ["apt-get", "-s", *view.options]
        for o in overrides:
            cmd += ["-o", o]
        proc = _run([*cmd, "purge", "--auto-remove"], view.env)
    if proc.returncode != 0:
        raise AptError(f"apt-get -s failed: {proc.stderr.strip()}")
    # Remv: a package dpkg left half-installed, which apt removes but cannot purge
    purged = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith(("Purg ", "Remv "))]
    return Simulation(tuple(sorted(purged)), proc.stdout)


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env)
    except OSError as exc:  # the tool itself is missing
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: {exc.strerror}")


# -- the purge: the root's own apt-get and dpkg --------------------------------------------------


def interrupted(root: Root) -> str | None:
    """Why dpkg would say "dpkg was interrupted" (a pending update journal), or None."""
    updates = root.resolve(f"{ADMINDIR}/updates")
    if updates is None:
        return None
    try:
        pending = [e for e in os.listdir(root.host(updates)) if e.isdigit()]
    except OSError:
        return None
    return f"{ADMINDIR}/updates holds {len(pending)} journal entries" if pending else None


def in_root(root: Root, argv: list[str]) -> list[str]:
    """``argv`` as a command of the root: inside chroot, with /proc only in a private namespace."""
    if root.is_host:
        return argv
    proc = root.resolve("/proc")
    if proc is None or not stat.S_ISDIR(root.lstat(proc).st_mode):
        raise AptError(f"{root.top} has no /proc directory to mount for the purge")
    return ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={root.host(proc)}",
            "chroot", root.top, *argv]  # fmt: skip


def run_in_root(
    root: Root, argv: list[str], frontend_locked: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a program of the root (apt-get, dpkg); stdout goes to depmin's own as it comes.

    ``frontend_locked``: depmin holds the frontend lock for it, and says so with
    ``DPKG_FRONTEND_LOCKED`` (as apt does for dpkg; only dpkg reads it).
    """
    extra = {"DEBIAN_FRONTEND": "noninteractive"}
    if frontend_locked:
        extra["DPKG_FRONTEND_LOCKED"] = "1"
    env = _env(extra)
    cmd = in_root(root, argv)
    try:
        return subprocess.run(cmd, text=True, env=env, stdout=None, stderr=subprocess.PIPE)
    except OSError as exc:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: {exc.strerror}")


def purge_command(
    overrides: Sequence[str], leftovers: Sequence[str] = (), lock_timeout: float = 0
) -> list[str]:
    """``apt-get purge -y --auto-remove`` with the plan's options; ``leftovers``: packages an
    interrupted purge removed but did not purge (see :func:`leftovers`).

    ``lock_timeout``: apt-get takes the locks depmin just let go of, and waits as
    long as depmin would have (``DPkg::Lock::Timeout``) if another frontend got in.
    """
    argv = ["apt-get", "purge", "-y", "--auto-remove", "-o", f"DPkg::Lock::Timeout={int(lock_timeout)}"]
    for o in overrides:
        argv += ["-o", o]
    return argv + list(leftovers)


def leftovers(root: Root, db: DpkgDatabase) -> list[str]:
    """Packages a killed purge removed but did not purge: in config-files state, and either
    listed in depmin's purge record or still marked auto.

    The uninterrupted run purges them, so the rerun purges them too (named on apt-get's
    command line, as apt's autoremove looks at installed packages only) and ends where
    an uninterrupted run ends.  Other config-files packages were there before; they stay.
    """
    text, where = read_marks_text(root)
    auto: set[tuple[str, str | None]] = set()
    for st in iter_stanzas(text, where):
        if _auto_flag(st) and st.get("Package"):
            auto.add((st["Package"], st.get("Architecture")))
    recorded = purging(root)
    out = []
    for p in db.packages:
        if p.status.state != "config-files":
            continue
        if (p.name, p.arch) in auto or (p.name, None) in auto or {p.name, f"{p.name}:{p.arch}"} & recorded:
            out.append(p.binary_package)
    return sorted(out)
