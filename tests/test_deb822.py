"""depmin.debian.deb822 against apt_pkg.TagFile, apt_pkg.parse_depends and dpkg-query."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from depmin.debian.deb822 import Relation, Stanza, iter_stanzas, parse_deb822, parse_relations
from depmin.errors import DpkgError

APT_PYTHON = "/usr/bin/python3"
STATUS = "/var/lib/dpkg/status"
RELATION_FIELDS = (
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Provides",
    "Breaks",
    "Conflicts",
    "Replaces",
    "Enhances",
)


def _apt_importable() -> bool:
    if not os.path.exists(APT_PYTHON):
        return False
    return subprocess.run([APT_PYTHON, "-c", "import apt_pkg"]).returncode == 0


needs_apt = pytest.mark.skipif(not _apt_importable(), reason=f"{APT_PYTHON} lacks apt_pkg")
needs_dpkg_query = pytest.mark.skipif(
    shutil.which("dpkg-query") is None, reason="dpkg-query is not installed"
)
needs_status = pytest.mark.skipif(not os.path.exists(STATUS), reason="no dpkg status file")


def apt_run(code: str, payload: Any) -> Any:
    """Run ``code`` under Debian's python3 (apt_pkg imported, ``data`` = payload)."""
    prelude = (
        "import json, sys\nimport apt_pkg\napt_pkg.init_system()\ndata = json.load(sys.stdin)\n"
    )
    done = subprocess.run(
        [APT_PYTHON, "-c", prelude + code],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


APT_TAGFILE = """
out = []
for section in apt_pkg.TagFile(data):
    out.append([[k.strip(), section[k.strip()], section[k.strip().lower()]]
                for k in section.keys()])
print(json.dumps(out))
"""


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


# --- stanzas ------------------------------------------------------------------


@needs_apt
@needs_status
def test_host_status_matches_apt_tagfile() -> None:
    expected = apt_run(APT_TAGFILE, STATUS)
    parsed = parse_deb822(read(STATUS), STATUS)
    assert parsed.warnings == ()
    got = [[[k, v, s[k.lower()]] for k, v in s.items()] for s in parsed.stanzas]
    assert len(got) == len(expected) > 100
    for mine, apts in zip(got, expected):
        assert mine == apts


@needs_status
def test_stanza_line_is_its_first_field() -> None:
    text = read(STATUS)
    lines = text.split("\n")
    stanzas = list(iter_stanzas(text, STATUS))
    starts = [n + 1 for n, t in enumerate(lines) if t and (n == 0 or lines[n - 1] == "")]
    assert [s.line for s in stanzas] == starts
    for s in stanzas:
        assert lines[s.line - 1].startswith(next(iter(s)) + ":")


EDGE_FILE = (
    "Package: a\n"
    "Empty:\n"
    "Later:\n"
    "  on the next line  \n"
    "Trailing: value  \t\n"
    "Multi: first  \n"
    " second\n"
    "\tthird\t\n"
    " .\n"
    "Colon :  spaced name\n"
    "#Hash: dpkg and apt read this as a field\n"
    "x-lower-Case: kept as written\n"
    "Url: http://example.org:80/x\n"
    "\n"
    "\n"
    "\n"
    "Package: b\n"
    "Description: with a blank-only line\n"
    " first\n"
    "   \n"
    " after\n"
    "Last: no final newline"
)


@needs_apt
def test_edge_cases_match_apt_tagfile(tmp_path: Path) -> None:
    path = tmp_path / "edge"
    path.write_text(EDGE_FILE)
    expected = apt_run(APT_TAGFILE, str(path))
    parsed = parse_deb822(EDGE_FILE, str(path))
    got = [[[k, v, s[k.lower()]] for k, v in s.items()] for s in parsed.stanzas]
    assert got == expected
    # dpkg warns about the blank-only line; so do we, and keep reading.
    assert parsed.warnings == (f"{path}:20: {_blank_message()}",)


def _blank_message() -> str:
    found: list[str] = []
    list(iter_stanzas("A: x\n \n y\n", "f", warn=found.append))
    return found[0].split(": ", 1)[1]


def test_case_insensitive_lookup_keeps_first_spelling() -> None:
    (s,) = parse_deb822("Package: a\nmulti-ARCH: same\n", "f").stanzas
    assert list(s) == ["Package", "multi-ARCH"]
    assert s["Multi-Arch"] == s["MULTI-ARCH"] == "same"
    assert "multi-arch" in s and "Essential" not in s
    assert s.get("essential") is None
    made = Stanza({"Depends": "a", "depends": "b"})  # built by hand: first sight wins
    assert made["DEPENDS"] == "a"


def _write_admindir(root: Path, status: str) -> Path:
    admin = root / "admin"
    (admin / "info").mkdir(parents=True)
    (admin / "info" / "format").write_text("1\n")
    (admin / "diversions").write_text("")
    (admin / "status").write_text(status)
    return admin


def _stanza(name: str, extra: str = "") -> str:
    return (
        f"Package: {name}\nStatus: install ok installed\n{extra}"
        "Version: 1\nArchitecture: all\nMaintainer: m\nDescription: d\n"
    )


BROKEN = {
    "line without colon": _stanza("b", "broken line\n"),
    "duplicate field in another case": _stanza("b", "version: 2\n"),
    "continuation before the first field": " cont\n" + _stanza("b"),
    "field name starting with a hyphen": _stanza("b", "-X: 1\n"),
}


@needs_dpkg_query
@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_stanza_reported_like_dpkg(tmp_path: Path, kind: str) -> None:
    text = _stanza("a") + "\n" + BROKEN[kind] + "\n" + _stanza("c")
    admin = _write_admindir(tmp_path, text)
    done = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-W", "-f", "${Package}\\n"],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    # dpkg refuses the whole file and says "near line N" (its counter may lag by one).
    assert done.returncode == 2
    m = re.search(r"error: parsing file '(.*)' near line (\d+)", done.stderr)
    assert m is not None, done.stderr
    name = m.group(1)
    parsed = parse_deb822(text, name)
    assert [s["Package"] for s in parsed.stanzas] == ["a", "c"]  # we go on
    (warning,) = parsed.warnings
    wm = re.match(rf"{re.escape(name)}:(\d+): ", warning)
    assert wm is not None, warning
    assert int(wm.group(1)) - 1 <= int(m.group(2)) <= int(wm.group(1))
    with pytest.raises(DpkgError, match=rf"^{re.escape(name)}: line {wm.group(1)}: "):
        parse_deb822(text, name, strict=True)


@needs_dpkg_query
def test_blank_only_line_read_like_dpkg(tmp_path: Path) -> None:
    text = _stanza("a") + "\n" + "Package: b\nStatus: install ok installed\n \t\nVersion: 7\n"
    admin = _write_admindir(tmp_path, text)
    done = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-W", "-f", "${Package}=${Version}\\n"],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    assert done.returncode == 0
    assert "blank line in value of field" in done.stderr
    parsed = parse_deb822(text, "status")
    assert {s["Package"]: s["Version"] for s in parsed.stanzas} == dict(
        line.split("=") for line in done.stdout.split()
    )
    assert parsed.warnings == (f"status:10: {_blank_message()}",)


def test_comments_only_when_asked() -> None:
    text = "# leading\nPackage: a\n# between\nDepends: b\n# x\n c\n\n# alone\n\nPackage: d\n"
    with_comments = parse_deb822(text, "f", comments=True)
    assert [dict(s) for s in with_comments.stanzas] == [
        {"Package": "a", "Depends": "b\n c"},
        {"Package": "d"},
    ]
    assert [s.line for s in with_comments.stanzas] == [2, 10]
    assert with_comments.warnings == ()
    without = parse_deb822(text, "f")
    assert [dict(s) for s in without.stanzas] == [{"Package": "d"}]
    assert [w.split(": ")[0] for w in without.warnings] == ["f:1", "f:8"]


def test_empty_and_blank_texts() -> None:
    assert parse_deb822("", "f").stanzas == ()
    assert parse_deb822("\n\n\n", "f").stanzas == ()
    (s,) = parse_deb822("\n\nA: 1", "f").stanzas
    assert (dict(s), s.line) == ({"A": "1"}, 3)


# --- relations ------------------------------------------------------------------


def as_apt(groups: tuple[tuple[Relation, ...], ...]) -> list[list[list[str]]]:
    """Our relations in parse_depends(s, False) form: (name[:arch], version, op)."""
    ops = {"<<": "<", ">>": ">"}
    return [
        [
            [f"{r.name}:{r.arch}" if r.arch else r.name, r.version or "", ops.get(r.op, r.op or "")]
            for r in group
        ]
        for group in groups
    ]


APT_DEPENDS = """
out = []
for text in data:
    try:
        out.append([[list(t) for t in g] for g in apt_pkg.parse_depends(text, False)])
    except ValueError:
        out.append(None)
print(json.dumps(out))
"""
APT_SRC_DEPENDS = APT_DEPENDS.replace(
    "parse_depends(text, False)", 'parse_src_depends(text, False, "amd64")'
)


@needs_apt
@needs_status
def test_host_relation_fields_match_apt() -> None:
    values = [
        s[f] for s in parse_deb822(read(STATUS), STATUS).stanzas for f in RELATION_FIELDS if f in s
    ]
    assert len(values) > 500
    expected = apt_run(APT_DEPENDS, values)
    assert None not in expected
    got = [as_apt(parse_relations(v)) for v in values]
    assert [v for v, e, g in zip(values, expected, got) if e != g] == []


HAND_RELATIONS = [
    "",
    "a",
    "A",
    "a, b | c",
    "a (<< 1), b (<= 2), c (= 3), d (>= 4), e (>> 5)",
    "a (< 1), b (> 2)",  # obsolete spellings
    "a(>=1.0)|b",
    "a(=1)|b",
    " a ( >= 1 ) ",
    "a (1.0)",  # no operator: exact match
    "a\n , b\n | c (>= 1:2.3-4~rc1)",
    "a:any, b:amd64 (>= 1), c:native",
    "a ,",
    "a,",
    ", a",
    "a,,",
    "a, , b",
    "a | | b",
    "a b",
    "a (>= )",
    "a ()",
    "(>= 1)",
    "a (>= 1",
]


@needs_apt
def test_hand_relations_match_apt() -> None:
    expected = apt_run(APT_DEPENDS, HAND_RELATIONS)
    for text, want in zip(HAND_RELATIONS, expected):
        try:
            got = as_apt(parse_relations(text))
        except DpkgError:
            got = None
        assert got == want, text


RESTRICTED = [
    "a [amd64] <!nocheck>, b [!i386] | c:any (>= 1) <!cross>",
    "a (>= 1) [amd64 i386] <!nocheck> <!cross>",
    "a [linux-any]",
]


@needs_apt
def test_restrictions_are_ignored() -> None:
    """Kept whatever they say; compared where apt (amd64, no profile) keeps them too."""
    expected = apt_run(APT_SRC_DEPENDS, RESTRICTED)
    assert [as_apt(parse_relations(t)) for t in RESTRICTED] == expected
    assert parse_relations("a [i386] <nocheck>") == ((Relation("a"),),)


def test_relation_values() -> None:
    ((r,),) = parse_relations("libc6:amd64 (< 2.36)")
    assert r == Relation("libc6", "amd64", "<=", "2.36")
    assert str(r) == "libc6:amd64 (<= 2.36)"
    assert str(Relation("a")) == "a"


@pytest.mark.parametrize("text", ["a:", "a:b:c", "a (== 1)", "a (=> 1)"])
def test_malformed_terms_apt_lets_through(text: str) -> None:
    """apt reads these as odd names or versions ('a:', '= 1'); dpkg's grammar has none."""
    with pytest.raises(DpkgError, match="bad relation"):
        parse_relations(text)


def test_relation_errors_name_the_place() -> None:
    with pytest.raises(DpkgError, match=r"^status:12: Depends: bad relation 'a \(== 1\)'"):
        parse_relations("b, a (== 1)", "status:12: Depends")
