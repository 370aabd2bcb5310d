"""Hostile databases: every broken input is named in one clear message, never a traceback.

Issue #8 item 3.  Each case breaks one file of a real-format root and runs the
CLI in a child process.  That the file really is broken (or really is fine) is
asked of the tool that owns it: dpkg-query for the dpkg database, ldconfig for
the cache, apt-config and apt-mark for apt's files.  Exit codes are those of
depmin/errors.py: warnings leave 0, unusable input is 3.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from depmin.errors import EXIT_INPUT, EXIT_OK
from tests.test_apply_safety import apt, apt_config_file, build_image_root, run_cli
from tests.test_hostile_trees import NO_DAC, root_is_denied

_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
COMMANDS = [["keep"], ["keep", "--all"], ["plan"]]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return build_image_root(tmp_path / "root")


def cli(top: Path, *args: str, prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    """Exit code and stderr of ``depmin ARGS --root TOP``; a traceback fails the test.

    ``plan`` shows its warnings in the plan itself, so its stdout is checked with them.
    """
    p = run_cli([*args, "--root", str(top)], prefix, timeout=300)
    err = p.stderr.decode("utf-8", "surrogateescape")
    assert "Traceback" not in err, err
    if args[0] == "plan":
        lines = p.stdout.decode("utf-8", "surrogateescape").splitlines()
        err += "".join(f"depmin: {w}\n" for w in lines if w.startswith("warning: "))
    return p.returncode, err


def dpkg_query(top: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, "dpkg-query", "--admindir", str(top / "var/lib/dpkg"), *args],
                          capture_output=True, text=True, env=_ENV)  # fmt: skip


def test_the_fixture_is_clean(image: Path) -> None:
    """The unbroken root gives no warning at all, so every warning below comes from the break."""
    assert dpkg_query(image, "-W").returncode == 0
    for args in [*COMMANDS, ["snapshot"]]:
        assert cli(image, *args) == (EXIT_OK, ""), args


def test_broken_status_stanza(image: Path) -> None:
    status = image / "var/lib/dpkg/status"
    with open(status, "a") as f:
        f.write("\nPackage: depmin-broken\nStatus install ok installed\nArchitecture: amd64\n")
    line = status.read_text().splitlines().index("Status install ok installed") + 1
    oracle = dpkg_query(image, "-W")
    m = re.search(r"parsing file '(.*)' near line (\d+) package 'depmin-broken'", oracle.stderr)
    assert oracle.returncode != 0 and m, oracle.stderr
    assert m.group(1) == str(status) and int(m.group(2)) in (line - 1, line)  # "near"
    where = f"{status}:{line}: "
    for args in [*COMMANDS, ["snapshot"]]:
        code, err = cli(image, *args)
        assert code == EXIT_OK, (args, err)
        assert f"depmin: warning: {where}expected 'Field: value' or a continuation" in err, args


def test_missing_list_file(image: Path) -> None:
    lst = image / "var/lib/dpkg/info/libgcc-s1:amd64.list"
    lst.unlink()
    oracle = dpkg_query(image, "-L", "libgcc-s1")
    assert "files list file for package 'libgcc-s1:amd64' missing" in oracle.stderr
    for args in COMMANDS:
        code, err = cli(image, *args)
        assert code == EXIT_OK, (args, err)
        assert f"depmin: warning: {lst}: missing file list of installed package" in err, args
        assert "/lib/x86_64-linux-gnu/libgcc_s.so.1: needed file outside" in err  # and why it matters


def test_list_file_that_is_a_link_inside_the_root(image: Path) -> None:
    """A .list replaced by a relative link to its content (dpkg reads through it, and
    so does depmin, inside the root): the same owners, no warning."""
    expected = run_cli(["keep", "--all", "--root", str(image)])
    lst = image / "var/lib/dpkg/info/libc6:amd64.list"
    moved = image / "var/lib/dpkg/libc6.list.moved"
    lst.rename(moved)
    lst.symlink_to("../libc6.list.moved")
    libc = next(p for p in moved.read_text().splitlines() if p.endswith("/libc.so.6"))
    assert dpkg_query(image, "-S", libc).stdout.startswith("libc6")
    got = run_cli(["keep", "--all", "--root", str(image)])
    assert (got.returncode, got.stderr) == (EXIT_OK, b"")
    assert got.stdout == expected.stdout and b"libc6:amd64" in got.stdout.split()


def test_unreadable_list_file(image: Path) -> None:
    lst = image / "var/lib/dpkg/info/libc6:amd64.list"
    os.chmod(lst, 0)
    why = root_is_denied(lst)
    if why:
        pytest.skip(why)
    for args in COMMANDS:
        code, err = cli(image, *args, "--allow-missing", prefix=NO_DAC)
        assert code == EXIT_OK, (args, err)
        assert f"depmin: warning: {lst}: cannot read: Permission denied" in err, (args, err)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "fifo"])
def test_corrupt_ld_so_cache(image: Path, damage: str) -> None:
    cache = image / "etc/ld.so.cache"
    blob = Path("/etc/ld.so.cache").read_bytes()
    if damage == "truncated":
        cache.write_bytes(blob[:100])
    elif damage == "garbage":
        cache.write_bytes(b"glibc-ld.so.cache1.1" + b"\xff" * 200)
    else:
        os.mkfifo(cache)  # ld.so would not read it either; no process ever writes to it
    if damage != "fifo":
        oracle = subprocess.run(["ldconfig", "-p", "-C", str(cache)], capture_output=True, text=True)
        assert oracle.returncode != 0 or oracle.stderr, "ldconfig reads the cache"
    for args in [*COMMANDS, ["ldd", "/usr/local/bin/true"]]:
        code, err = cli(image, *args)
        assert code == EXIT_OK, (args, err)
        assert re.search(rf"^depmin: warning: {re.escape(str(cache))}: .*\(ignored, as ld.so would\)$",
                         err, re.M), (args, err)  # fmt: skip


def test_apt_config_lines(image: Path, tmp_path: Path) -> None:
    """A line apt-config rejects stops depmin with the file and line; one it accepts does not."""
    conf = apt_config_file(image, tmp_path)
    part = image / "etc/apt/apt.conf.d/50depmin"
    part.write_text('Depmin::Unknown::Option "1";\nAPT::Keep-Fds:: "3";\n')
    assert apt(conf, "apt-config", "dump").returncode == 0
    for args in [*COMMANDS, ["apply", "--dry-run"]]:
        assert cli(image, *args) == (EXIT_OK, ""), args

    part.write_text('APT::Get::Assume-Yes "true";\nthis is not apt syntax\n')
    oracle = apt(conf, "apt-config", "dump")
    m = re.search(rf"E: Syntax error {re.escape(str(part))}:(\d+): (.*)", oracle.stderr)
    assert oracle.returncode != 0 and m, oracle.stderr
    for args in [["keep"], ["plan"], ["apply", "--dry-run"]]:
        code, err = cli(image, *args)
        assert code == EXIT_INPUT, (args, err)
        assert err.startswith(f"depmin: error: {part}: line {m.group(1)}: "), (args, err)
        assert err.count("\n") == 1


MALFORMED = {  # extended_states texts where apt and depmin read the same marks
    "line without colon": "Package: gcc-12-base\nArchitecture amd64\nAuto-Installed: 1\n\n"
    "Package: libc6\nArchitecture: amd64\nAuto-Installed: 1\n",
    "continuation first": " garbage\n\nPackage: libc6\nArchitecture: amd64\nAuto-Installed: 1\n",
    "bad value": "Package: libc6\nArchitecture: amd64\nAuto-Installed: yes\n\n"
    "Package: gcc-12-base\nArchitecture: amd64\nAuto-Installed: 1\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_extended_states(image: Path, tmp_path: Path, case: str) -> None:
    states = image / "var/lib/apt/extended_states"
    states.write_text(MALFORMED[case])
    oracle = apt(apt_config_file(image, tmp_path), "apt-mark", "showmanual")
    assert oracle.returncode == 0, oracle.stderr
    p = run_cli(["snapshot", "--root", str(image)])
    err = p.stderr.decode()
    assert p.returncode == EXIT_OK and "Traceback" not in err
    assert p.stdout.decode().split() == oracle.stdout.split()
    if case == "bad value":  # a well-formed stanza: nothing to say
        assert err == ""
    else:
        assert re.fullmatch(rf"(depmin: warning: {re.escape(str(states))}:\d+: [^\n]+\n)+", err), err


def test_unreadable_extended_states(image: Path, tmp_path: Path) -> None:
    states = image / "var/lib/apt/extended_states"
    os.chmod(states, 0)
    why = root_is_denied(states)
    if why:
        pytest.skip(why)
    oracle = apt(apt_config_file(image, tmp_path), "apt-mark", "showmanual", prefix=NO_DAC)
    assert oracle.returncode != 0 and f"Could not open file {states}" in oracle.stderr
    code, err = cli(image, "snapshot", prefix=NO_DAC)
    assert (code, err) == (EXIT_INPUT, f"depmin: error: {states}: cannot read: Permission denied\n")


def test_extended_states_as_a_directory_means_no_marks(image: Path, tmp_path: Path) -> None:
    states = image / "var/lib/apt/extended_states"
    states.unlink()
    states.mkdir()
    oracle = apt(apt_config_file(image, tmp_path), "apt-mark", "showmanual")
    assert oracle.returncode == 0
    p = run_cli(["snapshot", "--root", str(image)])
    assert p.returncode == EXIT_OK and p.stderr == b""
    assert p.stdout.decode().split() == oracle.stdout.split()


@pytest.mark.parametrize("damage", ["missing", "directory", "fifo", "unreadable"])
def test_unusable_status_file(image: Path, damage: str) -> None:
    status = image / "var/lib/dpkg/status"
    if damage == "unreadable":
        os.chmod(status, 0)
        why = root_is_denied(status)
        if why:
            pytest.skip(why)
    else:
        status.unlink()
        if damage == "directory":
            status.mkdir()
        elif damage == "fifo":
            os.mkfifo(status)
    if damage in ("directory", "unreadable"):  # dpkg takes a missing one as empty, and
        # would block in open() on a FIFO, waiting for a writer
        oracle = dpkg_query(image, "-W", prefix=NO_DAC if damage == "unreadable" else ())
        assert oracle.returncode != 0 and str(status) in oracle.stderr, oracle.stderr
    problem = {
        "missing": "no dpkg status file",
        "directory": "cannot read: not a regular file",
        "fifo": "cannot read: not a regular file",
        "unreadable": "cannot read: Permission denied",
    }[damage]
    prefix = NO_DAC if damage == "unreadable" else ()
    for args in [*COMMANDS, ["snapshot"], ["apply", "--dry-run"]]:
        code, err = cli(image, *args, prefix=prefix)
        assert (code, err) == (EXIT_INPUT, f"depmin: error: {status}: {problem}\n"), args


def test_root_that_is_not_a_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    p = run_cli(["keep", "--root", str(missing)])
    assert p.returncode == 2 and b"Traceback" not in p.stderr and str(missing).encode() in p.stderr
    shutil.copy("/usr/bin/true", tmp_path / "file")
    p = run_cli(["keep", "--root", str(tmp_path / "file")])
    assert p.returncode == 2 and b"is a file" in p.stderr
