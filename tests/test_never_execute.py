"""depmin never runs what it scans: no process, no dlopen, no marker left behind.

Issue #8 item 4.  The tree holds programs, a library with a constructor and
scripts that each write a marker file when run or loaded; the test first runs
them itself to prove the markers work, then lets depmin scan, resolve and plan
(in process, with every way of starting a process or loading a library made to
raise; and through the CLI in a child) and checks that no marker appears.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from depmin.api import find_needs, find_requirements, load_package_state
from depmin.cli import main as cli_main
from depmin.debian.dpkg import load_dpkg_database
from depmin.loader.resolve import LoaderSettings, Resolver
from depmin.rootfs import Root
from tests.oracles import gcc
from tests.test_apply_safety import build_image_root, run_cli

#: Every way of running a program.  A bare fork runs none: depmin's worker processes
#: (depmin.forked) inherit these guards, and what a guard raises in one comes back
#: to the caller (test_a_forked_worker_is_guarded_too).
SPAWNERS = [
    "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
    "posix_spawn", "posix_spawnp", "forkpty", "system", "popen",
    "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe",
]  # fmt: skip


class Started(BaseException):
    """Raised instead of starting a process: a BaseException, so no ``except Exception`` hides it."""


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A root whose /usr/local has programs, a library and scripts that leave markers if run."""
    top = build_image_root(tmp_path / "root")
    marks = tmp_path / "markers"
    marks.mkdir()
    local = top / "usr/local"
    gcc(local / "lib/libmarker.so",
        "#include <stdio.h>\n__attribute__((constructor)) static void init(void)\n"
        f'{{ FILE *f = fopen("{marks}/lib", "w"); if (f) fclose(f); }}\n'
        "int marker(void) { return 0; }\n",
        "-shared", "-fPIC", "-Wl,-soname,libmarker.so")  # fmt: skip
    gcc(local / "bin/marker-prog",
        "#include <stdio.h>\nint marker(void);\n"
        f'int main(void) {{ FILE *f = fopen("{marks}/prog", "w"); if (f) fclose(f); '
        "return marker(); }\n",
        str(local / "lib/libmarker.so"), "-Wl,--enable-new-dtags,-rpath,/usr/local/lib")  # fmt: skip
    scripts = {
        "bin/marker-sh": "#!/bin/sh\n",
        "bin/marker-env": "#!/usr/bin/env sh\n",
        "libexec/marker-helper": "#! /bin/sh -e\n",
        "share/marker-module": "#!/usr/bin/python3\n",
    }
    for rel, head in scripts.items():
        path = local / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{head}: > '{marks}/{path.name}'\n")
        path.chmod(0o755)
    return top, marks


def run_fixtures(top: Path) -> None:
    """Run every fixture the way a user would: this must leave all the markers."""
    local = top / "usr/local"
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(local / "lib")}
    subprocess.run([str(local / "bin/marker-prog")], env=env, check=True)
    for rel in ("bin/marker-sh", "bin/marker-env", "libexec/marker-helper", "share/marker-module"):
        subprocess.run(["/bin/sh", str(local / rel)], env=env, check=True)


MARKERS = {"prog", "lib", "marker-sh", "marker-env", "marker-helper", "marker-module"}


def test_the_markers_work(tree: tuple[Path, Path]) -> None:
    top, marks = tree
    run_fixtures(top)
    assert {p.name for p in marks.iterdir()} == MARKERS


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every way of starting a process or loading a library raise; yield the attempts."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def raiser(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{name}{args!r}")
            raise Started(name)

        return raiser

    import _posixsubprocess

    for name in SPAWNERS:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(f"os.{name}"))
    monkeypatch.setattr(subprocess, "Popen", refuse("subprocess.Popen"))
    monkeypatch.setattr(_posixsubprocess, "fork_exec", refuse("_posixsubprocess.fork_exec"))
    monkeypatch.setattr(ctypes, "_dlopen", refuse("ctypes.dlopen"))
    yield attempts


def test_the_guard_catches_processes_and_dlopen(no_processes: list[str]) -> None:
    with pytest.raises(Started):
        subprocess.run(["true"])
    with pytest.raises(Started):
        os.system("true")
    with pytest.raises(Started):
        ctypes.CDLL("libc.so.6")
    assert len(no_processes) == 3


def test_a_forked_worker_is_guarded_too(no_processes: list[str]) -> None:
    from depmin.forked import Forked

    for start in (lambda: subprocess.run(["true"]), lambda: os.execv("/bin/true", ["true"])):
        with pytest.raises(Started):
            Forked.start(start, "test worker").result()


def test_scanning_and_resolving_start_no_process(tree: tuple[Path, Path], no_processes: list[str]) -> None:
    top, marks = tree
    root = Root(str(top))
    settings = LoaderSettings(dlopen_priorities=frozenset({"required", "recommended"}),
                              glibc_dlopens=True)  # fmt: skip
    analysis = find_needs(root, ["/usr/local"], settings=settings)
    assert {o.path for o in analysis.scan.objects} == {
        "/usr/local/bin/marker-prog", "/usr/local/lib/libmarker.so", "/usr/local/bin/true"
    }  # fmt: skip
    assert {s.path for s in analysis.scan.scripts} == {
        "/usr/local/bin/marker-sh", "/usr/local/bin/marker-env",
        "/usr/local/libexec/marker-helper", "/usr/local/share/marker-module",
    }  # fmt: skip
    prog = next(r for r in analysis.roots if r.main == "/usr/local/bin/marker-prog")
    assert prog.ok and "/usr/local/lib/libmarker.so" in {o.path for o in prog.objects}
    resolver = Resolver.for_root(root, settings)
    for path in ("/usr/local/bin/marker-prog", "/usr/local/lib/libmarker.so"):
        assert resolver.load(path).ok
    db = load_dpkg_database(root)
    req = find_requirements(analysis, db)
    assert "libc6:amd64" in req.names
    load_package_state(root)
    for args in (["keep", "--all", "--allow-missing"], ["keep", "--allow-missing"],
                 ["plan", "--allow-missing"],
                 ["ldd", "--dlopen", "/usr/local/bin/marker-prog", "/usr/local/lib/libmarker.so"],
                 ["why", "libc6"], ["graph"], ["snapshot"]):  # fmt: skip
        res = CliRunner().invoke(cli_main, [args[0], "--root", str(top), *args[1:]])
        assert not isinstance(res.exception, Started), (args, no_processes)
        assert res.exit_code == 0, (args, res.output)
    assert no_processes == []
    assert list(marks.iterdir()) == []


def test_the_cli_leaves_no_marker(tree: tuple[Path, Path]) -> None:
    top, marks = tree
    some = ["--allow-missing"]  # the root has no /bin/sh for the scripts
    for args, code in (
        (["keep", "--all", *some], 0), (["keep", *some], 0), (["keep", "--json", *some], 0),
        (["plan", *some], 0), (["apply", "--dry-run", *some], 0), (["keep"], 1),
        (["why", "libc6"], 0), (["graph", "--format", "json"], 0), (["snapshot"], 0),
        (["ldd", "--dlopen", "--tree", "/usr/local/bin/marker-prog", "/usr/local/lib/libmarker.so"], 0),
        (["ldd", "/usr/local/bin/marker-sh"], 3),  # not ELF: never handed to a shell
    ):  # fmt: skip
        p = run_cli([args[0], "--root", str(top), *args[1:]])
        assert b"Traceback" not in p.stderr, (args, p.stderr)
        assert p.returncode == code, (args, p.stderr)
        assert list(marks.iterdir()) == [], args
    run_fixtures(top)  # and the markers still work after all that
    assert {p.name for p in marks.iterdir()} == MARKERS
