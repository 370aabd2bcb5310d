"""A kill -9 in the middle of a real ``apply --purge``, in a Debian root the test makes.

The root is scripts/e2e's stage 1 (debootstrap minbase of trixie, cached).  Into it go
a library package (libdemo1), the "build dependencies" that pulled it in (demo-dev
and three junk packages whose maintainer scripts leave a marker and then take a
moment), and a program in /usr/local/bin that links the library.  depmin is killed
(its whole process group, as a cancelled CI job is) at each maintainer script dpkg
runs during the purge, and at apt's DPkg::Pre-Invoke and Post-Invoke hooks.  After
every kill: the library is installed and apt's own autoremove would not remove it;
and a rerun of the same command ends exactly where an uninterrupted run ends.

The test runs the root's own apt-get and dpkg (``--chroot``): it made the root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.oracles import gcc, have
from tests.test_apply_safety import apt_autoremoves, apt_manual

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
JUNK = ("junk-a", "junk-b", "junk-c")
MARKS = Path("kill-points")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root"}


def _need() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (dpkg and apt-get in a chroot)")
    for tool in ("debootstrap", "unshare", "zstd", "dpkg-deb", "gcc"):
        if not have(tool):
            pytest.skip(f"{tool} is not installed")


def arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()


def deb(
    out: Path, name: str, depends: str = "", files: dict[str, Path] | None = None, scripts: bool = False
) -> Path:
    """A binary package built by dpkg-deb; ``scripts``: prerm and postrm that leave a marker
    (``/kill-points/NAME.SCRIPT.ARG``) and then sleep, so a kill lands inside them."""
    tree = out / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    control = (
        f"Package: {name}\nVersion: 1.0\nArchitecture: {arch()}\nMaintainer: depmin tests <t@example.org>\n"
    )
    if depends:
        control += f"Depends: {depends}\n"
    (tree / "DEBIAN/control").write_text(control + f"Description: {name} for the purge-kill test\n")
    for dest, src in (files or {}).items():
        (tree / dest.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, tree / dest.lstrip("/"))
    (tree / f"usr/share/{name}").mkdir(parents=True, exist_ok=True)
    (tree / f"usr/share/{name}/data").write_text(name)
    if scripts:
        for script in ("prerm", "postrm"):
            f = tree / "DEBIAN" / script
            f.write_text(
                f'#!/bin/sh\nmkdir -p /{MARKS}\n: > "/{MARKS}/{name}.{script}.$1"\nsleep 0.4\nexit 0\n'
            )
            f.chmod(0o755)
    path = out / f"{name}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(path)],
        check=True,
        capture_output=True,
    )
    return path


def in_root(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    """The test's own commands in its root (private /proc, no network)."""
    return subprocess.run(
        [
            "unshare",
            "--net",
            "--mount",
            "--pid",
            "--fork",
            f"--mount-proc={root}/proc",
            "chroot",
            str(root),
            "/bin/sh",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


def mounted_below(path: Path) -> bool:
    out = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
    return any(m == str(path) or m.startswith(f"{path}/") for m in out.splitlines())


def copy_root(src: Path, dst: Path) -> None:
    assert not mounted_below(src)
    subprocess.run(["cp", "-a", "--one-file-system", str(src), str(dst)], check=True)


def remove_root(root: Path) -> None:
    assert not mounted_below(root)
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The root as an image build leaves it before the pipeline, and its saved baseline."""
    _need()
    tmp = tmp_path_factory.mktemp("purge-kill")
    p = subprocess.run(
        [sys.executable, str(REPO / "scripts/e2e"), "--suite", "trixie", "--stage1"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert p.returncode == 0, p.stderr
    tarball = Path(p.stdout.strip().splitlines()[-1])
    root = tmp / "built"
    root.mkdir()
    z = subprocess.Popen(["zstd", "-dc", str(tarball)], stdout=subprocess.PIPE)
    subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-xpf", "-"], stdin=z.stdout, check=True)
    assert z.wait() == 0
    lib = gcc(
        tmp / "libdemo.so.1",
        "int demo(void) { return 42; }\n",
        "-shared",
        "-fPIC",
        "-Wl,-soname,libdemo.so.1",
    )
    (tmp / "libdemo.so").symlink_to("libdemo.so.1")
    prog = gcc(
        tmp / "demo",
        '#include <stdio.h>\nint demo(void);\nint main(void) { printf("demo %d\\n", demo()); }\n',
        f"-L{tmp}",
        "-ldemo",
    )
    multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip()
    debs = root / "debs"
    debs.mkdir()
    deb(debs, "libdemo1", files={f"/usr/lib/{multiarch}/libdemo.so.1": lib})
    deb(debs, "demo-dev", depends="libdemo1", scripts=True)
    for name in JUNK:
        deb(debs, name, scripts=True)
    (root / "etc/apt/apt.conf.d/90kill-points").write_text(
        f'DPkg::Pre-Invoke {{ "mkdir -p /{MARKS}; : > /{MARKS}/pre-invoke; sleep 0.4"; }};\n'
        f'DPkg::Post-Invoke {{ "mkdir -p /{MARKS}; : > /{MARKS}/post-invoke; sleep 0.4"; }};\n'
    )
    baseline = in_root(root, "apt-mark showmanual").stdout
    # as apt-get install leaves them: what was asked for manual, the library it pulled in auto
    p = in_root(root, "set -e; dpkg -i /debs/*.deb >/dev/null; apt-mark auto libdemo1 >/dev/null; ldconfig; "
                "rm -rf /debs /kill-points")  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(prog, root / "usr/local/bin/demo")
    assert in_root(root, "/usr/local/bin/demo").stdout == "demo 42\n"
    yield root, " ".join(baseline.split())
    remove_root(tmp)


def apply_argv(root: Path, baseline: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "depmin",
        "apply",
        "--root",
        str(root),
        "--chroot",
        "--purge",
        "--baseline",
        baseline,
    ]


def state(root: Path, tmp: Path) -> tuple[list[str], list[str]]:
    """(installed packages with their dpkg state, manual packages): what the run ends with."""
    p = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={root}/var/lib/dpkg",
            "-W",
            "-f",
            "${db:Status-Abbrev}${binary:Package}\n",
        ],
        capture_output=True,
        text=True,
    )
    return sorted(p.stdout.split("\n")), sorted(apt_manual(root, tmp, arch()))


def check_safe(root: Path, tmp: Path, where: str) -> None:
    p = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${db:Status-Abbrev}", "libdemo1"],
        capture_output=True,
        text=True,
    )
    assert p.stdout.startswith("ii"), f"killed at {where}: libdemo1 is {p.stdout!r}"
    assert "libdemo1" not in apt_autoremoves(root, tmp, arch()), (
        f"killed at {where}: apt would remove libdemo1"
    )
    assert in_root(root, "/usr/local/bin/demo").stdout == "demo 42\n"


def kill_points() -> list[str]:
    points = ["pre-invoke"]
    for name in ("demo-dev", *JUNK):
        points += [f"{name}.prerm.remove", f"{name}.postrm.remove", f"{name}.postrm.purge"]
    return points + ["post-invoke"]


def test_a_kill_during_the_purge_keeps_what_is_needed_and_a_rerun_converges(
    built: tuple[Path, str], tmp_path: Path, report: Callable[[str], None]
) -> None:
    base, baseline = built
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ref = tmp_path / "reference"
    copy_root(base, ref)
    p = subprocess.run(apply_argv(ref, baseline), capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    expected = state(ref, tmp_path)
    seen = sorted(os.listdir(ref / MARKS))
    assert set(seen) == set(kill_points()), f"the purge ran other scripts than the test expects: {seen}"
    assert not any(line.endswith(("demo-dev", *JUNK)) for line in expected[0]), expected[0]
    assert "libdemo1" in expected[1]
    check_safe(ref, tmp_path, "nowhere (the uninterrupted run)")
    remove_root(ref)

    tried = []
    for point in kill_points():
        root = tmp_path / "killed"
        copy_root(base, root)
        run = subprocess.Popen(
            apply_argv(root, baseline),
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while not (root / MARKS / point).exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.poll() is None, f"apply ended before {point}"
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        time.sleep(0.2)  # the PID namespace of the purge goes with its first process
        check_safe(root, tmp_path, point)
        p = subprocess.run(apply_argv(root, baseline), capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, f"rerun after a kill at {point}: {p.stderr}"
        assert state(root, tmp_path) == expected, f"rerun after a kill at {point} ends elsewhere"
        audit = subprocess.run(
            ["dpkg", f"--admindir={root}/var/lib/dpkg", "--audit"], capture_output=True, text=True
        )
        assert audit.stdout == "", f"after a kill at {point} and the rerun: {audit.stdout}"
        check_safe(root, tmp_path, f"{point}, then the rerun")
        tried.append(point)
        remove_root(root)
    report(
        f"apply --purge killed at {len(tried)} points of a real purge (apt's Pre/Post-Invoke, every "
        f"prerm and postrm dpkg ran): libdemo1 stayed installed and not autoremovable; "
        f"each rerun ended as the uninterrupted run ({len(expected[0])} packages)"
    )
