"""One test per exit code, through the CLI in a child process (issue #8 item 6).

The codes are those of depmin/errors.py, and README.md's "Exit codes" table must
list exactly them.  Each failure is a real one in a real-format root built
under tmp_path; only code 70 needs an injected bug.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import depmin.errors as errors
from depmin.errors import (
    EXIT_APT,
    EXIT_CHECK,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_UNRESOLVED,
    EXIT_USAGE,
)
from tests.oracles import ldd
from tests.test_apply_safety import (
    REPO,
    add_kernel,
    build_image_root,
    held,
    missing_library_program,
    run_cli,
)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return build_image_root(tmp_path / "root")


def run(args: list[str]) -> tuple[int, str, str]:
    p = run_cli(args)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_readme_lists_exactly_the_codes() -> None:
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    text = (REPO / "README.md").read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", section, re.M)}
    assert documented == codes


def test_0_ok(image: Path) -> None:
    libc = next(p for p in ldd("/usr/bin/true")[0] if os.path.basename(p) == "libc.so.6")
    recorded = [libc, libc.replace("/usr/lib/", "/lib/", 1)]  # dpkg may know the merged-/usr twin
    owner = subprocess.run(["dpkg-query", "-S", *recorded], capture_output=True, text=True)
    expected = owner.stdout.split(": ")[0]  # libc6:amd64, as dpkg-query names it
    assert expected.endswith(":amd64"), owner
    code, out, err = run(["keep", "--all", "--root", str(image)])
    assert (code, err) == (EXIT_OK, "")
    assert expected in out.split()


def test_1_unresolved(image: Path, tmp_path: Path) -> None:
    prog = missing_library_program(image, tmp_path / "stubs")
    for args in (["keep"], ["plan"], ["apply", "--dry-run"]):
        code, _, err = run([*args, "--root", str(image)])
        assert code == EXIT_UNRESOLVED, (args, err)
        assert f"depmin: {prog}: libdepmin-absent.so.1 not found" in err
        assert err.rstrip().endswith("(use --allow-missing to carry on)") and "Traceback" not in err
    code, out, _ = run(["ldd", "--root", str(image), prog])
    assert code == EXIT_UNRESOLVED and "libdepmin-absent.so.1 => not found" in out.lower()
    assert run(["keep", "--allow-missing", "--root", str(image)])[0] == EXIT_OK


def test_2_usage(image: Path) -> None:
    code, _, err = run(["keep", "--no-such-option", "--root", str(image)])
    assert code == EXIT_USAGE and "No such option" in err and "--no-such-option" in err
    code, _, err = run(["why", "--root", str(image)])
    assert code == EXIT_USAGE and "Missing argument 'TARGET'" in err
    code, _, err = run(["keep", "--root", str(image / "no-such-dir")])
    assert code == EXIT_USAGE and "does not exist" in err


def test_3_input(image: Path) -> None:
    (image / "usr/local/bin/notes.txt").write_text("not a program\n")
    code, _, err = run(["ldd", "--root", str(image), "/usr/local/bin/notes.txt"])
    assert code == EXIT_INPUT
    assert err.startswith("depmin: /usr/local/bin/notes.txt: not a dynamic executable")
    status = image / "var/lib/dpkg/status"
    status.unlink()
    code, _, err = run(["keep", "--root", str(image)])
    assert (code, err) == (EXIT_INPUT, f"depmin: error: {status}: no dpkg status file\n")


def test_4_apt(image: Path) -> None:
    lock = image / "var/lib/dpkg/lock-frontend"
    with held(lock):
        code, _, err = run(["apply", "--root", str(image)])
    assert code == EXIT_APT
    assert err == (
        f"depmin: error: could not get lock /var/lib/dpkg/lock-frontend of {image}: it is held by "
        f"process {os.getpid()} ({open(f'/proc/{os.getpid()}/comm').read().strip()}); nothing was "
        "changed (see --lock-timeout)\n"
    )


def test_5_check(image: Path) -> None:
    kernel = add_kernel(image)
    code, _, err = run(["apply", "--dry-run", "--root", str(image)])
    assert code == EXIT_CHECK and "Traceback" not in err
    assert err.endswith(
        f"depmin: error: apt-get -s disagrees with the plan: apt only [], depmin only ['{kernel}']\n"
    )


def test_70_internal(image: Path) -> None:
    """A bug (here: one injected into the scan) is reported as one, with its traceback."""
    code = (
        "import sys, depmin.options as options\n"
        "def broken(*args, **kwargs):\n"
        "    raise ZeroDivisionError('injected')\n"
        "options.start_scan = broken\n"
        "from depmin.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    p = subprocess.run([sys.executable, "-c", code, "keep", "--root", str(image)],
                       capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert p.returncode == EXIT_INTERNAL
    assert "Traceback" in p.stderr
    assert p.stderr.endswith("depmin: internal error: ZeroDivisionError('injected') (please report this)\n")


def test_a_command_runs_without_the_cycle_collector_and_restores_it(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process (a library caller, a test), the collector is on again after any outcome."""
    import gc

    from click.testing import CliRunner

    import depmin.options as options
    from depmin.cli import main

    seen: list[bool] = []
    real = options.start_scan

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(options, "start_scan", spy)
    assert gc.isenabled()
    ok = CliRunner().invoke(main, ["keep", "--root", str(image)])
    assert ok.exit_code == 0 and seen == [False] and gc.isenabled()
    bad = CliRunner().invoke(main, ["keep", "--root", str(image), "--baseline", "-y"])
    assert bad.exit_code == errors.EXIT_USAGE and gc.isenabled()
    gc.disable()
    try:  # a caller that had it off keeps it off
        CliRunner().invoke(main, ["keep", "--root", str(image)])
        assert not gc.isenabled()
    finally:
        gc.enable()
