"""apt's marks of a root, and changing them all-or-nothing (``depmin snapshot`` and ``apply``).

Reading is pure file parsing.  Changing goes through apt's own tools
(``apt-mark``, ``apt-get``), inside ``chroot`` for a root other than '/', after
every check has passed: privileges, the dpkg lock, the plan itself.  The marks
file is saved first and put back byte for byte if any step of the marking
fails, so apt's state is never left half-changed.  /proc is mounted into a root
only for the purge (maintainer scripts need it) and unmounted right after.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Callable

from depmin.debian.deb822 import iter_stanzas
from depmin.debian.pkggraph import PackageGraph
from depmin.errors import AptError, DepminError
from depmin.rootfs import Root

EXTENDED_STATES = "/var/lib/apt/extended_states"
_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")


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
    text, host = "", path
    resolved = root.resolve(path)
    if resolved is not None and not stat.S_ISDIR(root.lstat(resolved).st_mode):
        host = root.host(resolved)
        try:
            text = root.read_bytes(resolved).decode("utf-8", "surrogateescape")
        except OSError as exc:
            raise DepminError(f"cannot read: {exc.strerror or exc}", host) from None
    auto = read_auto_marks(text, graph, host, warn)
    return sorted({apt_print_name(graph, k) for k in graph.nodes if k not in auto})


def read_auto_marks(
    text: str,
    graph: PackageGraph,
    where: str = "extended_states",
    warn: Callable[[str], None] | None = None,
) -> frozenset[str]:
    """Node keys marked auto by an ``extended_states`` file (apt.md §6).

    A stanza without Architecture applies to every architecture of that name;
    unknown packages are ignored; ``Auto-Installed`` > 0 means auto.  Malformed
    stanzas are skipped and described to ``warn`` as ``where:line: problem``.
    """
    auto: set[str] = set()
    for st in iter_stanzas(text, where, warn=warn):
        name = st.get("Package")
        if not name:
            continue
        try:
            flag = int(st.get("Auto-Installed", "0").strip())
        except ValueError:
            flag = 0
        if flag <= 0:
            continue
        arch = st.get("Architecture")
        for key, node in graph.nodes.items():
            if node.name == name and (
                arch is None
                or node.arch == arch
                or (node.arch == "all" and arch == graph.native_arch)
            ):
                auto.add(key)
    return frozenset(auto)


def auto_marks_text(graph: PackageGraph, manual: Iterable[str]) -> str:
    """An extended_states file with every installed package auto except ``manual`` (keys)."""
    keep = set(manual)
    out = []
    for key in sorted(graph.nodes):
        if key in keep:
            continue
        n = graph.nodes[key]
        arch = graph.native_arch if n.arch == "all" else n.arch
        out.append(f"Package: {n.name}\nArchitecture: {arch}\nAuto-Installed: 1\n")
    return "\n".join(out)


@dataclass(frozen=True)
class Simulation:
    purged: tuple[str, ...]  # name:arch as apt prints them
    output: str


def _apt_env(root: Root, graph: PackageGraph) -> tuple[dict[str, str], str | None]:
    from depmin.debian.aptbridge import isolated_apt_config

    env = {k: v for k, v in os.environ.items() if k != "APT_CONFIG"}
    env["LC_ALL"] = "C"
    if root.is_host:
        return env, None
    fd, conf = tempfile.mkstemp(prefix="depmin-apt-", suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(isolated_apt_config(root, graph.native_arch))
    env["APT_CONFIG"] = conf
    return env, conf


def simulate_purge(
    root: Root, graph: PackageGraph, manual: Iterable[str], overrides: Sequence[str]
) -> Simulation:
    """``apt-get -s purge --auto-remove`` with the marks applied to a scratch copy.

    The scratch extended_states is a temporary file; the root's own is never written.
    Needs no privileges and takes no lock (apt.md §8.1).
    """
    env, conf = _apt_env(root, graph)
    fd, marks = tempfile.mkstemp(prefix="depmin-extended-states-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(auto_marks_text(graph, manual))
        cmd = ["apt-get", "-s", "-o", f"Dir::State::extended_states={marks}"]
        for o in overrides:
            cmd += ["-o", o]
        cmd += ["purge", "--auto-remove"]
        proc = _run(Root("/"), cmd, env)  # apt-get -s of the host, pointed at the root's files
    finally:
        os.unlink(marks)
        if conf:
            os.unlink(conf)
    if proc.returncode != 0:
        raise AptError(f"apt-get -s failed: {proc.stderr.strip()}")
    purged = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("Purg ")]
    return Simulation(tuple(sorted(purged)), proc.stdout)


def apt_print_name(graph: PackageGraph, key: str) -> str:
    """How apt prints a package: bare for the native architecture (and all), else name:arch."""
    n = graph.nodes[key]
    return n.name if n.arch in (graph.native_arch, "all") else f"{n.name}:{n.arch}"


def normalise_apt_name(graph: PackageGraph, name: str) -> str:
    """apt's ``name:arch`` (python-apt) or bare name (apt-get) in apt_print_name's form."""
    base, _, arch = name.partition(":")
    return base if arch in ("", graph.native_arch, "all") else name


def lock_holder(root: Root) -> str | None:
    """The dpkg lock file that another process holds, or None.

    Taking and releasing the lock at once is the only portable test; apt-mark
    and apt-get take it themselves right after.
    """
    for lock in _LOCKS:
        real = root.resolve(lock)
        if real is None:
            continue
        try:  # never follow a planted link, never block on a FIFO, never open a device
            fd = os.open(root.host(real), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.ELOOP):
                return f"{lock} (cannot open: {exc.strerror})"
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return f"{lock} (not a regular file)"
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
        except OSError:
            return lock
        finally:
            os.close(fd)
    return None


def _run(root: Root, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = argv if root.is_host else ["chroot", root.top] + argv
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env)
    except OSError as exc:  # chroot or the apt tool itself is missing
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: {exc.strerror}")


def apply_marks(root: Root, graph: PackageGraph, manual_names: Sequence[str]) -> None:
    """Mark every installed package auto, then ``manual_names`` manual; restore on failure."""
    env = {k: v for k, v in os.environ.items() if k != "APT_CONFIG"}
    env["LC_ALL"] = "C"
    states = root.resolve(EXTENDED_STATES)
    backup: bytes | None = None
    if states is not None:
        try:  # never a plain open: a FIFO would block, a directory would escape as a bug
            backup = root.read_bytes(states)
        except OSError as exc:
            raise AptError(
                f"cannot back up {root.host(states)}: {exc.strerror or exc}; nothing was changed"
            ) from None
    names = sorted({n.apt_name for n in graph.nodes.values()})
    steps = [["apt-mark", "auto", *names]]
    if manual_names:
        steps.append(["apt-mark", "manual", *manual_names])
    for argv in steps:
        proc = _run(root, argv, env)
        if proc.returncode != 0:
            _restore(root, backup)
            raise AptError(
                f"{' '.join(argv[:2])} failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-500:]}; the marks were restored"
            )


def _restore(root: Root, backup: bytes | None) -> None:
    path = root.resolve(os.path.dirname(EXTENDED_STATES))
    if path is None:
        return
    target = root.host(path) + "/" + os.path.basename(EXTENDED_STATES)
    if backup is None:
        try:
            os.unlink(target)
        except FileNotFoundError:
            pass
        return
    # A fresh file of our own (O_EXCL inside mkstemp): nothing planted in the image's
    # directory can redirect the write, and the rename makes the restore atomic.
    fd, tmp = tempfile.mkstemp(prefix=".depmin-restore-", dir=root.host(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(backup)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def purge(root: Root, overrides: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run the real ``apt-get purge -y --auto-remove`` with the same settings as the plan."""
    env = {k: v for k, v in os.environ.items() if k != "APT_CONFIG"}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    argv = ["apt-get", "purge", "-y", "--auto-remove"]
    for o in overrides:
        argv += ["-o", o]
    if root.is_host:
        return _run(root, argv, env)
    proc_dir = root.resolve("/proc")
    mounted = False
    if proc_dir is not None and not os.path.ismount(root.host(proc_dir)):
        done = _run(Root("/"), ["mount", "-t", "proc", "proc", root.host(proc_dir)], env)
        if done.returncode != 0:
            raise AptError(f"cannot mount /proc in {root.top} for the purge: {done.stderr.strip()}")
        mounted = True
    try:
        return _run(root, argv, env)
    finally:
        if mounted:
            subprocess.run(["umount", root.host(proc_dir or "/proc")], check=False)
