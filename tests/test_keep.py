"""``depmin keep`` end to end, against ldd, dpkg-query, apt and the pipelines it replaces.

Issue #3.  Three groups of tests:

* fixture trees built with gcc under tmp_path: 0644 libraries, missing libraries,
  --exclude, awkward file names, libraries found only through a loader's DT_RPATH,
  ET_REL objects, FIFOs and sockets, symlinks leading out of the tree;
* a test root with a real-format dpkg database and diversions, where the owners
  come from apt.md §9's rule applied to what ``dpkg-query --admindir`` prints;
* every pyenv CPython tree of this machine: ``depmin keep --all`` against the
  owners of everything the real ldd resolves, both pipelines of scripts/ beside
  it (docs/pipeline-comparison.md records the table), and the minimal list
  against apt's own autoremove verdict.

Expected answers all come from the oracles at run time; nothing machine-specific
is written down here.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import pytest

from tests.oracles import (
    LDSO,
    chroot_trace,
    dynamic_tags,
    gcc,
    have,
    host_isa_level,
    pyenv_versions,
)
from tests.test_owners_system import (
    Search,
    dpkg_search,
    host_aliases,
    opened_form,
    recorded_owners,
    search_forms,
    twin,
)
from tests.test_pipelines import Run, run_pipeline

REPO = Path(__file__).resolve().parent.parent
_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
TOOLS = ("gcc", "ldd", "dpkg-query", "readelf")
pytestmark = pytest.mark.skipif(
    any(not have(t) for t in TOOLS), reason=f"needs {', '.join(TOOLS)}"
)

C_ZLIB = "#include <zlib.h>\nint main(void) { return zlibVersion()[0] == 0; }\n"
C_ZLIB_LIB = "#include <zlib.h>\nconst char *v(void) { return zlibVersion(); }\n"
C_MISSING = "int missing(void);\nint main(void) { return missing(); }\n"

Arg = Union[str, bytes, Path]


# -- running depmin and the oracles -------------------------------------------------------------


def depmin(*args: Arg) -> subprocess.CompletedProcess[bytes]:
    """``python -m depmin ARGS`` with bytes output, as a user's shell would run it."""
    argv: list[str | bytes] = [a if isinstance(a, (str, bytes)) else str(a) for a in args]
    return subprocess.run(
        [sys.executable, "-m", "depmin", *argv],
        cwd=REPO,
        capture_output=True,
        env=dict(_ENV, PYTHONDONTWRITEBYTECODE="1"),
        timeout=600,
        check=False,
    )


def keep_json(*args: Arg) -> dict[str, Any]:
    """``depmin keep --json ARGS``, which must succeed."""
    proc = depmin("keep", "--json", *args)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def files_of(report: dict[str, Any]) -> dict[str, set[str]]:
    """package -> the scanned files whose load needs it, from a depmin.keep/1 report."""
    return {p["package"]: set(p["files"]) for p in report["packages"]}


def ldd_paths(path: Arg) -> dict[str, str]:
    """soname -> what the real ldd prints after ``=>`` (a path, or ``not``)."""
    out = subprocess.run(
        ["ldd", os.fsencode(path)], capture_output=True, env=_ENV, check=False
    ).stdout.decode("utf-8", "surrogateescape")
    return {m[0]: m[1] for m in re.findall(r"^\s*(\S+) => (\S+)", out, re.M)}


def owners_of(paths: Iterable[str], search: Search | None = None) -> set[str]:
    """dpkg-query's owners of the files ld.so opens at ``paths`` (recorded forms, as depmin)."""
    paths = set(paths)
    aliases = host_aliases()
    real = {p: os.path.realpath(p) for p in paths}
    if search is None:
        search = dpkg_search(
            search_forms(set(real.values()) | {opened_form(p) for p in paths}, aliases)
        )
    found: set[str] = set()
    for p in paths:
        found |= recorded_owners(search, opened_form(p), aliases)
        found |= recorded_owners(search, real[p], aliases)
    return found


def ld_so_tried(program: Path, soname: str) -> list[str]:
    """The candidates ld.so tries for ``soname`` (LD_DEBUG=libs) in directories that exist."""
    proc = subprocess.run(
        [LDSO, str(program)],
        capture_output=True,
        text=True,
        env=dict(_ENV, LD_TRACE_LOADED_OBJECTS="1", LD_DEBUG="libs"),
        check=False,
    )
    tried: list[str] = []
    inside = False
    for line in proc.stderr.splitlines():
        text = line.split(":", 1)[-1].strip()
        if text.startswith("find library="):
            inside = text.startswith(f"find library={soname} ")
        elif inside and text.startswith("trying file="):
            cand = text[len("trying file=") :]
            if os.path.isdir(os.path.dirname(cand)) and cand not in tried:
                tried.append(cand)
    return tried


def build_zprog(out: Path) -> Path:
    return gcc(out, C_ZLIB, "-lz")


# -- fixture trees --------------------------------------------------------------------------


def test_a_0644_library_is_scanned_and_its_package_kept(tmp_path: Path) -> None:
    """find -executable misses it (field.md story 12); depmin reads every regular file."""
    tree = tmp_path / "tree"
    lib = gcc(tree / "lib" / "libquiet.so", C_ZLIB_LIB, "-shared", "-fPIC", "-lz")
    lib.chmod(0o644)
    assert not os.access(lib, os.X_OK)
    libz = ldd_paths(lib)["libz.so.1"]
    expected = owners_of([libz])
    assert expected, f"no package owns {libz}"
    report = keep_json("--all", tree)
    needed = files_of(report)
    for owner in expected:
        assert owner in report["keep"]
        assert str(lib) in needed[owner]
    plain = depmin("keep", "--all", tree)
    assert plain.returncode == 0
    assert expected <= set(plain.stdout.decode().split())


def test_a_missing_library_fails_naming_file_soname_and_search_path(tmp_path: Path) -> None:
    build, tree = tmp_path / "build", tmp_path / "tree"
    gcc(build / "libmissing.so", "int missing(void) { return 0; }\n", "-shared", "-fPIC")
    prog = gcc(tree / "bin" / "needs-missing", C_MISSING, f"-L{build}", "-lmissing")
    zprog = build_zprog(tree / "bin" / "zprog")
    assert ldd_paths(prog)["libmissing.so"] == "not"
    tried = ld_so_tried(prog, "libmissing.so")
    assert tried, "ld.so tried no directory"
    isa = str(host_isa_level())  # so the glibc-hwcaps directories are those ld.so tries

    proc = depmin("keep", "--all", "--isa-level", isa, tree)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert proc.stdout == b""
    want = f"depmin: {prog}: libmissing.so not found; searched {', '.join(tried)}"
    assert want in err.splitlines(), err
    assert "--allow-missing" in err

    allowed = depmin("keep", "--all", "--allow-missing", "--isa-level", isa, tree)
    assert allowed.returncode == 0
    assert want in allowed.stderr.decode().splitlines()
    libz = ldd_paths(zprog)["libz.so.1"]
    assert owners_of([libz]) <= set(allowed.stdout.decode().split())
    report = keep_json("--all", "--allow-missing", tree)
    assert [(u["file"], u["name"], u["outcome"]) for u in report["unresolved"]] == [
        (str(prog), "libmissing.so", "missing")
    ]


def test_exclude_matches_base_names_and_whole_paths(tmp_path: Path) -> None:
    build, tree = tmp_path / "build", tmp_path / "tree"
    gcc(build / "libmissing.so", "int missing(void) { return 0; }\n", "-shared", "-fPIC")
    plugin = gcc(tree / "plugins" / "tk" / "needs-missing", C_MISSING, f"-L{build}", "-lmissing")
    zprog = build_zprog(tree / "bin" / "zprog")
    libz = ldd_paths(zprog)["libz.so.1"]
    zlib = owners_of([libz])

    assert depmin("keep", "--all", tree).returncode == 1
    for pattern in ("needs-*", "*/plugins/*", f"{tree}/plugins/tk/needs-missing"):
        report = keep_json("--all", "--exclude", pattern, tree)
        assert report["unresolved"] == [], pattern
        assert {"path": str(plugin), "reason": "excluded", "problem": False} in report["skipped"]
        assert zlib <= set(report["keep"])
    # Excluding the zlib program leaves nothing that needs zlib (only the plugin, excluded too).
    report = keep_json("--all", "--exclude", "zprog", "--exclude", "*/tk/*", tree)
    assert report["keep"] == [] and report["packages"] == []
    assert {s["path"] for s in report["skipped"] if s["reason"] == "excluded"} == {
        str(zprog),
        str(plugin),
    }


def test_awkward_file_names_survive_json_and_ldd(tmp_path: Path) -> None:
    """A newline and a byte that is not UTF-8 come back exactly (PEP 383 in JSON)."""
    tree = tmp_path / "tree"
    zprog = build_zprog(tree / "bin" / "zprog")
    names = [b"new\nline", b"caf\xe9", b"tab\tand space \xff\xfe"]
    paths = [os.fsencode(tree / "bin") + b"/" + n for n in names]
    for p in paths:
        shutil.copyfile(zprog, p)
    libz = ldd_paths(zprog)["libz.so.1"]
    zlib = owners_of([libz])

    report = keep_json("--all", tree)
    for owner in zlib:
        got = {os.fsencode(f) for f in files_of(report)[owner]}
        assert set(paths) <= got
    listed = depmin("keep", "--all", tree).stdout.decode().split("\n")[:-1]
    nul = depmin("keep", "--all", "-0", tree)
    assert nul.returncode == 0
    assert nul.stdout == b"".join(n.encode() + b"\0" for n in listed)

    ldd_json = depmin("ldd", "--json", *paths)
    assert ldd_json.returncode == 0, ldd_json.stderr
    files = json.loads(ldd_json.stdout)["files"]
    assert [os.fsencode(f["file"]) for f in files] == paths
    assert [os.fsencode(f["objects"][0]["path"]) for f in files] == paths
    text = depmin("ldd", *paths)
    assert text.returncode == 0
    for p in paths:
        assert p + b":\n" in text.stdout  # the header ldd prints for several files


def _bundle(top: Path, dtags: str) -> tuple[Path, Path, Path]:
    """scipy's layout: a module whose RPATH finds libgfort, which needs libquad beside it."""
    libs = top / "pkg" / "libs"
    quad = gcc(libs / "libquad.so", "int quad(void) { return 1; }\n", "-shared", "-fPIC")
    fort = gcc(
        libs / "libgfort.so",
        "int quad(void);\nint fort(void) { return quad(); }\n",
        "-shared",
        "-fPIC",
        f"-L{libs}",
        "-lquad",
    )
    mod = gcc(
        top / "pkg" / "module.so",
        "int fort(void);\nint init(void) { return fort(); }\n",
        "-shared",
        "-fPIC",
        f"-L{libs}",
        "-lgfort",
        dtags,
        "-Wl,-rpath,$ORIGIN/libs",
    )
    return mod, fort, quad


def test_a_library_found_only_through_its_loaders_rpath_is_not_missing(tmp_path: Path) -> None:
    """DT_RPATH is inherited: libgfort finds libquad through module.so's RPATH.

    Per-file ldd on the bundled library says "not found"; in the module's load
    it is found, so depmin keep succeeds.  With DT_RUNPATH (not inherited) the
    real load fails too, and so does depmin.
    """
    tree = tmp_path / "tree"
    mod, fort, quad = _bundle(tree, "-Wl,--disable-new-dtags")
    tags = dict(dynamic_tags(mod))
    assert tags.get("RPATH") == "$ORIGIN/libs" and "RUNPATH" not in tags
    assert not {"RPATH", "RUNPATH"} & {t for t, _ in dynamic_tags(fort)}
    assert ldd_paths(fort)["libquad.so"] == "not"
    assert ldd_paths(mod)["libquad.so"] == str(quad)

    report = keep_json("--all", tree)
    assert report["unresolved"] == []
    assert {str(fort), str(quad)} <= set(report["provided_by_trees"])

    other = tmp_path / "runpath"
    mod2, fort2, _ = _bundle(other, "-Wl,--enable-new-dtags")
    assert dict(dynamic_tags(mod2)).get("RUNPATH") == "$ORIGIN/libs"
    assert ldd_paths(mod2)["libquad.so"] == "not"
    proc = depmin("keep", "--all", other)
    assert proc.returncode == 1
    assert f"depmin: {mod2}: libquad.so not found (needed by {fort2})" in proc.stderr.decode()


def test_relocatable_objects_are_skipped_with_a_note(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    obj = gcc(tree / "obj" / "part.o", "int part(void) { return 0; }\n", "-c")
    header = subprocess.run(
        ["readelf", "-h", str(obj)], capture_output=True, text=True, env=_ENV, check=True
    ).stdout
    assert re.search(r"Type:\s+REL ", header)
    build_zprog(tree / "bin" / "zprog")
    proc = depmin("keep", "--all", "--json", tree)
    assert proc.returncode == 0
    assert str(obj).encode() not in proc.stderr  # a note, not a warning
    report = json.loads(proc.stdout)
    notes = [s for s in report["skipped"] if s["path"] == str(obj)]
    assert len(notes) == 1 and "ET_REL" in notes[0]["reason"] and not notes[0]["problem"]
    assert report["errors"] == []


def test_fifos_and_sockets_in_the_tree_are_never_opened(tmp_path: Path) -> None:
    """A writer blocked on a FIFO wakes up when anyone opens it for reading: depmin must not."""
    tree = tmp_path / "tree"
    build_zprog(tree / "bin" / "zprog")
    fifo = tree / "run" / "pipe.so"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tree / "run" / "socket.so"))
    opened = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # blocks until a reader opens the FIFO
        opened.set()
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        report = keep_json("--all", tree)
        assert not opened.is_set(), "depmin opened the FIFO"
    finally:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # release the writer
        thread.join(10)
        os.close(reader)
        sock.close()
    assert opened.is_set()  # the probe works: our own open woke the writer
    assert report["errors"] == []
    assert not [s for s in report["skipped"] if s["problem"]]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_symlinks_in_the_tree_are_not_followed_out_of_it(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    build_zprog(tree / "bin" / "zprog")
    alone = keep_json("--all", tree)
    outside_prog = Path("/usr/bin/ls")
    theirs = owners_of(p for p in ldd_paths(outside_prog).values() if p.startswith("/"))
    assert theirs - set(alone["keep"]), "pick an outside program that needs another package"
    (tree / "bin" / "ls").symlink_to(outside_prog)
    (tree / "system-libs").symlink_to("/usr/lib/x86_64-linux-gnu")
    linked = keep_json("--all", tree)
    assert linked["keep"] == alone["keep"]
    assert linked["packages"] == alone["packages"]


# -- a test root with diversions ---------------------------------------------------------------

_LIBDIR = "/usr/lib/x86_64-linux-gnu"


def _stanza(name: str, multi_arch: bool = False) -> str:
    return (
        f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
        "Section: libs\nMaintainer: depmin tests <tests@example.invalid>\n"
        f"Architecture: amd64\n{'Multi-Arch: same' + chr(10) if multi_arch else ''}"
        f"Version: 1.0-1\nDescription: {name} for depmin's tests\n"
    )


def _list(paths: Sequence[str]) -> str:
    dirs: list[str] = ["/."]
    for p in paths:
        parts = p.split("/")[1:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in dirs:
                dirs.append(d)
    return "\n".join(dirs + list(paths)) + "\n"


@dataclass(frozen=True)
class Diversion:
    original: str
    to: str
    by: str | None  # None: a local diversion


def _search_admindir(admindir: Path, paths: Iterable[str]) -> tuple[dict[str, set[str]], list[Diversion]]:
    """Listers per path and the diversions, as ``dpkg-query --admindir --search`` prints them."""
    proc = subprocess.run(
        ["dpkg-query", f"--admindir={admindir}", "--search", *sorted(set(paths))],
        capture_output=True,
        text=True,
        env=_ENV,
        check=False,
    )
    assert proc.returncode in (0, 1) and "warning" not in proc.stderr, proc.stderr
    listers: dict[str, set[str]] = {}
    froms: dict[str, str] = {}
    diversions: list[Diversion] = []
    for line in proc.stdout.splitlines():
        m = re.match(r"^(?:local )?diversion(?: by (\S+))? (from|to): (/.*)$", line)
        if m:
            by, which, path = m.groups()
            if which == "from":
                froms[by or ":"] = path
            else:
                d = Diversion(froms[by or ":"], path, by)
                if d not in diversions:
                    diversions.append(d)
            continue
        owners, _, path = line.partition(": /")
        listers.setdefault("/" + path, set()).update(owners.split(", "))
    return listers, diversions


def test_a_diverted_library_maps_to_the_package_whose_bytes_it_is(tmp_path: Path) -> None:
    """apt.md §9: the diverted-to file belongs to the listers of the original (not the
    diverter); the original path holds the diverter's own copy, or the administrator's
    for a local diversion.  dpkg-query names nobody for the diverted-to path and every
    lister for the original, so the rule is applied to what it prints."""
    root = tmp_path / "root"
    usr = root / "usr"
    for alias in ("lib", "lib64", "bin"):
        (usr / alias).mkdir(parents=True, exist_ok=True)
        (root / alias).symlink_to(f"usr/{alias}")
    shutil.copy(os.path.realpath(LDSO), usr / "lib64" / "ld-linux-x86-64.so.2")
    libdir = root / _LIBDIR.lstrip("/")
    build = tmp_path / "build"
    nolibc = ("-nostdlib", "-fPIC")

    def library(dest: Path, soname: str, tag: str) -> None:
        gcc(dest, f"int which(void) {{ return {tag}; }}\n", "-shared", *nolibc,
            f"-Wl,-soname,{soname}")  # fmt: skip

    library(libdir / "diverted" / "libdiv.so.1", "libdiv.so.1", "1")  # libdiv1's bytes
    library(libdir / "libdiv.so.1", "libdiv.so.1", "2")  # divpkg's replacement
    library(libdir / "local-orig" / "liblocal.so.1", "liblocal.so.1", "3")  # liblocal1's
    library(libdir / "liblocal.so.1", "liblocal.so.1", "4")  # the administrator's
    library(build / "libdiv.so.1", "libdiv.so.1", "0")
    library(build / "liblocal.so.1", "liblocal.so.1", "0")
    main = "int which(void);\nvoid _start(void) { which(); for (;;) {} }\n"
    progs = {
        "uses-diverted": ("libdiv.so.1", f"{_LIBDIR}/diverted"),
        "uses-original": ("libdiv.so.1", None),
        "uses-local-orig": ("liblocal.so.1", f"{_LIBDIR}/local-orig"),
        "uses-local-admin": ("liblocal.so.1", None),
    }
    for name, (lib, runpath) in progs.items():
        extra = [f"-Wl,-rpath,{runpath}"] if runpath else []
        gcc(root / "opt" / "app" / name, main, *nolibc, f"-L{build}", f"-l:{lib}", *extra)

    # dpkg's database: libc6 and libdiv1 recorded under /lib (as bookworm's lists are),
    # a diversion by divpkg in that form too, a local one under /usr/lib.
    admin = root / "var" / "lib" / "dpkg"
    (admin / "info").mkdir(parents=True)
    packages = {
        "libc6": (True, ["/lib64/ld-linux-x86-64.so.2"]),
        "libdiv1": (True, ["/lib/x86_64-linux-gnu/libdiv.so.1"]),
        "divpkg": (False, ["/lib/x86_64-linux-gnu/libdiv.so.1"]),
        "liblocal1": (False, [f"{_LIBDIR}/liblocal.so.1"]),
    }
    (admin / "status").write_text(
        "\n".join(_stanza(n, ma) for n, (ma, _) in packages.items())
    )
    (admin / "info" / "format").write_text("1\n")
    for name, (ma, paths) in packages.items():
        (admin / "info" / f"{name}{':amd64' if ma else ''}.list").write_text(_list(paths))
    (admin / "diversions").write_text(
        "/lib/x86_64-linux-gnu/libdiv.so.1\n/lib/x86_64-linux-gnu/diverted/libdiv.so.1\ndivpkg\n"
        f"{_LIBDIR}/liblocal.so.1\n{_LIBDIR}/local-orig/liblocal.so.1\n:\n"
    )

    recorded = [p for _, paths in packages.values() for p in paths]
    listers, diversions = _search_admindir(
        admin, recorded + ["/lib/x86_64-linux-gnu/diverted/libdiv.so.1",
                           f"{_LIBDIR}/local-orig/liblocal.so.1"]
    )  # fmt: skip
    assert len(diversions) == 2, diversions
    for d in diversions:
        assert d.to not in listers  # dpkg-query prints only diversion lines for it
    # apt.md §9, from dpkg-query's own words.
    owner = {path: set(who) for path, who in listers.items()}
    for d in diversions:
        who = listers.get(d.original, set())
        owner[d.to] = {o for o in who if o.split(":")[0] != d.by} | listers.get(d.to, set())
        owner[d.original] = {o for o in who if d.by is not None and o.split(":")[0] == d.by}
    assert owner["/lib/x86_64-linux-gnu/libdiv.so.1"] == {"divpkg"}
    assert listers["/lib/x86_64-linux-gnu/libdiv.so.1"] == {"divpkg", "libdiv1:amd64"}

    def canonical(path: str) -> str:
        """The recorded form of a path the loader opens inside the root."""
        for form in (path, twin(path, ("/lib", "/lib64", "/bin"))):
            if form in owner:
                return form
        return path

    # Per program: the library depmin ldd opens in the root (the real ld.so agrees,
    # asked inside a chroot where that is permitted) and the rule's owner for it.
    report = keep_json("--all", "--root", root, "/opt/app")
    needed = files_of(report)
    interp = owner[canonical("/lib64/ld-linux-x86-64.so.2")]
    expected: set[str] = set()
    for name, (lib, runpath) in progs.items():
        prog = f"/opt/app/{name}"
        ldd = json.loads(depmin("ldd", "--json", "--root", root, prog).stdout)["files"][0]
        opened = [o["path"] for o in ldd["objects"] if o["names"][0] == lib]
        assert len(opened) == 1
        if runpath:
            assert opened[0] == f"{runpath}/{lib}"
        real = chroot_trace(str(root), prog)
        if real is not None:
            libs = {o["realpath"] for o in ldd["objects"][1:] if o["step"] != "interpreter"}
            assert real[0] == libs, real[1]  # ld.so lists itself only when named
        want = owner.get(canonical(opened[0]), set()) | interp
        got = {p for p, fs in needed.items() if prog in fs}
        assert got == want, (name, opened[0])
        expected |= want
    assert report["unowned"] == ["/lib/x86_64-linux-gnu/liblocal.so.1"]
    plain = depmin("keep", "--all", "--root", root, "/opt/app")
    assert plain.returncode == 0
    assert plain.stdout.decode().split() == sorted(expected)
    assert len(expected) == 4  # libc6, libdiv1 (diverted-to), divpkg (original), liblocal1
    assert b"liblocal.so.1: needed file outside the trees that no package owns" in (
        plain.stderr
    )


# -- the pyenv CPython trees against ldd and the pipelines ----------------------------------------

#: Docker's default PATH, where ``#!/usr/bin/env NAME`` is looked up in an image.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VERSIONS = pyenv_versions()


def elf_files(top: Path) -> list[str]:
    """Regular files whose ELF header says executable or shared object (any mode)."""
    found: list[str] = []
    for d, _dirs, names in os.walk(top):
        for n in names:
            p = os.path.join(d, n)
            if not stat.S_ISREG(os.lstat(p).st_mode):
                continue
            with open(p, "rb") as f:
                head = f.read(18)
            if head[:4] == b"\x7fELF" and len(head) == 18 and head[16] in (2, 3):
                found.append(p)
    return sorted(found)


@dataclass(frozen=True)
class Trace:
    """What the real ldd printed for one file: paths after ``=>`` (and ld.so), misses."""

    printed: tuple[str, ...]  # every path, ld.so's own line included
    arrows: tuple[str, ...]  # paths on "=>" lines: what the pipelines' awk takes
    missing: tuple[str, ...]


def ldd_trace(path: str) -> Trace:
    out = subprocess.run(
        ["ldd", path], capture_output=True, text=True, env=_ENV, errors="surrogateescape"
    ).stdout
    printed: list[str] = []
    arrows: list[str] = []
    missing: list[str] = []
    for line in out.splitlines():
        words = line.split()
        if "=>" in words:
            target = words[words.index("=>") + 1] if len(words) > words.index("=>") + 1 else ""
            if target == "not":
                missing.append(words[0])
            elif target.startswith("/"):
                printed.append(target)
                arrows.append(target)
        elif words and words[0].startswith("/"):
            printed.append(words[0])
    return Trace(tuple(printed), tuple(arrows), tuple(missing))


def _inside(path: str, top: Path) -> bool:
    return os.path.realpath(path).startswith(str(top) + "/")


def _bare(names: Iterable[str]) -> set[str]:
    return {n.split(":")[0] for n in names}


def _interpreter_files(script: str) -> list[str]:
    """The file a script's #! runs (``env NAME`` looked up on the image PATH), if it exists."""
    with open(script, "rb") as f:
        line = f.readline(256)[2:].split(b"\n")[0].strip().decode("utf-8", "surrogateescape")
    words = line.split()
    if not words:
        return []
    found = [words[0]] if os.path.exists(words[0]) else []
    if os.path.basename(words[0]) == "env":
        cmd = next((w for w in words[1:] if not w.startswith("-") and "=" not in w), None)
        hit = shutil.which(cmd, path=IMAGE_PATH) if cmd else None
        if hit:
            found.append(hit)
    return found


@pytest.fixture(scope="module")
def glibc_dlopen_owners() -> set[str]:
    """Owners of what libc itself dlopens here (libgcc_s, the NSS modules of nsswitch.conf),
    with their own libraries: loads ldd cannot see (field.md story 5)."""
    services: set[str] = set()
    with open("/etc/nsswitch.conf") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            services |= {w for w in words[1:] if not w.startswith("[")}
    lib = "/lib/x86_64-linux-gnu"
    files = [f"{lib}/libgcc_s.so.1"] + [f"{lib}/libnss_{s}.so.2" for s in sorted(services)]
    files = [p for p in files if os.path.exists(p)]
    for p in list(files):
        files += [q for q in ldd_trace(p).printed]
    return owners_of(files)


@dataclass(frozen=True)
class TreeAnswer:
    """Everything measured for one CPython tree."""

    version: str
    elves: int
    ldd_owners: frozenset[str]  # the pipeline's answer without its parsing bugs
    depmin_elf: frozenset[str]  # depmin keep --all, packages some ELF file needs
    depmin_scripts: frozenset[str]  # ... packages only #! scripts need
    depmin_default: frozenset[str]  # plain depmin keep --all (scripts and glibc dlopens)
    depmin_no_tk: frozenset[str]  # ELF part with --exclude '*tkinter*' (the pipeline's)
    seed: frozenset[str]
    official: frozenset[str]
    runs: tuple[Run, Run]  # seed, official: the patterns and dpkg-query statuses
    not_found: tuple[tuple[str, str], ...]  # (file, soname) ldd reports per file
    traces: dict[str, Trace]


def _measure(top: Path, tmp: Path, dlopen_owners: set[str]) -> TreeAnswer:
    elves = elf_files(top)
    with ThreadPoolExecutor(max_workers=4) as pool:
        traces = dict(zip(elves, pool.map(ldd_trace, elves)))
    outside = {f: [p for p in t.printed if not _inside(p, top)] for f, t in traces.items()}
    everything = {p for ps in outside.values() for p in ps}
    search = dpkg_search(
        search_forms(
            everything
            | {os.path.realpath(p) for p in everything}
            | {opened_form(p) for p in everything},
            host_aliases(),
        )
    )
    ldd_all = owners_of(everything, search)
    unowned = {os.path.realpath(p) for p in everything if not owners_of([p], search)}
    not_found = tuple((f, n) for f, t in traces.items() for n in t.missing)

    isa = str(host_isa_level())
    common = ("--all", "--allow-missing", "--isa-level", isa)
    report = keep_json(*common, "--no-glibc-dlopens", top)
    elf_set = set(elves)
    need = files_of(report)
    depmin_elf = {p for p, fs in need.items() if fs & elf_set}
    scripts_only = {p for p, fs in need.items() if not fs & elf_set}
    assert set(report["keep"]) == depmin_elf | scripts_only
    assert {os.path.realpath(p) for p in report["unowned"]} == unowned

    # In context, nothing an ELF file loads is missing: every per-file "not found"
    # of ldd is a bundled library that the module loading it finds via DT_RPATH.
    assert not [u for u in report["unresolved"] if u["file"] in elf_set]
    bundled = {os.path.basename(p) for p in report["provided_by_trees"]}
    resolved = {os.path.basename(p) for t in traces.values() for p in t.printed}
    for f, name in not_found:
        assert name in bundled, f"{f}: {name} is missing in context too"
        assert name in resolved, f"{name}: ldd resolves it for no file (loaded in context)"
    # The rest of depmin's answer are interpreters of #! scripts (and their libraries).
    traced: dict[str, Trace] = {}
    for pkg in scripts_only:
        runs: list[str] = []
        for script in need[pkg]:
            for interp in _interpreter_files(script):
                real = os.path.realpath(interp)
                if real not in traced:
                    traced[real] = ldd_trace(real)
                runs += [interp, *traced[real].printed]
        assert pkg in owners_of(runs), f"{pkg}: not what the scripts' #! lines run"
    for u in report["unresolved"]:
        assert u["kind"] == "interpreter" and not _interpreter_files(u["file"]), u

    default = keep_json(*common, top)
    extra = set(default["keep"]) - set(report["keep"])
    assert extra <= dlopen_owners, f"not glibc's own dlopens: {extra - dlopen_owners}"
    no_tk = files_of(keep_json(*common, "--no-glibc-dlopens", "--exclude", "*tkinter*", top))
    depmin_no_tk = {p for p, fs in no_tk.items() if fs & elf_set}

    with ThreadPoolExecutor(max_workers=2) as pool:
        seed, official = pool.map(lambda name: run_pipeline(name, [top], tmp), ("seed", "official"))
    assert seed.returncode == 0 and official.returncode == 0
    return TreeAnswer(
        top.name,
        len(elves),
        frozenset(ldd_all),
        frozenset(depmin_elf),
        frozenset(scripts_only),
        frozenset(default["keep"]),
        frozenset(depmin_no_tk),
        frozenset(seed.packages),
        frozenset(official.packages),
        (seed, official),
        not_found,
        traces,
    )


def _pipeline_set(top: Path) -> list[str]:
    """What the pipelines' ``find -type f -executable -not -name '*tkinter*'`` selects."""
    return [
        f
        for f in elf_files(top)
        if os.access(f, os.X_OK) and not fnmatch.fnmatchcase(os.path.basename(f), "*tkinter*")
    ]


@pytest.mark.skipif(not VERSIONS, reason="no pyenv CPython installations")
@pytest.mark.skipif(not have("xargs") or not have("awk"), reason="the pipelines need xargs, awk")
@pytest.mark.parametrize("top", VERSIONS, ids=[v.name for v in VERSIONS])
def test_keep_all_on_a_cpython_tree_matches_ldd_and_explains_the_pipelines(
    top: Path, tmp_path: Path, glibc_dlopen_owners: set[str], report: Callable[[str], None]
) -> None:
    """depmin's ELF answer is ldd's; the pipelines differ from it only as field.md says.

    Beyond ldd, depmin keeps the interpreters of #! scripts (ldd: "not a dynamic
    executable") and what libc dlopens (libgcc_s, NSS modules); per-file ldd's
    "not found" for a bundled library is found in its loader's context.  The
    official pipeline loses what only *tkinter* files need and adds whatever
    '*not' matches; the seed loses libraries dpkg records under the other alias
    and adds whatever the substring 'not' matches.
    """
    a = _measure(top, tmp_path, glibc_dlopen_owners)
    assert a.depmin_elf == a.ldd_owners, (
        f"depmin only {sorted(a.depmin_elf - a.ldd_owners)}, "
        f"ldd only {sorted(a.ldd_owners - a.depmin_elf)}"
    )

    # Where the pipelines differ, and why.
    scanned = _pipeline_set(top)
    printed = {p for f in scanned for p in a.traces[f].arrows if not _inside(p, top)}
    search = dpkg_search(search_forms(printed, host_aliases()))
    any_missing = any(a.traces[f].missing for f in scanned)
    # "libx.so => not found" becomes the token "*not" (official, a suffix glob) or
    # "not" (seed, a substring search), and whatever dpkg-query finds is marked.
    glob_junk = set(_awk_owners("*not")) if any_missing else set()
    substring_junk = set(_cut_owners("not")) if any_missing else set()
    # Apart from that, the official '*tkinter*' filter is its only difference from
    # depmin here: with the same exclusion depmin gives exactly its answer.
    assert a.official == a.depmin_no_tk | glob_junk
    tk_only = a.depmin_elf - a.depmin_no_tk
    # The seed searches ldd's exact path: a package dpkg recorded under the other
    # alias is lost (libstdc++6, libffi8, ... are under /usr/lib on bookworm).
    literal = {o for p in printed for o in search.owners.get(p, ())}
    lost = a.depmin_no_tk - literal
    for pkg in lost:
        paths = [p for p in printed if pkg in recorded_owners(search, p, host_aliases())]
        assert paths and all(p not in search.owners for p in paths), pkg
    assert a.seed == _bare(literal) | substring_junk
    # No pipefail: dpkg-query fails on the tree's own libraries (not under /usr/local,
    # so the official filter keeps them) and on the 'not' tokens; both still exit 0.
    inside = any(_inside(p, top) for f in scanned for p in a.traces[f].arrows)
    for run in a.runs:
        assert run.returncode == 0
        assert any(status != 0 for status in run.statuses) == (inside or any_missing)
    assert ("not" in a.runs[0].patterns) == any_missing == ("*not" in a.runs[1].patterns)

    dlopens = a.depmin_default - a.depmin_elf - a.depmin_scripts
    report(
        f"keep vs ldd and pipelines: CPython {a.version}: {a.elves} ELF files, "
        f"ldd {len(a.ldd_owners)} packages; keep --all {len(a.depmin_default)} = "
        f"{len(a.depmin_elf)} ELF + {len(a.depmin_scripts)} #! + {len(dlopens)} glibc dlopen; "
        f"official {len(a.official)} (-{len(tk_only)} tkinter, +{len(glob_junk - a.depmin_no_tk)} "
        f"'*not'); seed {len(a.seed)} (-{len(_bare(lost) - a.seed)} other alias, "
        f"+{len(substring_junk - _bare(a.depmin_no_tk))} 'not'); "
        f"per-file ldd 'not found' {len(a.not_found)}"
    )


def _search_lines(pattern: str) -> list[str]:
    return subprocess.run(
        ["dpkg-query", "--search", pattern], capture_output=True, text=True, env=_ENV, check=False
    ).stdout.splitlines()


def _cut_owners(pattern: str) -> list[str]:
    """``dpkg-query --search PATTERN | cut -d: -f1``: the seed's reading."""
    return sorted({line.split(":")[0] for line in _search_lines(pattern)})


def _awk_owners(pattern: str) -> list[str]:
    """``dpkg-query --search PATTERN | awk 'sub(":$", "", $1) { print $1 }'``: the official's."""
    words = (line.split(None, 1)[0] for line in _search_lines(pattern) if line.strip())
    return sorted({w[:-1] for w in words if w.endswith(":")})


def _cpython(version: str) -> Path | None:
    return next((v for v in VERSIONS if v.name == version), None)


@pytest.mark.skipif(_cpython("3.11.7") is None, reason="no pyenv CPython 3.11.7")
@pytest.mark.parametrize("overrides", [(), ("-o", "APT::AutoRemove::RecommendsImportant=false")])
def test_minimal_keep_on_cpython_3_11_7_keeps_everything_with_apt(
    overrides: tuple[str, ...], report: Callable[[str], None]
) -> None:
    """Every --all package is in the minimal list or kept by apt because of it."""
    from depmin.api import load_package_state
    from depmin.debian.aptbridge import apt_python, garbage_with_apt
    from depmin.debian.aptstate import apt_print_name, normalise_apt_name
    from depmin.debian.autoremove import mark_and_sweep
    from depmin.debian.plan import required_keys
    from depmin.rootfs import Root

    top = _cpython("3.11.7")
    assert top is not None
    args: tuple[Arg, ...] = ("--allow-missing", "--isa-level", str(host_isa_level()), *overrides, top)
    everything = keep_json("--all", *args)["keep"]
    minimal = keep_json(*args)["keep"]
    assert set(minimal) <= {n.split(":")[0] for n in everything} | set(everything)
    assert len(minimal) < len(everything)

    state = load_package_state(Root("/"), [o for o in overrides if o != "-o"])
    graph = state.graph
    keys, unknown = required_keys(graph, everything)
    assert not unknown
    mins, unknown = required_keys(graph, minimal)
    assert not unknown
    marking = mark_and_sweep(graph, mins, state.policy)
    assert not [k for k in keys if k in marking.garbage]
    if apt_python() is not None:  # apt itself, in memory, nothing committed
        garbage = garbage_with_apt(Root("/"), minimal, [o for o in overrides if o != "-o"])
        assert garbage, "apt would purge nothing: the check would prove nothing"
        lost = {normalise_apt_name(graph, n) for n in garbage}
        assert not {apt_print_name(graph, k) for k in keys} & lost
    report(
        f"minimal keep: CPython 3.11.7, {' '.join(overrides) or 'default apt settings'}: "
        f"{minimal} of {len(everything)} packages, apt keeps the rest"
    )
