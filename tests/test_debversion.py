"""depmin.debian.debversion against dpkg --compare-versions and python-apt."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depmin.debian.debversion import (
    check_relation,
    compare_parsed,
    compare_versions,
    parse_version,
    version_warning,
)
from depmin.errors import DpkgError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APT_PYTHON = "/usr/bin/python3"
STATUS = "/var/lib/dpkg/status"
HAVE_DPKG = shutil.which("dpkg") is not None


def _apt_importable() -> bool:
    if not os.path.exists(APT_PYTHON):
        return False
    done = subprocess.run([APT_PYTHON, "-c", "import apt_pkg"], capture_output=True)
    return done.returncode == 0


HAVE_APT = _apt_importable()
needs_apt = pytest.mark.skipif(not HAVE_APT, reason=f"{APT_PYTHON} cannot import apt_pkg")
needs_dpkg = pytest.mark.skipif(not HAVE_DPKG, reason="dpkg is not installed")

# One line of JSON pairs in, one line of apt_pkg.version_compare results out.
_APT_SERVER = """
import json, sys
import apt_pkg
apt_pkg.init_system()
for line in sys.stdin:
    pairs = json.loads(line)
    print(json.dumps([apt_pkg.version_compare(a, b) for a, b in pairs]), flush=True)
"""


class AptOracle:
    """A single /usr/bin/python3 process answering version comparisons."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [APT_PYTHON, "-c", _APT_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def compare(self, pairs: list[tuple[str, str]]) -> list[int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(pairs) + "\n")
        self.proc.stdin.flush()
        return [(r > 0) - (r < 0) for r in json.loads(self.proc.stdout.readline())]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def apt() -> Iterator[AptOracle]:
    if not HAVE_APT:
        pytest.skip(f"{APT_PYTHON} cannot import apt_pkg")
    oracle = AptOracle()
    yield oracle
    oracle.close()


def dpkg_compare(pairs: list[tuple[str, str]]) -> list[int]:
    """dpkg --compare-versions for each pair (lt, then eq), in one shell."""
    script = (
        'while IFS=" " read -r a b; do '
        'dpkg --compare-versions -- "$a" lt "$b"; l=$?; '
        'dpkg --compare-versions -- "$a" eq "$b"; e=$?; '
        'echo "$l $e"; done'
    )
    stdin = "".join(f"{a} {b}\n" for a, b in pairs)
    out = subprocess.run(
        ["sh", "-c", script], input=stdin, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    results = []
    for line in out[: len(pairs)]:
        lt, eq = line.split()
        assert lt in "01" and eq in "01", f"dpkg failed: {line}"
        results.append(-1 if lt == "0" else 0 if eq == "0" else 1)
    return results


def status_versions() -> list[str]:
    with open(STATUS, encoding="utf-8") as f:
        found = {line[9:].strip() for line in f if line.startswith("Version: ")}
    return sorted(found)


@pytest.fixture(scope="module")
def version_pairs() -> list[tuple[str, str]]:
    """~2000 deterministic pairs: random ones plus lexical neighbours (shared prefixes)."""
    if not os.path.exists(STATUS):
        pytest.skip("no dpkg status file on this machine")
    versions = status_versions()
    rng = random.Random(822)
    pairs = [tuple(rng.sample(versions, 2)) for _ in range(1500)]
    pairs += list(zip(versions, versions[1:]))[:500]
    pairs += [(v, v) for v in versions[:50]]
    return [(a, b) for a, b in pairs]


# apt.md §9 checks, each also asked of dpkg below.
DOC_CASES = [
    ("1.0~rc1", "<<", "1.0"),
    ("1:0.9", ">>", "2.0"),
    ("1.0", "=", "1.0-0"),
    ("1.0-0", "=", "0:1.0"),
    ("1.0", "=", "0:1.0"),
    ("1.0", "<<", "1.0-1"),
    ("1.0a", "<<", "1.0+"),
]


@needs_dpkg
@pytest.mark.parametrize(("a", "op", "b"), DOC_CASES)
def test_documented_cases(a: str, op: str, b: str) -> None:
    dpkg_says = subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0
    assert dpkg_says, "apt.md §9 disagrees with dpkg"
    assert check_relation(a, op, b) is True


@needs_dpkg
def test_status_versions_against_dpkg(version_pairs: list[tuple[str, str]]) -> None:
    sample = version_pairs[:200] + version_pairs[1500:1600] + version_pairs[-20:]
    expected = dpkg_compare(sample)
    got = [compare_versions(a, b) for a, b in sample]
    assert [p for p, e, g in zip(sample, expected, got) if e != g] == []
    assert set(expected) == {-1, 0, 1}  # the sample exercises every outcome


@needs_apt
def test_status_versions_against_apt(apt: AptOracle, version_pairs: list[tuple[str, str]]) -> None:
    expected = apt.compare(version_pairs)
    got = [compare_parsed(parse_version(a), parse_version(b)) for a, b in version_pairs]
    assert [p for p, e, g in zip(version_pairs, expected, got) if e != g] == []


# Spellings apt would split differently from dpkg if handed over as written.
RESPELLED = ["0:1:2", "1:2", "+1:2", " 1.0", "1.0", "01:1", "1:1", "0:1-2-3", "1-2-3"]


@needs_apt
def test_apt_backend_is_used_and_agrees(version_pairs: list[tuple[str, str]]) -> None:
    """Under Debian's python3, compare_versions goes through apt_pkg; same answers."""
    version_pairs = version_pairs + [(a, b) for a in RESPELLED for b in RESPELLED]
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "from depmin.debian.debversion import compare_versions, _apt_version_compare\n"
        "assert _apt_version_compare() is not None\n"
        "pairs = json.load(sys.stdin)\n"
        "print(json.dumps([compare_versions(a, b) for a, b in pairs]))\n"
    )
    done = subprocess.run(
        [APT_PYTHON, "-c", code],
        input=json.dumps(version_pairs),
        capture_output=True,
        text=True,
        check=True,
    )
    via_apt = json.loads(done.stdout)
    pure = [compare_parsed(parse_version(a), parse_version(b)) for a, b in version_pairs]
    assert via_apt == pure


# --- invalid versions: dpkg's errors raise, its warnings compare -------------

ODD_VERSIONS = [
    " ",
    "1.0 x",
    "1:",
    "0:",
    ":1",
    "a:1",
    "+:1",
    "1a:1",
    "-1:1",
    "2147483648:1",
    "2147483647:1",
    "+1:2",
    "01:1",
    "1.0-",
    "-1",
    "1:-1",
    "a",
    "~",
    "1~",
    "1-~",
    "1.0_x",
    "1.0-a_b",
    "1.0-a-b",
    "1:1:1",
    " 1.0 ",
    "\t1.0",
    "1.0\u00e9",
]


@needs_dpkg
@pytest.mark.parametrize("text", ODD_VERSIONS)
def test_invalid_versions_like_dpkg(text: str) -> None:
    done = subprocess.run(
        ["dpkg", "--compare-versions", "--", text, "eq", text],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    m = re.search(r"has bad syntax: (.*)", done.stderr)
    if done.returncode == 2:
        assert m is not None, done.stderr
        with pytest.raises(DpkgError, match=re.escape(m.group(1))):
            parse_version(text)
    else:
        assert done.returncode == 0, done.stderr
        assert version_warning(text) == (m.group(1) if m else None)
        assert compare_versions(text, text) == 0


def test_empty_version_is_an_error() -> None:
    # dpkg --compare-versions reads "" as "no version"; parseversion itself refuses it.
    with pytest.raises(DpkgError, match="version string is empty"):
        compare_versions("", "1")


@needs_dpkg
def test_odd_but_valid_versions_order_like_dpkg() -> None:
    valid = []
    for text in ODD_VERSIONS:
        try:
            parse_version(text)
        except DpkgError:
            continue
        valid.append(text.strip())
    pairs = [(a, b) for a in valid for b in valid if " " not in a + b and "\t" not in a + b]
    assert len(pairs) > 50
    expected = dpkg_compare(pairs)
    assert [compare_versions(a, b) for a, b in pairs] == expected


# --- relations --------------------------------------------------------------

RELATION_CASES = [
    ("1.0", "<<", "1.1"),
    ("1.1", "<<", "1.1"),
    ("1.1", "<=", "1.1"),
    ("1.2", "<=", "1.1"),
    ("1.1", "=", "1.1-0"),
    ("1.1", ">=", "1.1"),
    ("1.0", ">=", "1.1"),
    ("1.2", ">>", "1.1"),
    ("1.1", ">>", "1.1"),
    ("1.1", "<", "1.1"),  # obsolete: means <=
    ("1.2", "<", "1.1"),
    ("1.1", ">", "1.1"),  # obsolete: means >=
    ("1.0", ">", "1.1"),
    ("2:1", "<<", "1:9"),
    ("1.0~", "<<", "1.0"),
]


@needs_dpkg
@pytest.mark.parametrize(("a", "op", "b"), RELATION_CASES)
def test_check_relation_like_dpkg(a: str, op: str, b: str) -> None:
    done = subprocess.run(["dpkg", "--compare-versions", a, op, b], capture_output=True)
    assert done.returncode in (0, 1), done.stderr
    assert check_relation(a, op, b) is (done.returncode == 0)


def test_unknown_operator() -> None:
    with pytest.raises(DpkgError, match="unknown version relation"):
        check_relation("1", "==", "1")


# --- property test against apt_pkg --------------------------------------------

_UP = "0123456789abzAZ.+~"


@st.composite
def versions(draw: st.DrawFn, odd: bool = False) -> str:
    """Valid versions over a small alphabet (so ties and near-ties are common)."""
    epoch = draw(st.sampled_from(["", "", "0", "1", "2", "10"]))
    revision = draw(st.one_of(st.just(""), st.text("01a.+~z", min_size=1, max_size=4)))
    alphabet = _UP + (":" if epoch else "") + ("-" if revision else "")
    if odd:
        alphabet += "_\u00e9!"
    upstream = draw(st.sampled_from("0129")) + draw(st.text(alphabet, max_size=7))
    text = f"{epoch}:{upstream}" if epoch else upstream
    return f"{text}-{revision}" if revision else text


@needs_apt
@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(versions(), versions()), min_size=1, max_size=20))
def test_property_against_apt(apt: AptOracle, pairs: list[tuple[str, str]]) -> None:
    expected = apt.compare(pairs)
    for (a, b), want in zip(pairs, expected):
        got = compare_parsed(parse_version(a), parse_version(b))
        assert got == want, (a, b)
        assert compare_parsed(parse_version(b), parse_version(a)) == -got


@needs_apt
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(versions(odd=True), versions(odd=True)), min_size=1, max_size=20))
def test_property_odd_characters_against_apt(apt: AptOracle, pairs: list[tuple[str, str]]) -> None:
    """Characters dpkg only warns about (incl. UTF-8 bytes) order as in apt."""
    expected = apt.compare(pairs)
    got = [compare_parsed(parse_version(a), parse_version(b)) for a, b in pairs]
    assert got == expected


@given(versions(), versions(), versions())
def test_total_order(a: str, b: str, c: str) -> None:
    ab, bc, ac = compare_versions(a, b), compare_versions(b, c), compare_versions(a, c)
    if ab <= 0 and bc <= 0:
        assert ac <= 0
    assert compare_versions(a, a) == 0
