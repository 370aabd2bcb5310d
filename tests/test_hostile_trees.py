"""Hostile trees and roots: loops, long chains, links out of --root, special files, odd names.

Issue #8 item 2.  Whatever a tree holds, depmin reads only regular files inside
the root, never blocks, never recurses without bound, reports what it could not
read and carries on; paths come out byte for byte.  The answers are checked
against the kernel (link limits, EACCES), ld.so in a chroot where permitted,
and ``ldd`` on the host for the fixtures' own needs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest
from click.testing import CliRunner

from depmin.api import find_needs
from depmin.cli import main as cli_main
from depmin.errors import DepminError, RootError
from depmin.loader.resolve import LoaderSettings, Outcome, Resolver
from depmin.rootfs import MAX_LINK_HOPS, Root
from tests.oracles import chroot_trace, gcc, ldd
from tests.spies import guarded, host_paths_touched, outside
from tests.test_apply_safety import build_image_root, run_cli

T = TypeVar("T")
PROG = "/usr/bin/true"  # needs only libc.so.6 (checked against ldd below)
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
#: The bounding set without the two capabilities that let root ignore file modes.
NO_DAC = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


def test_fixture_program_needs_only_libc() -> None:
    found, raw = ldd(PROG)
    assert {os.path.basename(p) for p in found} == {"libc.so.6", "ld-linux-x86-64.so.2"}, raw


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return build_image_root(tmp_path / "root", programs=())


def cli_json(top: Path, *args: str | bytes, prefix: tuple[str, ...] = ()) -> tuple[Any, bytes]:
    p = run_cli(["keep", "--all", "--json", "--allow-missing", "--root", str(top), *args], prefix)
    assert b"Traceback" not in p.stderr, p.stderr.decode(errors="replace")
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout), p.stderr


def needed_by(doc: Any, package: str) -> set[bytes]:
    """Byte paths of the scanned files that need ``package`` in a keep --json answer."""
    for p in doc["packages"]:
        if p["package"] == package:
            return {os.fsencode(f) for f in p["files"]}
    return set()


def skipped(doc: Any) -> dict[str, str]:
    return {s["path"]: s["reason"] for s in doc["skipped"] if s["problem"]}


# --- links: loops, chains, escapes ---------------------------------------------------------


def chain(d: Path, prefix: str, n: int, target: str) -> Path:
    """``prefix0 -> prefix1 -> ... -> prefix<n-1> -> target``: n links, relative targets."""
    for i in range(n):
        nxt = f"{prefix}{i + 1}" if i + 1 < n else target
        (d / f"{prefix}{i}").symlink_to(nxt)
    return d / f"{prefix}0"


@pytest.mark.parametrize("n", [MAX_LINK_HOPS - 1, MAX_LINK_HOPS, MAX_LINK_HOPS + 1])
def test_link_limit_is_the_kernels(tmp_path: Path, n: int) -> None:
    """A chain of n links resolves inside a root exactly when the kernel follows it."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d/file").write_text("x")
    first = chain(tmp_path / "d", "l", n, "file")
    try:
        os.stat(first)
        kernel_ok = True
    except OSError as exc:
        assert exc.errno == errno.ELOOP
        kernel_ok = False
    root = Root(str(tmp_path))
    if kernel_ok:
        assert root.resolve("/d/l0") == "/d/file"
    else:
        with pytest.raises(RootError, match="too many levels of symbolic links"):
            root.resolve("/d/l0")


def test_loops_and_a_thousand_link_chain(image: Path) -> None:
    bin_ = image / "usr/local/bin"
    shutil.copy(PROG, bin_ / "true")
    (bin_ / "loop-a").symlink_to("loop-b")
    (bin_ / "loop-b").symlink_to("loop-a")
    (bin_ / "self").symlink_to("self")
    (image / "usr/local/lib").mkdir()
    (image / "usr/local/lib/up").symlink_to("..")  # a directory loop for any walker that follows
    (image / "usr/local/lib/here").symlink_to(".")
    first = chain(bin_, "chain", 1000, "true")
    last_ok = bin_ / f"chain{1000 - MAX_LINK_HOPS}"  # the last MAX_LINK_HOPS links: allowed
    too_long = bin_ / f"chain{1000 - MAX_LINK_HOPS - 1}"
    with pytest.raises(OSError) as info:
        os.stat(too_long)
    assert info.value.errno == errno.ELOOP
    assert os.stat(last_ok).st_ino == os.stat(bin_ / "true").st_ino

    trees = ["/usr/local", "/usr/local/bin/loop-a", "/usr/local/bin/self", "/usr/local/bin/chain0"]
    doc, _ = guarded(lambda: cli_json(image, *trees))
    assert needed_by(doc, "libc6:amd64") == {b"/usr/local/bin/true"}
    assert doc["trees"] == ["/usr/local"]
    problems = skipped(doc)
    for t in trees[1:]:
        assert problems[t] == "too many levels of symbolic links"

    for path, code in ((first, 3), (too_long, 3), (bin_ / "loop-a", 3), (last_ok, 0)):
        rel = "/" + str(path.relative_to(image))
        p = run_cli(["ldd", "--root", str(image), rel])
        assert b"Traceback" not in p.stderr
        assert p.returncode == code, p.stderr
        if code:
            assert p.stderr.decode().startswith(f"depmin: {rel}: too many levels of symbolic links")
            assert p.stderr.count(b"\n") == 1
        else:
            assert b"libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6" in p.stdout


def unnest(top: Path) -> None:
    """Remove a chain of nested ``d`` directories level by level.

    Before Python 3.12 shutil.rmtree (and so pytest's clean-up) recurses once per level.
    """
    cur, i = top, 0
    while (cur / "d").is_dir():
        nxt = top / f"n{i}"
        os.rename(cur / "d", nxt)  # the rest of the chain moves up: paths stay short
        if cur != top:
            shutil.rmtree(cur)
        cur, i = nxt, i + 1
    shutil.rmtree(top)


def test_a_deep_tree_costs_no_recursion(image: Path) -> None:
    """Nested directories as deep as PATH_MAX allows, and deeper: found, or reported."""
    d = image / "usr/local/deep"
    d.mkdir()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    depth, reachable = 0, None
    try:
        while depth < 2200:  # "d/" * 2200 is longer than PATH_MAX (4096)
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
            depth += 1
            if depth == 1500:
                reachable = d / ("d/" * depth + "prog")
                shutil.copy(PROG, reachable)
        with open(os.open("prog", os.O_WRONLY | os.O_CREAT, 0o755, dir_fd=fd), "wb") as f:
            f.write(Path(PROG).read_bytes())
    finally:
        os.close(fd)
    assert reachable is not None
    try:
        doc, _ = guarded(lambda: cli_json(image))
        too_long = [(p, r) for p, r in skipped(doc).items() if p.startswith("/usr/local/deep/")]
        assert len(too_long) == 1
        path, reason = too_long[0]
        with pytest.raises(OSError) as info:  # the kernel's answer for that path
            os.lstat(str(image) + path)
        assert info.value.errno == errno.ENAMETOOLONG
        assert reason == f"cannot read directory: {os.strerror(errno.ENAMETOOLONG)}"
    finally:
        unnest(d)
    assert needed_by(doc, "libc6:amd64") == {b"/" + os.fsencode(reachable.relative_to(image))}


def invoke(args: list[str]) -> tuple[int, bytes, bytes]:
    """The CLI in this process (so the spy sees it); exit code, stdout, stderr."""
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2 keeps stderr apart by default
        runner = CliRunner()
    res = runner.invoke(cli_main, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout_bytes, res.stderr_bytes


def test_links_out_of_the_root_reach_nothing_outside(
    tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Absolute and climbing links everywhere depmin reads; the host files they name are real."""
    out = tmp_path / "outside"
    gcc(out / "libsentinel.so.1", "int sentinel(void) { return 1; }\n", "-shared", "-fPIC",
        "-Wl,-soname,libsentinel.so.1")  # fmt: skip
    gcc(out / "libsentinel2.so.1", "int sentinel2(void) { return 2; }\n", "-shared", "-fPIC",
        "-Wl,-soname,libsentinel2.so.1")  # fmt: skip
    gcc(image / "usr/local/bin/app", "int sentinel(void); int sentinel2(void);\n"
        "int main(void) { return sentinel() + sentinel2(); }\n",
        str(out / "libsentinel.so.1"), str(out / "libsentinel2.so.1"),
        "-Wl,--enable-new-dtags,-rpath,/usr/local/lib")  # fmt: skip
    shutil.copy(PROG, out / "true")
    shutil.copy("/etc/ld.so.cache", out / "ld.so.cache")
    (out / "status").write_text("Package: sentinel\nStatus: install ok installed\n")
    (out / "apt.conf").write_text('APT::AutoRemove::RecommendsImportant "false";\n')
    lib = image / "usr/local/lib"
    lib.mkdir()
    (lib / "libsentinel.so.1").symlink_to(out / "libsentinel.so.1")  # absolute
    climb = "../" * (len(lib.parts) + 2)
    (lib / "libsentinel2.so.1").symlink_to(climb + str(out / "libsentinel2.so.1").lstrip("/"))
    (image / "usr/local/bin/true-out").symlink_to(out / "true")
    (image / "usr/local/bin/true-up").symlink_to(climb + str(out / "true").lstrip("/"))
    (image / "usr/local/escape").symlink_to(out)
    (image / "etc/ld.so.cache").symlink_to(out / "ld.so.cache")
    (image / "etc/ld.so.preload").symlink_to(out / "status")
    (image / "etc/apt/apt.conf.d/99out").symlink_to(out / "apt.conf")
    (image / "var/lib/dpkg/info/gcc-12-base:amd64.list").unlink()
    (image / "var/lib/dpkg/info/gcc-12-base:amd64.list").symlink_to(out / "status")
    for link in (lib / "libsentinel.so.1", lib / "libsentinel2.so.1", image / "usr/local/escape",
                 image / "usr/local/bin/true-up", image / "etc/ld.so.cache"):  # fmt: skip
        assert link.exists(), f"{link} does not reach the host file it names"

    by_ldso = chroot_trace(str(image), "/usr/local/bin/app")
    if by_ldso is not None:  # ld.so itself, chrooted: the links lead nowhere
        found, raw = by_ldso
        assert {"libsentinel.so.1 => not found", "libsentinel2.so.1 => not found"} <= found, raw

    with host_paths_touched(monkeypatch, only_depmin=True) as seen:  # the spy sees depmin reading elsewhere
        Root(str(out)).read_text("/status")
    assert outside(image, seen) == [str(out / "status")]

    with host_paths_touched(monkeypatch, only_depmin=True) as touched:
        code, stdout, stderr = invoke(["keep", "--all", "--json", "--allow-missing",
                                       "--root", str(image), "/usr/local", "/usr/local/escape"])  # fmt: skip
        resolver = Resolver.for_root(Root(str(image)), LoaderSettings())
        direct = [resolver.load(p) for p in ("/usr/local/bin/app", "/usr/local/bin/true-out")
                  if resolver.root.resolve(p)]  # fmt: skip
        plan_code, _, plan_err = invoke(["plan", "--allow-missing", "--root", str(image)])
    assert touched and outside(image, touched) == []
    assert code == 0 and plan_code == 0, (stderr, plan_err)
    doc = json.loads(stdout)
    missing = {(u["file"], u["name"], u["outcome"]) for u in doc["unresolved"]}
    assert missing == {("/usr/local/bin/app", "libsentinel.so.1", "missing"),
                       ("/usr/local/bin/app", "libsentinel2.so.1", "missing")}  # fmt: skip
    assert skipped(doc) == {"/usr/local/escape": "no such directory inside the root"}
    assert needed_by(doc, "libc6:amd64") == {b"/usr/local/bin/app"}  # true-out, true-up: no file
    assert [r.main for r in direct] == ["/usr/local/bin/app"]
    assert resolver.ldcache is None and resolver.preload_file == ()


# --- special files -------------------------------------------------------------------------


def make_specials(d: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Path], socket.socket]:
    """A FIFO with no writer, a listening UNIX socket, /dev/zero's twin (if mknod is allowed)."""
    fifo = d / "fifo"
    os.mkfifo(fifo)
    made = [fifo]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with monkeypatch.context() as mp:
        mp.chdir(d)  # a relative name: sun_path is only 108 bytes
        sock.bind("sock")
    sock.listen(1)
    made.append(d / "sock")
    try:
        os.mknod(d / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
        made.append(d / "zero")
    except PermissionError:
        pass  # the links to /dev/zero below still cover devices
    (d / "devzero").symlink_to("/dev/zero")
    return made, sock


def test_special_files_are_never_opened_and_never_block(
    tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_ = image / "usr/local/bin"
    shutil.copy(PROG, bin_ / "true")
    lib = image / "usr/local/lib"
    lib.mkdir()
    specials, sock = make_specials(bin_, monkeypatch)
    os.mkfifo(lib / "libfifo.so.1")
    (lib / "libzero.so.1").symlink_to("/dev/zero")  # /dev/zero of the root: it has none
    gcc(tmp_path / "stubs/libfifo.so.1", "int f(void) { return 0; }\n", "-shared", "-fPIC",
        "-Wl,-soname,libfifo.so.1")  # fmt: skip
    gcc(tmp_path / "stubs/libzero.so.1", "int z(void) { return 0; }\n", "-shared", "-fPIC",
        "-Wl,-soname,libzero.so.1")  # fmt: skip
    gcc(bin_ / "app", "int f(void); int z(void);\nint main(void) { return f() + z(); }\n",
        str(tmp_path / "stubs/libfifo.so.1"), str(tmp_path / "stubs/libzero.so.1"),
        "-Wl,--enable-new-dtags,-rpath,/usr/local/lib")  # fmt: skip
    never = {str(p) for p in specials} | {str(lib / "libfifo.so.1")}
    opened: list[str] = []
    real_open = os.open

    def spy_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    root = Root(str(image))
    try:
        with monkeypatch.context() as mp:
            mp.setattr(os, "open", spy_open)
            analysis = guarded(lambda: find_needs(root, ["/usr/local"]))
            resolver = Resolver.for_root(root)
            for p in [*specials, bin_ / "devzero", lib / "libfifo.so.1"]:
                rel = "/" + str(p.relative_to(image))
                with pytest.raises(DepminError) as info:
                    guarded(lambda rel=rel: resolver.load(rel))  # type: ignore[misc]
                assert rel in str(info.value)
        doc, _ = guarded(lambda: cli_json(image))
    finally:
        sock.close()
    assert opened and not never & set(opened)
    assert sorted(o.path for o in analysis.scan.objects) == ["/usr/local/bin/app", "/usr/local/bin/true"]
    fails = {(u.name, u.outcome, u.problem) for u in analysis.unresolved}
    assert fails == {
        ("libfifo.so.1", Outcome.FAILED, "cannot read file data: special file"),
        ("libzero.so.1", Outcome.MISSING, None),  # never the host's /dev/zero
    }
    assert needed_by(doc, "libc6:amd64") == {b"/usr/local/bin/app", b"/usr/local/bin/true"}


# --- unreadable files and directories ------------------------------------------------------


def root_is_denied(path: Path) -> str | None:
    """None when a child without CAP_DAC_* really gets EACCES on ``path``; else why not."""
    if shutil.which(NO_DAC[0]) is None:
        return "setpriv is not installed"
    p = subprocess.run([*NO_DAC, "cat", str(path)], capture_output=True, text=True)
    if p.returncode == 0:
        return "dropping CAP_DAC_OVERRIDE does not deny root here"
    if "Permission denied" not in p.stderr:
        return f"cannot drop capabilities here: {p.stderr.strip()}"
    return None


def test_unreadable_files_and_directories_are_reported(image: Path) -> None:
    bin_ = image / "usr/local/bin"
    shutil.copy(PROG, bin_ / "true")
    shutil.copy(PROG, bin_ / "secret")
    private = image / "usr/local/private"
    private.mkdir()
    shutil.copy(PROG, private / "hidden")
    os.chmod(bin_ / "secret", 0)
    os.chmod(private, 0)
    why = root_is_denied(bin_ / "secret")
    if why:
        pytest.skip(why)

    doc, _ = cli_json(image, prefix=NO_DAC)
    assert needed_by(doc, "libc6:amd64") == {b"/usr/local/bin/true"}
    assert skipped(doc) == {
        "/usr/local/bin/secret": "cannot open: Permission denied",
        "/usr/local/private": "cannot read directory: Permission denied",
    }
    p = run_cli(["keep", "--all", "--root", str(image)], NO_DAC)
    assert (p.returncode, p.stdout) == (0, b"libc6:amd64\nlibgcc-s1:amd64\n"), p.stderr
    assert b"Traceback" not in p.stderr
    assert b"depmin: warning: /usr/local/bin/secret: cannot open: Permission denied\n" in p.stderr
    assert b"depmin: warning: /usr/local/private: cannot read directory: Permission denied\n" in (p.stderr)
    p = run_cli(["ldd", "--root", str(image), "/usr/local/bin/secret"], NO_DAC)
    assert p.returncode == 3 and b"Traceback" not in p.stderr
    assert p.stderr == (
        b"depmin: /usr/local/bin/secret: not a dynamic executable (cannot open: Permission denied)\n"
    )


# --- names ---------------------------------------------------------------------------------

ODD_NAMES = [b"with space", b"new\nline", b"bad\xffname", b"tab\tcr\r", b"-dash", b"\xe9t\xe9"]


def test_odd_names_come_out_intact(image: Path) -> None:
    bin_ = os.fsencode(image / "usr/local/bin")
    for name in ODD_NAMES:
        shutil.copy(os.fsencode(PROG), bin_ + b"/" + name)
    share = os.fsencode(image / "usr/local/share") + b"/x\xfe y"
    os.makedirs(share)
    script = share + b"/scr\xff ipt\nz"
    with open(script, "wb") as f:
        f.write(b"#!/nonexistent/interp\n")
    os.chmod(script, 0o755)
    programs = {b"/usr/local/bin/" + n for n in ODD_NAMES}

    doc, _ = cli_json(image)
    assert needed_by(doc, "libc6:amd64") == programs

    p = run_cli(["keep", "--all", "--root", str(image)])
    assert (p.returncode, p.stdout) == (0, b"libc6:amd64\nlibgcc-s1:amd64\n")
    rel_script = script[len(os.fsencode(image)) :]
    assert (b"depmin: warning: " + rel_script + b": interpreter /nonexistent/interp not found") in p.stderr

    args = sorted(programs)
    p = run_cli(["ldd", "--json", "--root", str(image), "--", *args])
    assert p.returncode == 0, p.stderr
    files = json.loads(p.stdout)["files"]
    assert [os.fsencode(f["file"]) for f in files] == args
    assert [os.fsencode(f["objects"][0]["path"]) for f in files] == args
    p = run_cli(["ldd", "--root", str(image), "--", *args])
    assert p.returncode == 0
    for a in args:
        assert a + b":\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6\n" in p.stdout


# --- files that change under the scan -----------------------------------------------------


def test_files_that_vanish_or_change_during_the_scan(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the walk and the open: deleted, turned into a FIFO, into a link; a directory goes."""
    bin_ = image / "usr/local/bin"
    for name in ("a-vanishes", "b-fifo", "c-link", "d-stays"):
        shutil.copy(PROG, bin_ / name)
    gone = image / "usr/local/lib/gone"
    gone.mkdir(parents=True)
    shutil.copy(PROG, gone / "prog")

    def to_fifo(path: str) -> None:
        os.unlink(path)
        os.mkfifo(path)

    def to_link(path: str) -> None:
        os.unlink(path)
        os.symlink(PROG, path)

    swaps: dict[str, Callable[[str], None]] = {
        str(bin_ / "a-vanishes"): os.unlink,
        str(bin_ / "b-fifo"): to_fifo,
        str(bin_ / "c-link"): to_link,
    }
    real_open, real_scandir, readlink = os.open, os.scandir, os.readlink
    gone_done: list[bool] = []

    def full(path: Any, dir_fd: int | None) -> str:
        name = os.fsdecode(path)
        return name if dir_fd is None else os.path.join(readlink(f"/proc/self/fd/{dir_fd}"), name)

    def racing_open(path: Any, *args: Any, **kwargs: Any) -> int:
        where = full(path, kwargs.get("dir_fd"))
        swap = swaps.pop(where, None)
        if swap is not None:
            swap(where)
        if where == str(gone) and not gone_done:  # the directory goes between walk and open
            gone_done.append(True)
            shutil.rmtree(gone)
        return real_open(path, *args, **kwargs)

    def racing_scandir(path: Any = ".") -> Any:
        if isinstance(path, str) and path == str(gone) and gone.exists():
            shutil.rmtree(gone)
        return real_scandir(path)

    root = Root(str(image))
    with monkeypatch.context() as mp:
        mp.setattr(os, "open", racing_open)
        mp.setattr(os, "scandir", racing_scandir)
        analysis = guarded(lambda: find_needs(root, ["/usr/local"]))
        code, _, stderr = invoke(["keep", "--all", "--root", str(image)])  # swaps are spent
    assert not swaps
    assert [o.path for o in analysis.scan.objects] == ["/usr/local/bin/d-stays"]
    problems = {s.path: s.reason for s in analysis.scan.skipped if s.problem}
    assert problems == {
        "/usr/local/bin/a-vanishes": "cannot open: No such file or directory",
        "/usr/local/bin/b-fifo": "no longer a regular file",
        "/usr/local/bin/c-link": "cannot open: Too many levels of symbolic links",
        "/usr/local/lib/gone": "cannot read directory: No such file or directory",
    }
    assert analysis.ok and code == 0
    assert b"Traceback" not in stderr
