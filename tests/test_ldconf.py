"""depmin.loader.ldconf against the real ldconfig.

Oracle: ``ldconfig -v -N -X`` prints every directory it will scan as
``DIR: (from FILE:LINE)``, in order, without writing anything (-N: no cache,
-X: no links).  With ``-r ROOT`` it chroots first, so temporary roots under
``tmp_path`` are read exactly as ldconfig would read them inside an image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depmin.loader.ldconf import glob_in_root, parse_ld_so_conf, read_ld_so_conf
from depmin.rootfs import Root

LDCONFIG = shutil.which("ldconfig") or next(
    (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None
)
C_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

needs_ldconfig = pytest.mark.skipif(LDCONFIG is None, reason="ldconfig is not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="ldconfig -r chroots, which needs root")

_DIR_LINE = re.compile(r'^(.*): (\(hwcap: "[^"]*"\) )?\(from (.*):(\d+)\)$')


def ldconfig_dirs(*args: str) -> list[str]:
    """Directories ldconfig lists from its configuration (not built-ins, not hwcaps)."""
    assert LDCONFIG is not None
    # stderr is dropped: on an include cycle ldconfig warns thousands of times.
    proc = subprocess.run([LDCONFIG, "-v", "-N", "-X", *args], env=C_ENV, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    dirs = []
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        m = _DIR_LINE.match(line)
        if m and not line[:1].isspace() and m.group(2) is None and m.group(3) != "<builtin>":
            dirs.append(m.group(1))
    return dirs


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def make_dirs(root: Path, names: Sequence[str]) -> None:
    for name in names:
        (root / "d" / name).mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------- the host


@needs_ldconfig
def test_host_ld_so_conf_in_ldconfig_order() -> None:
    oracle = ldconfig_dirs()
    assert oracle, "ldconfig -v listed no configured directory"
    assert read_ld_so_conf(Root("/")) == tuple(oracle)


# ---------------------------------------------------------------------- temporary roots


@pytest.fixture
def rich_root(tmp_path: Path) -> tuple[Path, Path]:
    """A root using every ld.so.conf feature, and a host directory outside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_dirs(root, ["one", "two", "three", "A", "b", "u", "10", "9", "e", "abs", "la", "la2",
                     "lb", "lb2", "hidden", "sentinel", "dpkgold", "rel"])  # fmt: skip
    write(root / "etc/ld.so.conf", (
        "# leading comment\n"
        "   \n"
        "include\tconf.d/*.conf   extra/*.conf\t/etc/abs.conf # several patterns, a tab\n"
        "hwcap 0 foo\n"
        "HWCAP\tx86_64\n"
        "/d/one/// \t\n"
        "/d/two=libc6\n"
        "/d/missing\n"
        "/d/link1\n"
        "\t/d/three\t# comment\n"
        "include /etc/loop/a.conf\n"
        "include /etc/outlink/*.conf\n"
        "/etc/ld.so.conf\n"
        "d/rel\n"
    ))  # fmt: skip
    link(root / "d/link1", "/d/one")  # same inode as /d/one, absolute inside the root
    for name, directory in [("A.conf", "A"), ("b.conf", "b"), ("_u.conf", "u"),
                            ("10.conf", "10"), ("9.conf", "9"), (".hidden.conf", "hidden"),
                            ("x.conf.dpkg-old", "dpkgold")]:  # fmt: skip
        write(root / "etc/conf.d" / name, f"/d/{directory}\n")
    (root / "etc/conf.d/sub.conf").mkdir()  # a directory the glob matches
    write(root / "etc/extra/e.conf", "/d/e\n")
    write(root / "etc/real/abs.conf", "/d/abs\n")
    link(root / "etc/abs.conf", "/etc/real/abs.conf")  # must resolve inside the root
    write(root / "etc/loop/a.conf", "/d/la\ninclude b.conf\n/d/la2\n")
    write(root / "etc/loop/b.conf", "/d/lb\ninclude /etc/loop/a.conf\n/d/lb2\n")
    # Sentinels outside the root: reachable only by following links on the host.
    write(outside / "sentinel.conf", "/d/sentinel\n")
    write(outside / "o.conf", "/d/sentinel\n")
    link(root / "etc/conf.d/sentinel.conf", str(outside / "sentinel.conf"))
    link(root / "etc/outlink", str(outside))
    return root, outside


@needs_ldconfig
@needs_root
def test_rich_root_matches_ldconfig(rich_root: tuple[Path, Path]) -> None:
    root, outside = rich_root
    conf = parse_ld_so_conf(Root(str(root)))
    assert list(conf.dirs) == ldconfig_dirs("-r", str(root))
    # What the oracle agreement means, spelled out:
    assert "/d/sentinel" not in conf.dirs and not any(str(outside) in f for f in conf.files)
    assert "/d/hidden" not in conf.dirs and "/d/dpkgold" not in conf.dirs
    assert "/d/link1" not in conf.dirs  # same inode as /d/one, listed later
    problems = [w.problem for w in conf.warnings]
    assert problems.count("hwcap directive ignored") == 2
    assert any("include cycle" in p for p in problems)
    assert any("not a directory" in p for p in problems)  # /etc/ld.so.conf itself


def test_globs_stay_inside_the_root(rich_root: tuple[Path, Path]) -> None:
    root, outside = rich_root
    r = Root(str(root))
    assert sorted(p.name for p in outside.glob("*.conf")) == ["o.conf", "sentinel.conf"]
    assert glob_in_root(r, "/etc/outlink/*.conf") == ()
    # The dangling-in-root link is still a name glob(3) returns (it lstat()s)...
    assert "/etc/conf.d/sentinel.conf" in glob_in_root(r, "/etc/conf.d/*.conf")
    # ...but it is never opened through the host.
    assert "/etc/conf.d/sentinel.conf" not in parse_ld_so_conf(r).files


@needs_ldconfig
@needs_root
def test_include_loop_terminates_like_ldconfig(tmp_path: Path) -> None:
    make_dirs(tmp_path, ["a", "a2", "b", "b2"])
    write(tmp_path / "etc/ld.so.conf", "include /etc/l/a.conf\n")
    write(tmp_path / "etc/l/a.conf", "/d/a\ninclude b.conf\n/d/a2\n")
    # One include per file: ldconfig recurses until it runs out of descriptors, so a
    # file including two members of the cycle would take it exponential time.
    write(tmp_path / "etc/l/b.conf", "/d/b\ninclude ../l/a.conf\n/d/b2\n")
    conf = parse_ld_so_conf(Root(str(tmp_path)))
    assert list(conf.dirs) == ldconfig_dirs("-r", str(tmp_path))
    assert sum("include cycle" in w.problem for w in conf.warnings) >= 1


@needs_ldconfig
@needs_root
def test_self_referencing_directory_link(tmp_path: Path) -> None:
    """Relative includes through a link to ".": paths grow, files do not."""
    make_dirs(tmp_path, ["x"])
    write(tmp_path / "etc/c/x.conf", "/d/x\ninclude self/x.conf\n")
    link(tmp_path / "etc/c/self", ".")
    write(tmp_path / "etc/ld.so.conf", "include c/x.conf\n")
    conf = parse_ld_so_conf(Root(str(tmp_path)))
    assert list(conf.dirs) == ldconfig_dirs("-r", str(tmp_path)) == ["/d/x"]


def test_missing_conf_gives_nothing(tmp_path: Path) -> None:
    conf = parse_ld_so_conf(Root(str(tmp_path)))
    assert conf.dirs == () and conf.files == () and conf.warnings == ()


# ---------------------------------------------------------------------- syntax fuzz vs ldconfig

_PREFIX = st.sampled_from(["", " ", "\t", " \t "])
_COMMENT = st.sampled_from(["", " # c", "#", "\t#include /etc/inc/a.conf", "\r"])
_DIR_WORDS = ["/d/one", "/d/two", "/d/three", "/d/link1", "/d/missing", "d/one", "/d//four", "/",
              "/etc/inc/a.conf", "/d/one=x/d/two"]  # fmt: skip
_DIR_ENDS = ["", "/", "//", "=libc6", "=bogus", " ", "\t", "\r", "/ ", " /", "\v"]
_KEYWORDS = ["include ", "include\t", "include", "Include ", "include  ", "include\v"]
_PATTERNS = ["inc/*.conf", "/etc/inc/[ab].conf", "/etc/none*.conf", "inc/?.conf", "/etc/inc/c.conf",
             "inc/*.conf\r", "/etc/inc/*", "/etc/*/b.conf", "../etc/inc/a.conf"]  # fmt: skip


def _include_line(prefix: str, keyword: str, patterns: list[str], sep: str, comment: str) -> str:
    return prefix + keyword + sep.join(patterns) + comment


_DIR = st.builds(
    lambda prefix, d, end, comment: prefix + d + end + comment,
    _PREFIX,
    st.sampled_from(_DIR_WORDS),
    st.sampled_from(_DIR_ENDS),
    _COMMENT,
)
_INCLUDE = st.builds(
    _include_line,
    _PREFIX,
    st.sampled_from(_KEYWORDS),
    st.lists(st.sampled_from(_PATTERNS), max_size=3),
    st.sampled_from([" ", "\t", "  ", " \t"]),
    _COMMENT,
)
_HWCAP = st.builds(
    lambda prefix, text: prefix + text,
    _PREFIX,
    st.sampled_from(["hwcap 1 x", "HWCAP\tfoo", "hwcap", "hwcapx 1", "hwcap\t", "HwCaP 0 y"]),
)
_LINE = st.one_of(_DIR, _INCLUDE, _HWCAP, st.sampled_from(["", "   ", "# only a comment"]))


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    make_dirs(root, ["one", "two", "three", "four"])
    link(root / "d/link1", "/d/one")
    write(root / "etc/inc/a.conf", "/d/two\n/d/four/\n")
    write(root / "etc/inc/b.conf", "/d/three\ninclude a.conf\n")
    write(root / "etc/inc/c.conf", "  /d/four # c\n/d/one\n")
    return root


@needs_ldconfig
@needs_root
@given(lines=st.lists(_LINE, max_size=8), final_newline=st.booleans())
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_ld_so_conf_like_ldconfig(fuzz_root: Path, lines: list[str], final_newline: bool) -> None:
    write(fuzz_root / "etc/ld.so.conf", "\n".join(lines) + ("\n" if final_newline else ""))
    ours = read_ld_so_conf(Root(str(fuzz_root)))
    assert list(ours) == ldconfig_dirs("-r", str(fuzz_root)), lines


@needs_ldconfig
@needs_root
def test_glob_sorts_in_c_collation(tmp_path: Path) -> None:
    names = ["B", "a", "_", "10", "9", "Z1", "z", "é", "-x", "~"]
    make_dirs(tmp_path, names)
    for name in names:
        write(tmp_path / f"etc/s/{name}.conf", f"/d/{name}\n")
    write(tmp_path / "etc/ld.so.conf", "include /etc/s/*\n")
    conf = parse_ld_so_conf(Root(str(tmp_path)))
    assert list(conf.dirs) == ldconfig_dirs("-r", str(tmp_path))
    assert len(conf.dirs) == len(names)
    with tempfile.TemporaryDirectory() as empty:
        assert glob_in_root(Root(empty), "/etc/*/x") == ()
