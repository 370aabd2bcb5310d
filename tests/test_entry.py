"""The command's entry point leaves with os._exit after flushing: the status and the
streams are those ``sys.exit`` gives, and no output is lost however long it is."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from depmin.cli import main as cli_main
from tests.test_apply_safety import REPO

RAISE = """
import sys
import depmin.cli
def fake():
    print("buffered, not flushed")  # a pipe: block-buffered, lost without the flush
    raise SystemExit({code!r})
depmin.cli.main = fake
from depmin.__main__ import main
main()
"""


#: Without PYTHONUNBUFFERED (set on some machines): stdout to a pipe is block-buffered.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


@pytest.mark.parametrize("code", [None, 0, 3, 70, 256 + 4, "a message"])
def test_the_exit_status_is_the_one_sys_exit_gives(code: object) -> None:
    script = f"import sys; print('buffered, not flushed'); sys.exit({code!r})"
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, env=ENV)
    ours = subprocess.run([sys.executable, "-c", RAISE.format(code=code)], capture_output=True, cwd=REPO,
                          env=ENV)  # fmt: skip
    assert (ours.returncode, ours.stdout, ours.stderr) == (plain.returncode, plain.stdout, plain.stderr)


def test_long_output_is_flushed_whole() -> None:
    files = sorted(glob.glob("/usr/bin/*"))[:400]
    args = ["ldd", "--json", "--dlopen", *files]
    inproc = CliRunner().invoke(cli_main, args)
    p = subprocess.run([sys.executable, "-m", "depmin", *args], capture_output=True, cwd=REPO, env=ENV)
    assert len(p.stdout) > 1 << 20, "the output should be longer than any pipe buffer"
    assert p.stdout == inproc.stdout_bytes and p.returncode == inproc.exit_code
