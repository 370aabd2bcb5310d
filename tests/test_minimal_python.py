"""depmin under Debian's python3-minimal (issue #12): what an image without Python installs.

Three oracles: the standard library's dataclasses for depmin's stand-in (the same
classes built with both behave the same); depmin's own answers under the normal
interpreter for the answers it gives when the stand-ins are forced; and, when this
machine's apt can fetch them, Debian's own python3.11-minimal packages, unpacked
under tmp_path (never installed), running the zipapp.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from depmin import records
from tests.test_apply_safety import as_built, build_image_root

REPO = Path(__file__).resolve().parent.parent
_ENV = {"LC_ALL": "C.UTF-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}


def declare(dc: Any) -> dict[str, type]:
    """The same record classes, declared with a dataclasses module ``dc``."""

    @dc.dataclass(frozen=True)
    class Point:
        x: int
        y: int = 0
        tags: tuple[str, ...] = dc.field(default=())
        note: str = dc.field(default="n", repr=False, compare=False)
        LIMIT: ClassVar[int] = 3

    @dc.dataclass(frozen=True)
    class Point3(Point):
        z: int = 7

    @dc.dataclass(frozen=True, eq=False)
    class Identity:
        name: str

    @dc.dataclass
    class Mutable:
        items: list[int] = dc.field(default_factory=list)
        derived: int = dc.field(init=False, default=0)
        cache: dict[str, int] = dc.field(default_factory=dict, init=False, repr=False, compare=False)

        def __post_init__(self) -> None:
            self.derived = len(self.items)

    return {"Point": Point, "Point3": Point3, "Identity": Identity, "Mutable": Mutable}


def behaviour(dc: Any) -> list[Any]:
    c = declare(dc)
    p, q = c["Point"](1, 2, ("a",), "x"), c["Point"](1, 2, ("a",), "y")
    out: list[Any] = [repr(p), p == q, hash(p) == hash(q), repr(c["Point3"](1))]
    out.append(c["Point3"](1) == c["Point"](1))
    for target, name in ((p, "x"), (p, "new")):
        try:
            setattr(target, name, 5)
            out.append("assigned")
        except AttributeError as exc:
            out.append(type(exc).__name__)
    r = dc.replace(p, y=9)
    out += [repr(r), r.note, [f.name for f in dc.fields(c["Point3"])]]
    a, b = c["Identity"]("n"), c["Identity"]("n")
    out += [a == b, a == a, hash(a) != hash(b)]
    m = c["Mutable"]([1, 2])
    m.items.append(3)
    out += [repr(m), m.derived, c["Mutable"]().items == [], c["Mutable"]().items is not c["Mutable"]().items]
    m.cache["k"] = 1
    out += [m.cache, c["Mutable"]([1, 2, 3]) == m, c["Mutable"]().cache is not c["Mutable"]().cache]
    try:
        hash(m)
        out.append("hashable")
    except TypeError:
        out.append("unhashable")
    try:
        dc.replace(m, derived=1)
    except ValueError:
        out.append("init=False refused")
    try:
        c["Point"]()
    except TypeError:
        out.append("missing argument refused")
    out.append(dc.asdict(c["Point3"](1, tags=("t",))))
    return out


def test_the_stand_in_behaves_as_dataclasses() -> None:
    assert behaviour(records) == behaviour(dataclasses)


FORCE = """
import sys
from depmin import compat, records
class Force:
    def find_spec(self, name, path, target=None):
        import importlib.util
        if name in ("dataclasses", "json", "gettext", "shutil"):
            return importlib.util.spec_from_loader(name, compat._Loader(compat.STANDINS[name]))
        return None
sys.meta_path.insert(0, Force())
from depmin.cli import main
main(sys.argv[1:])
"""


def run(argv: list[str], forced: bool) -> subprocess.CompletedProcess[str]:
    code = FORCE if forced else "import sys\nfrom depmin.cli import main\nmain(sys.argv[1:])\n"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          cwd=REPO, env=dict(_ENV, PYTHONPATH=str(REPO)), timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = build_image_root(tmp_path_factory.mktemp("image") / "root")
    as_built(top)
    return top


COMMANDS = [["keep", "--json"], ["plan", "--json"], ["apply", "--dry-run"], ["snapshot", "--json"],
            ["verify", "--json"], ["why", "libc6"], ["ldd", "--json", "/usr/local/bin/true"]]  # fmt: skip


@pytest.mark.parametrize("args", COMMANDS, ids=[a[0] for a in COMMANDS])
def test_forced_stand_ins_give_the_same_answers(image: Path, args: list[str]) -> None:
    argv = [args[0], "--root", str(image), *args[1:]]
    normal, forced = run(argv, False), run(argv, True)
    assert normal.returncode == 0, normal.stderr
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, normal.stdout, normal.stderr)
    if "--json" in args:
        json.loads(forced.stdout)


@pytest.fixture(scope="module")
def minimal_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """Debian 12's python3.11-minimal and libpython3.11-minimal, unpacked (not installed)."""
    tmp = tmp_path_factory.mktemp("python3-minimal")
    got = subprocess.run(["apt-get", "download", "python3.11-minimal", "libpython3.11-minimal"],
                         cwd=tmp, capture_output=True, text=True)  # fmt: skip
    debs = sorted(tmp.glob("*.deb"))
    if got.returncode != 0 or len(debs) != 2:
        pytest.skip(f"cannot download python3.11-minimal here: {got.stderr.strip()[-200:]}")
    top = tmp / "root"
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(top)], check=True)
    exe = str(top / "usr/bin/python3.11")
    env = dict(_ENV, PYTHONHOME=str(top / "usr"))
    probe = subprocess.run([exe, "-I", "-c", "import dataclasses"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "No module named 'dataclasses'" in probe.stderr  # truly minimal
    return exe, env


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("pyz") / "depmin.pyz"
    p = subprocess.run([str(REPO / "scripts/build-zipapp"), str(out)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot build the zipapp here: {p.stderr.strip()[-300:]}")
    return str(out)


@pytest.mark.parametrize("args", COMMANDS, ids=[a[0] for a in COMMANDS])
def test_the_zipapp_runs_under_debians_python3_minimal(
    image: Path, minimal_python: tuple[str, dict[str, str]], zipapp: str, args: list[str]
) -> None:
    exe, env = minimal_python
    argv = [args[0], "--root", str(image), *args[1:]]
    got = subprocess.run([exe, "-I", zipapp, *argv], capture_output=True, text=True, env=env, timeout=300)
    want = run(argv, False)
    assert "Traceback" not in got.stderr, got.stderr
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)


def test_graph_says_what_it_needs_under_python3_minimal(
    image: Path, minimal_python: tuple[str, dict[str, str]], zipapp: str
) -> None:
    exe, env = minimal_python
    got = subprocess.run([exe, "-I", zipapp, "graph", "--root", str(image)], capture_output=True,
                         text=True, env=env, timeout=300)  # fmt: skip
    assert got.returncode == 3
    assert "depmin graph needs networkx, which this Python cannot import" in got.stderr
    assert "Traceback" not in got.stderr
