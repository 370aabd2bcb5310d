"""Library ownership against dpkg-query on every library the ELF files of /usr load.

Issue #3: for each library that depmin resolves for an ELF file under /usr (path
as ld.so opens it, and its canonical path), ``depmin.owners.file_owners`` must
name exactly the packages ``LC_ALL=C dpkg-query --search`` prints for whichever
of the ``/lib/...`` and ``/usr/lib/...`` forms dpkg recorded, and the other
(merged-/usr twin) form, which dpkg-query does not know, must map to the same
owners.  The oracle helpers are shared with tests/test_keep.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Callable

import pytest

from depmin.debian.dpkg import USR_ALIASES, load_dpkg_database
from depmin.errors import DepminError
from depmin.loader.resolve import Resolver
from depmin.loader.scan import scan
from depmin.owners import file_owners
from depmin.rootfs import Root
from tests.oracles import have

_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
#: Patterns per dpkg-query call, far below ARG_MAX for library paths.
_BATCH = 400


def host_aliases() -> tuple[str, ...]:
    """The merged-/usr top directories of this host: symlinks that resolve to their twin."""
    return tuple(
        a for a in USR_ALIASES if os.path.islink(a) and os.path.realpath(a) == "/usr" + a
    )


def twin(path: str, aliases: Iterable[str]) -> str | None:
    """The other spelling of ``path`` across a merged-/usr alias, or None if it has none."""
    for a in aliases:
        if path.startswith(a + "/"):
            return "/usr" + path
        if path.startswith("/usr" + a + "/"):
            return path[len("/usr") :]
    return None


@dataclass(frozen=True)
class Search:
    """What ``dpkg-query --search`` printed for a batch of exact paths."""

    owners: Mapping[str, frozenset[str]]  # path -> owners, for paths it found
    diverted: frozenset[str]  # paths that appear in a "diversion by" line
    failed: frozenset[str]  # paths it reported "no path found matching"


_OWNER_LINE = re.compile(r"^(?!diversion by )(.+?): (/.*)$")
_DIVERSION_LINE = re.compile(r"^diversion by .+? (?:from|to): (/.*)$")
_NOT_FOUND = re.compile(r"^dpkg-query: no path found matching pattern (/.*)$")


def dpkg_search(paths: Iterable[str], admindir: str | None = None) -> Search:
    """Batched ``LC_ALL=C dpkg-query --search`` on exact paths (no glob characters)."""
    todo = sorted(set(paths))
    assert not any(set(p) & set("*?[\\") for p in todo), "exact paths only"
    owners: dict[str, set[str]] = {}
    diverted: set[str] = set()
    failed: set[str] = set()
    extra = [f"--admindir={admindir}"] if admindir else []
    for i in range(0, len(todo), _BATCH):
        proc = subprocess.run(
            ["dpkg-query", *extra, "--search", "--", *todo[i : i + _BATCH]],
            capture_output=True,
            text=True,
            env=_ENV,
            errors="surrogateescape",
            check=False,
        )
        assert proc.returncode in (0, 1), proc.stderr
        for line in proc.stdout.splitlines():
            d = _DIVERSION_LINE.match(line)
            if d:
                diverted.add(d.group(1))
                continue
            m = _OWNER_LINE.match(line)
            assert m, f"unexpected dpkg-query line {line!r}"
            owners.setdefault(m.group(2), set()).update(m.group(1).split(", "))
        for line in proc.stderr.splitlines():
            n = _NOT_FOUND.match(line)
            if n:
                failed.add(n.group(1))
    frozen = {p: frozenset(o) for p, o in owners.items()}
    return Search(frozen, frozenset(diverted), frozenset(failed))


def recorded_owners(search: Search, path: str, aliases: Iterable[str]) -> frozenset[str]:
    """Owners dpkg-query gives for the form of ``path`` dpkg recorded (either, or both)."""
    found = set(search.owners.get(path, ()))
    other = twin(path, aliases)
    if other is not None:
        found |= search.owners.get(other, frozenset())
    return frozenset(found)


def opened_form(path: str) -> str:
    """The path ld.so opened with its directories resolved: where dpkg records a link.

    dpkg-query matches paths literally, so ``$ORIGIN/../lib`` spellings need this;
    the last component stays a link, whose owner is needed as well as the target's.
    """
    head, _, base = path.rpartition("/")
    return os.path.join(os.path.realpath(head or "/"), base)


def search_forms(paths: Iterable[str], aliases: Iterable[str]) -> set[str]:
    """Each path and its twin: what to ask dpkg-query so either recorded form is found."""
    forms: set[str] = set()
    for p in paths:
        forms.add(p)
        other = twin(p, aliases)
        if other is not None:
            forms.add(other)
    return forms


@pytest.mark.skipif(not have("dpkg-query"), reason="needs dpkg-query")
def test_owners_of_every_library_under_usr_match_dpkg_query(
    report: Callable[[str], None],
) -> None:
    aliases = host_aliases()
    if not aliases:
        pytest.skip("this host is not merged-/usr: there are no twin forms to compare")
    root = Root("/")
    result = scan(root, ["/usr"])
    resolver = Resolver.for_root(root)
    pairs: set[tuple[str, str]] = set()
    loaded = 0
    for elf in result.objects:
        try:
            res = resolver.load(elf.path)
        except DepminError:
            continue
        loaded += 1
        pairs.update((o.path, o.realpath) for o in res.runtime_files)
    # Each canonical path is also looked up on its own, as file_owners(real, real).
    pairs |= {(real, real) for _, real in pairs}
    assert loaded and pairs

    forms = {p for pair in pairs for p in pair} | {opened_form(p) for p, _ in pairs}
    search = dpkg_search(search_forms(forms, aliases))
    db = load_dpkg_database(root)
    wrong: list[str] = []
    checked = owned = twins = twin_failed = diverted = 0
    for path, real in sorted(pairs):
        if {path, real, twin(path, aliases), twin(real, aliases)} & search.diverted:
            diverted += 1  # dpkg-query prints no owner line for these; see test_keep.py
            continue
        expected = recorded_owners(search, opened_form(path), aliases)
        expected |= recorded_owners(search, real, aliases)
        got = file_owners(db, path, real)
        checked += 1
        owned += bool(expected)
        if got != tuple(sorted(expected)):
            wrong.append(f"{path} ({real}): depmin {got}, dpkg-query {sorted(expected)}")
        tp, tr = twin(path, aliases), twin(real, aliases)
        if tp is None or tr is None:
            continue
        twins += 1
        if tp in search.failed:
            twin_failed += 1
        got_twin = file_owners(db, tp, tr)
        if got_twin != tuple(sorted(expected)):
            wrong.append(f"twin {tp} ({tr}): depmin {got_twin}, expected {sorted(expected)}")
    report(
        f"owners vs dpkg-query: {len(result.objects)} ELF objects under /usr, {loaded} loaded; "
        f"{checked} library paths checked ({owned} owned, {checked - owned} unowned, {diverted} diverted); "
        f"{twins} twin forms mapped, {twin_failed} of which dpkg-query cannot find"
    )
    assert not wrong, "\n".join(wrong[:40])


def test_prefetched_owners_are_the_whole_index_owners(report: Callable[[str], None]) -> None:
    """prefetch (one pass, only the asked paths) against the index of every .list file, on
    this machine's database: libraries in both merged-/usr forms, diverted paths and their
    targets, links, files no package owns."""
    root = Root("/")
    whole, some = load_dpkg_database(root), load_dpkg_database(root)
    libs = sorted(
        f"/usr/lib/x86_64-linux-gnu/{n}"
        for n in os.listdir("/usr/lib/x86_64-linux-gnu")
        if ".so" in n and not os.path.isdir(f"/usr/lib/x86_64-linux-gnu/{n}")
    )
    diverted = [p for d in whole.diversions for p in (d.path, d.diverted_to)]
    paths = [*libs, *(p.removeprefix("/usr") for p in libs[::7]), *diverted, "/bin/sh", "/usr/bin/perl",
             "/usr/lib/x86_64-linux-gnu/no-such-library.so.1", "/etc/hostname"]  # fmt: skip
    some.prefetch(paths)
    differ = [p for p in paths if some.owners(p) != whole.owners(p)]
    assert some._files is None, "a prefetched path fell back to the whole index"
    assert not differ, differ[:5]
    assert some.list_warnings == whole.list_warnings
    owned = sum(bool(whole.owners(p)) for p in paths)
    assert owned > 100 and len(diverted) >= 2
    report(f"owners prefetch vs whole index: {len(paths)} paths ({owned} owned, {len(diverted)} diverted), "
           "0 differ")  # fmt: skip
