"""depmin.debian.aptconf against the real ``apt-config`` (apt 2.6) as oracle.

Temporary roots are read by apt through an isolated ``APT_CONFIG`` that sets
``Dir`` to the root (apt.md §8.3), so the host's apt.conf.d is never involved.
Inside each root a symlink at the root's own host path points back to ``/``:
host paths under the root (the ``Dir`` value, ``#include`` targets) then name
the same files for apt, which reads the host, and for depmin, which reads
inside the root.  Nothing is written outside tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from depmin.debian.aptconf import AptConfig, ConfigItem, accepted_part_name, load_apt_config
from depmin.errors import ConfigError
from depmin.rootfs import Root

pytestmark = pytest.mark.skipif(shutil.which("apt-config") is None, reason="needs apt-config")

#: apt-config recomputes these after reading the files (languages, architectures,
#: compressors), so its dump does not show what the files said.
REWRITTEN = (
    ("acquire", "languages"),
    ("apt", "architectures"),
    ("apt", "compressor"),
    ("acquire", "compressiontypes"),
)
#: The baseline run points these elsewhere to read no file; they are compared only
#: through the first check (every key we produced).
BASELINE_KEYS = {("dir", "etc", "parts"), ("dir", "etc", "main")}
_ESCAPE = re.compile(rb"%(?:ffffff)?([0-9a-f]{2})")


# --- running the oracle ---------------------------------------------------------------------


def _env(apt_config: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "APT_CONFIG"}
    env["LC_ALL"] = "C"
    if apt_config is not None:
        env["APT_CONFIG"] = apt_config
    return env


def run_apt_config(
    args: Sequence[str], apt_config: str | None, overrides: Sequence[str] = ()
) -> subprocess.CompletedProcess[bytes]:
    opts = [arg for ov in overrides for arg in ("-o", ov)]
    return subprocess.run(
        ["apt-config", *opts, *args], env=_env(apt_config), capture_output=True, check=False
    )


def _unquote(field: bytes) -> str:
    """Undo apt's QuoteString (``%xx``; bytes >= 0x80 come out sign-extended)."""
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), field)
    return raw.decode("utf-8", "surrogateescape")


@dataclass
class _Row:
    full: str
    tag: str
    value: str
    children: list[_Row] = field(default_factory=list)

    def freeze(self) -> ConfigItem:
        return ConfigItem(self.tag, self.value, tuple(c.freeze() for c in self.children))


def apt_tree(apt_config: str | None, overrides: Sequence[str] = ()) -> ConfigItem:
    """apt-config's whole tree, rebuilt from a dump of (full key, tag, value)."""
    proc = run_apt_config(["dump", "--format", "%F%N%T%N%V%n"], apt_config, overrides)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    top = _Row("", "", "")
    stack: list[_Row] = []
    for line in proc.stdout.splitlines():
        full, tag, value = (_unquote(f) for f in line.split(b"\t"))
        while stack and full != f"{stack[-1].full}::{tag}":
            stack.pop()
        row = _Row(full, tag, value)
        (stack[-1] if stack else top).children.append(row)
        stack.append(row)
    return top.freeze()


def project(
    item: ConfigItem, prefix: tuple[str, ...] = (), scopes: bool = True
) -> dict[tuple[str, ...], str]:
    """Path -> value; tags case-folded, list entries numbered from the end of their list
    (entries files add come after apt's built-in ones).

    ``scopes=False`` leaves out empty-valued nodes that only hold children: in our
    tree they stand for "not set by any file", where apt's may hold a built-in value
    (``Dir::Cache::pkgcache "";`` creates ``Dir``, which apt presets to ``/``).
    """
    out: dict[tuple[str, ...], str] = {}
    entries = [c for c in item.children if not c.tag]
    seen = 0
    for child in item.children:
        if child.tag:
            key = (*prefix, child.tag.lower())
        else:
            key = (*prefix, f"#{seen - len(entries)}")
            seen += 1
        if scopes or child.value or not child.children or not child.tag:
            out[key] = child.value
        out.update(project(child, key, scopes))
    return out


def assert_same_as_apt(ours: AptConfig, apt: ConfigItem, baseline: ConfigItem) -> None:
    """Every node we built has apt's value, and every node the files changed in apt's
    tree (relative to ``baseline``, apt reading no files) is in ours with that value."""
    mine, theirs, base = project(ours.tree, scopes=False), project(apt), project(baseline)
    everything = project(ours.tree)

    def rewritten(path: tuple[str, ...]) -> bool:
        return any(path[: len(r)] == r for r in REWRITTEN)

    wrong = {
        p: (v, theirs.get(p)) for p, v in mine.items() if not rewritten(p) and theirs.get(p) != v
    }
    missed = {
        p: v
        for p, v in theirs.items()
        if not rewritten(p)
        and p not in BASELINE_KEYS
        and base.get(p) != v
        and everything.get(p) != v
    }
    assert not wrong, f"ours differs from apt-config (ours, apt): {wrong}"
    assert not missed, f"apt-config has, we lack: {missed}"


# --- temporary roots ------------------------------------------------------------------------


class TempRoot:
    """A root with an isolating APT_CONFIG file inside it, readable by apt and by depmin."""

    def __init__(self, top: Path, env_lines: Sequence[str] = ()) -> None:
        self.top = top
        self.parts = top / "etc/apt/apt.conf.d"
        self.parts.mkdir(parents=True)
        mirror = top / str(top).lstrip("/")
        mirror.parent.mkdir(parents=True)
        mirror.symlink_to("/")
        self.env_file = top / "isolate.conf"
        self.env_file.write_text("".join(f"{line}\n" for line in (f'Dir "{top}/";', *env_lines)))

    def write(self, rel: str, text: str) -> Path:
        path = self.top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def ours(self, overrides: Sequence[str] = ()) -> AptConfig:
        return load_apt_config(
            Root(str(self.top)), overrides, apt_config_file=str(self.env_file), binary="apt-config"
        )

    def apt(self, overrides: Sequence[str] = ()) -> ConfigItem:
        return apt_tree(str(self.env_file), overrides)

    def baseline(self, overrides: Sequence[str] = ()) -> ConfigItem:
        """apt's tree for the same Dir and overrides, reading no configuration file."""
        with tempfile.TemporaryDirectory() as empty:
            env = Path(empty) / "isolate.conf"
            env.write_text(
                f'Dir "{self.top}/";\nDir::Etc::parts "{empty}/";\nDir::Etc::main "{empty}/none";\n'
            )
            return apt_tree(str(env), overrides)

    def check(self, overrides: Sequence[str] = ()) -> AptConfig:
        ours = self.ours(overrides)
        assert_same_as_apt(ours, self.apt(overrides), self.baseline(overrides))
        return ours


@pytest.fixture
def troot(tmp_path: Path) -> TempRoot:
    return TempRoot(tmp_path / "root")


# --- the host --------------------------------------------------------------------------------


def test_host_configuration_equals_apt_config_dump() -> None:
    ours = load_apt_config(Root("/"), binary="apt-config")
    assert ours.sources, "the host has no apt configuration files to compare"
    apt = apt_tree(None)
    mine, theirs = project(ours.tree, scopes=False), project(apt)
    for path, value in mine.items():
        if not any(path[: len(r)] == r for r in REWRITTEN):
            assert theirs.get(path) == value, path
    # depmin's keys through apt's own FindB/Find: ``apt-config shell`` uses FindAny, and
    # ``/b`` means FindB with default false.
    keys = {
        "RI": "APT::AutoRemove::RecommendsImportant",
        "SI": "APT::AutoRemove::SuggestsImportant",
        "PK": "APT::Protect-Kernels",
        "IH": "APT::Ignore-Hold",
    }
    args = [x for var, key in keys.items() for x in (var, f"{key}/b")] + ["SO", "APT::Solver"]
    shell = run_apt_config(["shell", *args], None)
    got = dict(re.findall(r"^(\w+)='(.*)'$", shell.stdout.decode(), re.M))
    # apt-config shell prints only keys that exist.
    for var, key in keys.items():
        assert (var in got) == ours.exists(key), key
        assert got.get(var, "false") == str(ours.get_bool(key)).lower(), key
    assert got.get("SO", "") == ours.get("APT::Solver")
    # The lists are entries of a value-less node on the host, so FindVector is the entries.
    for key, got_list in (
        ("APT::NeverAutoRemove", ours.never_autoremove),
        ("APT::VersionedKernelPackages", ours.versioned_kernel_packages),
    ):
        node = apt.child(key.split("::")[0])
        node = node.child(key.split("::")[1]) if node else None
        assert node is not None and not node.value
        assert got_list == tuple(c.value for c in node.children)


# --- temporary roots: the language ------------------------------------------------------------


CASES = {
    "scopes": 'A { B "1"; C { D "2"; }; };\nA::C::E "3";\nA { B "4"; };\n',
    "lists": 'L { "x"; "y"; };\nL { "z"; };\nL:: "w";\nM::N { "p"; Q "q"; };\n',
    "clear": 'L { "x"; "y"; };\n#clear L;\nL { "z"; };\nK "k";\n#clear K;\n#clear Nope;\n',
    "case-insensitive": 'Apt::AutoRemove::SuggestsImportant "false";\nAPT::autoremove::X "1";\n',
    "comments": (
        '// line comment\nA "1"; // trailing\n# hash comment\nB "2"; # trailing hash\n'
        'C "a//b"; D "a#b"; /* one */ E "3";\n/* multi\nline F "no"; */ G "4";\n'
        'H "/* not a comment */";\n'
    ),
    "quirks": (
        'A b;\nC "x" "y";\nD  "p"   "q"  ;\nE%41 "v%41";\nF\t"tab\there";\n"top";\n'
        'G "v" { H "h"; };\nI::::J "k";\nK [x y];\nL "a" ; ; ;\n'
    ),
    "multi-line statements": 'A\n{\n B\n "1"\n ;\n}\n;\nC { D "2"; } E "3";\n',
    "long values": f'A "{"v" * 1100}";\nB {"u" * 1100};\nC "{"w" * 500}" "{"x" * 600}";\n'
    f'{"T" * 1100} "t";\n',
    "unclosed scope": 'A { B "1";\n',
    "extra closing brace": 'A "1"; } B "2";\n',
    "binary subtree": (
        'X::Y "file";\nBinary::apt-config::X::Y "moved";\nBinary::apt-config::L { "m"; };\n'
        'Binary::apt-get::X::Z "stays";\nL { "a"; };\n'
    ),
    "docker-autoremove-suggests": (
        "# https://aptitude.alioth.debian.org/doc/en/ch02s05s05.html"
        "#configApt-AutoRemove-SuggestsImportant\n"
        'Apt::AutoRemove::SuggestsImportant "false";\n'
    ),
}


@pytest.mark.parametrize("text", CASES.values(), ids=list(CASES))
def test_language_matches_apt(troot: TempRoot, text: str) -> None:
    troot.write("etc/apt/apt.conf.d/50test", text)
    troot.check()


def test_docker_file_turns_suggests_important_off(troot: TempRoot) -> None:
    troot.write(
        "etc/apt/apt.conf.d/docker-autoremove-suggests", CASES["docker-autoremove-suggests"]
    )
    ours = troot.check()
    shell = run_apt_config(
        ["shell", "SI", "APT::AutoRemove::SuggestsImportant/b"], str(troot.env_file)
    )
    assert shell.stdout.decode().strip() == "SI='false'"
    assert ours.suggests_important is False
    assert ours.recommends_important is True  # untouched default


def test_truth_values_match_findb(troot: TempRoot) -> None:
    words = [
        "yes", "YES", "true", "True", "with", "on", "enable", "1", "01", "0x1", "+1", " 1",
        "1abc", "4294967297", "no", "false", "without", "off", "disable", "0", "-0", "0x",
        "08", "2", "-1", "y", "maybe", "enabled", "", "0x0", "00",
    ]  # fmt: skip
    troot.write(
        "etc/apt/apt.conf.d/10bools",
        "".join(f'T::k{i} "{w}";\n' for i, w in enumerate(words)),
    )
    ours = troot.check()
    args = [x for i in range(len(words)) for x in (f"V{i}", f"T::k{i}/b")]
    shell = run_apt_config(["shell", *args], str(troot.env_file))
    got = dict(re.findall(r"^V(\d+)='(\w+)'$", shell.stdout.decode(), re.M))
    for i, word in enumerate(words):
        assert got[str(i)] == str(ours.get_bool(f"T::k{i}")).lower(), repr(word)


# --- temporary roots: which files are read --------------------------------------------------


FILE_NAMES = {
    "10plain": True,
    "20plain.conf": True,
    "21a.b.conf": True,
    "22with:colon": True,
    "23under_score-dash": True,
    "30foo.disabled": False,
    "31foo~": False,
    "32foo.dpkg-old": False,
    "33foo.dpkg-dist": False,
    "34foo.CONF": False,
    "35foo.conf.bak": False,
    "36with space": False,
    "37dot.": False,
    ".38hidden": False,
    "39plus+sign": False,
    "40caf\u00e9": False,
    "41foo.list": False,
}


def test_file_name_filter_matches_apt(tmp_path: Path) -> None:
    troot = TempRoot(tmp_path / "root", ['Debug::GetListOfFilesInDir "true";'])
    for i, name in enumerate(FILE_NAMES):
        troot.write(f"etc/apt/apt.conf.d/{name}", f'Files::f{i} "{name}";\n')
    (troot.parts / "50dir.conf").mkdir()
    (troot.parts / "51link").symlink_to("10plain")  # a link to a regular file is read
    (troot.parts / "52dangling").symlink_to("/nonexistent")
    # An absolute target: apt follows it on the host, depmin inside the root (via the mirror).
    other = troot.write("etc/apt/other/60elsewhere", 'Files::linked "yes";\n')
    (troot.parts / "53abs-link").symlink_to(other)
    ours = troot.check()

    proc = run_apt_config(["dump"], str(troot.env_file))
    accepted = set(
        re.findall(r"^Accept file: (.*) in ", proc.stderr.decode(errors="replace"), re.M)
    )
    assert accepted == {name for name, ok in FILE_NAMES.items() if ok} | {"51link", "53abs-link"}
    read = [s.rsplit("/", 1)[1] for s in ours.sources if "/apt.conf.d/" in s]
    assert read == sorted(accepted)
    for name, ok in FILE_NAMES.items():
        assert accepted_part_name(name) is ok, name
    assert ours.get("Files::linked") == "yes"


def test_order_apt_config_then_parts_then_main(tmp_path: Path) -> None:
    troot = TempRoot(tmp_path / "root", ['Order::A "env";', 'Order::B "env";', 'Order::C "env";'])
    troot.write("etc/apt/apt.conf.d/10x", 'Order::B "parts-10";\nOrder::C "parts-10";\n')
    troot.write("etc/apt/apt.conf.d/20x", 'Order::C "parts-20";\nOrder::L:: "parts";\n')
    troot.write("etc/apt/apt.conf", 'Order::C "main";\nOrder::L:: "main";\n')
    ours = troot.check()
    assert [ours.get(f"Order::{k}") for k in "ABC"] == ["env", "parts-10", "main"]
    assert ours.get_list("Order::L") == ("parts", "main")


def test_dir_keys_move_the_files(tmp_path: Path) -> None:
    troot = TempRoot(tmp_path / "root", ['Dir::Etc::parts "conf.d";'])
    troot.write("etc/apt/apt.conf.d/10ignored", 'Where::parts "default-dir";\n')
    troot.write("etc/apt/conf.d/10used", 'Where::parts "moved-dir";\nDir::Etc::main "main.conf";\n')
    troot.write("etc/apt/apt.conf", 'Where::main "default-main";\n')
    troot.write("etc/apt/main.conf", 'Where::main "moved-main";\n')
    ours = troot.check()
    assert ours.get("Where::parts") == "moved-dir"
    assert ours.get("Where::main") == "moved-main"


def test_include_file_and_directory(troot: TempRoot) -> None:
    inc = troot.write("etc/apt/extra/one.conf", 'Inc::file "1";\nInc::L:: "from-file";\n')
    troot.write("etc/apt/extra.d/10a", 'Inc::dir "a";\n')
    troot.write("etc/apt/extra.d/20b.disabled", 'Inc::dir "disabled";\n')
    # Host paths under the root: apt opens them on the host, depmin inside the root.
    troot.write(
        "etc/apt/apt.conf.d/10inc",
        f'Inc::L:: "before";\n#include "{inc}";\n#include "{troot.top}/etc/apt/extra.d/";\n'
        'Inc::L:: "after";\n',
    )
    ours = troot.check()
    assert ours.get_list("Inc::L") == ("before", "from-file", "after")
    assert ours.get("Inc::dir") == "a"


# --- -o overrides ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        ["A::B=c"],
        ["L::=appended"],
        ["L=replaces"],
        ["V="],
        ["X::Y=cli"],
        ["Binary::apt-config::Late=stays"],
        ["Q::R::=x", "Q::R::=y", "q::r::=z"],
        ["Eq=a=b"],
    ],
)
def test_overrides_match_apt(troot: TempRoot, overrides: list[str]) -> None:
    troot.write(
        "etc/apt/apt.conf.d/10base",
        'L { "a"; "b"; };\nV "v";\nBinary::apt-config::X::Y "moved";\n',
    )
    troot.check(overrides)


def test_override_value_on_list_key_replaces_entries(troot: TempRoot) -> None:
    troot.write("etc/apt/apt.conf.d/10l", 'APT::NeverAutoRemove { "^a$"; "^b$"; };\n')
    assert troot.ours().never_autoremove == ("^a$", "^b$")
    assert troot.ours(["APT::NeverAutoRemove::=^c$"]).never_autoremove == ("^a$", "^b$", "^c$")
    assert troot.ours(["APT::NeverAutoRemove=^x$,^y$"]).never_autoremove == ("^x$", "^y$")


def test_override_without_equals_is_refused(troot: TempRoot) -> None:
    assert run_apt_config(["-o", "Q", "dump"], str(troot.env_file)).returncode != 0
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        troot.ours(["Q"])


# --- errors ----------------------------------------------------------------------------------


BAD = {
    "no name": '{ A "1"; };\n',
    "junk after value": 'A "1" b;\n',
    "junk at end": 'A "1";\nB "2"\n',
    "directive in scope": "A { #clear B; };\n",
    "unknown directive": "#includes x;\n",
    "bare clear": "#clear;\n",
    "unterminated quote": 'A "x;\n',
    "missing include": '#include "/nonexistent/x.conf";\n',
}


@pytest.mark.parametrize("text", BAD.values(), ids=list(BAD))
def test_malformed_file_names_file_and_line(troot: TempRoot, text: str) -> None:
    path = troot.write("etc/apt/apt.conf.d/50bad", 'Good "1";\n' + text)
    proc = run_apt_config(["dump"], str(troot.env_file))
    assert proc.returncode != 0
    apt_lines = re.findall(rf"{re.escape(str(path))}:(\d+)", proc.stderr.decode())
    assert apt_lines, proc.stderr.decode()
    with pytest.raises(ConfigError) as err:
        troot.ours()
    assert err.value.path == str(path)
    assert f"line {apt_lines[0]}:" in err.value.problem


def test_unreadable_include_depth_is_bounded(troot: TempRoot) -> None:
    loop = troot.write("etc/apt/loop.conf", "")
    loop.write_text(f'#include "{loop}";\n')
    troot.write("etc/apt/apt.conf.d/10loop", f'#include "{loop}";\n')
    assert run_apt_config(["dump"], str(troot.env_file)).returncode != 0
    with pytest.raises(ConfigError, match="too many nested includes"):
        troot.ours()


# --- differential fuzzing --------------------------------------------------------------------


TOKENS = [
    "A", "b", "A::B", "a::b", "L::", '"x"', '"a b"', '"#"', '"//"', '"/*"', "{", "}", ";",
    " ", "\n", "\t", "//", "/*", "*/", "#", "#clear", "%41", "%2", "[", "]", 'c"d', "::",
    '"', "Binary::apt-config::M",
]  # fmt: skip


SNIPPETS = [
    'A "1";', 'A::B "x y";', "L:: \"e\";", 'L { "p"; "q"; };', "S {", "};", "}", 'C "a#b";',
    'D "a//b";', "#clear L;", "#clear S;", '"top";', "E v;", 'F "a" "b";', "// c", "# c",
    "/* c */", 'Binary::apt-config::M "m";', 'Binary::apt-config::L:: "bm";', 'G%41 "%42";',
    'a::b "lower";', 'H "";', "K [x y];", 'l:: "f";', 'S::T "u";', 'F "a"  "b";',
    'F "a"\t"b" "c";', 'T "a\tb";', 'U "%zz%4";',
]  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_root() -> Iterator[TempRoot]:
    with tempfile.TemporaryDirectory() as top:
        yield TempRoot(Path(top) / "root")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(SNIPPETS * 4 + TOKENS), st.sampled_from([" ", "\n", ""])),
        max_size=25,
    )
)
def test_random_files_match_apt(fuzz_root: TempRoot, pieces: list[tuple[str, str]]) -> None:
    path = fuzz_root.write("etc/apt/apt.conf.d/50fuzz", "".join(a + b for a, b in pieces))
    proc = run_apt_config(["dump"], str(fuzz_root.env_file))
    event("apt refused the file" if proc.returncode else "apt read the file")
    if proc.returncode != 0:
        apt_line = re.search(rf"{re.escape(str(path))}:(\d+)", proc.stderr.decode())
        assert apt_line, proc.stderr.decode()
        with pytest.raises(ConfigError) as err:
            fuzz_root.ours()
        assert f"line {apt_line.group(1)}:" in err.value.problem
        return
    assert_same_as_apt(fuzz_root.ours(), fuzz_root.apt(), fuzz_root.baseline())


# --- FindVector as apt-get uses it -----------------------------------------------------------


PACKAGES = ("pkga", "pkgb", "pkgc")


def _fake_system(top: Path) -> TempRoot:
    """Three installed, automatically installed packages and no sources: what
    ``apt-get -s autoremove`` keeps is exactly what NeverAutoRemove protects."""
    troot = TempRoot(
        top,
        [
            f'Dir::State::status "{top}/var/lib/dpkg/status";',
            'Dir::Cache::pkgcache "";',
            'Dir::Cache::srcpkgcache "";',
        ],
    )
    status = "".join(
        f"Package: {p}\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
        f"Maintainer: Test <test@example.org>\nArchitecture: all\nVersion: 1.0\n"
        f"Description: test package\n\n"
        for p in PACKAGES
    )
    troot.write("var/lib/dpkg/status", status)
    troot.write(
        "var/lib/apt/extended_states",
        "".join(f"Package: {p}\nArchitecture: amd64\nAuto-Installed: 1\n\n" for p in PACKAGES),
    )
    (top / "var/lib/apt/lists").mkdir(parents=True)
    return troot


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
@pytest.mark.parametrize(
    ("text", "overrides"),
    [
        ('APT::NeverAutoRemove { "^pkga$"; };', []),
        ('APT::NeverAutoRemove { "^pkga$"; };', ["APT::NeverAutoRemove=^pkgb$,^pkgc$"]),
        ('APT::NeverAutoRemove { "^pkga$"; };', ["APT::NeverAutoRemove::=^pkgb$"]),
        (
            'APT::NeverAutoRemove { "^pkga$"; };\n#clear APT::NeverAutoRemove;\n'
            'apt::neverautoremove:: "^PKGC$";',
            [],
        ),
        ('Binary::apt-get::APT::NeverAutoRemove { "^pkgb$"; };', []),
        ('APT::NeverAutoRemove "^pkga$,";', []),
        ("", ["APT::NeverAutoRemove=pkg"]),
    ],
)
def test_never_autoremove_as_apt_get_applies_it(
    tmp_path: Path, text: str, overrides: list[str]
) -> None:
    troot = _fake_system(tmp_path / "root")
    troot.write("etc/apt/apt.conf.d/10never", text + "\n")
    opts = [arg for ov in overrides for arg in ("-o", ov)]
    proc = subprocess.run(
        ["apt-get", "-s", *opts, "autoremove"],
        env=_env(str(troot.env_file)),
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    removed = set(re.findall(r"^Remv (\S+)", proc.stdout.decode(), re.M))
    ours = load_apt_config(Root(str(troot.top)), overrides, apt_config_file=str(troot.env_file))
    kept = {p for p in PACKAGES if any(re.search(rx, p, re.I) for rx in ours.never_autoremove)}
    assert kept == set(PACKAGES) - removed
