"""depmin: which Debian packages does the software in /usr/local need?

depmin answers statically what image builds ask ``ldd | awk | dpkg-query`` for,
and then plans the minimal ``apt-mark manual`` list for
``apt-get purge --auto-remove``.  The library API is the same one the CLI uses:

Reading files (never executing them):

- :class:`Root` — a directory treated as '/'; every path resolved inside it.
- :func:`read_elf_path` / :class:`ElfFile` — a bounded static ELF reader.
- :func:`load_ldcache` / :class:`LdCache` — glibc's ``ld.so.cache``, looked up as ld.so does.

Resolving like ld.so:

- :class:`Resolver` (``Resolver.for_root(root, LoaderSettings(...))``) and its
  :meth:`Resolver.load` → :class:`LoadResult` (objects in load order, every
  request with the step that satisfied it, missing and failing loads).

From trees to packages to a plan:

- :func:`scan_trees` → :class:`ScanResult`; :func:`find_needs` → :class:`Analysis`
  (every scanned object resolved in the context it is loaded in);
- :func:`load_dpkg_database` → :class:`DpkgDatabase` (ownership safe under merged
  /usr and diversions); :func:`find_requirements` → :class:`Requirements`;
- :func:`load_package_state` → :class:`PackageState` (package graph, apt policy);
- :func:`make_plan` → :class:`Plan` (minimal keep list, apt's verdict, purge, sizes);
  :func:`mark_and_sweep` is apt's autoremove as a pure function.

Errors are one family, :class:`DepminError`; ``depmin.errors`` lists the exit codes.

Example::

    from depmin import Root, find_needs, find_requirements, load_package_state, make_plan
    from depmin.debian.plan import required_keys

    root = Root("/")
    analysis = find_needs(root, ["/usr/local"])
    state = load_package_state(root, ["APT::AutoRemove::RecommendsImportant=false"])
    req = find_requirements(analysis, state.db)
    keys, _ = required_keys(state.graph, req.names)
    plan = make_plan(state.graph, keys, baseline_names=[], policy=state.policy)
    print(plan.keep, len(plan.purged))
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> module that defines it.  Imported on first use (PEP 562) so that
#: ``depmin --help`` and small runs do not pay for modules they never touch.
_EXPORTS = {
    "PackageState": "depmin.api",
    "find_needs": "depmin.api",
    "find_requirements": "depmin.api",
    "load_package_state": "depmin.api",
    "scan_trees": "depmin.api",
    "Marking": "depmin.debian.autoremove",
    "mark_and_sweep": "depmin.debian.autoremove",
    "DpkgDatabase": "depmin.debian.dpkg",
    "load_dpkg_database": "depmin.debian.dpkg",
    "ElfFile": "depmin.loader.elf",
    "read_elf_path": "depmin.loader.elf",
    "DepminError": "depmin.errors",
    "LdCache": "depmin.loader.ldcache",
    "load_ldcache": "depmin.loader.ldcache",
    "Analysis": "depmin.loader.needs",
    "Requirements": "depmin.owners",
    "PackageGraph": "depmin.debian.pkggraph",
    "Policy": "depmin.debian.pkggraph",
    "Plan": "depmin.debian.plan",
    "make_plan": "depmin.debian.plan",
    "LoaderSettings": "depmin.loader.resolve",
    "LoadResult": "depmin.loader.resolve",
    "Resolver": "depmin.loader.resolve",
    "Root": "depmin.rootfs",
    "ScanResult": "depmin.loader.scan",
}

__all__ = [
    "Analysis",
    "DepminError",
    "DpkgDatabase",
    "ElfFile",
    "LdCache",
    "LoadResult",
    "LoaderSettings",
    "Marking",
    "PackageGraph",
    "PackageState",
    "Plan",
    "Policy",
    "Requirements",
    "Resolver",
    "Root",
    "ScanResult",
    "find_needs",
    "find_requirements",
    "load_dpkg_database",
    "load_ldcache",
    "load_package_state",
    "make_plan",
    "mark_and_sweep",
    "read_elf_path",
    "scan_trees",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'depmin' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:
    from depmin.api import (
        PackageState,
        find_needs,
        find_requirements,
        load_package_state,
        scan_trees,
    )
    from depmin.debian.autoremove import Marking, mark_and_sweep
    from depmin.debian.dpkg import DpkgDatabase, load_dpkg_database
    from depmin.debian.pkggraph import PackageGraph, Policy
    from depmin.debian.plan import Plan, make_plan
    from depmin.errors import DepminError
    from depmin.loader.elf import ElfFile, read_elf_path
    from depmin.loader.ldcache import LdCache, load_ldcache
    from depmin.loader.needs import Analysis
    from depmin.loader.resolve import LoaderSettings, LoadResult, Resolver
    from depmin.loader.scan import ScanResult
    from depmin.owners import Requirements
    from depmin.rootfs import Root
