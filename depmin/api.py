"""The run: everything a depmin command does, as typed functions over plain data.

The CLI parses options into :class:`RunOptions`, calls one function here and
renders what it returns (``depmin.report``); a build tool calls the same
functions and gets the same answer, warnings included.  The steps:

scan → resolve in context (``loader.needs``) → map to packages (``owners``) →
package graph and apt policy (``debian``) → plan → check with apt → apply.

The lower-level steps (:func:`find_needs`, :func:`load_package_state`, ...) stay
public for callers that want to stop anywhere or bring their own input.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from depmin.errors import (
    AptError,
    CheckError,
    DepminError,
    DpkgError,
    UnresolvedError,
    UsageError,
)
from depmin.forked import Forked
from depmin.loader.elf import ElfFile
from depmin.loader.hints import Hint, load_hints
from depmin.loader.needs import DEFAULT_PATH, Analysis, analyse, load_objects
from depmin.loader.needs import Unresolved as Unresolved  # the type of Scanned.analysis.unresolved
from depmin.loader.resolve import LoaderSettings, LoadResult, Resolver
from depmin.loader.scan import ScanJob, ScanResult, start_scan
from depmin.loader.scan import scan as scan_tree_files
from depmin.options import DEFAULT_TREE as DEFAULT_TREE
from depmin.options import RunOptions as RunOptions
from depmin.options import _inside, start_trees_scan
from depmin.rootfs import Root

# The package half is imported where a step needs it: a run whose trees need nothing
# outside them (or ``verify``, ``ldd``) never reads it (a fifth of the fixed cost).
if TYPE_CHECKING:
    import subprocess

    from depmin.debian import aptstate
    from depmin.debian.aptconf import AptConfig
    from depmin.debian.archive import ArchiveIndex
    from depmin.debian.dpkg import DpkgDatabase
    from depmin.debian.pkggraph import PackageGraph, Policy
    from depmin.debian.plan import Plan
    from depmin.owners import Requirements

# -- the steps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageState:
    """Everything apt's autoremove depends on, for one root."""

    db: DpkgDatabase
    graph: PackageGraph
    policy: Policy
    config: AptConfig
    warnings: tuple[str, ...]


def scan_trees(root: Root, trees: Sequence[str], exclude: Sequence[str] = ()) -> ScanResult:
    return scan_tree_files(root, trees, exclude)


def find_needs(
    root: Root,
    trees: Sequence[str] = (DEFAULT_TREE,),
    exclude: Sequence[str] = (),
    settings: LoaderSettings = LoaderSettings(),
    path_env: str = DEFAULT_PATH,
    hints: Sequence[Hint] = (),
    meanwhile: Callable[[], object] | None = None,
    jobs: int | None = None,
    scan: ScanJob | None = None,
) -> Analysis:
    """Scan ``trees`` and resolve every object in the context it is loaded in.

    Pass ``LoaderSettings(glibc_dlopens=True, dlopen_priorities=...)`` for the loads
    that happen after start-up (:meth:`RunOptions.settings` does); the default is
    ld.so's start-up only.  ``meanwhile`` runs while worker processes classify the
    files (the run reads the dpkg database there), so both cores work; ``jobs=1``
    keeps the scan in this process.  ``scan``: the scan of these trees, already
    started (:func:`~depmin.options.start_trees_scan`).
    """
    job = scan or start_scan(root, trees, exclude, jobs, keep_others=bool(hints))
    try:
        resolver = Resolver.for_root(root, settings)
        if meanwhile is not None and job.running:
            meanwhile()
    except BaseException:
        job.cancel()
        raise
    # The objects this process finds are loaded between its subtrees, while the workers
    # still scan: that part of the resolution runs beside the scan instead of after it.
    loaded: dict[str, LoadResult | DepminError] = {}
    seen = [0]

    def load_new(objects: list[ElfFile]) -> None:  # the same list, longer each time
        load_objects(resolver, objects[seen[0] :], loaded)
        seen[0] = len(objects)

    found = job.result(load_new)
    return analyse(found, resolver, path_env, hints, loaded, jobs)


def find_requirements(analysis: Analysis, db: DpkgDatabase) -> Requirements:
    from depmin.owners import map_requirements

    return map_requirements(analysis, db)


def load_package_state(
    root: Root,
    overrides: Sequence[str] = (),
    db: DpkgDatabase | None = None,
    use_lists: bool = True,
) -> PackageState:
    """The package graph and apt's autoremove policy of a root, as apt would see them."""
    return start_package_state(root, overrides, db, use_lists, background=False).result()


class PackageStateJob:
    """A root's package state being read: see :func:`start_package_state`."""

    def __init__(
        self,
        db: DpkgDatabase,
        config: AptConfig,
        archive: Forked[ArchiveIndex | None],
        graph: PackageGraph,
    ) -> None:
        self.db, self.config, self._archive, self._graph = db, config, archive, graph
        self._state: PackageState | None = None

    def result(self) -> PackageState:
        """Wait for the package lists and finish the graph; the state, once built, is kept."""
        from depmin.debian.pkggraph import Policy, with_archive

        if self._state is None:
            archive = self._archive.result()
            graph = self._graph if archive is None else with_archive(self._graph, self.db, archive)
            config = self.config
            policy = Policy(
                recommends_important=config.recommends_important,
                suggests_important=config.suggests_important,
                never_autoremove=config.never_autoremove,
                ignore_hold=config.ignore_hold,
            )
            warnings = [*self.db.warnings, *(archive.warnings if archive else ()), *graph.warnings]
            if any(n.name.startswith("linux-image-") for n in graph.nodes.values()):
                warnings.append(
                    "a linux-image package is installed: apt's kernel protection is not modelled"
                )
            self._state = PackageState(self.db, graph, policy, config, tuple(warnings))
        return self._state

    def cancel(self) -> None:
        """Stop reading (the run failed before it needed the state)."""
        self._archive.cancel()


def start_package_state(
    root: Root,
    overrides: Sequence[str] = (),
    db: DpkgDatabase | None = None,
    use_lists: bool = True,
    background: bool = True,
) -> PackageStateJob:
    """Start reading a root's package state; ``.result()`` is :func:`load_package_state`'s.

    The dpkg database, apt's configuration and the package relations are read here.
    apt's package lists (tens of MB, the slowest part, needed only for the plan)
    are read by a child process with ``background``, while this one goes on
    resolving the trees; only the records of installed packages come back.
    """
    from depmin.debian.aptconf import load_apt_config
    from depmin.debian.archive import load_archive_index
    from depmin.debian.dpkg import load_dpkg_database
    from depmin.debian.pkggraph import build_package_graph

    database = db if db is not None else load_dpkg_database(root)
    config = load_apt_config(root, overrides)
    lists: str | None = None
    if use_lists:
        lists = config.get("Dir::State::lists", "") or "/var/lib/apt/lists"
        if not lists.startswith("/"):
            state = config.get("Dir::State", "var/lib/apt").strip("/")
            lists = "/" + state + "/" + lists

    def archive() -> ArchiveIndex | None:
        if lists is None:
            return None
        return load_archive_index(root, {p.name for p in database.installed_packages()}, lists)

    # Niced: the trees' scan, which the next steps wait for, keeps the cores; the child
    # takes the core left idle while this process resolves the trees and finds their
    # owners (measured: -9% of a CPython tree's run on 2 cores).
    job = Forked.start(archive, "package lists reader", nice=10) if background else Forked.done(archive)
    try:
        graph = build_package_graph(database)
    except BaseException:
        job.cancel()
        raise
    return PackageStateJob(database, config, job, graph)


# -- reading the trees ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scanned:
    """The loader's answer for the trees, and what it could not read."""

    root: Root
    analysis: Analysis
    warnings: tuple[str, ...]  # unreadable or malformed files, optional loads missing

    @property
    def ok(self) -> bool:
        return self.analysis.ok


def _scan_warnings(analysis: Analysis) -> tuple[str, ...]:
    out = [f"{s.path}: {s.reason}" for s in analysis.scan.skipped if s.problem]
    return (*out, *analysis.errors, *analysis.warnings)


def analyse_trees(
    opts: RunOptions,
    root: Root | None = None,
    meanwhile: Callable[[], object] | None = None,
    jobs: int | None = None,
    scan: ScanJob | None = None,
) -> Scanned:
    """Scan and resolve the trees; UnresolvedError (with the details) unless allow_missing.

    ``scan``: the trees' scan, already started from ``opts``
    (:func:`~depmin.options.start_trees_scan`; its root is the run's); it is cancelled
    if this fails first.
    """
    r = scan.root if scan is not None else root or Root(opts.root)
    job = scan or start_trees_scan(opts, r, jobs)
    try:
        hints = load_hints(opts.hints) if opts.hints else ()
        analysis = find_needs(r, settings=opts.settings(), path_env=opts.image_path or DEFAULT_PATH,
                              hints=hints, meanwhile=meanwhile, jobs=jobs, scan=job)  # fmt: skip
    except BaseException:
        job.cancel()
        raise
    done = Scanned(r, analysis, _scan_warnings(analysis))
    if analysis.unresolved and not opts.allow_missing:
        raise UnresolvedError(
            f"{len(analysis.unresolved)} needed files are missing or would fail to load "
            "(use --allow-missing to carry on)",
            analysis.unresolved,
            done.warnings,
        )
    return done


def verify(opts: RunOptions, jobs: int | None = None) -> Scanned:
    """After a purge: does everything in the trees still resolve?  (``ok`` says.)"""
    return analyse_trees(replace(opts, allow_missing=True), jobs=jobs)


# -- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRun:
    """One whole answer: the trees' needs, the root's packages, the minimal plan, the warnings."""

    root: Root
    analysis: Analysis
    state: PackageState
    requirements: Requirements
    plan: Plan
    scan_warnings: tuple[str, ...]  # from reading the trees (see Scanned)
    warnings: tuple[str, ...]  # about the packages and the plan

    @property
    def graph(self) -> PackageGraph:
        return self.state.graph

    @property
    def keep_names(self) -> tuple[str, ...]:
        """The minimal list, as apt-mark accepts the names."""
        return tuple(self.graph.display_name(k) for k in self.plan.keep)

    @property
    def lost(self) -> tuple[str, ...]:
        """Needed packages apt would still purge (a held-back or conflicting state)."""
        return tuple(
            self.graph.display_name(k) for k in self.plan.required if k in self.plan.marking.garbage
        )


def _unowned(req: Requirements) -> list[str]:
    return [f"{lib}: needed file outside the trees that no package owns" for lib in req.unowned]


def plan_run(
    opts: RunOptions,
    scanned: Scanned | None = None,
    state: PackageState | None = None,
    scan: ScanJob | None = None,
) -> PlanRun:
    """Every step up to the plan; the root's package state is read while the scan runs
    (or given: ``scanned`` and ``state`` from an earlier step of the same run; ``scan``:
    the trees' scan already started, see :func:`analyse_trees`)."""
    root = scanned.root if scanned is not None else scan.root if scan is not None else Root(opts.root)
    with _state_on_demand(root, opts.overrides) as start:
        done = scanned or analyse_trees(opts, root, None if state else start, scan=scan)
        return _plan(opts, done, state or start())


@contextmanager
def _state_on_demand(root: Root, overrides: Sequence[str]) -> Iterator[Callable[[], PackageStateJob]]:
    """:func:`start_package_state`, started on the first call (a run's ``meanwhile``, or
    when the plan needs it) and stopped when the block ends (a no-op once its result was
    taken; the child is killed if the run failed or did not need it)."""
    start = functools.cache(lambda: start_package_state(root, overrides))
    try:
        yield start
    finally:
        if start.cache_info().currsize:
            start().cancel()


def _plan(opts: RunOptions, done: Scanned, pending: PackageState | PackageStateJob) -> PlanRun:
    """The owners (while a child reads the package lists), then the plan and its warnings."""
    from depmin.caveats import plan_caveats
    from depmin.debian.plan import make_plan

    req = find_requirements(done.analysis, pending.db)
    state = pending.result() if isinstance(pending, PackageStateJob) else pending
    extra = opts.keep_names() + list(req.hinted_packages)
    plan = make_plan(state.graph, req.names, opts.baseline_words(), state.policy, extra)
    warnings = [*state.warnings, *state.db.list_warnings, *_unowned(req)]
    warnings += [f"{n}: not an installed package (ignored)" for n in plan.unknown]
    warnings += plan_caveats(done.analysis, req, state.graph, plan)
    return PlanRun(done.root, done.analysis, state, req, plan, done.warnings, tuple(warnings))


@dataclass(frozen=True)
class KeepList:
    """``depmin keep``'s answer: the names to mark manual, with what they rest on."""

    root: Root
    analysis: Analysis
    requirements: Requirements
    names: tuple[str, ...]
    minimal: bool
    plan: Plan | None  # None with every_owner, or when nothing outside the trees is needed
    graph: PackageGraph | None
    scan_warnings: tuple[str, ...]
    warnings: tuple[str, ...]


def keep_list(opts: RunOptions, every_owner: bool = False, scan: ScanJob | None = None) -> KeepList:
    """The minimal list, or with ``every_owner`` every owner of a needed file (the pipeline's).

    ``scan``: the trees' scan already started, see :func:`analyse_trees`.
    """
    root = scan.root if scan is not None else Root(opts.root)
    if every_owner:
        from depmin.debian.dpkg import load_dpkg_database

        db_of = functools.cache(lambda: load_dpkg_database(root))
        done = analyse_trees(opts, root, db_of, scan=scan)
        db = db_of()
        req = find_requirements(done.analysis, db)
        names = sorted(set(req.names) | set(opts.keep_names()) | set(req.hinted_packages))
        warnings = (*db.warnings, *db.list_warnings, *_unowned(req))
        return KeepList(root, done.analysis, req, tuple(names), False, None, None, done.warnings, warnings)
    with _state_on_demand(root, opts.overrides) as start:
        done = analyse_trees(opts, root, start, scan=scan)
        a = done.analysis
        if not opts.keep and not a.hinted_packages and all(lib.in_trees for lib in a.libraries):
            # Nothing outside the trees is needed: the minimal list is empty whatever apt's
            # state, so the package database and apt configuration need not be read.
            from depmin.owners import Requirements

            return KeepList(root, a, Requirements((), (), ()), (), True, None, None, done.warnings, ())
        run = _plan(opts, done, start())
    return KeepList(root, a, run.requirements, run.keep_names, True, run.plan, run.graph,
                    done.warnings, run.warnings)  # fmt: skip


# -- apt's state ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The manual packages of a root, as ``apt-mark showmanual`` prints them."""

    root: Root
    manual: tuple[str, ...]
    warnings: tuple[str, ...]


def snapshot(root: Root) -> Snapshot:
    from depmin.debian import aptstate
    from depmin.debian.dpkg import load_dpkg_database
    from depmin.debian.pkggraph import build_package_graph

    db = load_dpkg_database(root)
    warnings = list(db.warnings)
    names = aptstate.manual_set(root, build_package_graph(db), warn=warnings.append)
    return Snapshot(root, tuple(names), tuple(warnings))


@dataclass(frozen=True)
class ApplyCheck:
    """A plan apt itself agrees with: what apply would mark, and what the purge would remove."""

    run: PlanRun
    manual_keys: tuple[str, ...]  # the baseline and the keep list (package graph keys)
    simulation: aptstate.Simulation  # apt-get -s purge --auto-remove with those marks
    python_apt: bool = False  # python-apt agreed too (only when asked)
    overrides: tuple[str, ...] = field(default=())

    @property
    def manual(self) -> tuple[str, ...]:
        """The manual set as apt names it."""
        return tuple(self.run.graph.nodes[k].apt_name for k in self.manual_keys)

    @property
    def installed(self) -> int:
        return len(self.run.graph.nodes)


def check_apply(run: PlanRun, overrides: Sequence[str] = (), with_python_apt: bool = False) -> ApplyCheck:
    """Every check apply makes before changing anything; CheckError when one disagrees.

    The dpkg database must have read cleanly (a broken stanza or a missing file list
    could hide an owner the purge would then remove), no needed package may be left
    to the purge, and apt-get's own simulation (python-apt's too, if asked) must
    purge exactly what the plan says.
    """
    from depmin.debian import aptstate

    db = run.state.db
    broken = [*db.warnings, *db.list_warnings]
    if broken:
        more = f" (+{len(broken) - 3} more)" if len(broken) > 3 else ""
        raise DpkgError("the dpkg database did not read cleanly, so apply changes nothing: "
                        + "; ".join(broken[:3]) + more)  # fmt: skip
    if run.lost:
        raise CheckError("required packages would be purged: " + " ".join(run.lost))
    g, plan = run.graph, run.plan
    manual_keys = tuple(plan.baseline) + tuple(plan.keep)
    sim = aptstate.simulate_purge(run.root, g, manual_keys, overrides)
    model = sorted(aptstate.apt_print_name(g, k) for k in plan.purged)
    if sorted(sim.purged) != model:
        only_apt = sorted(set(sim.purged) - set(model))
        only_model = sorted(set(model) - set(sim.purged))
        raise CheckError(
            f"apt-get -s disagrees with the plan: apt only {only_apt}, depmin only {only_model}"
        )
    if with_python_apt:
        from depmin.debian.aptbridge import garbage_with_apt

        manual = [g.nodes[k].apt_name for k in manual_keys]
        got = garbage_with_apt(run.root, manual, overrides, g.native_arch)
        if sorted(aptstate.normalise_apt_name(g, n) for n in got) != model:
            raise CheckError("python-apt disagrees with the plan")
    return ApplyCheck(run, manual_keys, sim, with_python_apt, tuple(overrides))


@dataclass(frozen=True)
class Applied:
    """What apply changed: the marks file written, and the purge's exit status when it ran."""

    marked: int  # packages left manual
    marks_file: str  # host path of the extended_states written
    purged: bool = False
    verified: Scanned | None = None  # the verify after the purge, when asked


def lock_timeout(run: PlanRun, given: float | None) -> float:
    """How long to wait for apt's lock: as given, else the root's ``DPkg::Lock::Timeout`` (apt's)."""
    if given is not None:
        return max(0.0, given)
    try:
        return max(0.0, float(run.state.config.get("DPkg::Lock::Timeout", "0")))
    except ValueError:
        return 0.0


def apply(
    check: ApplyCheck,
    purge: bool = False,
    chroot: bool = False,
    timeout: float | None = None,
    verify_with: RunOptions | None = None,
) -> Applied:
    """Write the checked marks under apt's lock in one atomic step; then, with ``purge``, purge.

    Refuses (nothing changed) without root privileges, when the lock stays held past
    ``timeout`` seconds, when the dpkg database changed since the plan was made, and
    for ``--root`` with ``purge`` unless ``chroot`` allows running the root's own
    apt-get and dpkg.  A kill at any instant leaves the old marks or the new ones.

    ``verify_with``: after the purge, :func:`verify` with these options, in this
    process and without importing anything: the purge may remove the interpreter
    running depmin (python3-minimal in an image without Python), whose modules are
    then gone from disk.  Everything the verify uses was imported by the plan.
    """
    from depmin.debian import aptstate
    from depmin.debian.dpkg import current_status_stamp

    run = check.run
    root, g = run.root, run.graph
    if purge and not root.is_host and not chroot:
        raise UsageError(
            "--purge with --root runs the root's own apt-get and dpkg (in a chroot); add --chroot "
            "to allow that for a root you trust (the marks alone run nothing of the root)"
        )
    if os.geteuid() != 0:
        raise AptError("changing apt's marks needs root (use --dry-run to see the plan)")
    wait = lock_timeout(run, timeout)
    with aptstate.AptLock(root, wait) as lock:
        if current_status_stamp(run.state.db) != run.state.db.status_stamp:
            raise AptError("the dpkg database changed while depmin was planning; nothing was "
                           "changed: run it again")  # fmt: skip
        written = aptstate.write_marks(root, g, check.manual_keys, lock)
        if not purge:
            return Applied(len(check.manual_keys), written)
        leftovers = aptstate.leftovers(root, run.state.db)
        aptstate.write_purging(root, [*check.simulation.purged, *leftovers], lock)
        lock.release()  # apt-get takes both locks itself
        proc = aptstate.run_in_root(root, aptstate.purge_command(check.overrides, leftovers, wait))
        _check_purge(proc)
        # What apt only removed (dpkg had left it half-installed), a second call purges.
        removed = sorted(set(aptstate.config_files(root, g.native_arch)) & aptstate.purging(root))
        if removed:
            _check_purge(aptstate.run_in_root(root, aptstate.purge_command(check.overrides, removed, wait)))
        aptstate.clear_purging(root)
    # One process: a pool of workers would import multiprocessing's parts now.
    verified = verify(verify_with, jobs=1) if verify_with is not None else None
    return Applied(len(check.manual_keys), written, True, verified)


def _check_purge(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip()[-800:]
        raise AptError(f"apt-get purge failed (exit {proc.returncode}): {tail}; the marks are "
                       "written, and a rerun finishes the purge")  # fmt: skip


def recover(opts: RunOptions, purge: bool, chroot: bool, timeout: float | None) -> str | None:
    """Finish what an interrupted dpkg left (``dpkg --configure -a``) before planning.

    A purge killed mid-way leaves dpkg's journal behind, and apt-get then refuses to do
    anything.  With ``purge`` (the run may use the root's dpkg anyway) depmin runs
    ``dpkg --configure -a`` under the lock, as apt-get's message asks; without it, it
    says so and changes nothing.  Returns what was done, or None.
    """
    from depmin.debian import aptstate

    root = Root(opts.root)
    why = aptstate.interrupted(root)
    if why is None:
        return None
    if not purge or (not root.is_host and not chroot):
        raise AptError(f"dpkg was interrupted ({why}): run dpkg --configure -a first, or rerun "
                       "with --purge (and --chroot for --root)")  # fmt: skip
    if os.geteuid() != 0:
        raise AptError(f"dpkg was interrupted ({why}) and finishing it needs root")
    wait = timeout if timeout is not None else 0.0
    with aptstate.AptLock(root, wait) as lock:
        lock.release_inner()
        proc = aptstate.run_in_root(root, ["dpkg", "--configure", "-a"], frontend_locked=True)
    if proc.returncode != 0:
        raise AptError(f"dpkg --configure -a failed (exit {proc.returncode}): "
                       f"{(proc.stderr or '').strip()[-500:]}")  # fmt: skip
    return f"dpkg was interrupted ({why}): ran dpkg --configure -a"


# -- single files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LddItem:
    """One FILE of ``depmin ldd``: its load, or why it could not be read."""

    file: str  # root-relative, as given
    result: LoadResult | None
    error: DepminError | None = None


@dataclass(frozen=True)
class LddRun:
    root: Root
    items: tuple[LddItem, ...]
    warnings: tuple[str, ...]  # about the root's loader configuration

    @property
    def ok(self) -> bool:
        return all(i.result is not None and i.result.ok for i in self.items)


def ldd(opts: RunOptions, files: Sequence[str], dlopen: bool = False) -> LddRun:
    """What each file would load, as ld.so would load it at start-up (``dlopen``: and after)."""
    root = Root(opts.root)
    resolver = Resolver.for_root(root, opts.settings(runtime=dlopen))
    items: list[LddItem] = []
    for f in files:
        path = _inside(root, f, normalise=False)
        try:
            items.append(LddItem(path, resolver.load(path)))
        except DepminError as exc:
            items.append(LddItem(path, None, exc))
    return LddRun(root, tuple(items), resolver.warnings)
