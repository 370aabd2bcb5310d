"""depmin.debian.dpkg against dpkg-query on this machine and on hand-made databases."""

from __future__ import annotations

import glob
import hashlib
import os
import random
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from depmin.debian.deb822 import parse_relations
from depmin.debian.dpkg import DpkgDatabase, load_dpkg_database
from depmin.errors import DpkgError
from depmin.rootfs import Root

ADMIN = "/var/lib/dpkg"
GLOB_CHARS = set("*?[\\")
ALIASES = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ALIAS_DIRS = tuple(a + "/" for a in ALIASES)

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-query") is None or not os.path.exists(f"{ADMIN}/status"),
    reason="needs dpkg-query and a dpkg database",
)


# --- oracle helpers -------------------------------------------------------------


def dpkg_query(args: list[str], admindir: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["dpkg-query"] + ([f"--admindir={admindir}"] if admindir else []) + args
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env={**os.environ, "LC_ALL": "C"},
    )


def search(paths: list[str], admindir: str | None = None) -> dict[str, set[str]]:
    """``dpkg-query --search`` for exact paths, batched: path -> owner names.

    Paths dpkg does not know are absent; ``diversion by``/``local diversion``
    lines are skipped; ``a, b: /path`` gives both owners.
    """
    found: dict[str, set[str]] = {}
    for i in range(0, len(paths), 1500):
        chunk = paths[i : i + 1500]
        assert not any(GLOB_CHARS & set(p) for p in chunk)
        done = dpkg_query(["--search", "--", *chunk], admindir)
        assert done.returncode in (0, 1), done.stderr
        for line in done.stdout.splitlines():
            if line.startswith(("diversion by ", "local diversion ")):
                continue
            owners, sep, path = line.partition(": ")
            assert sep, line
            found.setdefault(path, set()).update(owners.split(", "))
    return found


def raw_search(path: str, admindir: str | None = None) -> list[str]:
    return dpkg_query(["--search", "--", path], admindir).stdout.splitlines()


def read_lists(info: str) -> dict[str, set[str]]:
    """Recorded path -> the .list files (package names as in the file name) holding it."""
    recorded: dict[str, set[str]] = {}
    for name in glob.glob(f"{info}/*.list"):
        pkg = os.path.basename(name)[: -len(".list")]
        with open(name, encoding="utf-8", errors="surrogateescape") as f:
            for line in f.read().split("\n"):
                if line:
                    recorded.setdefault(line, set()).add(pkg)
    return recorded


def read_diversions(path: str) -> list[tuple[str, str, str]]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    return [(lines[i], lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)]


def twin(path: str) -> str:
    """The other spelling of a path under merged /usr."""
    rest = path[4:]
    if path.startswith("/usr/") and (
        rest in ALIASES or rest.startswith(tuple(a + "/" for a in ALIASES))
    ):
        return rest
    return "/usr" + path


def merged(path: str) -> bool:
    return path.startswith(tuple(a + "/" for a in ALIASES)) or path.startswith(
        tuple("/usr" + a + "/" for a in ALIASES)
    )


# --- the host database ------------------------------------------------------------


@pytest.fixture(scope="module")
def db() -> DpkgDatabase:
    return load_dpkg_database(Root("/"))


@pytest.fixture(scope="module")
def recorded() -> dict[str, set[str]]:
    return read_lists(f"{ADMIN}/info")


@pytest.fixture(scope="module")
def directories(recorded: dict[str, set[str]]) -> set[str]:
    """Paths the database knows as directories (parents of other recorded paths)."""
    parents = {p.rpartition("/")[0] or "/" for p in recorded}
    return parents | {twin(p) for p in parents if merged(p + "/")}


@pytest.fixture(scope="module")
def diverted() -> set[str]:
    paths: set[str] = set()
    for original, to, _ in read_diversions(f"{ADMIN}/diversions"):
        paths |= {original, to, twin(original), twin(to)}
    return paths


def on_disk(path: str) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISLNK(mode)


@pytest.fixture(scope="module")
def sample(recorded: dict[str, set[str]], directories: set[str], diverted: set[str]) -> list[str]:
    """Recorded files and links present on disk: 3000 at random plus every one under
    /lib, /usr/lib/x86_64-linux-gnu and /bin; not directories, not diverted."""
    candidates = sorted(
        p
        for p in recorded
        if p not in directories and p not in diverted and not GLOB_CHARS & set(p) and on_disk(p)
    )
    picked = set(random.Random(20240).sample(candidates, min(3000, len(candidates))))
    picked |= {
        p for p in candidates if p.startswith(("/lib/", "/usr/lib/x86_64-linux-gnu/", "/bin/"))
    }
    return sorted(picked)


def test_owners_match_dpkg_query(
    db: DpkgDatabase, sample: list[str], recorded: dict[str, set[str]]
) -> None:
    twins = [twin(p) for p in sample if merged(p) and twin(p) in recorded]
    expected = search(sample + twins)
    assert len(sample) > 3000
    wrong = []
    for p in sample:
        want = expected.get(p, set()) | (expected.get(twin(p), set()) if merged(p) else set())
        if set(db.owners(p)) != want or not want:
            wrong.append((p, db.owners(p), want))
    assert wrong == []
    assert db.files.warnings == ()


def test_merged_usr_twins(
    db: DpkgDatabase, recorded: dict[str, set[str]], sample: list[str]
) -> None:
    """/lib/... recorded: /usr/lib/... answers the same (dpkg-query fails on it), and back."""
    sample_set = set(sample)
    short = [p for p in sample_set if merged(p) and not p.startswith("/usr/")]
    long = [p for p in sample_set if merged(p) and p.startswith("/usr/")]
    assert len(short) > 100 and len(long) > 100
    for group in (short, long):
        others = [twin(p) for p in group if twin(p) not in recorded]
        assert len(others) > 100
        assert search(others) == {}  # dpkg knows only the recorded spelling
        expected = search([twin(p) for p in others])
        assert {p: set(db.owners(p)) for p in others} == {p: expected[twin(p)] for p in others}
    # The story-2 example: ldd prints /lib/..., bookworm records it there, trixie not.
    forms = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"]
    found = search(forms)
    assert len(found) == 1  # dpkg-query answers for one spelling only
    libc = db.owners(forms[1])
    assert libc == db.owners(forms[0]) == tuple(sorted(*found.values()))


def test_exact_lookup_not_substring(db: DpkgDatabase) -> None:
    """field.md story 1: a pattern without a leading '/' is a substring search."""
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    substring = search([libc[1:]])  # what the official images' pipeline passes
    if len(substring) < 2:
        pytest.skip("no second package matches the substring here (libc6-dev absent)")
    assert set(db.owners_of_file(libc)) == search([libc])[libc]
    assert len(db.owners_of_file(libc)) < len({o for v in substring.values() for o in v})


def _md5sums(pkg_file_stem: str) -> dict[str, str]:
    path = f"{ADMIN}/info/{pkg_file_stem}.md5sums"
    sums: dict[str, str] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                digest, _, name = line.rstrip("\n").partition("  ")
                sums["/" + name] = digest
    return sums


def _md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def test_diversions_follow_the_bytes(db: DpkgDatabase, recorded: dict[str, set[str]]) -> None:
    """Each diverted file belongs to the package whose md5sums match its bytes."""
    records = read_diversions(f"{ADMIN}/diversions")
    assert records, "this machine has diversions"
    checked = 0
    for original, to, by in records:
        listers = search([original]).get(original, set())
        by_entries = {o for o in listers if o.split(":")[0] == by}
        others = listers - by_entries
        assert set(db.owners(to)) == others | search([to]).get(to, set())
        assert set(db.owners(original)) == by_entries
        if merged(original):
            assert db.owners(twin(original)) == db.owners(original)
        for stem in recorded.get(original, ()):
            sums = _md5sums(stem)
            if original not in sums:
                continue
            where = original if stem.split(":")[0] == by else to
            if os.path.isfile(where) and not os.path.islink(where):
                assert _md5(where) == sums[original], (stem, where)
                checked += 1
    assert checked >= 2


def test_pg_config_diversion(db: DpkgDatabase) -> None:
    records = {r[0]: r for r in read_diversions(f"{ADMIN}/diversions")}
    if "/usr/bin/pg_config" not in records:
        pytest.skip("postgresql-common does not divert pg_config here")
    assert records["/usr/bin/pg_config"][1:] == (
        "/usr/bin/pg_config.libpq-dev",
        "postgresql-common",
    )
    # dpkg-query names only the diversion for the file libpq-dev really owns ...
    lines = raw_search("/usr/bin/pg_config.libpq-dev")
    assert lines and all(line.startswith("diversion by postgresql-common") for line in lines)
    assert db.owners("/usr/bin/pg_config.libpq-dev") == ("libpq-dev",)
    # ... and both packages for the wrapper that postgresql-common put in its place.
    assert search(["/usr/bin/pg_config"])["/usr/bin/pg_config"] == {
        "postgresql-common",
        "libpq-dev",
    }
    assert db.owners("/usr/bin/pg_config") == ("postgresql-common",)
    assert _md5("/usr/bin/pg_config") == _md5sums("postgresql-common")["/usr/bin/pg_config"]
    assert _md5("/usr/bin/pg_config.libpq-dev") == _md5sums("libpq-dev")["/usr/bin/pg_config"]


def test_directories_are_not_indexed(db: DpkgDatabase) -> None:
    assert len(search(["/usr/share/doc"])["/usr/share/doc"]) > 100
    assert db.owners("/usr/share/doc") == ()


def test_owners_of_file_follows_links(db: DpkgDatabase) -> None:
    editor = "/usr/bin/editor"
    if not os.path.islink(editor):
        pytest.skip("no editor alternative here")
    assert search([editor]) == {} and db.owners(editor) == ()
    real = os.path.realpath(editor)
    want = search([real]).get(real) or search([twin(real)])[twin(real)]
    assert set(db.owners_of_file(editor)) == want
    # The path ld.so opens, with its directory spelled through the /lib link.
    assert db.owners_of_file("/lib/x86_64-linux-gnu/libc.so.6") == db.owners(
        "/usr/lib/x86_64-linux-gnu/libc.so.6"
    )


def test_installed_set_and_names(db: DpkgDatabase) -> None:
    out = dpkg_query(["-W", "-f", "${db:Status-Abbrev} ${binary:Package}\\n"]).stdout
    expected = set()
    for line in out.splitlines():
        abbrev, name = line[:3], line[4:]
        if abbrev[1] not in "nc":  # state not-installed / config-files
            expected.add(name)
    assert {p.binary_package for p in db.installed_packages()} == expected
    assert len({p.key for p in db.packages}) == len(db.packages)
    assert db.warnings == ()


FIELDS = (
    "${binary:Package}\t${Package}\t${Architecture}\t${Version}\t${Status}\t${Essential}\t"
    "${Protected}\t${Priority}\t${Section}\t${source:Package}\t${source:Version}\t"
    "${Multi-Arch}\t${Installed-Size}\t${Depends}\t${Pre-Depends}\t${Recommends}\t"
    "${Suggests}\t${Provides}\\n"
)


def test_package_fields_match_dpkg_query(db: DpkgDatabase) -> None:
    rows = [line.split("\t") for line in dpkg_query(["-W", "-f", FIELDS]).stdout.splitlines()]
    assert len(rows) == len(db.packages)
    for row in rows:
        pkg = db.package(row[1], row[2])
        assert pkg is not None, row
        got = [
            pkg.binary_package,
            pkg.name,
            pkg.arch,
            pkg.version,
            " ".join(pkg.status),
            "yes" if pkg.essential else "no",
            "yes" if pkg.protected else "no",
            pkg.priority or "",
            pkg.section or "",
            pkg.source,
            pkg.source_version,
            pkg.multi_arch,
            "" if pkg.installed_size is None else str(pkg.installed_size),
        ]
        assert got == row[:13]
        relations = [pkg.depends, pkg.pre_depends, pkg.recommends, pkg.suggests, pkg.provides]
        assert relations == [parse_relations(text) for text in row[13:]], pkg.key
    gcc = db.package("gcc")
    if gcc is not None:  # apt.md §9's example of a Source with its own version
        assert (gcc.source, gcc.source_version) != (gcc.name, gcc.version)


def test_package_lookup(db: DpkgDatabase) -> None:
    libc = db.package("libc6")
    assert libc is not None and libc.arch == db.native_arch == "amd64"
    assert db.package("libc6:amd64") is libc is db.package("libc6", "amd64")
    assert libc.key == "libc6:amd64" and libc.binary_package == "libc6:amd64"
    assert db.package("libc6", "s390x") is None and db.package("no-such-package") is None
    bash = db.package("bash")
    assert bash is not None and bash.key == "bash:amd64" and bash.binary_package == "bash"


# --- hand-made roots ----------------------------------------------------------------

STANZA = (
    "Package: {name}\nStatus: {status}\nPriority: optional\nSection: misc\n"
    "Installed-Size: 1\nMaintainer: m <m@example.org>\nArchitecture: {arch}\n{extra}"
    "Version: 1.0\nDescription: d\n"
)


def _status(name: str, arch: str, status: str = "install ok installed", extra: str = "") -> str:
    return STANZA.format(name=name, arch=arch, status=status, extra=extra)


PACKAGES = [
    ("dpkg", "amd64", "install ok installed", "", ["/usr/bin/dpkg"]),
    ("alpha", "amd64", "install ok installed", "",
     ["/usr/bin/alpha", "/bin/alpha-old", "/etc/shared.conf"]),
    ("libbeta", "amd64", "install ok installed", "Multi-Arch: same\n",
     ["/lib/x86_64-linux-gnu/libbeta.so.1", "/usr/share/doc/libbeta/copyright"]),
    ("libbeta", "i386", "install ok installed", "Multi-Arch: same\n",
     ["/lib/i386-linux-gnu/libbeta.so.1", "/usr/share/doc/libbeta/copyright"]),
    ("gamma", "all", "install ok installed", "", ["/usr/bin/tool", "/usr/share/thing"]),
    ("delta", "amd64", "install ok installed", "", ["/usr/bin/tool", "/usr/bin/delta"]),
    ("epsilon", "all", "install ok installed", "", ["/etc/shared.conf"]),
    ("zeta", "amd64", "install ok installed", "", ["/usr/bin/zeta"]),
    ("eta", "amd64", "install ok installed", "", ["/usr/bin/x"]),
    ("cfg", "amd64", "deinstall ok config-files", "Config-Version: 1.0\n", ["/etc/cfg.conf"]),
    ("gone", "amd64", "purge ok not-installed", "", ["/usr/bin/gone"]),
    ("nolist", "amd64", "install ok installed", "", None),
    ("foreign", "i386", "install ok installed", "", ["/usr/bin/foreign-tool"]),
]  # fmt: skip
DIVERSIONS = (
    "/usr/bin/tool\n/usr/bin/tool.gamma\ndelta\n"
    "/usr/share/thing\n/usr/share/thing.orig\n:\n"
    "/usr/bin/x\n/usr/bin/x.real\nzeta\n"
)


def _parents(path: str) -> list[str]:
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def make_root(top: Path, *, merged_usr: bool, broken: bool = False) -> Path:
    """A root with a real-format dpkg database; returns its admindir on the host."""
    for d in ("usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "etc"):
        (top / d).mkdir(parents=True, exist_ok=True)
    for alias in ("bin", "sbin", "lib", "lib64"):
        if merged_usr:
            os.symlink(f"usr/{alias}", top / alias)
        else:
            (top / alias).mkdir()
    admin = top / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "info/format").write_text("1\n")
    (admin / "diversions").write_text(DIVERSIONS)
    stanzas = []
    for name, arch, status, extra, files in PACKAGES:
        stanzas.append(_status(name, arch, status, extra))
        if files is None:
            continue
        entries = ["/."]
        for f in files:
            entries += [p for p in _parents(f) if p not in entries] + [f]
        stem = f"{name}:{arch}" if "Multi-Arch: same" in extra else name
        (admin / "info" / f"{stem}.list").write_text("\n".join(entries) + "\n")
    if broken:
        stanzas.insert(2, "Package: broken\nStatus: install ok installed\nno colon here\n")
    (admin / "status").write_text("\n".join(stanzas))
    # Some real files, and links a loader or a user would go through.
    lib = top / ("usr/lib" if merged_usr else "lib") / "x86_64-linux-gnu"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "libbeta.so.1").write_bytes(b"\x7fELF")
    os.symlink("libbeta.so.1", lib / "libbeta.so")
    (top / "usr/bin/alpha").write_text("#!/bin/sh\n")
    os.symlink("/usr/bin/alpha", top / "usr/bin/editor")
    return admin


QUERIES = [
    "/usr/bin/dpkg",
    "/usr/bin/alpha",
    "/bin/alpha-old",
    "/etc/shared.conf",
    "/lib/x86_64-linux-gnu/libbeta.so.1",
    "/lib/i386-linux-gnu/libbeta.so.1",
    "/usr/share/doc/libbeta/copyright",
    "/usr/bin/delta",
    "/usr/bin/zeta",
    "/etc/cfg.conf",  # config-files packages keep their conffiles
    "/usr/bin/gone",  # not-installed: its stale list is ignored
    "/usr/bin/foreign-tool",
]


@pytest.fixture(params=[True, False], ids=["merged-usr", "real-lib"])
def hand(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[DpkgDatabase, str, bool]:
    admin = make_root(tmp_path, merged_usr=request.param)
    return load_dpkg_database(Root(str(tmp_path))), str(admin), request.param


def test_hand_root_matches_dpkg_query(hand: tuple[DpkgDatabase, str, bool]) -> None:
    db, admin, _ = hand
    expected = search(QUERIES, admin)
    assert "/usr/bin/gone" not in expected and "/etc/cfg.conf" in expected
    assert {q: set(db.owners(q)) for q in QUERIES} == {q: expected.get(q, set()) for q in QUERIES}
    assert expected["/usr/bin/foreign-tool"] == {"foreign:i386"}  # dpkg's name for it
    assert expected["/usr/share/doc/libbeta/copyright"] == {"libbeta:amd64", "libbeta:i386"}
    installed = dpkg_query(["-W", "-f", "${db:Status-Abbrev} ${binary:Package}\\n"], admin)
    assert {p.binary_package for p in db.installed} == {
        line[4:] for line in installed.stdout.splitlines() if line[1] not in "nc"
    }


def test_hand_root_diversions(hand: tuple[DpkgDatabase, str, bool]) -> None:
    db, admin, _ = hand
    # What dpkg-query says, to show what the inversion changes.
    assert search(["/usr/bin/tool"], admin) == {"/usr/bin/tool": {"gamma", "delta"}}
    assert search(["/usr/bin/tool.gamma", "/usr/share/thing.orig", "/usr/bin/x.real"], admin) == {}
    assert raw_search("/usr/share/thing.orig", admin)[0].startswith("local diversion from")
    assert search(["/usr/share/thing", "/usr/bin/x"], admin) == {
        "/usr/share/thing": {"gamma"},
        "/usr/bin/x": {"eta"},
    }
    # The inversion rule (apt.md §9).
    assert db.owners("/usr/bin/tool") == ("delta",)  # the diverter ships it
    assert db.owners("/usr/bin/tool.gamma") == ("gamma",)
    assert db.owners("/usr/share/thing") == ()  # local diversion: the admin's file
    assert db.owners("/usr/share/thing.orig") == ("gamma",)
    assert db.owners("/usr/bin/x") == ()  # zeta diverts it but ships no /usr/bin/x
    assert db.owners("/usr/bin/x.real") == ("eta",)
    assert [(d.path, d.diverted_to, d.by) for d in db.diversions] == [
        ("/usr/bin/tool", "/usr/bin/tool.gamma", "delta"),
        ("/usr/share/thing", "/usr/share/thing.orig", None),
        ("/usr/bin/x", "/usr/bin/x.real", "zeta"),
    ]


def test_hand_root_usr_merge(hand: tuple[DpkgDatabase, str, bool]) -> None:
    db, admin, merged_usr = hand
    beta = "/usr/lib/x86_64-linux-gnu/libbeta.so.1"
    assert search([beta], admin) == {}  # dpkg-query never maps aliases
    if merged_usr:
        assert db.aliases == ("/bin", "/sbin", "/lib", "/lib64")
        assert db.owners(beta) == ("libbeta:amd64",)
        assert db.owners("/usr/bin/alpha-old") == ("alpha",)
        assert db.owners_of_file("/usr/lib/x86_64-linux-gnu/libbeta.so") == ("libbeta:amd64",)
    else:  # /lib is a real directory: /usr/lib/... is another file, owned by nobody
        assert db.aliases == ()
        assert db.owners(beta) == ()
        assert db.owners_of_file("/lib/x86_64-linux-gnu/libbeta.so") == ("libbeta:amd64",)
    assert db.owners("/usr/bin/editor") == ()
    assert db.owners_of_file("/usr/bin/editor") == ("alpha",)  # link followed in the root
    assert db.owners("//usr/bin//alpha/") == db.owners("/usr/./bin/alpha") == ("alpha",)


def test_hand_root_warnings(hand: tuple[DpkgDatabase, str, bool]) -> None:
    db, admin, _ = hand
    # dpkg warns about the same missing list (it knows nolist was configured).
    stderr = dpkg_query(["--search", "--", "/usr/bin/alpha"], admin).stderr
    assert "files list file for package 'nolist' missing" in stderr
    assert db.warnings == (
        f"{admin}/info/nolist.list: missing file list of installed package nolist;"
        " it is taken to own no files",
    )
    assert db.native_arch == "amd64"
    assert db.package("libbeta") is db.package("libbeta", "amd64")
    cfg = db.package("cfg")
    assert cfg is not None and not cfg.installed and db.package("libbeta:i386") is not None


def test_broken_stanza_and_unreadable_list(tmp_path: Path) -> None:
    admin = make_root(tmp_path, merged_usr=True, broken=True)
    assert dpkg_query(["-W"], str(admin)).returncode == 2  # dpkg gives up on the file
    (admin / "info/eta.list").unlink()
    (admin / "info/eta.list").mkdir()  # exists, but cannot be read as a list
    db = load_dpkg_database(Root(str(tmp_path)))
    status = f"{admin}/status"
    assert any(w.startswith(f"{status}:") and "no colon here" in w for w in db.warnings)
    assert db.package("broken") is None and db.package("zeta") is not None
    assert db.owners("/usr/bin/x.real") == ()  # eta's list is unreadable
    assert db.owners("/usr/bin/alpha") == ("alpha",)
    assert [w.split(":")[0] for w in db.files.warnings] == [f"{admin}/info/eta.list"]
    with pytest.raises(DpkgError, match="no colon here"):
        load_dpkg_database(Root(str(tmp_path)), strict=True)


def test_missing_database(tmp_path: Path) -> None:
    with pytest.raises(DpkgError, match="no dpkg status file"):
        load_dpkg_database(Root(str(tmp_path)))
