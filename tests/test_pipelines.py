"""scripts/pipeline-seed and scripts/pipeline-official: the pipelines depmin replaces.

They run on small trees of trusted files compiled here.  Every expectation is
derived from the oracles (ldd, dpkg-query, the files' modes), never written down:
which alias of a library ldd prints and which one dpkg recorded differ between
machines and releases (libc6 moved to /usr/lib in trixie).  dpkg-query is wrapped
so the tests see the patterns the pipelines send and the status they swallow.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TOOLS = ("gcc", "ldd", "dpkg-query", "find", "xargs", "awk", "sort", "cut")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)}"
)

C_MAIN = "int main(void) { return 0; }\n"
C_ZLIB = "#include <zlib.h>\nint main(void) { return zlibVersion()[0] == 0; }\n"
C_ZLIB_LIB = "#include <zlib.h>\nconst char *v(void) { return zlibVersion(); }\n"
C_MISSING = "int missing(void);\nint main(void) { return missing(); }\n"


def _gcc(out: Path, source: str, *args: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-o", str(out), str(src), *args], check=True, capture_output=True)
    src.unlink()
    return out


@dataclass
class Run:
    packages: list[str]
    stderr: str
    returncode: int
    patterns: list[str]  # every argument the pipeline passed to dpkg-query
    statuses: list[int]  # dpkg-query's exit statuses, which the pipeline swallows


def run_pipeline(name: str, trees: Sequence[Path], tmp: Path) -> Run:
    """Run a pipeline with a logging dpkg-query first on PATH."""
    wrap = tmp / f"wrap-{name}"
    wrap.mkdir(exist_ok=True)
    args_log, rc_log = wrap / "args", wrap / "rc"
    real = shutil.which("dpkg-query")
    (wrap / "dpkg-query").write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" >> '{args_log}'\n"
        f"'{real}' \"$@\"\n"
        "rc=$?\n"
        f"echo $rc >> '{rc_log}'\n"
        "exit $rc\n"
    )
    (wrap / "dpkg-query").chmod(0o755)
    env = {"LC_ALL": "C", "PATH": f"{wrap}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    proc = subprocess.run(
        ["bash", str(SCRIPTS / f"pipeline-{name}"), *map(str, trees)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    patterns = args_log.read_text().splitlines() if args_log.exists() else []
    statuses = [int(x) for x in rc_log.read_text().split()] if rc_log.exists() else []
    return Run(proc.stdout.splitlines(), proc.stderr, proc.returncode, patterns, statuses)


def ldd_paths(path: Path) -> dict[str, str]:
    """soname -> what ldd prints after ``=>`` (a path, or ``not``)."""
    out = subprocess.run(
        ["ldd", str(path)], capture_output=True, text=True, env={"LC_ALL": "C"}, check=False
    ).stdout
    return {m[0]: m[1] for m in re.findall(r"^\s*(\S+) => (\S+)", out, re.M)}


def dpkg_search(pattern: str) -> list[str]:
    """Owner fields (``pkg[:arch]``) of the single-owner lines dpkg-query prints."""
    proc = subprocess.run(
        ["dpkg-query", "--search", pattern],
        capture_output=True,
        text=True,
        env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        check=False,
    )
    return [m for m in re.findall(r"^([^ ,:]+(?::[^ ,:]+)?): ", proc.stdout, re.M)]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("pipelines")
    build = top / "build"
    build.mkdir()
    _gcc(build / "libmissing.so", "int missing(void) { return 0; }\n", "-shared", "-fPIC")
    root = top / "tree"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    shutil.copy2("/usr/bin/true", root / "bin" / "true")
    _gcc(root / "bin" / "zprog", C_ZLIB, "-lz")
    # libstdc++ without using it: its recorded path is the interesting part.
    _gcc(root / "bin" / "cxxprog", C_MAIN, "-Wl,--no-as-needed", "-lstdc++")
    _gcc(root / "bin" / "needs-missing", C_MISSING, f"-L{build}", "-lmissing")
    skipped = _gcc(root / "lib" / "libskipped.so", C_ZLIB_LIB, "-shared", "-fPIC", "-lz")
    skipped.chmod(0o644)
    return root


def test_usage_without_trees(tmp_path: Path) -> None:
    for name in ("seed", "official"):
        proc = subprocess.run(
            ["bash", str(SCRIPTS / f"pipeline-{name}")], capture_output=True, check=False
        )
        assert proc.returncode == 2


def test_seed_drops_libraries_dpkg_records_under_another_alias(tree: Path, tmp_path: Path) -> None:
    """The seed searches the exact path ldd prints; dpkg knows only the alias it shipped.

    Observed on this Debian 12 machine: ldd prints every library as
    /lib/x86_64-linux-gnu/... (the first matching directory in ld.so.conf); zlib1g
    and libc6 record /lib/... there, so the seed finds them, but libstdc++6
    records /usr/lib/x86_64-linux-gnu/libstdc++.so.6, so the seed's exact search
    fails and the package is lost, while the official "*lib/..." suffix glob finds
    it.  The test derives all of that from ldd and dpkg-query, so it also holds
    where the aliases are recorded differently (trixie moved libc6 to /usr/lib).
    """
    seed = run_pipeline("seed", [tree], tmp_path)
    official = run_pipeline("official", [tree], tmp_path)
    found: set[str] = set()  # names the seed's exact searches find
    lost: set[str] = set()  # names only the other alias finds
    for prog in ("true", "zprog", "cxxprog"):
        for soname, path in ldd_paths(tree / "bin" / prog).items():
            if not path.startswith("/"):
                continue
            literal = dpkg_search(path)  # what the seed asks
            suffix = dpkg_search("*" + re.sub("^/(usr/)?", "", path))  # what official asks
            assert suffix, f"no package owns any alias of {path}"
            assert set(suffix) <= set(official.packages), soname
            if literal:
                found |= {o.split(":")[0] for o in literal}  # cut -d: -f1 drops ":arch"
            else:
                lost |= {o.split(":")[0] for o in suffix}
    assert found <= set(seed.packages)
    assert not (lost - found) & set(seed.packages)
    if not lost - found:
        pytest.skip("every library ldd printed is recorded under that exact path here")


def test_seed_and_official_spell_owners_differently(tree: Path, tmp_path: Path) -> None:
    """cut -d: -f1 keeps ``zlib1g``; the official awk keeps ``zlib1g:amd64``."""
    path = ldd_paths(tree / "bin" / "zprog")["libz.so.1"]
    owners = dpkg_search("*" + re.sub("^/(usr/)?", "", path))
    assert owners
    seed = run_pipeline("seed", [tree / "bin" / "zprog"], tmp_path)
    official = run_pipeline("official", [tree / "bin" / "zprog"], tmp_path)
    for owner in owners:
        assert owner in official.packages
        if dpkg_search(path):
            assert owner.split(":")[0] in seed.packages


def test_non_executable_library_is_skipped(tree: Path, tmp_path: Path) -> None:
    lib = tree / "lib" / "libskipped.so"
    assert not os.access(lib, os.X_OK)
    zlib = ldd_paths(lib)["libz.so.1"]  # ldd itself would have found it
    for name in ("seed", "official"):
        run = run_pipeline(name, [tree / "lib"], tmp_path)
        assert run.packages == [] and run.patterns == [], name
    # The same bytes with the executable bit are scanned.
    exe = tmp_path / "exe"
    exe.mkdir()
    shutil.copy2(lib, exe / "libskipped.so")
    (exe / "libskipped.so").chmod(0o755)
    official = run_pipeline("official", [exe], tmp_path)
    assert "*" + re.sub("^/(usr/)?", "", zlib) in official.patterns
    assert set(dpkg_search("*" + re.sub("^/(usr/)?", "", zlib))) <= set(official.packages)


def test_not_found_becomes_a_search_for_not(tree: Path, tmp_path: Path) -> None:
    prog = tree / "bin" / "needs-missing"
    assert ldd_paths(prog).get("libmissing.so") == "not"  # "libmissing.so => not found"
    seed = run_pipeline("seed", [prog], tmp_path)
    official = run_pipeline("official", [prog], tmp_path)
    # The awk stages turn "=> not found" into the token "not" (seed, a substring
    # search) and "*not" (official, a suffix glob), and dpkg-query gets it.
    assert "not" in seed.patterns
    assert "*not" in official.patterns
    assert "dpkg-query --search" in official.stderr and "*not" in official.stderr  # xargs -t
    # Nothing reports the missing library: no pipefail, so the pipeline's status is
    # sort's, whatever dpkg-query and xargs returned.
    assert seed.returncode == 0 and official.returncode == 0
    assert "libmissing" not in "".join(seed.packages + official.packages)


def test_failures_inside_the_pipe_are_swallowed(tree: Path, tmp_path: Path) -> None:
    """A pattern dpkg-query cannot find makes it exit 1; the pipelines still exit 0."""
    run = run_pipeline("seed", [tree / "bin"], tmp_path)
    missed = [p for p in run.patterns if p.startswith("/") and not dpkg_search(p)]
    if not missed:
        pytest.skip("dpkg records every path ldd printed here; nothing fails")
    assert any(status != 0 for status in run.statuses)
    assert run.returncode == 0
