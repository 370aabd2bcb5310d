"""``depmin apply`` is all-or-nothing: every refusal leaves apt's state byte for byte as it was.

Issue #8 item 5.  The roots are real-format fixtures built under tmp_path from
this machine's own dpkg records (status stanzas, ``.list`` files, the loader and
libc): never the host's state.  The refusals are checked through the CLI in a
child process, the restore of ``apply_marks`` directly.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from depmin.debian.aptstate import apply_marks
from depmin.debian.dpkg import load_dpkg_database
from depmin.debian.pkggraph import build_package_graph
from depmin.errors import EXIT_APT, EXIT_CHECK, EXIT_UNRESOLVED, AptError
from depmin.rootfs import Root
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
    return {
        rel: hashlib.sha256((top / rel).read_bytes()).hexdigest() if (top / rel).exists() else ""
        for rel in STATE_FILES
    }


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
        check_refused(image, [], EXIT_APT, f"the dpkg lock is held (/var/lib/dpkg/{lock})")
    # with the lock free, the same root goes past the check (and fails at apt-mark, restored)
    p = run_cli(["apply", "--root", str(image)])
    assert p.returncode == EXIT_APT and b"the marks were restored" in p.stderr


def test_refuses_when_libraries_are_missing(image: Path, tmp_path: Path) -> None:
    prog = missing_library_program(image, tmp_path / "stubs")
    check_refused(image, [], EXIT_UNRESOLVED,
                  f"depmin: {prog}: libdepmin-absent.so.1 not found; searched ")  # fmt: skip
    with held(image / "var/lib/dpkg/lock-frontend"):  # --allow-missing goes on, to the lock
        check_refused(image, ["--allow-missing"], EXIT_APT, "the dpkg lock is held")


def test_refuses_when_apt_disagrees(image: Path) -> None:
    kernel = add_kernel(image)
    check_refused(image, [], EXIT_CHECK,
                  f"apt-get -s disagrees with the plan: apt only [], depmin only ['{kernel}']")  # fmt: skip


FAKE_APT_MARK = r"""
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    const char *verb = argc > 1 ? argv[1] : "";
    FILE *log = fopen("/tmp/apt-mark.log", "a");
    if (log) { fprintf(log, "%s %d\n", verb, argc - 2); fclose(log); }
    if (strcmp(verb, "probe") == 0) return 0;
    FILE *f = fopen("/var/lib/apt/extended_states", "w");
    if (f) { fprintf(f, "Package: %s\nAuto-Installed: 1\n", argc > 2 ? argv[2] : "?"); fclose(f); }
    return strcmp(verb, FAIL_ON) == 0 ? 100 : 0;
}
"""


def install_fake_apt_mark(top: Path, fail_on: str) -> None:
    """A static apt-mark inside the root that rewrites the marks, then fails on ``fail_on``."""
    try:
        gcc(top / "usr/bin/apt-mark", FAKE_APT_MARK, "-static", f'-DFAIL_ON="{fail_on}"')
    except RuntimeError as exc:
        pytest.skip(f"cannot link a static program: {exc}")
    probe = subprocess.run(["chroot", str(top), "apt-mark", "probe"], capture_output=True, text=True,
                           env=_ENV)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"cannot chroot here: {probe.stderr.strip()}")
    (top / "tmp/apt-mark.log").unlink()


def apt_mark_calls(top: Path) -> list[str]:
    log = top / "tmp/apt-mark.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("existed", [True, False])
@pytest.mark.parametrize("fail_on", ["auto", "manual"])
def test_apply_marks_restores_the_marks_byte_for_byte(image: Path, fail_on: str, existed: bool) -> None:
    states = image / "var/lib/apt/extended_states"
    if existed:
        states.write_bytes(states.read_bytes() + b"\n# odd bytes \xff kept as they are\n")
    else:
        states.unlink()
    before = states.read_bytes() if existed else None
    install_fake_apt_mark(image, fail_on)
    root = Root(str(image))
    graph = build_package_graph(load_dpkg_database(root))
    with pytest.raises(AptError, match=f"apt-mark {fail_on} failed .*the marks were restored"):
        apply_marks(root, graph, ["libc6"])
    calls = apt_mark_calls(image)
    assert calls == (["auto 5"] if fail_on == "auto" else ["auto 5", "manual 1"])
    assert (states.read_bytes() if states.exists() else None) == before
    assert not list(states.parent.glob("*.depmin-restore"))


def test_apply_marks_keeps_what_apt_mark_wrote_when_it_succeeds(image: Path) -> None:
    install_fake_apt_mark(image, "never")
    root = Root(str(image))
    apply_marks(root, build_package_graph(load_dpkg_database(root)), ["libc6"])
    assert apt_mark_calls(image) == ["auto 5", "manual 1"]
    assert (image / "var/lib/apt/extended_states").read_text() == "Package: libc6\nAuto-Installed: 1\n"


def test_apply_without_apt_mark_in_the_root_changes_nothing(image: Path) -> None:
    check_refused(image, ["--keep", "libc6"], EXIT_APT, "apt-mark auto failed")
    p = run_cli(["apply", "--root", str(image)])
    assert b"chroot: failed to run command 'apt-mark'" in p.stderr


def test_the_cli_restores_the_marks(image: Path) -> None:
    install_fake_apt_mark(image, "auto")
    before = state_of(image)
    p = run_cli(["apply", "--root", str(image)])
    assert p.returncode == EXIT_APT and b"Traceback" not in p.stderr
    assert b"apt-mark auto failed (exit 100)" in p.stderr and b"the marks were restored" in p.stderr
    assert apt_mark_calls(image) == ["auto 5"]  # it ran, and rewrote the marks
    assert state_of(image) == before


def test_marks_that_cannot_be_backed_up_are_never_touched(image: Path) -> None:
    """A FIFO would block a plain open(); apply refuses before apt-mark runs."""
    states = image / "var/lib/apt/extended_states"
    states.unlink()
    os.mkfifo(states)
    install_fake_apt_mark(image, "never")
    p = run_cli(["apply", "--root", str(image)], timeout=300)
    assert p.returncode == EXIT_APT and b"Traceback" not in p.stderr
    assert f"cannot back up {states}: not a regular file; nothing was changed".encode() in p.stderr
    assert apt_mark_calls(image) == []
    assert stat.S_ISFIFO(os.lstat(states).st_mode)
