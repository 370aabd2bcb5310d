"""The scan's worker processes give the answer one process gives, and fail loudly.

The oracle is the same scan run in this process alone (``jobs=1``); the trees are
this machine's CPython trees (or /usr/lib/python3) and a made tree with enough
directories to go to the workers.  A worker's exception, a worker killed, and a
cancelled scan are each checked for what the caller sees and for what is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

import depmin.loader.scan as scan_mod
from depmin.errors import ScanError
from depmin.loader.scan import PARALLEL_MIN_DIRS, ScanResult, scan, start_scan
from depmin.rootfs import Root
from tests.oracles import pyenv_versions
from tests.spies import interrupted_after


def made_tree(top: Path, dirs: int = 3 * PARALLEL_MIN_DIRS) -> Path:
    """Directories in two levels, each with an ELF object, a script and data."""
    for i in range(dirs):
        d = top / f"d{i % 7}" / f"sub{i}"
        d.mkdir(parents=True)
        shutil.copy2("/usr/bin/true", d / "prog")
        (d / "run").write_text("#!/bin/sh\nexit 0\n")
        (d / "run").chmod(0o755)
        (d / "data.txt").write_text("x" * i)
        (d / "odd \n name").write_bytes(b"\x7fELF")  # too short: a skipped problem
    return top


def same(a: ScanResult, b: ScanResult) -> None:
    assert a.trees == b.trees
    assert [o.path for o in a.objects] == [o.path for o in b.objects]
    assert a.objects == b.objects
    assert a.scripts == b.scripts
    assert a.skipped == b.skipped
    assert a.others == b.others


def test_made_tree_is_the_same_with_any_number_of_workers(tmp_path: Path) -> None:
    made_tree(tmp_path / "t")
    root = Root(str(tmp_path))
    one = scan(root, ["/t"], jobs=1)
    assert len(one.objects) == 3 * PARALLEL_MIN_DIRS and len(one.scripts) == 3 * PARALLEL_MIN_DIRS
    assert len([s for s in one.skipped if s.problem]) == 3 * PARALLEL_MIN_DIRS
    for jobs in (2, 3, 8):
        same(scan(root, ["/t"], jobs=jobs), one)


@pytest.mark.parametrize("tree", [str(p) for p in pyenv_versions()[:2]] or ["/usr/lib/python3"])
def test_real_trees_are_the_same_with_any_number_of_workers(tree: str) -> None:
    root = Root("/")
    one = scan(root, [tree], jobs=1)
    assert one.objects
    for jobs in (2, 4):
        same(scan(root, [tree], jobs=jobs), one)


def _fail_in_workers(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    """Make ``_classify_head`` (ELF files and scripts) misbehave in forked workers only
    (this process is the parent)."""
    parent = os.getpid()
    real = scan_mod._classify_head

    class Unpicklable(Exception):
        def __init__(self) -> None:
            super().__init__("cannot travel")
            self.hook = lambda: None

    def classify(rel: str, fd: int, head: bytes, part: object) -> None:
        if os.getpid() != parent and rel.endswith("/prog"):
            if action == "raise":
                raise ZeroDivisionError(f"injected at {rel}")
            if action == "unpicklable":
                raise Unpicklable()
            os.kill(os.getpid(), signal.SIGKILL)
        real(rel, fd, head, part)  # type: ignore[arg-type]

    monkeypatch.setattr(scan_mod, "_classify_head", classify)


def no_children_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.mark.parametrize(
    ("action", "error", "match"),
    [
        ("raise", ZeroDivisionError, "injected at /t/d"),  # the worker's own exception
        ("unpicklable", ScanError, "scan worker failed: .*cannot travel"),
        ("kill", ScanError, r"a scan worker process died \(killed by signal 9\)"),
    ],
)
def test_a_failing_worker_is_an_error_in_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str, error: type[BaseException], match: str
) -> None:
    made_tree(tmp_path / "t")
    _fail_in_workers(monkeypatch, action)
    with pytest.raises(error, match=match):
        scan(Root(str(tmp_path)), ["/t"], jobs=2)
    assert no_children_left()


def test_a_cancelled_scan_leaves_no_process(tmp_path: Path) -> None:
    made_tree(tmp_path / "t")
    job = start_scan(Root(str(tmp_path)), ["/t"], jobs=2)
    assert job.running
    job.cancel()
    assert not job.running and no_children_left()
    assert job.result().objects == ()  # the part this process walked is dropped too


def test_a_failure_in_this_process_share_stops_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process walks what is left when it asks for the result; if that fails, no worker
    is left behind."""
    made_tree(tmp_path / "t", dirs=40 * PARALLEL_MIN_DIRS)
    parent = os.getpid()
    real = scan_mod._classify_head

    def classify(rel: str, fd: int, head: bytes, part: object) -> None:
        if os.getpid() == parent and rel.endswith("/prog"):
            raise KeyboardInterrupt
        real(rel, fd, head, part)  # type: ignore[arg-type]

    job = start_scan(Root(str(tmp_path)), ["/t"], jobs=2)
    monkeypatch.setattr(scan_mod, "_classify_head", classify)  # after the fork: this process only
    with pytest.raises(KeyboardInterrupt):
        job.result()
    assert no_children_left()


def test_this_process_hands_over_its_objects_as_it_finds_them(tmp_path: Path) -> None:
    made_tree(tmp_path / "t", dirs=20 * PARALLEL_MIN_DIRS)
    calls: list[tuple[int, int]] = []

    def found(objects: list[object]) -> None:
        calls.append((id(objects), len(objects)))

    result = start_scan(Root(str(tmp_path)), ["/t"], jobs=2).result(found)
    assert calls, "this process walked no subtree"
    assert len({i for i, _ in calls}) == 1  # the same list, growing
    sizes = [n for _, n in calls]
    assert sizes == sorted(sizes) and sizes[-1] <= len(result.objects)


@pytest.mark.parametrize("tree", [str(p) for p in pyenv_versions()[:1]] + ["/usr/lib/python3"])
def test_loading_while_scanning_gives_the_analysis_of_one_process(tree: str) -> None:
    """find_needs loads this process's objects between its subtrees (jobs=2); the answer
    is the one of a scan and analysis in this process alone."""
    from depmin.api import find_needs
    from depmin.loader.resolve import LoaderSettings

    settings = LoaderSettings(dlopen_priorities=frozenset({"required", "recommended"}), glibc_dlopens=True)
    one = find_needs(Root("/"), [tree], settings=settings, jobs=1)
    two = find_needs(Root("/"), [tree], settings=settings, jobs=2)
    assert one.scan.objects and two.libraries == one.libraries
    assert (two.roots, two.inner, two.unresolved) == (one.roots, one.inner, one.unresolved)
    assert (two.errors, two.warnings, two.suggested) == (one.errors, one.warnings, one.suggested)


def test_an_interrupted_wait_for_the_workers_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted while it waits for a slow worker's part: every worker is killed and reaped."""
    made_tree(tmp_path / "t")
    parent = os.getpid()
    real = scan_mod._classify_head

    def slow(rel: str, fd: int, head: bytes, part: object) -> None:
        if os.getpid() != parent:
            time.sleep(60)
        real(rel, fd, head, part)  # type: ignore[arg-type]

    monkeypatch.setattr(scan_mod, "_classify_head", slow)
    job = start_scan(Root(str(tmp_path)), ["/t"], jobs=2)

    with interrupted_after(0.5), pytest.raises(KeyboardInterrupt):
        job.result()
    assert no_children_left()
