"""The ``depmin`` command line: a thin layer over the library API in depmin/__init__.py.

Heavy modules are imported inside each command so ``depmin --help`` and small
runs start fast; errors of the DepminError family become one message on stderr
and the exit code documented in README.md.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import click

from depmin import __version__
from depmin.errors import EXIT_INTERNAL, DepminError

if TYPE_CHECKING:
    from depmin.api import PackageState
    from depmin.debian.dpkg import DpkgDatabase
    from depmin.loader.needs import Analysis
    from depmin.loader.resolve import LoaderSettings
    from depmin.rootfs import Root

F = TypeVar("F", bound=Callable[..., Any])


def _echo_err(text: str) -> None:
    """A line on stderr with file names byte for byte: they may not be UTF-8 (PEP 383)."""
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "backslashreplace")
    click.echo(data, err=True)


def _fail(message: str, code: int) -> None:
    _echo_err(f"depmin: {message}")
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Map the DepminError family to exit codes; never show a traceback for bad input."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DepminError as exc:
            _fail(f"error: {exc}", exc.exit_code)
        except click.ClickException:
            raise  # a usage error found after parsing: click prints it, exit 2
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(0)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:  # pragma: no cover - a bug; say so plainly
            import traceback

            traceback.print_exc()
            _fail(f"internal error: {exc!r} (please report this)", EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def _warn(message: str) -> None:
    _echo_err(f"depmin: warning: {message}")


# -- options shared by several commands -----------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """Everything the scanning commands share, gathered from their options."""

    root: str = "/"
    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    allow_missing: bool = False
    ld_library_path: Optional[str] = None
    isa_level: int = 1
    platform: Optional[str] = None
    working_dir: Optional[str] = None
    image_path: Optional[str] = None
    hints: Optional[str] = None
    drop_recommended_dlopen: bool = False
    no_glibc_dlopens: bool = False
    baseline: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()

    def settings(self, runtime: bool = True) -> LoaderSettings:
        """Loader settings; ``runtime`` adds the loads after start-up (dlopen notes, glibc's)."""
        from depmin.loader.resolve import LoaderSettings

        if self.working_dir is not None and not self.working_dir.startswith("/"):
            raise click.BadParameter("must be an absolute path inside the root", param_hint="--working-dir")

        prios = {"required"} if self.drop_recommended_dlopen else {"required", "recommended"}
        return LoaderSettings(
            ld_library_path=self.ld_library_path,
            isa_level=self.isa_level,
            platform=self.platform,
            working_dir=self.working_dir,
            dlopen_priorities=frozenset(prios) if runtime else frozenset(),
            glibc_dlopens=runtime and not self.no_glibc_dlopens,
        )

    def baseline_words(self) -> list[str]:
        """Words of --baseline values; a value is a file only as @FILE or a path with a '/'.

        A package name never contains '/', so `--baseline "$savedAptMark"` can never be
        mistaken for a file that happens to share a package's name.
        """
        from depmin.errors import ConfigError

        words: list[str] = []
        for v in self.baseline:
            path = v[1:] if v.startswith("@") else v if "/" in v else None
            if path is None:
                words.extend(v.split())
                continue
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    words.extend(f.read().split())
            except OSError as exc:
                raise ConfigError(f"cannot read baseline file: {exc.strerror}", path) from None
        return words


_ROOT = click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True),
    default="/",
    show_default=True,
    help="Treat DIR as '/': an unpacked image, even of another architecture. "
    "Links are resolved inside it; nothing outside it is read.",
)
_LOADER = [
    click.option("--ld-library-path", metavar="PATH", default=None,
                 help="The target's LD_LIBRARY_PATH (off by default: images rarely set it)."),
    click.option("--isa-level", type=click.IntRange(1, 4), default=1, show_default=True,
                 help="x86-64 ISA level of the target CPU (1 = baseline, 2-4 = x86-64-v2..v4): "
                 "decides which glibc-hwcaps directories and cache entries apply."),
    click.option("--platform", metavar="NAME", default=None,
                 help="Value of $PLATFORM (AT_PLATFORM); default from the architecture."),
    click.option("--working-dir", metavar="DIR", default=None,
                 help="The process working directory, for relative paths in RPATH or DT_NEEDED."),
]  # fmt: skip
_TREES = [
    click.argument("paths", nargs=-1, type=click.Path()),
    click.option("--exclude", multiple=True, metavar="GLOB",
                 help="Skip files whose name or path matches GLOB (repeatable), e.g. '*tkinter*'."),
    click.option("--allow-missing", is_flag=True,
                 help="Carry on when a needed library is missing or would fail to load."),
    click.option("--hints", metavar="FILE", default=None,
                 help="Extra needs no file shows (ctypes loads, data packages): see README, Hints."),
    click.option("--image-path", metavar="PATH", default=None,
                 help="The image's PATH, for `#!/usr/bin/env NAME` scripts "
                 "(default: Docker's, /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)."),
    click.option("--drop-recommended-dlopen", is_flag=True,
                 help="Keep only `required` .note.dlopen entries, not `recommended` ones."),
    click.option("--no-glibc-dlopens", is_flag=True,
                 help="Do not add what libc itself dlopens (libgcc_s.so.1, NSS modules)."),
]  # fmt: skip
_APT = [
    click.option("--baseline", multiple=True, metavar="FILE|WORDS",
                 help="Packages that were manual before the build dependencies came (what "
                 "`apt-mark showmanual` printed, e.g. \"$savedAptMark\"): @FILE or a path with "
                 "a '/', or package names separated by blanks. Repeatable. Default: none (as after "
                 "`apt-mark auto '.*'`)."),
    click.option("--keep", multiple=True, metavar="PKG",
                 help="Always keep this package (repeatable), e.g. ca-certificates."),
    click.option("-o", "--option", "overrides", multiple=True, metavar="KEY=VALUE",
                 help="Set an apt option as `apt-get -o` does, e.g. "
                 "-o APT::AutoRemove::RecommendsImportant=false (the pipeline's setting)."),
]  # fmt: skip


def run_options(*groups: list[Any]) -> Callable[[F], F]:
    """Add --root and the given option groups; the command receives ``opts: RunOptions``."""
    names = set(RunOptions.__dataclass_fields__)

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return func(*args, opts=RunOptions(**given), **kwargs)

        out: Any = wrapper
        for group in reversed([[_ROOT], *groups]):
            for opt in reversed(group):
                out = opt(out)
        return out  # type: ignore[no-any-return]

    return decorate


# -- commands --------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="depmin")
def main() -> None:
    """Decide which Debian packages the software in /usr/local needs, without running it.

    depmin reads ELF files statically, resolves their libraries exactly as glibc's
    ld.so would (inside --root if given), maps each library to the installed Debian
    package that owns it, and plans the minimal `apt-mark manual` list that survives
    `apt-get purge --auto-remove`.

    \b
    In an image build, instead of the ldd | awk | dpkg-query pipeline:
      savedAptMark="$(depmin snapshot)"      # before installing build deps
      ...build into /usr/local...
      depmin apply --baseline "$savedAptMark" --purge \\
          -o APT::AutoRemove::RecommendsImportant=false
    To look before changing anything:
      depmin keep            the packages to mark manual
      depmin plan            what is kept, why, and what is purged
      depmin why libssl3     the chain that needs or keeps a package
    """


@main.command()
@run_options(_LOADER)
@click.option(
    "--tree", is_flag=True, help="Show the dependency tree and the step that found each library."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (schema depmin.ldd/1)."
)
@click.option("--dlopen", is_flag=True,
              help="Also load what .note.dlopen entries and libc itself would dlopen.")  # fmt: skip
@click.argument("files", nargs=-1, required=True, type=click.Path())
@handle_errors
def ldd(opts: RunOptions, tree: bool, as_json: bool, dlopen: bool, files: tuple[str, ...]) -> None:
    """Print the libraries FILE... would load, as ldd does, but without running anything.

    Paths are inside --root (absolute, or relative to the current directory when
    no root is given).  Exit status 1 when any library is missing or would fail
    to load, 3 when a FILE cannot be read as ELF.
    """
    from depmin.errors import EXIT_UNRESOLVED, ElfError
    from depmin.loader.resolve import Resolver
    from depmin.report.ldd import LDD_SCHEMA, ldd_lines, result_json, tree_lines
    from depmin.rootfs import Root

    r = Root(opts.root)
    resolver = Resolver.for_root(r, opts.settings(runtime=dlopen))
    for w in resolver.warnings:
        _warn(w)
    status = 0
    out: list[dict[str, Any]] = []
    for f in files:
        path = f if (f.startswith("/") or not r.is_host) else os.path.abspath(f)
        if not path.startswith("/"):
            path = "/" + path
        try:
            result = resolver.load(path)
        except DepminError as exc:
            problem = "not a dynamic executable" if isinstance(exc, ElfError) else exc.problem
            if as_json:
                out.append({"file": path, "error": exc.problem})
            else:
                _echo_err(f"depmin: {path}: {problem} ({exc.problem})")
            status = max(status, exc.exit_code)
            continue
        if not result.ok:
            status = max(status, EXIT_UNRESOLVED)
        if as_json:
            out.append(result_json(result))
            continue
        lines = tree_lines(result) if tree else ldd_lines(result)
        if len(files) > 1 and not tree:
            click.echo(f"{f}:")
        for line in lines:
            click.echo(line)
    if as_json:
        emit_json({"schema": LDD_SCHEMA, "root": r.top, "files": out})
    sys.exit(status)


def _trees(root: Root, paths: tuple[str, ...]) -> list[str]:
    if not paths:
        return ["/usr/local"]
    out = []
    for p in paths:
        if root.is_host:
            p = os.path.abspath(p)
        out.append(p if p.startswith("/") else "/" + p)
    return out


def _report_unresolved(analysis: Analysis, allow: bool) -> None:
    """Name the file, the library and where ld.so would have looked."""
    for u in analysis.unresolved:
        what = "not found" if u.outcome.value == "missing" else f"would fail to load ({u.problem})"
        where = f"; searched {', '.join(u.tried)}" if u.tried else ""
        via = "" if u.requester == u.file else f" (needed by {u.requester})"
        kind = "" if u.kind == "needed" else f" [{u.kind}]"
        _echo_err(f"depmin: {u.file}: {u.name}{kind} {what}{via}{where}")
    if analysis.unresolved and not allow:
        from depmin.errors import UnresolvedError

        raise UnresolvedError(
            f"{len(analysis.unresolved)} needed files are missing or would fail to load "
            "(use --allow-missing to carry on)"
        )


def _analyse(
    opts: RunOptions,
    quiet: bool = False,
    root: Optional[Root] = None,
    meanwhile: Optional[Callable[[], object]] = None,
) -> tuple[Root, Analysis]:
    """Scan and resolve; ``meanwhile`` (a memoised loader) runs while workers classify files."""
    from depmin.api import find_needs
    from depmin.loader.hints import load_hints
    from depmin.loader.needs import DEFAULT_PATH
    from depmin.rootfs import Root

    r = root or Root(opts.root)
    hints = load_hints(opts.hints) if opts.hints else ()
    analysis = find_needs(
        r, _trees(r, opts.paths), opts.exclude, opts.settings(), opts.image_path or DEFAULT_PATH,
        hints, meanwhile,
    )  # fmt: skip
    if not quiet:
        for s in analysis.scan.skipped:
            if s.problem:
                _warn(f"{s.path}: {s.reason}")
        for e in analysis.errors:
            _warn(e)
        for w in analysis.warnings:
            _warn(w)
    _report_unresolved(analysis, opts.allow_missing)
    return r, analysis


def _emit_list(names: list[str], nul: bool) -> None:
    if nul:
        data = b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in names)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        for n in names:
            click.echo(n)


def _indexed(db: DpkgDatabase) -> DpkgDatabase:
    db.files  # noqa: B018 - build the ownership index now (during the scan, when asked)
    return db


@dataclass(frozen=True)
class _PlanRun:
    root: Any
    analysis: Any
    state: Any
    req: Any
    plan: Any
    warnings: list[str]


def _state_loader(r: Root, opts: RunOptions) -> Callable[[], PackageState]:
    """Load the root's package state once, whenever first asked (maybe during the scan)."""
    from depmin.api import load_package_state

    return functools.cache(lambda: load_package_state(r, opts.overrides))


def _full_plan(
    opts: RunOptions,
    quiet: bool = False,
    done: Optional[tuple[Root, Analysis]] = None,
    state_of: Optional[Callable[[], PackageState]] = None,
) -> _PlanRun:
    """Every step up to the plan, with the warnings the plan should show."""
    from depmin.api import find_requirements
    from depmin.caveats import plan_warnings
    from depmin.debian.plan import make_plan, required_keys
    from depmin.rootfs import Root

    root = done[0] if done else Root(opts.root)
    state_of = state_of or _state_loader(root, opts)
    r, analysis = done or _analyse(opts, quiet, root, state_of)
    state = state_of()
    req = find_requirements(analysis, state.db)
    keys, _ = required_keys(state.graph, req.names)
    extra = list(opts.keep) + list(req.hinted_packages)
    plan = make_plan(state.graph, keys, opts.baseline_words(), state.policy, extra)
    warnings = list(state.warnings) + list(state.db.files.warnings)
    warnings += [
        f"{lib}: needed file outside the trees that no package owns" for lib in req.unowned
    ]
    warnings += [f"{n}: not an installed package (ignored)" for n in plan.unknown]
    warnings += plan_warnings(analysis, req, state.graph, plan)
    return _PlanRun(r, analysis, state, req, plan, warnings)


@main.command()
@run_options(_TREES, _LOADER, _APT)
@click.option("--all", "all_", is_flag=True,
              help="List every package that owns a needed file (what the pipeline marks), "
              "not the minimal list.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="The full answer (schema depmin.keep/1).")
@click.option("-0", "--null", "nul", is_flag=True, help="NUL-separated names, for xargs -0.")
@handle_errors
def keep(opts: RunOptions, all_: bool, as_json: bool, nul: bool) -> None:
    """Print the packages to mark manual so the software in PATH... keeps working.

    PATH defaults to /usr/local.  By default the list is minimal: only packages
    that apt would not keep anyway (through the baseline, Essential/Important/
    required packages, or another kept package).  --all lists every owner.
    Exit status 1 if a needed library is missing (unless --allow-missing).
    """
    from depmin.report.documents import keep_json

    if all_:
        from depmin.api import find_requirements
        from depmin.debian.dpkg import load_dpkg_database
        from depmin.rootfs import Root

        root = Root(opts.root)
        db_of = functools.cache(lambda: _indexed(load_dpkg_database(root)))
        r, analysis = _analyse(opts, as_json, root, db_of)
        db = db_of()
        req = find_requirements(analysis, db)
        warnings = [*db.warnings, *db.files.warnings]
        warnings += [f"{lib}: needed file outside the trees that no package owns" for lib in req.unowned]
        names = sorted(set(req.names) | set(opts.keep) | set(req.hinted_packages))
        if as_json:
            emit_json(keep_json(r, analysis, req, names, None, None, warnings + list(analysis.warnings)))
        else:
            for w in warnings:
                _warn(w)
            _emit_list(names, nul)
        return
    from depmin.rootfs import Root

    root = Root(opts.root)
    state_of = _state_loader(root, opts)
    done = _analyse(opts, as_json, root, state_of)
    r, analysis = done
    if not opts.keep and not analysis.hinted_packages and all(lib.in_trees for lib in analysis.libraries):
        # Nothing outside the trees is needed: the minimal list is empty whatever apt's
        # state, so the package database and apt configuration are not even read.
        if as_json:
            from depmin.owners import Requirements

            none = Requirements((), (), ())
            emit_json(keep_json(r, analysis, none, [], None, None, analysis.warnings, minimal=True))
        return
    p = _full_plan(opts, quiet=as_json, done=done, state_of=state_of)
    g = p.state.graph
    names = [g.display_name(k) for k in p.plan.keep]
    if as_json:
        emit_json(keep_json(p.root, p.analysis, p.req, names, p.plan, g, p.warnings))
        return
    for w in p.warnings:
        _warn(w)
    _emit_list(names, nul)


@main.command()
@run_options(_TREES, _LOADER, _APT)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable plan (schema depmin.plan/1)."
)
@handle_errors
def plan(opts: RunOptions, as_json: bool) -> None:
    """Show the whole plan: what to mark, why each needed package stays, what is purged.

    Nothing is changed.  The purge is apt's own autoremove rule applied to the
    root's dpkg database and apt configuration (with -o overrides).
    """
    from depmin.report.documents import plan_json, plan_text

    p = _full_plan(opts, quiet=as_json)
    if as_json:
        emit_json(plan_json(p.root, p.analysis, p.req, p.plan, p.state.graph, p.warnings))
    else:
        for line in plan_text(p.req, p.plan, p.state.graph, p.warnings):
            click.echo(line)


@main.command()
@click.argument("target")
@run_options(_TREES, _LOADER, _APT)
@handle_errors
def why(target: str, opts: RunOptions) -> None:
    """Explain TARGET: a package, a library (soname or path) or a scanned file.

    Shows the files that need it, the library that makes its package needed,
    and the chain of relations apt follows to keep it, or why it would be
    purged (and which apt option drops the relation that would keep it).
    """
    from depmin.report.why import explain

    p = _full_plan(replace(opts, allow_missing=True), quiet=True)
    for line in explain(target, p.analysis, p.req, p.state.graph, p.plan):
        click.echo(line)
    for w in p.warnings:
        if target in w:
            click.echo(f"  warning: {w}")


@main.command()
@run_options(_TREES, _LOADER, _APT)
@click.option("--format", "fmt", type=click.Choice(["dot", "graphml", "json"]), default="dot",
              show_default=True, help="Output format.")  # fmt: skip
@click.option("--all-packages", is_flag=True,
              help="Include every installed package, not only those around the needed ones.")  # fmt: skip
@handle_errors
def graph(opts: RunOptions, fmt: str, all_packages: bool) -> None:
    """Print the graph files → libraries → packages → package relations.

    Nodes carry what the plan decided (keep, baseline, required, purged); package
    edges say whether apt follows them under the current settings.
    """
    from depmin.report.graph import build_graph, dumps_json, to_dot, to_graphml

    p = _full_plan(replace(opts, allow_missing=True), quiet=True)
    g = build_graph(p.analysis, p.req, p.state.graph, p.plan, all_packages)
    text = {"dot": to_dot, "graphml": to_graphml, "json": dumps_json}[fmt](g)
    click.echo(text, nl=not text.endswith("\n"))


@main.command()
@run_options()
@click.option("--json", "as_json", is_flag=True, help="JSON (schema depmin.snapshot/1).")
@click.option("-0", "--null", "nul", is_flag=True, help="NUL-separated names.")
@handle_errors
def snapshot(opts: RunOptions, as_json: bool, nul: bool) -> None:
    """Print today's manual packages, to pass later as --baseline.

    The same set `apt-mark showmanual` prints, read from the root's files.
    Save it before installing build dependencies.
    """
    from depmin.debian.aptstate import manual_set
    from depmin.debian.dpkg import load_dpkg_database
    from depmin.debian.pkggraph import build_package_graph
    from depmin.rootfs import Root

    r = Root(opts.root)
    db = load_dpkg_database(r)
    for w in db.warnings:
        _warn(w)
    names = manual_set(r, build_package_graph(db), warn=_warn)
    if as_json:
        emit_json({"schema": "depmin.snapshot/1", "root": r.top, "manual": names})
    else:
        _emit_list(names, nul)


@main.command()
@run_options(_TREES, _LOADER, _APT)
@click.option("--purge", "do_purge", is_flag=True,
              help="Then run apt-get purge -y --auto-remove with the same settings.")  # fmt: skip
@click.option("--dry-run", is_flag=True,
              help="Change nothing: show the marks and what apt-get -s says it would purge.")  # fmt: skip
@click.option("--check-with-apt", is_flag=True,
              help="Also verify the plan with python-apt in memory (needs python3-apt).")  # fmt: skip
@handle_errors
def apply(opts: RunOptions, do_purge: bool, dry_run: bool, check_with_apt: bool) -> None:
    """Mark the plan in apt (all auto, then baseline and keep manual), optionally purge.

    Everything is computed and checked first: missing libraries, privileges, the
    dpkg lock, and apt's own simulation of the purge, which must purge exactly
    what depmin planned.  If anything fails before marking, nothing has changed;
    if marking fails, the previous marks are restored.
    """
    from depmin.debian import aptstate
    from depmin.errors import AptError, CheckError

    p = _full_plan(opts)
    g, plan = p.state.graph, p.plan
    for w in p.warnings:
        _warn(w)
    lost = [g.display_name(k) for k in plan.required if k in plan.marking.garbage]
    if lost:
        raise CheckError("required packages would be purged: " + " ".join(lost))
    manual_keys = list(plan.baseline) + list(plan.keep)
    manual = [g.nodes[k].apt_name for k in manual_keys]
    sim = aptstate.simulate_purge(p.root, g, manual_keys, opts.overrides)
    model = sorted(aptstate.apt_print_name(g, k) for k in plan.purged)
    if sorted(sim.purged) != model:
        only_apt = sorted(set(sim.purged) - set(model))
        only_model = sorted(set(model) - set(sim.purged))
        raise CheckError(
            f"apt-get -s disagrees with the plan: apt only {only_apt}, depmin only {only_model}"
        )
    if check_with_apt:
        from depmin.debian.aptbridge import garbage_with_apt

        got = garbage_with_apt(p.root, manual, opts.overrides, g.native_arch)
        if sorted(aptstate.normalise_apt_name(g, n) for n in got) != model:
            raise CheckError("python-apt disagrees with the plan")
        click.echo("python-apt agrees with the plan", err=True)
    if dry_run:
        click.echo(f"Would run: apt-mark auto <all {len(g.nodes)} installed packages>")
        if manual:
            click.echo("Would run: apt-mark manual " + " ".join(sorted(manual)))
        verb = "Would purge" if do_purge else "apt-get purge --auto-remove would then purge"
        click.echo(f"{verb} ({len(sim.purged)}, as apt-get -s prints them):")
        for name in sim.purged:
            click.echo(f"  {name}")
        return
    if os.geteuid() != 0:
        raise AptError("changing apt's marks needs root (use --dry-run to see the plan)")
    holder = aptstate.lock_holder(p.root)
    if holder:
        raise AptError(f"the dpkg lock is held ({holder}); nothing was changed")
    aptstate.apply_marks(p.root, g, manual)
    click.echo(f"marked {len(manual)} packages manual, every other package auto", err=True)
    if do_purge:
        proc = aptstate.purge(p.root, opts.overrides)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            tail = proc.stderr.strip()[-800:]
            raise AptError(f"apt-get purge failed (exit {proc.returncode}): {tail}")


@main.command()
@run_options(_TREES, _LOADER)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report (schema depmin.verify/1).")
@handle_errors
def verify(opts: RunOptions, as_json: bool) -> None:
    """Check that everything in PATH... can still run: run it after a purge.

    Every ELF object must resolve (nothing missing, nothing that would fail to
    load, including required .note.dlopen entries) and every program script's
    interpreter must exist.  Exit status 1 with a report naming each problem.
    """
    from depmin.report.documents import verify_json

    r, analysis = _analyse(replace(opts, allow_missing=True), quiet=as_json)
    if as_json:
        emit_json(verify_json(r, analysis))
    else:
        scan = analysis.scan
        click.echo(
            f"{len(scan.objects)} ELF objects and {len(scan.scripts)} scripts checked: "
            + ("all resolve" if analysis.ok else f"{len(analysis.unresolved)} problems")
        )
    if not analysis.ok:
        from depmin.errors import EXIT_UNRESOLVED

        sys.exit(EXIT_UNRESOLVED)
