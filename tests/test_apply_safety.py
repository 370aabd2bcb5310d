"""``depmin apply`` is crash-safe and runs nothing of the root (issues #8 and #13).

The roots are real-format fixtures built under tmp_path from this machine's own
dpkg records (status stanzas, ``.list`` files, the loader and libc): never the
host's state.  Every refusal is checked through the CLI in a child process to
leave apt's state byte for byte as it was; what apply writes is read back by the
host's own apt (apt-mark showmanual, apt-get -s autoremove, pointed at the root).
The fault-injection test kills apply at every write and every subprocess.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from depmin.errors import EXIT_APT, EXIT_CHECK, EXIT_INPUT, EXIT_UNRESOLVED, EXIT_USAGE
from tests.oracles import chroot_trace, gcc

REPO = Path(__file__).resolve().parent.parent
STATUS = "/var/lib/dpkg/status"
INFO = "/var/lib/dpkg/info"
#: Host packages copied into every image root, with the files each one needs there.
HOST_PACKAGES = {
    "libc6": ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
    "libgcc-s1": ("/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",),
    "gcc-12-base": (),
}
#: A build dependency the purge removes (hand-written, in dpkg's format).
BUILD_DEP = "depmin-fixture-builddep"
STATE_FILES = ("var/lib/apt/extended_states", "var/lib/dpkg/status")
_ENV = {"LC_ALL": "C.UTF-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}


def host_stanza(name: str) -> str:
    """The package's stanza in this machine's status file, exactly as dpkg wrote it."""
    with open(STATUS, encoding="utf-8") as f:
        for stanza in f.read().split("\n\n"):
            if re.search(rf"^Package: {re.escape(name)}$", stanza, re.M):
                return stanza.strip("\n") + "\n"
    raise LookupError(name)


def _without_relations(stanza: str) -> str:
    """Drop Depends/Pre-Depends (and their continuation lines) so the copy stays consistent."""
    return re.sub(r"^(?:Pre-Depends|Depends|Suggests|Breaks|Conflicts): .*\n(?: .*\n)*", "", stanza,
                  flags=re.M)  # fmt: skip


def _list_name(name: str, stanza: str) -> str:
    same = re.search(r"^Multi-Arch: same$", stanza, re.M) is not None
    return f"{name}:amd64.list" if same else f"{name}.list"


def copy_in(top: Path, path: str) -> None:
    """Copy one host file into the root at the same canonical path."""
    dst = top / path.lstrip("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(path), dst)


def build_image_root(top: Path, programs: Sequence[str] = ("/usr/bin/true",)) -> Path:
    """A merged-/usr root with the loader, libc, a dpkg database and apt's state files.

    ``status`` holds this machine's stanzas of libc6, libgcc-s1 and gcc-12-base
    (and dpkg's, its relations dropped) plus a hand-written build dependency; the
    ``.list`` files are the host's own; extended_states marks the build dependency
    auto.  Each of ``programs`` is copied to /usr/local/bin/<name>.
    """
    for d in ("usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/bin", "usr/sbin", "usr/local/bin",
              "etc/apt/apt.conf.d", "etc/apt/preferences.d", "var/lib/dpkg/info",
              "var/lib/dpkg/updates", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
              "tmp"):  # fmt: skip
        (top / d).mkdir(parents=True, exist_ok=True)
    for alias in ("lib", "lib64", "bin", "sbin"):
        (top / alias).symlink_to(f"usr/{alias}")
    (top / "usr/lib64/ld-linux-x86-64.so.2").symlink_to("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    stanzas = []
    info = top / "var/lib/dpkg/info"
    for name, files in HOST_PACKAGES.items():
        stanza = host_stanza(name)
        stanzas.append(stanza)
        shutil.copy(f"{INFO}/{_list_name(name, stanza)}", info)
        for path in files:
            copy_in(top, path)
    dpkg = _without_relations(host_stanza("dpkg"))
    stanzas.append(dpkg)
    (info / "dpkg.list").write_text("/.\n")
    stanzas.append(
        f"Package: {BUILD_DEP}\nStatus: install ok installed\nPriority: optional\n"
        "Section: devel\nInstalled-Size: 1\nMaintainer: depmin tests <tests@example.invalid>\n"
        "Architecture: amd64\nVersion: 1.0\nDepends: libc6\n"
        "Description: build dependency of the depmin fixture\n"
    )
    (info / f"{BUILD_DEP}.list").write_text(f"/.\n/usr\n/usr/share\n/usr/share/{BUILD_DEP}\n")
    (info / "format").write_text("1\n")
    (top / "var/lib/dpkg/status").write_text("\n".join(stanzas))
    for lock in ("lock", "lock-frontend"):
        (top / "var/lib/dpkg" / lock).write_bytes(b"")
    (top / "var/lib/dpkg/available").write_text("")
    (top / "var/lib/apt/extended_states").write_text(
        f"Package: {BUILD_DEP}\nArchitecture: amd64\nAuto-Installed: 1\n"
    )
    (top / "etc/apt/sources.list").write_text("")
    for prog in programs:
        shutil.copy(prog, top / "usr/local/bin" / os.path.basename(prog))
    return top


def run_cli(
    args: Sequence[str | bytes],
    prefix: Sequence[str] = (),
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``python -m depmin ARGS`` in a child process (bytes: names may not be UTF-8)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "depmin", *args],
        capture_output=True,
        env=dict(_ENV, PYTHONPATH=str(REPO)),
        cwd=cwd or REPO,
        timeout=timeout,
    )


def digests(top: Path) -> dict[str, str]:
    """Checksums of the state files; the kind of file for anything that is not a regular one."""

    def digest(path: Path) -> str:
        if not os.path.lexists(path):
            return ""
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):  # never open a FIFO here: it would block
            return f"mode {stat.S_IFMT(mode):o}"
        return hashlib.sha256(path.read_bytes()).hexdigest()

    return {rel: digest(top / rel) for rel in STATE_FILES}


def state_of(top: Path) -> dict[str, str]:
    """Checksums of apt's and dpkg's state files, and the kinds of the lock files."""
    out = digests(top)
    for lock in ("lock", "lock-frontend"):
        out[lock] = str(stat.S_IFMT(os.lstat(top / "var/lib/dpkg" / lock).st_mode))
    return out


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold the POSIX lock dpkg and apt take on ``path``, in this process."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def missing_library_program(top: Path, stubs: Path) -> str:
    """A program in the root whose DT_NEEDED library is nowhere in it (ld.so says so)."""
    gcc(stubs / "libdepmin-absent.so.1", "int absent(void) { return 0; }\n", "-shared", "-fPIC",
        "-Wl,-soname,libdepmin-absent.so.1")  # fmt: skip
    gcc(top / "usr/local/bin/needs-absent", "int absent(void);\nint main(void) { return absent(); }\n",
        str(stubs / "libdepmin-absent.so.1"))  # fmt: skip
    by_ldso = chroot_trace(str(top), "/usr/local/bin/needs-absent")
    if by_ldso is not None:
        assert "libdepmin-absent.so.1 => not found" in by_ldso[0], by_ldso[1]
    return "/usr/local/bin/needs-absent"


def add_kernel(top: Path) -> str:
    """An auto-installed kernel package: apt's kernel protection keeps it, depmin's model does not."""
    name = "linux-image-6.1.0-99-amd64"
    with open(top / "var/lib/dpkg/status", "a") as f:
        f.write(f"\nPackage: {name}\nStatus: install ok installed\nPriority: optional\n"
                "Section: kernel\nInstalled-Size: 1\nMaintainer: depmin tests <tests@example.invalid>\n"
                "Architecture: amd64\nVersion: 6.1.99-1\nDescription: kernel of the fixture\n")  # fmt: skip
    (top / f"var/lib/dpkg/info/{name}.list").write_text("/.\n")
    with open(top / "var/lib/apt/extended_states", "a") as f:
        f.write(f"\nPackage: {name}\nArchitecture: amd64\nAuto-Installed: 1\n")
    shutil.copy("/etc/apt/apt.conf.d/01autoremove", top / "etc/apt/apt.conf.d/01autoremove")
    return name


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return build_image_root(tmp_path / "root")


@pytest.fixture
def shared_image() -> Iterator[Path]:
    """An image root another user can reach: pytest's own temporary directories are 0700."""
    top = Path(tempfile.mkdtemp(prefix="depmin-apply-", dir="/tmp"))
    try:
        top.chmod(0o755)
        yield build_image_root(top / "root")
    finally:
        shutil.rmtree(top)


def check_refused(top: Path, args: Sequence[str], code: int, message: str,
                  prefix: Sequence[str] = ()) -> None:  # fmt: skip
    before = state_of(top)
    p = run_cli(["apply", "--root", str(top), *args], prefix)
    err = p.stderr.decode()
    assert "Traceback" not in err, err
    assert p.returncode == code, err
    assert message in err, err
    assert "marked" not in err  # apply_marks never ran
    assert state_of(top) == before


def test_refuses_when_not_root(shared_image: Path) -> None:
    nobody = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
    probe = subprocess.run([*nobody, "id", "-u"], capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != "65534":
        pytest.skip(f"cannot run as nobody here: {probe.stderr.strip()}")
    usable = run_cli(["--version"], nobody)
    if usable.returncode != 0:  # e.g. pyenv's interpreter, under root's 0700 home
        pytest.skip(f"nobody cannot run {sys.executable}: {usable.stderr.decode().strip()[-200:]}")
    check_refused(shared_image, [], EXIT_APT, "changing apt's marks needs root", nobody)
    p = run_cli(["apply", "--dry-run", "--root", str(shared_image)], nobody)
    assert p.returncode == 0, p.stderr  # the plan itself needs no privileges


def test_refuses_when_euid_is_not_zero(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from depmin.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    before = state_of(image)
    res = CliRunner().invoke(main, ["apply", "--root", str(image)])
    assert res.exit_code == EXIT_APT and "changing apt's marks needs root" in res.output
    assert state_of(image) == before


@pytest.mark.parametrize("lock", ["lock-frontend", "lock"])
def test_refuses_when_the_dpkg_lock_is_held(image: Path, lock: str) -> None:
    path = image / "var/lib/dpkg" / lock
    with held(path):
        if lock == "lock-frontend":  # dpkg itself refuses on the lock this process holds
            oracle = subprocess.run(["dpkg", f"--root={image}", "--configure", "-a"],
                                    capture_output=True, text=True, env=_ENV)  # fmt: skip
            assert oracle.returncode != 0 and "lock was locked by another process" in oracle.stderr
        check_refused(image, [], EXIT_APT,
                      f"could not get lock /var/lib/dpkg/{lock} of {image}: it is held by process "
                      f"{os.getpid()} (")  # fmt: skip
    p = run_cli(["apply", "--root", str(image)])  # with the lock free, the same root goes through
    assert p.returncode == 0, p.stderr


def test_refuses_when_libraries_are_missing(image: Path, tmp_path: Path) -> None:
    prog = missing_library_program(image, tmp_path / "stubs")
    check_refused(image, [], EXIT_UNRESOLVED,
                  f"depmin: {prog}: libdepmin-absent.so.1 not found; searched ")  # fmt: skip
    with held(image / "var/lib/dpkg/lock-frontend"):  # --allow-missing goes on, to the lock
        check_refused(image, ["--allow-missing"], EXIT_APT, "could not get lock")


def test_refuses_when_apt_disagrees(image: Path) -> None:
    kernel = add_kernel(image)
    check_refused(image, [], EXIT_CHECK,
                  f"apt-get -s disagrees with the plan: apt only [], depmin only ['{kernel}']")  # fmt: skip


def apt_config_file(top: Path, tmp: Path, arch: str = "amd64") -> Path:
    """An APT_CONFIG that points the host's apt at the root only: the oracle's own view."""
    conf = tmp / f"apt-{arch}.conf"
    conf.write_text(
        f'Dir "{top}/";\nDir::State::status "{top}/var/lib/dpkg/status";\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
        f'APT::Architecture "{arch}";\nAPT::Architectures {{ "{arch}"; }};\n'
    )
    return conf


def apt(conf: Path, *argv: str, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *argv], capture_output=True, text=True,
                          env=dict(_ENV, APT_CONFIG=str(conf)))  # fmt: skip


def apt_manual(top: Path, tmp: Path, arch: str = "amd64") -> list[str]:
    """``apt-mark showmanual`` of the root, by the host's apt-mark (it only reads)."""
    p = apt(apt_config_file(top, tmp, arch), "apt-mark", "showmanual")
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def apt_autoremoves(top: Path, tmp: Path, arch: str = "amd64") -> list[str]:
    """What ``apt-get -s autoremove`` would remove in the root now, by the host's apt-get."""
    p = apt(apt_config_file(top, tmp, arch), "apt-get", "-s", "autoremove")
    assert p.returncode == 0, p.stderr
    return sorted(line.split()[1] for line in p.stdout.splitlines() if line.startswith(("Remv ", "Purg ")))


def as_built(top: Path) -> None:
    """The marks a build leaves: the build dependency manual (apt-get install), what it pulled in auto."""
    (top / "var/lib/apt/extended_states").write_text(
        "".join(f"Package: {n}\nArchitecture: amd64\nAuto-Installed: 1\n\n"
                for n in ("libc6", "libgcc-s1", "gcc-12-base"))  # fmt: skip
    )


def planned(top: Path, *args: str) -> dict[str, Any]:
    p = run_cli(["plan", "--json", "--root", str(top), *args])
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def test_apply_writes_the_marks_apt_itself_reads(image: Path, tmp_path: Path) -> None:
    as_built(image)
    assert apt_autoremoves(image, tmp_path) == []  # the build dependency keeps what it pulled in
    doc = planned(image)
    needed = sorted(r["package"] for r in doc["required"])
    p = run_cli(["apply", "--root", str(image)])
    assert p.returncode == 0, p.stderr
    assert apt_manual(image, tmp_path) == sorted(doc["keep"] + doc["baseline"])
    removes = apt_autoremoves(image, tmp_path)
    assert removes == sorted(r["package"] for r in doc["purged"]) and BUILD_DEP in removes
    assert not set(removes) & set(needed)
    written = (image / "var/lib/apt/extended_states").read_bytes()
    assert run_cli(["apply", "--root", str(image)]).returncode == 0  # a rerun converges
    assert (image / "var/lib/apt/extended_states").read_bytes() == written
    assert not list((image / "var/lib/apt").glob(".extended_states.depmin-*"))


def test_apply_keeps_what_apt_keeps_of_the_old_file(image: Path, tmp_path: Path) -> None:
    """Stanzas of packages that are not installed, and fields apt does not own, survive."""
    states = image / "var/lib/apt/extended_states"
    states.write_text(
        "Package: gone-package\nArchitecture: amd64\nAuto-Installed: 1\n\n"
        "Package: libc6\nArchitecture: amd64\nAuto-Installed: 1\nX-Note: kept by the test\n"
    )
    p = run_cli(["apply", "--root", str(image), "--baseline", "libc6"])
    assert p.returncode == 0, p.stderr
    text = states.read_text()
    assert text.startswith("Package: gone-package\nArchitecture: amd64\nAuto-Installed: 1\n\n"
                           "Package: libc6\nArchitecture: amd64\nX-Note: kept by the test\n")  # fmt: skip
    assert "libc6" in apt_manual(image, tmp_path)


@pytest.mark.parametrize("words", [["-y"], ["--purge"], ["libc6;touch x"], ["$(id)"], ["b|c"]])
def test_names_that_are_not_package_names_are_refused(image: Path, tmp_path: Path, words: list[str]) -> None:
    for option in ("--baseline", "--keep"):
        check_refused(image, [f"{option}={words[0]}"], EXIT_USAGE, "is not a package name")
    listed = tmp_path / "baseline"
    listed.write_text("libc6\n" + words[0] + "\n")
    check_refused(image, ["--baseline", f"@{listed}"], EXIT_USAGE,
                  f"--baseline file {listed}: {words[0].split()[0]!r} is not a package name")  # fmt: skip


def test_malformed_marks_are_never_rewritten(image: Path) -> None:
    states = image / "var/lib/apt/extended_states"
    states.write_text("Package: libc6\nAuto-Installed: 1\nthis line is neither a field nor a continuation\n")
    check_refused(image, [], EXIT_INPUT, f"{states}: line 3: expected 'Field: value'")


def test_a_broken_status_file_stops_apply_before_any_change(image: Path) -> None:
    status = image / "var/lib/dpkg/status"
    status.write_text(status.read_text() + "\nPackage: half\nStatus: install ok installed\nVersion 1\n")
    check_refused(image, [], EXIT_INPUT, "the dpkg database did not read cleanly, so apply changes nothing")


def test_marks_and_locks_that_are_not_regular_files_are_refused(image: Path) -> None:
    states = image / "var/lib/apt/extended_states"
    states.unlink()
    os.mkfifo(states)
    check_refused(image, [], EXIT_INPUT, f"{states}: cannot read: not a regular file")
    states.unlink()
    lock = image / "var/lib/dpkg/lock-frontend"
    lock.unlink()
    os.mkfifo(lock)
    check_refused(image, [], EXIT_APT, f"{lock} is not a regular file; nothing was changed")


def test_links_in_apt_state_are_resolved_inside_the_root(image: Path, tmp_path: Path) -> None:
    """An absolute link restarts at the root: apply writes inside it, never where the host would."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "extended_states").write_text("Package: untouched\nAuto-Installed: 1\n")
    before = (outside / "extended_states").read_bytes()
    apt_dir = image / "var/lib/apt"
    shutil.move(apt_dir, image / "var/lib/apt-real")
    apt_dir.symlink_to(str(outside))  # absolute: inside the root it means <root>/<outside>
    inner = image / str(outside).lstrip("/")
    inner.mkdir(parents=True)
    p = run_cli(["apply", "--root", str(image)])
    assert p.returncode == 0, p.stderr
    assert (outside / "extended_states").read_bytes() == before and len(list(outside.iterdir())) == 1
    assert (inner / "extended_states").is_file()


def test_apt_files_are_read_inside_the_root_or_refused(image: Path, tmp_path: Path) -> None:
    """The host's apt-get -s would follow these links to the host; depmin never lets it.

    The host file is not valid apt syntax: had apt read it, apt-get -s would fail.
    """
    host_file = tmp_path / "host-apt.conf"
    host_file.write_text("this is { not apt configuration\n")
    link = image / "etc/apt/apt.conf.d/99link"
    link.symlink_to(f"../../../../{'../' * len(tmp_path.parts)}{str(host_file).lstrip('/')}")
    assert os.path.realpath(link) == str(host_file)  # where the host's rules lead
    absolute = image / "etc/apt/apt.conf.d/98absolute"
    absolute.symlink_to(str(host_file))
    p = run_cli(["apply", "--root", str(image)])
    assert p.returncode == 0, p.stderr  # both resolved inside the root: nothing there
    fifo = image / "var/lib/apt/lists/deb.example_Packages"
    os.mkfifo(fifo)
    check_refused(image, [], EXIT_APT, f"{fifo} is not a regular file or directory")
    fifo.unlink()
    (image / "var/lib/apt/lists/deb.example_Packages").symlink_to(str(host_file))
    check_refused(image, [], EXIT_APT, "leads out of the root")
    (image / "var/lib/apt/lists/deb.example_Packages").unlink()
    (image / "etc/apt/apt.conf.d/97include").write_text(f'#include "{host_file}";\n')
    inner = image / str(host_file).lstrip("/")  # what depmin itself reads: the root's file
    inner.parent.mkdir(parents=True)
    inner.write_text('APT::Cache-Limit "0";\n')
    check_refused(image, [], EXIT_APT, "has an #include, which apt would read on the host")


def test_lock_wait_is_bounded_and_then_goes_through(image: Path) -> None:
    lock = image / "var/lib/dpkg/lock-frontend"
    with held(lock):
        t0 = time.monotonic()
        check_refused(image, ["--lock-timeout", "1.5"], EXIT_APT, "after waiting 1.5 s: it is held by")
        assert time.monotonic() - t0 >= 1.5
    fd = os.open(lock, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    threading.Timer(1.0, os.close, (fd,)).start()  # the holder lets go after a second
    t0 = time.monotonic()
    p = run_cli(["apply", "--root", str(image), "--lock-timeout", "30"])
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 >= 1.0


def test_two_applies_never_interleave(image: Path, tmp_path: Path) -> None:
    """Both run at once with different baselines: the end is one run's marks, never a mix."""
    results = {}
    for base in ("libc6", "gcc-12-base"):
        solo = tmp_path / base
        shutil.copytree(image, solo, symlinks=True)
        assert run_cli(["apply", "--root", str(solo), "--baseline", base]).returncode == 0
        results[base] = apt_manual(solo, tmp_path)
    assert results["libc6"] != results["gcc-12-base"]
    for _ in range(3):
        argv = [sys.executable, "-m", "depmin", "apply", "--root", str(image), "--lock-timeout", "60"]
        procs = [subprocess.Popen([*argv, "--baseline", b], cwd=REPO, stderr=subprocess.PIPE,
                                  env=dict(_ENV, PYTHONPATH=str(REPO))) for b in results]  # fmt: skip
        codes = [p.wait(300) for p in procs]
        assert codes == [0, 0], [p.stderr.read() for p in procs if p.stderr]
        assert apt_manual(image, tmp_path) in results.values()


MARKER = """#!/bin/sh
# A program of the root that must never run: it leaves a mark next to the root's top.
here=$(cd "$(dirname "$0")" && pwd)
touch "$here/../../RAN-$(basename "$0")"
exit 0
"""


def plant_programs(top: Path) -> list[str]:
    names = ["apt-mark", "apt-get", "apt", "dpkg", "dpkg-query", "ldconfig", "ldd", "chroot", "sh", "env"]
    for name in names:
        for d in ("usr/bin", "usr/sbin"):
            prog = top / d / name
            prog.write_text(MARKER)
            prog.chmod(0o755)
    return names


def test_root_programs_never_run(image: Path, tmp_path: Path) -> None:
    plant_programs(image)
    script = image / "usr/local/bin/script"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    for args in (["snapshot"], ["keep"], ["plan"], ["verify"], ["apply", "--dry-run"], ["apply"],
                 ["ldd", "/usr/local/bin/true"], ["why", "libc6"], ["graph"]):  # fmt: skip
        p = run_cli([args[0], "--root", str(image), *args[1:]])
        assert p.returncode == 0, (args, p.stderr)
    assert not list(image.glob("RAN-*")) and not list(Path("/").glob("RAN-*"))
    check_refused(image, ["--purge"], EXIT_USAGE, "add --chroot to allow that")
    assert not list(image.glob("RAN-*"))


def foreign_root(top: Path) -> Path:
    """An arm64 image: its objects say EM_AARCH64, its dpkg database arm64; nothing here can run it."""
    build_image_root(top, ())
    multiarch = top / "usr/lib/aarch64-linux-gnu"
    multiarch.mkdir(parents=True)
    for lib in ("libc.so.6", "ld-linux-x86-64.so.2", "libgcc_s.so.1"):
        shutil.move(top / "usr/lib/x86_64-linux-gnu" / lib, multiarch / lib)
    (multiarch / "ld-linux-x86-64.so.2").rename(multiarch / "ld-linux-aarch64.so.1")
    (top / "usr/lib64/ld-linux-x86-64.so.2").unlink()
    (top / "usr/lib/ld-linux-aarch64.so.1").symlink_to("aarch64-linux-gnu/ld-linux-aarch64.so.1")
    prog = top / "usr/local/bin/app"
    gcc(prog, "int main(void) { return 0; }\n", "-Wl,--dynamic-linker=/lib/ld-linux-aarch64.so.1")
    for f in (prog, *multiarch.iterdir()):
        data = bytearray(f.read_bytes())
        data[18:20] = (183).to_bytes(2, "little")  # e_machine = EM_AARCH64
        f.write_bytes(bytes(data))
    info = top / "var/lib/dpkg/info"
    for old in info.glob("*:amd64.list"):
        text = old.read_text().replace("x86_64-linux-gnu", "aarch64-linux-gnu")
        text = text.replace("ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1")
        (info / old.name.replace(":amd64", ":arm64")).write_text(text)
        old.unlink()
    status = top / "var/lib/dpkg/status"
    status.write_text(status.read_text().replace("Architecture: amd64", "Architecture: arm64"))
    states = top / "var/lib/apt/extended_states"
    states.write_text(states.read_text().replace("amd64", "arm64"))
    return top


def test_a_root_of_another_architecture_needs_no_binfmt_and_no_chroot(tmp_path: Path) -> None:
    top = foreign_root(tmp_path / "arm64")
    plant_programs(top)
    with pytest.raises(OSError, match="Exec format error"):  # no binfmt for aarch64 here
        subprocess.run([str(top / "usr/local/bin/app")], capture_output=True)
    snap = run_cli(["snapshot", "--root", str(top)])
    assert snap.returncode == 0, snap.stderr
    assert snap.stdout.decode().split() == apt_manual(top, tmp_path, "arm64")
    ok = run_cli(["verify", "--root", str(top)])
    assert ok.returncode == 0 and b"1 ELF objects and 0 scripts checked: all resolve" in ok.stdout, ok.stderr
    doc = planned(top)
    assert {r["package"] for r in doc["required"]} >= {"libc6"}
    p = run_cli(["apply", "--root", str(top)])
    assert p.returncode == 0, p.stderr
    assert "Architecture: arm64" in (top / "var/lib/apt/extended_states").read_text()
    assert apt_manual(top, tmp_path, "arm64") == sorted(doc["keep"] + doc["baseline"])
    assert apt_autoremoves(top, tmp_path, "arm64") == sorted(r["package"] for r in doc["purged"])
    assert not list(top.glob("RAN-*"))


# -- fault injection -------------------------------------------------------------------------------

#: Loaded by every Python of the child (PYTHONPATH): counts depmin's writes and subprocesses,
#: and at event number $DEPMIN_FAULT_AT kills the whole process group with SIGKILL, before
#: the event happens ("before") or, for a subprocess, right after it started ("started").
FAULTS = r'''
import os, signal, subprocess, sys
_AT = int(os.environ.get("DEPMIN_FAULT_AT", "0"))
_LOG = os.environ["DEPMIN_FAULT_LOG"]
_n = [0]

def _event(what):
    _n[0] += 1
    with open(_LOG, "a") as f:
        f.write(f"{_n[0]} {what}\n")
    if _n[0] == _AT:
        os.killpg(os.getpgid(0), signal.SIGKILL)

def _wrap(mod, name, writes=lambda *a, **k: True):
    real = getattr(mod, name)
    def wrapper(*args, **kwargs):
        if writes(*args, **kwargs):
            _event(f"{name} {args[0] if args else ''}")
        return real(*args, **kwargs)
    setattr(mod, name, wrapper)

_W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_wrap(os, "open", lambda path, flags, *a, **k: bool(flags & _W) and path != _LOG)
for _name in ("rename", "replace", "unlink", "fsync", "ftruncate", "truncate", "mkdir", "chmod"):
    _wrap(os, _name)
_real_fdopen = os.fdopen
class _File:
    def __init__(self, f): self._f = f
    def write(self, data):
        _event("write")
        return self._f.write(data)
    def __getattr__(self, name): return getattr(self._f, name)
    def __enter__(self): self._f.__enter__(); return self
    def __exit__(self, *exc): return self._f.__exit__(*exc)
def _fdopen(fd, mode="r", *a, **k):
    f = _real_fdopen(fd, mode, *a, **k)
    return _File(f) if any(c in mode for c in "wa+") else f
os.fdopen = _fdopen
_Popen = subprocess.Popen.__init__
def _popen(self, args, *a, **k):
    _event(f"spawn {args[0] if isinstance(args, (list, tuple)) else args}")
    _Popen(self, args, *a, **k)
    _event("started")
subprocess.Popen.__init__ = _popen
'''


def run_with_faults(top: Path, tmp: Path, at: int, args: Sequence[str]) -> tuple[int, list[str]]:
    hooks = tmp / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(FAULTS)
    log = tmp / f"faults-{at}.log"
    # TMPDIR: a kill leaves depmin's scratch directory behind; it goes with the test's tree.
    env = dict(_ENV, PYTHONPATH=f"{hooks}:{REPO}", DEPMIN_FAULT_AT=str(at), DEPMIN_FAULT_LOG=str(log),
               TMPDIR=str(tmp))  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "depmin", "apply", "--root", str(top), *args],
                       capture_output=True, env=env, cwd=REPO, timeout=300,
                       start_new_session=True)  # fmt: skip
    return p.returncode, log.read_text().splitlines() if log.exists() else []


def test_a_kill_at_any_write_or_subprocess_leaves_old_or_new_marks(
    tmp_path: Path, report: Callable[[str], None]
) -> None:
    """Issue #13 (1, 2): every kill point of apply, checked with apt's own simulation."""
    base = build_image_root(tmp_path / "base")
    as_built(base)
    needed = sorted(r["package"] for r in planned(base)["required"])
    old = (base / "var/lib/apt/extended_states").read_bytes()
    assert not set(apt_autoremoves(base, tmp_path)) & set(needed)
    clean = tmp_path / "clean"
    shutil.copytree(base, clean, symlinks=True)
    code, events = run_with_faults(clean, tmp_path, 0, [])
    assert code == 0 and events, events
    new = (clean / "var/lib/apt/extended_states").read_bytes()
    assert new != old
    kinds = {e.split()[1] for e in events}
    assert {"rename", "fsync", "write", "spawn"} <= kinds, events
    tried = 0
    for at in range(1, len(events) + 1):
        top = tmp_path / f"kill-{at}"
        shutil.copytree(base, top, symlinks=True)
        code, seen = run_with_faults(top, tmp_path, at, [])
        assert code == -9 or code == 137 or code < 0, (at, code, seen)
        tried += 1
        now = (top / "var/lib/apt/extended_states").read_bytes()
        assert now in (old, new), f"kill before {events[at - 1]}: the marks are neither the old nor the new"
        assert not set(apt_autoremoves(top, tmp_path)) & set(needed), events[at - 1]
        code, _ = run_with_faults(top, tmp_path, 0, [])  # the rerun converges
        assert code == 0
        assert (top / "var/lib/apt/extended_states").read_bytes() == new
        assert not list((top / "var/lib/apt").glob(".extended_states.depmin-*"))
        shutil.rmtree(top)
    report(f"apply fault injection: {tried} kill points (every write and subprocess of one run: "
           f"{', '.join(sorted(kinds))}); each left the old or the new marks, apt-get -s removed no "
           "needed package, and the rerun converged")  # fmt: skip


#: Replaces the purge: from its first instant on, every import that is not already done
#: fails and is recorded, as when apt-get has just removed the interpreter's own files.
PURGE_REMOVES_PYTHON = r'''
import subprocess, sys
import depmin.debian.aptstate as aptstate
attempted = []
class Gone:
    def find_spec(self, name, path=None, target=None):
        attempted.append(name)
        raise ImportError(f"{name}: the purge removed it")
def purge(root, argv):
    sys.meta_path.insert(0, Gone())
    sys.path[:] = []
    return subprocess.CompletedProcess(argv, 0, "", "")
aptstate.run_in_root = purge
import os
leave = os._exit  # the entry point leaves through os._exit: no atexit handler runs
def report(status):
    sys.stderr.write(f"IMPORTS AFTER THE PURGE: {attempted}\n")
    sys.stderr.flush()
    leave(status)
os._exit = report
from depmin.__main__ import main
sys.argv[1:] = sys.argv[1:]
main()
'''


@pytest.mark.parametrize("missing", [False, True], ids=["all-resolve", "one-missing"])
def test_verify_after_a_purge_that_removes_python_imports_nothing(
    image: Path, tmp_path: Path, missing: bool
) -> None:
    as_built(image)
    if missing:
        prog = missing_library_program(image, tmp_path / "stubs")
    args = ["apply", "--root", str(image), "--purge", "--chroot", "--verify", "--allow-missing"]
    p = subprocess.run([sys.executable, "-c", PURGE_REMOVES_PYTHON, *args], capture_output=True,
                       text=True, cwd=REPO, env=dict(_ENV, PYTHONPATH=str(REPO)), timeout=300)  # fmt: skip
    assert "Traceback" not in p.stderr, p.stderr
    assert "IMPORTS AFTER THE PURGE: []" in p.stderr, p.stderr
    if missing:
        assert p.returncode == EXIT_UNRESOLVED, p.stderr
        assert f"depmin: {prog}: libdepmin-absent.so.1 not found" in p.stderr
        assert "1 problems" in p.stdout
    else:
        assert p.returncode == 0, p.stderr
        assert "scripts checked: all resolve" in p.stdout


def test_verify_needs_purge(image: Path) -> None:
    check_refused(image, ["--verify"], EXIT_USAGE, "--verify checks what the purge left: it needs --purge")
