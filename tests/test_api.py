"""The library API does what the CLI does (issue #15): same answers, same warnings, one code path.

The CLI runs in a child process (its real entry point); the API in this one.  The
trees are this machine's own: the CPython trees pyenv built, and /usr/local for
the README's example, which is run as written.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import depmin
from depmin.api import RunOptions, keep_list, plan_run, snapshot, verify
from depmin.errors import UnresolvedError
from depmin.rootfs import Root
from tests.oracles import pyenv_versions

REPO = Path(__file__).resolve().parent.parent
RI = "APT::AutoRemove::RecommendsImportant=false"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "depmin", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)  # fmt: skip


def warnings_of(stderr: str) -> list[str]:
    return [line.removeprefix("depmin: warning: ") for line in stderr.splitlines()
            if line.startswith("depmin: warning: ")]  # fmt: skip


@pytest.fixture(scope="module")
def tree() -> str:
    versions = pyenv_versions()
    if not versions:
        pytest.skip("no pyenv CPython tree on this machine")
    return str(versions[-1])


def test_plan_run_is_what_keep_and_plan_print(tree: str) -> None:
    opts = RunOptions(trees=(tree,), overrides=(RI,), exclude=("*tkinter*",), allow_missing=True)
    run = plan_run(opts)
    p = cli("keep", "--allow-missing", "-o", RI, "--exclude", "*tkinter*", tree)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == list(run.keep_names)
    assert warnings_of(p.stderr) == [*run.scan_warnings, *run.warnings]
    assert run.analysis.unresolved  # this tree has one (see test_keep), reported on both sides
    assert all(f"depmin: {u.file}: {u.name}" in p.stderr for u in run.analysis.unresolved)
    doc = json.loads(cli("plan", "--json", "--allow-missing", "-o", RI, "--exclude", "*tkinter*",
                         tree).stdout)  # fmt: skip
    assert doc["keep"] == list(run.keep_names)
    assert [r["package"] for r in doc["purged"]] == [run.graph.display_name(k) for k in run.plan.purged]
    assert doc["warnings"] == [*run.analysis.warnings, *run.warnings]
    assert keep_list(opts).names == run.keep_names


def test_keep_all_is_every_owner_and_the_cli_agrees(tree: str) -> None:
    every = keep_list(RunOptions(trees=(tree,), allow_missing=True), every_owner=True)
    p = cli("keep", "--all", "--allow-missing", "-0", tree)
    assert p.stdout.split("\0")[:-1] == list(every.names)
    minimal = plan_run(RunOptions(trees=(tree,), allow_missing=True)).keep_names
    assert set(minimal) <= {n.partition(":")[0] for n in every.names}  # --all keeps dpkg's name:arch


def test_unresolved_is_an_error_with_the_details(tmp_path: Path) -> None:
    prog = tmp_path / "bin" / "needs-nothing-there"
    prog.parent.mkdir()
    src = tmp_path / "a.c"
    src.write_text("int absent(void);\nint main(void) { return absent(); }\n")
    lib = tmp_path / "libdepmin-gone.so.1"
    (tmp_path / "l.c").write_text("int absent(void) { return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libdepmin-gone.so.1", "-o", str(lib),
                    str(tmp_path / "l.c")], check=True)  # fmt: skip
    subprocess.run(["gcc", "-o", str(prog), str(src), str(lib)], check=True)
    lib.unlink()
    with pytest.raises(UnresolvedError) as err:
        plan_run(RunOptions(trees=(str(prog.parent),)))
    assert [(u.file, u.name) for u in err.value.unresolved] == [(str(prog), "libdepmin-gone.so.1")]
    done = verify(RunOptions(trees=(str(prog.parent),)))
    assert not done.ok and done.analysis.unresolved == err.value.unresolved
    p = cli("verify", str(prog.parent))
    assert p.returncode == 1 and f"{prog}: libdepmin-gone.so.1 not found" in p.stderr


def test_snapshot_is_what_the_cli_prints() -> None:
    p = cli("snapshot")
    assert p.stdout.split() == list(snapshot(Root("/")).manual)


def test_the_readme_example_runs_as_written() -> None:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Library API"):text.index("## How it works")]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = eval(out.stdout.splitlines()[0])  # the printed tuple of names
    assert list(names) == cli("keep", "-o", RI).stdout.split()


def test_the_package_docstring_example_uses_only_the_public_api() -> None:
    doc = depmin.__doc__ or ""
    example = doc[doc.index("Example::"):]
    for name in re.findall(r"from depmin import ([\w, ]+)", example)[0].split(", "):
        assert name in depmin.__all__
    assert "from depmin." not in example
