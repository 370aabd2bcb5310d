"""What one resolver reuses across a run's loads, or gets from a forked copy, is what fresh reads give.

A big tree's loads repeat: the scan has parsed every object already, and most
requests and link-map entries are equal from one load to the next (libc asking
for ld.so at the same place).  The resolver takes the scan's objects instead of
reading them again and shares equal frozen records between loads; with many
objects a forked copy loads part of them and sends them back packed.  The
oracle is a fresh resolver per load (or one process), which reads everything
itself; ldd checks the loads themselves elsewhere (test_fixtures_ldd,
test_ldd_system).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import pytest

import depmin.loader.needs as needs
from depmin.loader.needs import analyse, load_objects
from depmin.loader.resolve import LoaderSettings, Resolver
from depmin.loader.scan import scan
from depmin.loader.wire import pack_loads, unpack_loads
from depmin.rootfs import Root
from tests.oracles import gcc
from tests.spies import interrupted_after

SETTINGS = LoaderSettings(dlopen_priorities=frozenset({"required", "recommended"}), glibc_dlopens=True)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Programs that load a library of the same tree through $ORIGIN, and libz from the system."""
    top = tmp_path_factory.mktemp("reuse") / "t"
    lib = gcc(top / "lib" / "libpart.so", "int part(void) { return 1; }\n", "-shared", "-fPIC",
              "-Wl,-soname,libpart.so")  # fmt: skip
    for i in range(3):
        gcc(top / "bin" / f"prog{i}", "int part(void); int main(void) { return part(); }\n",
            "-Wl,--no-as-needed", f"-L{lib.parent}", "-lpart", "-lz", "-Wl,-rpath,$ORIGIN/../lib",
            "-Wl,--enable-new-dtags")  # fmt: skip
    return top


def test_the_scans_objects_are_not_read_again(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Root("/")
    found = scan(root, [str(tree)], jobs=1)
    assert {Path(e.path).name for e in found.objects} == {"libpart.so", "prog0", "prog1", "prog2"}
    fresh = {e.path: Resolver.for_root(root, SETTINGS).load(e.path) for e in found.objects}

    opened: list[str] = []
    real_open = Root.open_regular

    def spy(self: Root, resolved: str) -> int:
        opened.append(resolved)
        return real_open(self, resolved)

    monkeypatch.setattr(Root, "open_regular", spy)
    resolver = Resolver.for_root(root, SETTINGS)
    loaded: dict[str, object] = {}
    load_objects(resolver, found.objects, loaded)  # type: ignore[arg-type]
    assert loaded == fresh
    scanned = {e.path for e in found.objects}
    assert not scanned & set(opened), "a scanned object was read again"
    assert any("libz" in p for p in opened)  # what the scan did not read is read as before


def test_equal_records_are_shared_and_loads_unchanged(tree: Path) -> None:
    root = Root("/")
    progs = [str(tree / "bin" / f"prog{i}") for i in range(3)]
    resolver = Resolver.for_root(root, SETTINGS)
    shared = [resolver.load(p) for p in progs]
    alone = [Resolver.for_root(root, SETTINGS).load(p) for p in progs]
    assert shared == alone

    first, second = shared[0], shared[1]
    assert first.objects[0] is not second.objects[0]  # different programs
    assert first.objects[0] != second.objects[0]
    libz = [next(o for o in res.objects if o.soname == "libz.so.1") for res in (first, second)]
    assert libz[0] == libz[1] and libz[0] is libz[1]
    same_requests = [a for a, b in zip(first.requests, second.requests) if a == b]
    assert same_requests and all(
        a is b for a, b in zip(first.requests, second.requests) if a == b
    )
    # The fresh resolvers share nothing with each other.
    assert alone[0].requests[-1] is not alone[1].requests[-1]


def test_needed_by_keeps_the_order_of_the_roots(tree: Path) -> None:
    """Each library's users: the roots whose loads need it, in the roots' order, once each."""
    root = Root("/")
    found = scan(root, [str(tree)], jobs=1)
    got = analyse(found, Resolver.for_root(root, SETTINGS))
    expected: dict[str, list[str]] = {}
    for res in got.roots:
        for obj in res.runtime_files:
            users = expected.setdefault(obj.realpath, [])
            if res.main not in users:
                users.append(res.main)
    assert {lib.realpath: list(lib.needed_by) for lib in got.libraries} == expected
    part = next(lib for lib in got.libraries if lib.realpath.endswith("/libpart.so"))
    assert part.in_trees and part.needed_by == tuple(str(tree / "bin" / f"prog{i}") for i in range(3))


def _loads(tree: str, jobs: int) -> dict[str, object]:
    root = Root("/")
    found = scan(root, [tree], jobs=1)
    into: dict[str, object] = {}
    load_objects(Resolver.for_root(root, SETTINGS), found.objects, into, jobs)  # type: ignore[arg-type]
    return into


@pytest.mark.parametrize("where", ["fixture", "/usr/lib/x86_64-linux-gnu"])
def test_loads_from_a_forked_child_are_the_loads_of_one_process(
    tree: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = str(tree) if where == "fixture" else where
    if where == "fixture":
        monkeypatch.setattr(needs, "SPLIT_MIN", 2)
    elif not os.path.isdir(top):
        pytest.skip(f"{top} is not on this machine")
    sent: list[int] = []
    real_unpack = needs.unpack_loads

    def spy(packed: object, files: object) -> object:
        got = real_unpack(packed, files)  # type: ignore[arg-type]
        sent.append(len(got))
        return got

    one = _loads(top, 1)
    monkeypatch.setattr(needs, "unpack_loads", spy)
    two = _loads(top, 2)
    assert sent and sent[0] > 0, "no load came from the child"
    assert len(one) >= needs.SPLIT_MIN
    assert two == one


def test_a_child_that_dies_leaves_the_loads_to_this_process(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(needs, "SPLIT_MIN", 2)
    one = _loads(str(tree), 1)
    monkeypatch.setattr(needs, "_packed_loads", lambda resolver, objects: os._exit(3))
    assert _loads(str(tree), 2) == one


def test_a_packed_load_whose_file_is_gone_is_left_out(tmp_path: Path, tree: Path) -> None:
    """Rebuilt by a process that cannot read one of its objects any more: that load is not
    rebuilt (the caller computes it again and reports what it finds)."""
    copy = tmp_path / "t"
    shutil.copytree(tree, copy, symlinks=True)
    root = Root("/")
    found = scan(root, [str(copy)], jobs=1)
    resolver = Resolver.for_root(root, SETTINGS)
    loads = {e.path: resolver.load(e.path) for e in found.objects}
    packed = pack_loads(loads)
    assert len(packed.requests) < sum(len(r.requests) for r in loads.values())  # shared rows
    gone = str(copy / "bin" / "prog0")
    os.unlink(gone)
    back = unpack_loads(packed, Resolver.for_root(root, SETTINGS).files)
    assert set(back) == set(loads) - {gone}
    assert all(back[p] == loads[p] for p in back)


def test_an_interrupt_while_loading_leaves_no_child(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while this process loads its share: the child is killed and reaped."""
    monkeypatch.setattr(needs, "SPLIT_MIN", 2)
    real_load = needs.load_object
    started: list[int] = []

    def slow_child(resolver: Resolver, objects: object) -> object:
        time.sleep(60)
        return None

    def slow_here(resolver: Resolver, elf: object) -> object:
        started.append(1)
        time.sleep(0.2)
        return real_load(resolver, elf)  # type: ignore[arg-type]

    monkeypatch.setattr(needs, "_packed_loads", slow_child)
    monkeypatch.setattr(needs, "load_object", slow_here)
    with pytest.raises(KeyboardInterrupt), interrupted_after(0.3):
        _loads(str(tree), 2)
    assert started
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def _comparable(loads: dict[str, object]) -> dict[str, object]:
    """Errors compare by their message (exceptions compare by identity)."""
    return {k: (f"{type(v).__name__}: {v}" if isinstance(v, Exception) else v) for k, v in loads.items()}


def test_an_object_that_fails_to_load_in_the_childs_share_is_the_same_error(
    tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "t"
    shutil.copytree(tree, copy, symlinks=True)
    odd = copy / "bin" / "prog2"  # the last object: in the child's share
    data = bytearray(odd.read_bytes())
    data[18:20] = (0xBEEF).to_bytes(2, "little")  # e_machine nobody has
    odd.write_bytes(bytes(data))
    monkeypatch.setattr(needs, "SPLIT_MIN", 2)
    one, two = _loads(str(copy), 1), _loads(str(copy), 2)
    assert "machine" in str(one[str(odd)])
    assert _comparable(two) == _comparable(one)


def test_where_no_child_can_be_forked_every_load_is_done_here_once(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import depmin.forked as forked

    monkeypatch.setattr(needs, "SPLIT_MIN", 2)
    one = _loads(str(tree), 1)

    def no_fork(*args: object, **kwargs: object) -> tuple[int, int]:
        raise OSError(11, "Resource temporarily unavailable")

    packed: list[int] = []
    monkeypatch.setattr(forked, "spawn", no_fork)
    monkeypatch.setattr(needs, "_packed_loads", lambda resolver, objects: packed.append(1))
    assert _loads(str(tree), 2) == one
    assert not packed, "the child's share was packed in this process"


def test_a_load_whose_object_this_process_read_differently_is_left_out(tree: Path) -> None:
    """The child read a library after the fork and this process read it too, with other
    contents (the file changed in between): the loads that hold it are not rebuilt."""
    root = Root("/")
    child = Resolver.for_root(root, SETTINGS)
    progs = [str(tree / "bin" / f"prog{i}") for i in range(3)]
    loads = {p: child.load(p) for p in progs}
    libz = next(o for o in loads[progs[0]].objects if o.soname == "libz.so.1")
    packed = pack_loads(loads, list(child.files.known().values()))
    here = Resolver.for_root(root, SETTINGS)
    here.files.know([dataclasses.replace(libz.elf, soname="libz.so.changed")])
    assert unpack_loads(packed, here.files) == {}  # every program needs libz
    fresh = Resolver.for_root(root, SETTINGS)
    assert unpack_loads(packed, fresh.files) == loads  # the child's objects are taken as sent
    assert fresh.files.known()[libz.realpath] is libz.elf  # not read again here
