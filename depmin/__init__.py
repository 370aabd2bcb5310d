"""depmin: which Debian packages does the software in /usr/local need?

depmin answers statically what image builds ask ``ldd | awk | dpkg-query`` for,
and then plans the minimal ``apt-mark manual`` list for
``apt-get purge --auto-remove``.  The CLI is a thin layer over this API: each
command is one call below, and ``depmin.report`` renders what it returns.

The run (``depmin.api``), configured by :class:`RunOptions`:

- :func:`analyse_trees` → :class:`Scanned`: every ELF object and script of the trees
  resolved as it is really loaded (``depmin verify`` is :func:`verify`);
- :func:`plan_run` → :class:`PlanRun`: the needs, the packages that own them, the
  minimal plan and every warning (``depmin plan``, ``why``, ``graph``);
- :func:`keep_list` → :class:`KeepList` (``depmin keep``);
- :func:`snapshot` → :class:`Snapshot` (``depmin snapshot``);
- :func:`check_apply` → :class:`ApplyCheck` (apt's own simulation agrees), then
  :func:`apply` → :class:`Applied` (``depmin apply``);
- :func:`ldd` → :class:`LddRun` (``depmin ldd``).

The steps underneath, for callers that stop anywhere or bring their own input:

- :class:`Root` — a directory treated as '/'; every path resolved inside it.
- :func:`read_elf_path` / :class:`ElfFile` — a bounded static ELF reader.
- :func:`load_ldcache` / :class:`LdCache` — glibc's ``ld.so.cache``, looked up as ld.so does.
- :class:`Resolver` (``Resolver.for_root(root, LoaderSettings(...))``) and its
  :meth:`Resolver.load` → :class:`LoadResult`.
- :func:`scan_trees` → :class:`ScanResult`; :func:`find_needs` → :class:`Analysis`;
- :func:`load_dpkg_database` → :class:`DpkgDatabase`; :func:`find_requirements` →
  :class:`Requirements`; :func:`load_package_state` → :class:`PackageState`
  (:func:`start_package_state` → :class:`PackageStateJob`: the package lists read by
  a child process while this one resolves);
- :func:`make_plan` → :class:`Plan`; :func:`mark_and_sweep` → :class:`Marking` is apt's
  autoremove as a pure function, over :class:`PackageGraph` and :class:`Policy`.

Errors are one family, :class:`DepminError`; ``depmin.errors`` lists the exit codes.

Example::

    from depmin import RunOptions, plan_run

    run = plan_run(RunOptions(overrides=("APT::AutoRemove::RecommendsImportant=false",)))
    print(run.keep_names, len(run.plan.purged), run.warnings)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = (
    "Applied", "ApplyCheck", "KeepList", "LddRun", "PackageState", "PackageStateJob", "PlanRun",
    "RunOptions", "Scanned", "Snapshot", "analyse_trees", "apply", "check_apply", "find_needs",
    "find_requirements", "keep_list", "ldd", "load_package_state", "plan_run", "scan_trees",
    "snapshot", "start_package_state", "verify",
)  # fmt: skip

#: Public name -> module that defines it.  Imported on first use (PEP 562) so that
#: ``depmin --help`` and small runs do not pay for modules they never touch.
_EXPORTS = {
    **{name: "depmin.api" for name in _API},
    "Marking": "depmin.debian.autoremove",
    "mark_and_sweep": "depmin.debian.autoremove",
    "DpkgDatabase": "depmin.debian.dpkg",
    "load_dpkg_database": "depmin.debian.dpkg",
    "PackageGraph": "depmin.debian.pkggraph",
    "Policy": "depmin.debian.pkggraph",
    "Plan": "depmin.debian.plan",
    "make_plan": "depmin.debian.plan",
    "DepminError": "depmin.errors",
    "ElfFile": "depmin.loader.elf",
    "read_elf_path": "depmin.loader.elf",
    "LdCache": "depmin.loader.ldcache",
    "load_ldcache": "depmin.loader.ldcache",
    "Analysis": "depmin.loader.needs",
    "LoaderSettings": "depmin.loader.resolve",
    "LoadResult": "depmin.loader.resolve",
    "Resolver": "depmin.loader.resolve",
    "ScanResult": "depmin.loader.scan",
    "Requirements": "depmin.owners",
    "Root": "depmin.rootfs",
}

__all__ = [
    "Analysis",
    "Applied",
    "ApplyCheck",
    "DepminError",
    "DpkgDatabase",
    "ElfFile",
    "KeepList",
    "LdCache",
    "LddRun",
    "LoadResult",
    "LoaderSettings",
    "Marking",
    "PackageGraph",
    "PackageState",
    "PackageStateJob",
    "Plan",
    "PlanRun",
    "Policy",
    "Requirements",
    "Resolver",
    "Root",
    "RunOptions",
    "ScanResult",
    "Scanned",
    "Snapshot",
    "analyse_trees",
    "apply",
    "check_apply",
    "find_needs",
    "find_requirements",
    "keep_list",
    "ldd",
    "load_dpkg_database",
    "load_ldcache",
    "load_package_state",
    "make_plan",
    "mark_and_sweep",
    "plan_run",
    "read_elf_path",
    "scan_trees",
    "snapshot",
    "start_package_state",
    "verify",
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
        Applied,
        ApplyCheck,
        KeepList,
        LddRun,
        PackageState,
        PackageStateJob,
        PlanRun,
        RunOptions,
        Scanned,
        Snapshot,
        analyse_trees,
        apply,
        check_apply,
        find_needs,
        find_requirements,
        keep_list,
        ldd,
        load_package_state,
        plan_run,
        scan_trees,
        snapshot,
        start_package_state,
        verify,
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
