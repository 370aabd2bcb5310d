"""The steps of a depmin run as plain functions; the CLI is a thin layer over these.

scan → resolve in context (needs) → map to packages (owners) → package graph
and apt policy (pkggraph, aptconf, archive) → plan.  Each step takes and returns
plain data, so library users can stop anywhere or substitute their own input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from depmin.debian.aptconf import AptConfig, load_apt_config
from depmin.debian.archive import load_archive_index
from depmin.debian.dpkg import DpkgDatabase, load_dpkg_database
from depmin.debian.pkggraph import PackageGraph, Policy, build_package_graph
from depmin.loader.hints import Hint
from depmin.loader.needs import DEFAULT_PATH, Analysis, analyse
from depmin.loader.resolve import LoaderSettings, Resolver
from depmin.loader.scan import ScanResult, scan, start_scan
from depmin.owners import Requirements, map_requirements
from depmin.rootfs import Root


@dataclass(frozen=True)
class PackageState:
    """Everything apt's autoremove depends on, for one root."""

    db: DpkgDatabase
    graph: PackageGraph
    policy: Policy
    config: AptConfig
    warnings: tuple[str, ...]


def scan_trees(root: Root, trees: Sequence[str], exclude: Sequence[str] = ()) -> ScanResult:
    return scan(root, trees, exclude)


def find_needs(
    root: Root,
    trees: Sequence[str] = ("/usr/local",),
    exclude: Sequence[str] = (),
    settings: LoaderSettings = LoaderSettings(),
    path_env: str = DEFAULT_PATH,
    hints: Sequence[Hint] = (),
    meanwhile: Optional[Callable[[], object]] = None,
) -> Analysis:
    """Scan ``trees`` and resolve every object in the context it is loaded in.

    Pass ``LoaderSettings(glibc_dlopens=True, dlopen_priorities=...)`` for the loads
    that happen after start-up (the CLI does); the default is ld.so's start-up only.
    ``meanwhile`` runs while worker processes classify the files (the CLI reads the
    dpkg database there), so both cores work.
    """
    job = start_scan(root, trees, exclude, keep_others=bool(hints))
    try:
        resolver = Resolver.for_root(root, settings)
        if meanwhile is not None and job.running:
            meanwhile()
    except BaseException:
        job.cancel()
        raise
    return analyse(job.result(), resolver, path_env, hints)


def find_requirements(analysis: Analysis, db: DpkgDatabase) -> Requirements:
    return map_requirements(analysis, db)


def load_package_state(
    root: Root,
    overrides: Sequence[str] = (),
    db: Optional[DpkgDatabase] = None,
    use_lists: bool = True,
) -> PackageState:
    """The package graph and apt's autoremove policy of a root, as apt would see them."""
    database = db if db is not None else load_dpkg_database(root)
    config = load_apt_config(root, overrides)
    warnings = list(database.warnings)
    archive = None
    if use_lists:
        lists = config.get("Dir::State::lists", "") or "/var/lib/apt/lists"
        if not lists.startswith("/"):
            state = config.get("Dir::State", "var/lib/apt").strip("/")
            lists = "/" + state + "/" + lists
        archive = load_archive_index(root, {p.name for p in database.installed_packages()}, lists)
        warnings.extend(archive.warnings)
    graph = build_package_graph(database, archive)
    warnings.extend(graph.warnings)
    warnings.extend(database.files.warnings)
    policy = Policy(
        recommends_important=config.recommends_important,
        suggests_important=config.suggests_important,
        never_autoremove=config.never_autoremove,
        ignore_hold=config.ignore_hold,
    )
    if any(n.name.startswith("linux-image-") for n in graph.nodes.values()):
        warnings.append(
            "a linux-image package is installed: apt's kernel protection is not modelled"
        )
    return PackageState(database, graph, policy, config, tuple(warnings))
