"""Work in a forked child: its value, its exception or its death reach the caller, and
no child outlives the run.  The package state read in a child equals the one read here.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from depmin.api import start_package_state
from depmin.debian.archive import ArchiveIndex, ArchiveRecord, load_archive_index
from depmin.debian.dpkg import load_dpkg_database
from depmin.debian.pkggraph import build_package_graph, with_archive
from depmin.errors import DpkgError, WorkerError
from depmin.forked import Forked
from depmin.rootfs import Root
from tests.spies import interrupted_after


def children() -> set[int]:
    """This process's live children, as the kernel lists them."""
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as f:
        return {int(p) for p in f.read().split()}


def test_the_value_is_computed_in_another_process() -> None:
    job = Forked.start(lambda: (os.getpid(), os.nice(0), [1, "two"]), "test task")
    assert job.running
    pid, niceness, value = job.result()
    assert pid != os.getpid() and niceness == os.nice(0) and value == [1, "two"]
    assert not job.running and job.result()[0] == pid  # kept, not asked again


def test_nice_lowers_only_the_child() -> None:
    mine = os.nice(0)
    got = Forked.start(lambda: os.nice(0), "test task", nice=5).result()
    assert got == min(mine + 5, 19) and os.nice(0) == mine


def fail() -> None:
    raise DpkgError("broken on purpose", "/var/lib/dpkg/status")


def unpicklable() -> object:
    return lambda: None  # a lambda cannot be pickled


def killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize(
    ("task", "error", "message"),
    [
        (fail, DpkgError, "broken on purpose"),
        (unpicklable, WorkerError, "test task failed: .*pickle"),
        (killed, WorkerError, r"a test task process died \(killed by signal 9\)"),
    ],
)
def test_what_goes_wrong_in_the_child_is_raised_here(task: object, error: type, message: str) -> None:
    before = children()
    job = Forked.start(task, "test task")  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        job.result()
    assert children() == before


def test_cancel_kills_and_reaps_the_child() -> None:
    before = children()
    job = Forked.start(lambda: time.sleep(60), "test task")
    assert children() - before
    job.cancel()
    assert children() == before and not job.running
    with pytest.raises(WorkerError, match="cancelled"):
        job.result()


def test_done_runs_here() -> None:
    assert Forked.done(os.getpid).result() == os.getpid()
    with pytest.raises(DpkgError):
        Forked.done(fail).result()


def test_the_package_state_read_in_a_child_is_the_one_built_in_one_step() -> None:
    """On this machine's dpkg database and package lists: the graph built while a child
    reads the lists, then finished, is the one built from both at once."""
    root = Root("/")
    db = load_dpkg_database(root)
    archive = load_archive_index(root, {p.name for p in db.installed_packages()})
    here = build_package_graph(db, archive)
    for background in (True, False):
        there = start_package_state(root, background=background).result()
        assert there.graph.nodes == here.nodes and there.graph.edges == here.edges
        assert there.graph.warnings == here.warnings
        assert there.warnings == (*db.warnings, *archive.warnings, *here.warnings)
    assert sum(n.priority == "required" for n in here.nodes.values()) > 10


def test_the_lists_view_applied_later_is_the_one_built_in_one_step() -> None:
    """A made archive that changes apt's view of some installed packages (Priority of the
    installed version, Essential, Important, Protected, a record of another version)."""
    db = load_dpkg_database(Root("/"))
    pkgs = [p for p in db.installed_packages() if p.arch != "all"][:12]
    records = []
    for i, p in enumerate(pkgs):
        version = p.version if i % 3 else p.version + "+other"
        priority = ["required", "important", None][i % 3]
        essential, important, protected = [None, True, False][i % 3], [True, None, False][i % 3], i % 4 == 2
        records.append(ArchiveRecord(p.name, p.arch, version, priority, essential, important, protected))
    archive = ArchiveIndex(tuple(records), ("made",))
    bare = build_package_graph(db)
    whole = build_package_graph(db, archive)
    assert whole.nodes != bare.nodes  # the archive matters here
    assert with_archive(bare, db, archive).nodes == whole.nodes
    empty = ArchiveIndex((), ())
    assert with_archive(bare, db, empty).nodes == build_package_graph(db, empty).nodes


def test_a_cancelled_package_state_leaves_no_child() -> None:
    before = children()
    job = start_package_state(Root("/"))
    job.cancel()
    assert children() == before


def test_an_interrupted_wait_kills_and_reaps_the_child() -> None:
    before = children()
    job = Forked.start(lambda: time.sleep(60), "test task")
    with interrupted_after(0.2), pytest.raises(KeyboardInterrupt):
        job.result()
    assert children() == before and not job.running


class Rebuilt(Exception):
    """Pickles, but cannot be unpickled: its __init__ wants two arguments, args holds one."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a} {b}")


def rebuilt_fails() -> None:
    raise Rebuilt("one", "two")


def test_an_error_that_cannot_be_rebuilt_is_named_not_lost() -> None:
    with pytest.raises(WorkerError, match=r"test task failed: Rebuilt\('one two'\)"):
        Forked.start(rebuilt_fails, "test task").result()
