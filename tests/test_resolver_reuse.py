"""What one resolver reuses across a run's loads gives the answer of fresh reads.

A big tree's loads repeat: the scan has parsed every object already, and most
requests and link-map entries are equal from one load to the next (libc asking
for ld.so at the same place).  The resolver takes the scan's objects instead of
reading them again and shares equal frozen records between loads.  The oracle
is a fresh resolver per load, which reads everything itself; ldd checks the
loads themselves elsewhere (test_fixtures_ldd, test_ldd_system).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from depmin.loader.needs import analyse, load_objects
from depmin.loader.resolve import LoaderSettings, Resolver
from depmin.loader.scan import scan
from depmin.rootfs import Root
from tests.oracles import gcc

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
