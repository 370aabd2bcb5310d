"""Run-time needs that DT_NEEDED does not show (issue #5), against this machine's oracles.

``.note.dlopen`` entries, script interpreters, NSS modules, libc's own dlopen of
libgcc_s, the plan warnings about Recommends and CA certificates, and user
hints.  Every expected package is derived, never written down: ``ldconfig -p``
says which file a SONAME names, ``ldd`` which libraries a program loads,
``dpkg-query --search`` who owns a file (``--admindir`` for a test root),
``readelf`` that a compiled note is what UAPI.12 describes, and python-apt (in a
child interpreter, nothing committed) which packages apt would purge.  depmin
runs as a subprocess, as a user runs it; nothing on this machine is changed.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from depmin.api import find_needs
from depmin.loader.dlopen import NOTE_OWNER, NOTE_TYPE, dlopen_entries, glibc_version, nss_modules
from depmin.loader.elf import read_elf_fd
from depmin.loader.needs import DEFAULT_PATH
from depmin.loader.resolve import LoaderSettings
from depmin.rootfs import Root
from tests.oracles import gcc, ldd_order

REPO = Path(__file__).resolve().parent.parent
ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
TOOLS = ("gcc", "readelf", "ldd", "ldconfig", "dpkg-query")
TRIPLET = "x86_64-linux-gnu"
pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64"
    or not os.path.exists(f"/lib/{TRIPLET}/libc.so.6")
    or any(shutil.which(t, path=ENV["PATH"]) is None for t in TOOLS),
    reason=f"needs a Debian amd64 host with {', '.join(TOOLS)}",
)

ZLIB, BZ2, LZMA = "libz.so.1", "libbz2.so.1.0", "liblzma.so.5"
ABSENT = "libdepmin-absent.so.9"  # checked absent from ldconfig -p below
NO_RECOMMENDS = "APT::AutoRemove::RecommendsImportant=false"
C_MAIN = "int main(void) { return 0; }\n"


# -- oracles ------------------------------------------------------------------------------


def run(argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, env=ENV, **kw)


def depmin(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m depmin ARGS`` from the repository, in the C locale."""
    return run([sys.executable, "-m", "depmin", *args], cwd=REPO)


def keep_all(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    proc = depmin("keep", "--all", *args)
    return set(proc.stdout.split()), proc


def ldconfig_paths() -> dict[str, str]:
    """SONAME -> path of this machine's cache entries for the native (x86-64) ABI."""
    out = run(["ldconfig", "-p"]).stdout
    found: dict[str, str] = {}
    for m in re.finditer(r"^\s+(\S+) \(libc6,x86-64[^)]*\) => (\S+)$", out, re.M):
        found.setdefault(m.group(1), m.group(2))
    return found


def ldd_paths(path: str) -> list[str]:
    """Paths the real loader opens for ``path`` (vdso aside); fails on a "not found"."""
    out = run(["ldd", path]).stdout
    assert "not found" not in out, out
    paths = []
    for line in out.splitlines():
        m = re.match(r"\s+(?:\S+ => )?(/\S+) \(0x", line)
        if m:
            paths.append(m.group(1))
    return paths


def _twins(path: str) -> list[str]:
    """``path`` and its merged-/usr spelling, where this host aliases the directory."""
    out = [path]
    for a in ("/bin", "/sbin", "/lib", "/lib64"):
        if os.path.islink(a) and os.path.realpath(a) == "/usr" + a:
            if path.startswith(a + "/"):
                out.append("/usr" + path)
            elif path.startswith("/usr" + a + "/"):
                out.append(path[len("/usr") :])
    return out


def owners(paths: Iterable[str], admindir: str | None = None) -> set[str]:
    """Owners ``dpkg-query --search`` prints for files, as opened and canonical.

    On the host each path is asked in both merged-/usr spellings (dpkg knows only
    the one the package shipped); ``diversion by`` lines name no owner.
    """
    queries: set[str] = set()
    for p in paths:
        if admindir is None:
            queries.update(_twins(p))
            queries.update(_twins(os.path.realpath(p)))
        else:
            queries.add(p)
    extra = [f"--admindir={admindir}"] if admindir else []
    out = run(["dpkg-query", *extra, "--search", "--", *sorted(queries)]).stdout
    found: set[str] = set()
    for m in re.finditer(r"^(?!diversion by )(.+?): (/.*)$", out, re.M):
        found.update(o.strip() for o in m.group(1).split(","))
    return found


def installed(package: str) -> bool:
    status = run(["dpkg-query", "-W", "-f", "${Status}", package]).stdout
    return status == "install ok installed"


def program_owners(path: str) -> set[str]:
    """Owners of a program and of every library the real loader opens for it."""
    return owners([path, *ldd_paths(os.path.realpath(path))])


def library_owners(path: str) -> set[str]:
    """Owners of a library and of everything it loads (ldd also runs on libraries)."""
    return owners([path, *ldd_paths(path)])


@pytest.fixture(scope="module")
def libs() -> dict[str, str]:
    found = ldconfig_paths()
    missing = [n for n in (ZLIB, BZ2, LZMA, "libgcc_s.so.1") if n not in found]
    if missing:
        pytest.skip(f"this machine's ld.so.cache lacks {missing}")
    assert ABSENT not in found
    return found


# -- fixtures built here ----------------------------------------------------------------


def note_source(*payloads: str) -> str:
    """A C program with one FDO/0x407c0c0a note per payload in ``.note.dlopen`` (UAPI.12)."""
    lines = []
    for i, text in enumerate(payloads):
        lit = json.dumps(text)  # ASCII JSON text: a valid C string literal too
        lines += [
            f"#define DESC{i} {lit}",
            '__attribute__((section(".note.dlopen"), used, aligned(4)))'
            f" static const struct {{ unsigned int n_namesz, n_descsz, n_type; char name[4];"
            f" char desc[(sizeof(DESC{i}) + 3) & ~3]; }} note{i} ="
            f' {{ 4, sizeof(DESC{i}), {NOTE_TYPE:#x}, "{NOTE_OWNER}", DESC{i} }};',
        ]
    return "\n".join(lines) + "\n" + C_MAIN


def note_tree(top: Path, *entries: Any) -> Path:
    """``top/bin/prog`` with each entry (JSON-able, or raw text) as its own note."""
    payloads = [e if isinstance(e, str) else json.dumps(e) for e in entries]
    gcc(top / "bin" / "prog", note_source(*payloads))
    return top / "bin" / "prog"


def script(path: Path, text: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def ldd_json(*args: str) -> dict[str, Any]:
    proc = depmin("ldd", "--json", *args)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data["files"][0]  # type: ignore[no-any-return]


def requests_of(result: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in result["requests"] if r["kind"] == kind]


# -- .note.dlopen -----------------------------------------------------------------------


def test_note_lands_in_pt_note(tmp_path: Path) -> None:
    entry = [{"soname": [ZLIB], "priority": "required", "feature": "z"}]
    prog = note_tree(tmp_path, entry)
    text = json.dumps(entry)
    notes = run(["readelf", "-nW", str(prog)]).stdout
    m = re.search(r"^\s+FDO\s+0x([0-9a-f]+)\s+.*\(0x407c0c0a\)", notes, re.M)
    assert m, notes
    assert int(m.group(1), 16) == len(text) + 1  # n_descsz counts the NUL
    segments = run(["readelf", "-lW", str(prog)]).stdout
    assert re.search(r"^\s+NOTE\s", segments, re.M)
    fd = os.open(prog, os.O_RDONLY)
    try:
        elf = read_elf_fd(fd, str(prog))  # reads PT_NOTE segments only, never sections
    finally:
        os.close(fd)
    (note,) = elf.notes_of(NOTE_OWNER, NOTE_TYPE)
    assert note.desc == text.encode() + b"\0"
    entries, problems = dlopen_entries(elf)
    assert problems == ()
    assert [(e.sonames, e.priority, e.feature) for e in entries] == [((ZLIB,), "required", "z")]


def test_required_entry_kept_suggested_reported(tmp_path: Path, libs: dict[str, str]) -> None:
    prog = note_tree(
        tmp_path / "tree",
        [
            {"soname": [ZLIB], "priority": "required", "feature": "z"},
            {"soname": [LZMA], "priority": "suggested", "description": "xz"},
        ],
    )
    linked = ldd_paths(str(prog))
    assert not {libs[ZLIB], libs[LZMA]} & set(linked)  # nothing links either library
    zlib_pkgs, lzma_pkgs = library_owners(libs[ZLIB]), owners([libs[LZMA]])
    expected = program_owners(str(prog)) | zlib_pkgs
    assert not lzma_pkgs & expected
    got, proc = keep_all("--no-glibc-dlopens", str(tmp_path / "tree"))
    assert proc.returncode == 0, proc.stderr
    assert got == expected
    report = f"{prog} suggests dlopen of {LZMA} (found at {libs[LZMA]}); not kept"
    assert report in depmin("keep", "--no-glibc-dlopens", str(tmp_path / "tree")).stderr
    plan = _plan("--no-glibc-dlopens", str(tmp_path / "tree"))
    assert report in plan["warnings"]
    assert not lzma_pkgs & {r["package"] for r in plan["required"]}

    (zpkg,) = owners([libs[ZLIB]])
    why = depmin("why", zpkg, "--no-glibc-dlopens", str(tmp_path / "tree"))
    assert why.returncode == 0, why.stderr
    assert f"required .note.dlopen entry of {prog}" in why.stdout
    why_lib = depmin("why", ZLIB, "--no-glibc-dlopens", str(tmp_path / "tree")).stdout
    assert f"required .note.dlopen entry of {prog}" in why_lib

    tree = depmin("ldd", "--dlopen", "--tree", str(prog)).stdout
    assert f"{ZLIB} (dlopen-required) => {libs[ZLIB]} [cache]" in tree
    assert f"{LZMA} (dlopen-suggested) => {libs[LZMA]} [reported, not loaded]" in tree


def test_old_single_object_form(tmp_path: Path, libs: dict[str, str]) -> None:
    prog = note_tree(tmp_path / "tree", {"soname": ZLIB})
    got, proc = keep_all("--no-glibc-dlopens", str(tmp_path / "tree"))
    assert proc.returncode == 0, proc.stderr
    assert got == program_owners(str(prog)) | library_owners(libs[ZLIB])
    (req,) = requests_of(ldd_json("--dlopen", str(prog)), "dlopen-recommended")
    assert (req["name"], req["outcome"], req["step"]) == (ZLIB, "found", "cache")


def test_soname_preference_list(tmp_path: Path, libs: dict[str, str]) -> None:
    """The first available name is used: a missing first choice is no failure."""
    prog = note_tree(tmp_path / "a", {"soname": [ABSENT, BZ2], "priority": "required"})
    got, proc = keep_all("--no-glibc-dlopens", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr
    assert got == program_owners(str(prog)) | library_owners(libs[BZ2])
    reqs = requests_of(ldd_json("--dlopen", str(prog)), "dlopen-required")
    assert [(r["name"], r["outcome"]) for r in reqs] == [(BZ2, "found")]
    # Both present: only the first is loaded.
    prog2 = note_tree(tmp_path / "b", {"soname": [BZ2, ZLIB], "priority": "required"})
    got2, _ = keep_all("--no-glibc-dlopens", str(tmp_path / "b"))
    assert got2 == program_owners(str(prog2)) | library_owners(libs[BZ2])
    assert not owners([libs[ZLIB]]) & got2


def test_required_entry_missing_fails(tmp_path: Path, libs: dict[str, str]) -> None:
    prog = note_tree(tmp_path / "tree", {"soname": [ABSENT], "priority": "required"})
    got, proc = keep_all("--no-glibc-dlopens", str(tmp_path / "tree"))
    assert proc.returncode == 1
    assert f"{prog}: {ABSENT} [dlopen-required] not found" in proc.stderr
    assert depmin("ldd", "--dlopen", str(prog)).returncode == 1
    assert depmin("ldd", str(prog)).returncode == 0  # start-up alone does not need it
    allowed, proc2 = keep_all("--no-glibc-dlopens", "--allow-missing", str(tmp_path / "tree"))
    assert proc2.returncode == 0
    assert allowed == program_owners(str(prog))


def test_recommended_entry_missing_warns(tmp_path: Path, libs: dict[str, str]) -> None:
    prog = note_tree(tmp_path / "tree", {"soname": [ABSENT], "priority": "recommended"})
    got, proc = keep_all("--no-glibc-dlopens", str(tmp_path / "tree"))
    assert proc.returncode == 0, proc.stderr
    assert f"{prog}: {prog} may dlopen {ABSENT} (dlopen-recommended), not found" in proc.stderr
    assert got == program_owners(str(prog))


def test_drop_recommended_dlopen(tmp_path: Path, libs: dict[str, str]) -> None:
    prog = note_tree(
        tmp_path / "tree",
        {"soname": [ZLIB], "priority": "recommended"},
        {"soname": [BZ2], "priority": "required"},
    )
    base = program_owners(str(prog)) | library_owners(libs[BZ2])
    assert not owners([libs[ZLIB]]) & base
    got, proc = keep_all("--no-glibc-dlopens", str(tmp_path / "tree"))
    assert proc.returncode == 0, proc.stderr
    assert got == base | library_owners(libs[ZLIB])
    dropped, proc2 = keep_all(
        "--no-glibc-dlopens", "--drop-recommended-dlopen", str(tmp_path / "tree")
    )
    assert proc2.returncode == 0, proc2.stderr
    assert dropped == base
    minimal = depmin("keep", "--no-glibc-dlopens", "--drop-recommended-dlopen", str(prog.parent))
    assert f"dlopen of {ZLIB} (found at {libs[ZLIB]}); not kept" in minimal.stderr


def test_malformed_note_reported_and_ignored(tmp_path: Path, libs: dict[str, str]) -> None:
    prog = note_tree(
        tmp_path / "tree",
        '[{"soname": ["libz.so.1"], "priority": "required"',  # cut short
        [{"soname": 5, "priority": "required"}],  # valid JSON, no soname list
        {"soname": [BZ2], "priority": "required"},  # a good note beside them still counts
    )
    got, proc = keep_all("--no-glibc-dlopens", str(tmp_path / "tree"))
    assert proc.returncode == 0, proc.stderr
    assert got == program_owners(str(prog)) | library_owners(libs[BZ2])
    assert f"{prog}: .note.dlopen is not valid JSON" in proc.stderr
    assert f"{prog}: .note.dlopen entry without a soname list" in proc.stderr
    assert "dlopen note ignored" in proc.stderr


# -- libgcc_s, dlopened by libc itself --------------------------------------------------


def _tree_parent(lines: list[str], at: int) -> str:
    """The entry under which line ``at`` of ``depmin ldd --tree`` hangs (its requester)."""

    def split(line: str) -> tuple[int, str]:
        m = re.match(r"^((?:[│ ] {3})*)[├└]── (.*)$", line)
        return (len(m.group(1)), m.group(2)) if m else (-4, line)

    depth = split(lines[at])[0]
    return next(t for d, t in map(split, reversed(lines[:at])) if d == depth - 4)


def test_libgcc_s_is_a_dlopen_of_libc(tmp_path: Path, libs: dict[str, str]) -> None:
    prog = gcc(tmp_path / "tree" / "bin" / "prog", C_MAIN)
    gcc_s = libs["libgcc_s.so.1"]
    assert gcc_s not in ldd_paths(str(prog))
    plain = depmin("ldd", str(prog))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == ldd_order(str(prog))  # exactly what ldd prints

    tree = depmin("ldd", "--dlopen", "--tree", str(prog)).stdout.splitlines()
    (at,) = [i for i, line in enumerate(tree) if "libgcc_s.so.1 (glibc-dlopen)" in line]
    assert tree[at].endswith(f"libgcc_s.so.1 (glibc-dlopen) => {gcc_s} [cache]")
    assert _tree_parent(tree, at).startswith("libc.so.6 => ")
    result = ldd_json("--dlopen", str(prog))
    (req,) = requests_of(result, "glibc-dlopen")
    assert result["objects"][req["requester"]]["soname"] == "libc.so.6"
    assert result["objects"][req["target"]]["loader"] is None  # dlopened: no loader

    got, _ = keep_all(str(tmp_path / "tree"))
    without, _ = keep_all("--no-glibc-dlopens", str(tmp_path / "tree"))
    gcc_pkgs = owners([gcc_s])
    assert gcc_pkgs <= got
    assert without == program_owners(str(prog))
    assert not gcc_pkgs & without


# -- scripts ------------------------------------------------------------------------------


def _interpreter_owners(*interpreters: str) -> set[str]:
    out: set[str] = set()
    for i in interpreters:
        out |= program_owners(i)
    return out


def test_script_interpreters_map_to_packages(tmp_path: Path) -> None:
    python3 = shutil.which("python3", path=DEFAULT_PATH)
    if not (python3 and os.path.exists("/usr/bin/perl")):
        pytest.skip("needs perl and a python3 on Docker's default PATH")
    tree = tmp_path / "tree"
    script(tree / "bin" / "a", "#!/usr/bin/perl\nprint 1;\n")
    script(tree / "bin" / "b", "#!/bin/sh\necho\n")
    script(tree / "bin" / "c", "#!/usr/bin/env python3\nprint()\n")
    got, proc = keep_all("--no-glibc-dlopens", str(tree))
    assert proc.returncode == 0, proc.stderr
    expected = _interpreter_owners("/usr/bin/perl", "/bin/sh", "/usr/bin/env", python3)
    assert got == expected
    # Spelled out for the reader: the real owners of the interpreters themselves.
    assert owners(["/usr/bin/perl"]) | owners(["/bin/sh"]) <= got
    assert owners([os.path.realpath(python3)]) <= got


def test_missing_interpreter_fails(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    a = script(tree / "bin" / "a", "#!/usr/bin/depmin-absent-interp\n")
    b = script(tree / "bin" / "b", "#!/usr/bin/env depmin-absent-tool -x\n")
    _, proc = keep_all(str(tree))
    assert proc.returncode == 1
    assert f"{a}: /usr/bin/depmin-absent-interp [interpreter] not found" in proc.stderr
    assert f"{b}: depmin-absent-tool [interpreter] not found" in proc.stderr


def test_image_path_is_where_env_looks(tmp_path: Path) -> None:
    bzip2 = shutil.which("bzip2", path=ENV["PATH"])
    if bzip2 is None:
        pytest.skip("needs bzip2")
    path_dir = tmp_path / "image-bin"
    path_dir.mkdir()
    (path_dir / "depmin-test-tool").symlink_to(os.path.realpath(bzip2))
    tree = tmp_path / "tree"
    s = script(tree / "bin" / "s", "#!/usr/bin/env depmin-test-tool\n")
    _, proc = keep_all("--no-glibc-dlopens", str(tree))
    assert proc.returncode == 1
    assert f"{s}: depmin-test-tool [interpreter] not found" in proc.stderr
    got, proc2 = keep_all("--no-glibc-dlopens", "--image-path", str(path_dir), str(tree))
    assert proc2.returncode == 0, proc2.stderr
    assert got == _interpreter_owners("/usr/bin/env", bzip2)


def test_0644_file_with_shebang_is_no_script(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    f = script(tree / "bin" / "y", "#!/usr/bin/depmin-absent-interp\n", mode=0o644)
    got, proc = keep_all(str(tree))
    assert (proc.returncode, got) == (0, set()), proc.stderr
    f.chmod(0o755)  # the same file, executable: now its interpreter is needed
    assert keep_all(str(tree))[1].returncode == 1


# -- NSS modules, in a test root ----------------------------------------------------------


NSSWITCH = """\
# depmin test root
passwd:   files systemd
group:    files [SUCCESS=merge] systemd
hosts:    files [NOTFOUND=return] dns depminabsent
netgroup: nis
"""


def _stanza(package: str) -> str:
    """The host's status stanza of a package, as ``dpkg-query --status`` prints it."""
    text = run(["dpkg-query", "--status", package], check=True).stdout
    return text.rstrip("\n") + "\n"


@pytest.fixture(scope="module")
def nss_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding libc, ld.so, libgcc_s, libnss_systemd (and what it loads), a program.

    The dpkg database is real-format: the host's own status stanzas of the owners
    and ``.list`` files naming the copied files.  /lib is a real directory here.
    """
    module = f"/lib/{TRIPLET}/libnss_systemd.so.2"
    if not os.path.exists(module):
        pytest.skip("libnss_systemd.so.2 is not installed (libnss-systemd)")
    root = tmp_path_factory.mktemp("nss") / "root"
    wanted = [f"/lib/{TRIPLET}/libc.so.6", f"/lib/{TRIPLET}/libgcc_s.so.1", module]
    wanted += ldd_paths(module)
    wanted += [f"/lib/{TRIPLET}/{m}" for m in ("libnss_files.so.2", "libnss_dns.so.2")]
    by_pkg: dict[str, list[str]] = {}
    for host in dict.fromkeys(wanted):
        if not os.path.exists(host):
            continue  # glibc without the compatibility stubs
        inside = host if host.startswith("/lib64/") else f"/lib/{TRIPLET}/{os.path.basename(host)}"
        dest = root / inside.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.realpath(host), dest)
        dest.chmod(0o755)
        (pkg,) = owners([host])
        by_pkg.setdefault(pkg, []).append(inside)
    gcc(root / "usr" / "local" / "bin" / "prog", C_MAIN)
    (root / "etc").mkdir()
    (root / "etc" / "nsswitch.conf").write_text(NSSWITCH)
    admin = root / "var" / "lib" / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "info" / "format").write_text("1\n")
    (admin / "status").write_text("\n".join(_stanza(p) for p in sorted(by_pkg)))
    for pkg, files in by_pkg.items():
        stanza = _stanza(pkg)
        same = re.search(r"^Multi-Arch: same$", stanza, re.M) is not None
        name = pkg if same or ":" not in pkg else pkg.split(":")[0]
        dirs = sorted({str(d) for f in files for d in Path(f).parents if str(d) != "/"})
        (admin / "info" / f"{name}.list").write_text("\n".join(["/.", *dirs, *files]) + "\n")
    return root


def test_nss_module_leads_to_its_package(nss_root: Path) -> None:
    admindir = str(nss_root / "var" / "lib" / "dpkg")
    module = f"/lib/{TRIPLET}/libnss_systemd.so.2"
    result = ldd_json("--dlopen", "--root", str(nss_root), "/usr/local/bin/prog")
    nss = {r["name"]: r for r in requests_of(result, "nss")}
    # files and dns are built into glibc >= 2.34; [ACTION]s are no services.
    assert set(nss) == {"libnss_systemd.so.2", "libnss_depminabsent.so.2", "libnss_nis.so.2"}
    assert nss["libnss_systemd.so.2"]["outcome"] == "found"
    assert result["objects"][nss["libnss_systemd.so.2"]["target"]]["path"] == module
    assert nss["libnss_depminabsent.so.2"]["outcome"] == "ignored"
    loaded = [o["path"] for o in result["objects"]]
    assert not any("libnss_files" in p or "libnss_dns" in p for p in loaded)

    got, proc = keep_all("--root", str(nss_root), "/usr/local")
    assert proc.returncode == 0, proc.stderr
    listed = [p for p in loaded if p != "/usr/local/bin/prog"]
    assert got == owners(listed, admindir)
    assert owners([module], admindir) <= got
    assert "may dlopen libnss_depminabsent.so.2 (nss), not found" in proc.stderr
    assert "libnss_nis.so.2" not in proc.stderr  # Debian's template names it: quiet
    without, _ = keep_all("--no-glibc-dlopens", "--root", str(nss_root), "/usr/local")
    assert not owners([module], admindir) & without


def test_nss_modules_setting_overrides_nsswitch(nss_root: Path) -> None:
    root = Root(str(nss_root))
    settings = LoaderSettings(glibc_dlopens=True, nss_modules=("libnss_depminabsent.so.2",))
    analysis = find_needs(root, ["/usr/local"], settings=settings)
    paths = {lib.path: lib.how for lib in analysis.libraries}
    assert f"/lib/{TRIPLET}/libnss_systemd.so.2" not in paths
    assert paths[f"/lib/{TRIPLET}/libgcc_s.so.1"] == "glibc-dlopen"
    assert any("libnss_depminabsent.so.2 (nss), not found" in w for w in analysis.warnings)
    analysis = find_needs(root, ["/usr/local"], settings=LoaderSettings(glibc_dlopens=True))
    paths = {lib.path: lib.how for lib in analysis.libraries}
    assert paths[f"/lib/{TRIPLET}/libnss_systemd.so.2"] == "nss"


def test_builtin_nss_services_follow_the_roots_glibc(nss_root: Path) -> None:
    m = re.match(r"glibc (\d+)\.(\d+)", run(["getconf", "GNU_LIBC_VERSION"]).stdout)
    assert m
    root = Root(str(nss_root))
    version = glibc_version(root, (TRIPLET,))
    assert version == (int(m.group(1)), int(m.group(2)))
    old = ("libnss_files.so.2", "libnss_dns.so.2")
    assert not set(old) & set(nss_modules(root, version))
    assert set(old) <= set(nss_modules(root, (2, 31)))  # modules before 2.34
    # A root with an older libc (only its version string matters here).
    other = nss_root.parent / "old"
    (other / "etc").mkdir(parents=True, exist_ok=True)
    (other / "etc" / "nsswitch.conf").write_text(NSSWITCH)
    libc = other / "lib" / TRIPLET / "libc.so.6"
    libc.parent.mkdir(parents=True, exist_ok=True)
    libc.write_bytes(b"\x7fELF GNU C Library (Debian GLIBC 2.31-13) stable release version 2.31.")
    old_root = Root(str(other))
    assert glibc_version(old_root, (TRIPLET,)) == (2, 31)
    assert nss_modules(old_root, (2, 31))[:3] == (
        "libnss_files.so.2", "libnss_systemd.so.2", "libnss_dns.so.2"
    )  # fmt: skip


# -- plan warnings: Recommends purged, CA certificates ---------------------------------------


def _apt_garbage(plan: dict[str, Any], overrides: Sequence[str]) -> set[str]:
    """What apt itself (python-apt, in memory) purges when only the plan's marks are manual."""
    from depmin.debian.aptbridge import garbage_with_apt

    manual = list(plan["keep"]) + list(plan["baseline"])
    return {n.split(":")[0] for n in garbage_with_apt(Root("/"), manual, overrides)}


@pytest.fixture(scope="module")
def need_apt() -> None:
    from depmin.debian.aptbridge import apt_python

    if apt_python() is None:
        pytest.skip("python3-apt (apt_pkg) is not importable by any interpreter here")


def _plan(*args: str) -> dict[str, Any]:
    proc = depmin("plan", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _recommends(package: str) -> list[str]:
    text = run(["dpkg-query", "-W", "-f", "${Recommends}", package], check=True).stdout
    return [alt.split()[0].split(":")[0] for alt in re.split(r"[,|]", text) if alt.strip()]


@pytest.mark.usefixtures("need_apt")
def test_recommends_warning_names_both_packages(tmp_path: Path) -> None:
    if "libldap-2.5.so.0" not in ldconfig_paths():
        pytest.skip("libldap-2.5.so.0 is not installed")
    tree = tmp_path / "tree"
    gcc(tree / "bin" / "ldapprog",
        "int ldap_initialize(void *, const char *);\n"
        "int main(void) { return ldap_initialize(0, 0); }\n", "-l:libldap-2.5.so.0")  # fmt: skip
    (ldap,) = owners([ldconfig_paths()["libldap-2.5.so.0"]])
    ldap_name = ldap.split(":")[0]
    recommended = _recommends(ldap)
    assert "libldap-common" in recommended
    seen_purged = False
    for overrides in ((), (NO_RECOMMENDS,)):
        opts = [a for o in overrides for a in ("-o", o)]
        plan = _plan(*opts, str(tree))
        garbage = _apt_garbage(plan, overrides)
        stderr = depmin("keep", *opts, str(tree)).stderr
        for rec in recommended:
            warning = (
                f"{ldap_name} Recommends {rec}, which would be purged "
                f"(APT::AutoRemove::RecommendsImportant is false); keep it with --keep {rec}"
            )
            warned = any(warning in w for w in plan["warnings"])
            assert warned == (rec in garbage), (overrides, rec)
            assert (warning in stderr) == (rec in garbage)
            seen_purged |= rec == "libldap-common" and rec in garbage
    assert seen_purged


@pytest.mark.usefixtures("need_apt")
def test_tls_client_warns_about_ca_certificates(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    try:
        gcc(tree / "bin" / "sslprog",
            "#include <openssl/ssl.h>\nint main(void) { return OPENSSL_init_ssl(0, 0); }\n",
            "-lssl")  # fmt: skip
    except RuntimeError:
        pytest.skip("cannot link -lssl (libssl-dev)")
    if not installed("ca-certificates"):
        pytest.skip("ca-certificates is not installed")
    warning = (
        "the software links libssl.so.3 and ca-certificates would be purged: "
        "keep it with --keep ca-certificates"
    )
    seen = set()
    for overrides in ((), (NO_RECOMMENDS,)):
        opts = [a for o in overrides for a in ("-o", o)]
        plan = _plan(*opts, str(tree))
        purged = "ca-certificates" in _apt_garbage(plan, overrides)
        assert (warning in plan["warnings"]) == purged, overrides
        assert (warning in depmin("keep", *opts, str(tree)).stderr) == purged
        seen.add(purged)
        kept = _plan(*opts, "--keep", "ca-certificates", str(tree))
        assert warning not in kept["warnings"]
        assert "ca-certificates" not in _apt_garbage(kept, overrides)
    if True not in seen:
        pytest.skip("apt keeps ca-certificates here under both settings")


# -- hints and --keep -----------------------------------------------------------------------


def _module_tree(top: Path) -> Path:
    mod = top / "lib" / "mymod" / "x.py"
    mod.parent.mkdir(parents=True)
    mod.write_text("import ctypes\nctypes.CDLL('libbz2.so.1.0')\n")  # 0644, no #!: a module
    return mod


def test_hint_soname_keeps_its_package(tmp_path: Path, libs: dict[str, str]) -> None:
    mod = _module_tree(tmp_path / "tree")
    hints = tmp_path / "hints"
    hints.write_text(f"# ctypes loads\n*/mymod/*.py soname:{BZ2}\n")
    plain, _ = keep_all("--no-glibc-dlopens", str(tmp_path / "tree"))
    assert plain == set()
    got, proc = keep_all("--no-glibc-dlopens", "--hints", str(hints), str(tmp_path / "tree"))
    assert proc.returncode == 0, proc.stderr
    assert got == library_owners(libs[BZ2])
    (pkg,) = owners([libs[BZ2]])
    why = depmin("why", pkg.split(":")[0], "--hints", str(hints), str(tmp_path / "tree"))
    assert why.returncode == 0, why.stderr
    assert f"declared in the hints file for {mod}" in why.stdout
    assert f"loaded by {mod}" in why.stdout


def test_hint_soname_missing_fails(tmp_path: Path, libs: dict[str, str]) -> None:
    mod = _module_tree(tmp_path / "tree")
    hints = tmp_path / "hints"
    hints.write_text(f"*/mymod/*.py soname:{ABSENT}\n")
    _, proc = keep_all("--hints", str(hints), str(tmp_path / "tree"))
    assert proc.returncode == 1
    assert f"{mod}: {ABSENT} [hint] not found" in proc.stderr


def test_hint_package_and_keep_option(tmp_path: Path) -> None:
    if not installed("ca-certificates"):
        pytest.skip("ca-certificates is not installed")
    tree = tmp_path / "tree"
    mod = _module_tree(tree)
    hints = tmp_path / "hints"
    hints.write_text("*/mymod/*.py package:ca-certificates\n")
    plain, _ = keep_all(str(tree))
    assert "ca-certificates" not in plain
    hinted, proc = keep_all("--hints", str(hints), str(tree))
    assert proc.returncode == 0, proc.stderr
    assert hinted == plain | {"ca-certificates"}
    kept, _ = keep_all("--keep", "ca-certificates", str(tree))
    assert kept == plain | {"ca-certificates"}
    for extra in (["--hints", str(hints)], ["--keep", "ca-certificates"]):
        plan = _plan("-o", NO_RECOMMENDS, *extra, str(tree))
        (entry,) = [r for r in plan["required"] if r["package"] == "ca-certificates"]
        assert entry["purged"] is False
        assert "ca-certificates" in plan["keep"]
        assert "ca-certificates" not in {p["package"] for p in plan["purged"]}
    why = depmin("why", "ca-certificates", "--hints", str(hints), str(tree)).stdout
    assert f"a hints file asks for it (for {mod})" in why
    none = _plan("-o", NO_RECOMMENDS, str(tree))
    assert not [r for r in none["required"] if r["package"] == "ca-certificates"]


@pytest.mark.parametrize(
    "text, line",
    [
        ("# fine\n*/x.py soname:libz.so.1\n*/y.py bogus\n", 3),
        ("*/x.py\n", 1),
        ("*/x.py package:\n", 1),
    ],
)
def test_malformed_hints_file(tmp_path: Path, text: str, line: int) -> None:
    (tmp_path / "tree").mkdir()
    hints = tmp_path / "hints"
    hints.write_text(text)
    proc = depmin("keep", "--hints", str(hints), str(tmp_path / "tree"))
    assert proc.returncode == 3
    assert f"{hints}: line {line}:" in proc.stderr
    assert "Traceback" not in proc.stderr
