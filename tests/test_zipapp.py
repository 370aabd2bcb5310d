"""The one-file zipapp runs with a bare interpreter: Debian's python3 without site-packages,
and Python 3.9 (the oldest depmin supports), giving the same answers as the installed package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.oracles import pyenv_versions

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zipapp") / "depmin.pyz"
    p = subprocess.run([str(REPO / "scripts/build-zipapp"), str(out)], capture_output=True, text=True)
    if p.returncode != 0 and "pip" in p.stderr and "network" in p.stderr.lower():
        pytest.skip(f"cannot fetch the zipapp's dependencies: {p.stderr[-300:]}")
    assert p.returncode == 0, p.stderr
    return out


def _interpreters() -> list[tuple[str, list[str]]]:
    found = []
    if Path("/usr/bin/python3").exists():
        found.append(("debian-python3-isolated", ["/usr/bin/python3", "-I", "-S"]))
    for v in pyenv_versions():
        if v.name.startswith("3.9."):
            found.append((f"python{v.name}", [str(v / "bin/python3"), "-I"]))
    return found


@pytest.mark.parametrize("name,argv", _interpreters(), ids=[n for n, _ in _interpreters()])
def test_zipapp_matches_the_package(pyz: Path, name: str, argv: list[str]) -> None:
    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True)

    installed = [sys.executable, "-m", "depmin"]
    for args in (["ldd", "/usr/bin/ls"], ["keep", "--all", "--allow-missing", "/usr/lib/apt"]):
        got = run(argv + [str(pyz)] + args)
        want = run(installed + args)
        assert got.returncode == want.returncode == 0, (name, got.stderr)
        assert got.stdout == want.stdout and got.stdout.strip(), name
    assert run(argv + [str(pyz), "--version"]).stdout.startswith("depmin, version")
