"""depmin's resolver against the real ldd on every ELF file of the system trees.

Issue #2: for every ELF executable and shared library in /usr/bin, /usr/sbin,
/usr/lib/x86_64-linux-gnu and the pyenv CPython trees, the set of resolved real
paths must equal ldd's (vdso aside).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest

from depmin.errors import DepminError
from depmin.loader.resolve import LoaderSettings, Resolver
from depmin.loader.scan import scan
from depmin.rootfs import Root
from tests.oracles import host_isa_level, ldd, pyenv_versions

#: Files whose ldd answer depmin deliberately does not reproduce, with the reason.
EXCEPTIONS: dict[str, str] = {}


def _elf_files(top: str) -> list[str]:
    result = scan(Root("/"), [top])
    return [e.path for e in result.objects]


def _compare(files: list[str]) -> tuple[int, list[str]]:
    resolver = Resolver.for_root(Root("/"), LoaderSettings(isa_level=host_isa_level()))
    mismatches: list[str] = []

    def ours(path: str) -> set[str]:
        try:
            res = resolver.load(path)
        except DepminError:
            return set()
        found = {o.realpath for o in res.libraries}
        found |= {f"{r.name} => not found" for r in res.missing}
        return found

    with ThreadPoolExecutor(max_workers=4) as pool:
        theirs = list(pool.map(ldd, files))
    for path, (expected, raw) in zip(files, theirs):
        if path in EXCEPTIONS:
            continue
        got = ours(path)
        if "not a dynamic executable" in raw or "statically linked" in raw:
            expected = set()
        if got != expected:
            mismatches.append(
                f"{path}: depmin-only {sorted(got - expected)}, ldd-only {sorted(expected - got)}"
            )
    return len(files), mismatches


@pytest.mark.parametrize("top", ["/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"])
def test_system_trees_match_ldd(top: str, report: Callable[[str], None]) -> None:
    files = _elf_files(top)
    assert files, f"no ELF files in {top}?"
    count, mismatches = _compare(files)
    report(f"ldd vs depmin: {top}: {count} ELF files compared, {len(mismatches)} differ")
    assert not mismatches, "\n".join(mismatches[:20])


@pytest.mark.parametrize("version", pyenv_versions(), ids=lambda p: p.name)
def test_pyenv_cpython_trees_match_ldd(version: Path, report: Callable[[str], None]) -> None:
    files = _elf_files(str(version))
    assert files
    count, mismatches = _compare(files)
    report(f"ldd vs depmin: {version}: {count} ELF files compared, {len(mismatches)} differ")
    assert not mismatches, "\n".join(mismatches[:20])


def test_pyenv_versions_exist() -> None:
    if not pyenv_versions():
        pytest.skip("no pyenv CPython builds on this machine (the comparison above ran on none)")
