"""The ``depmin`` command line: options in, one call of the library API (depmin.api), a rendering out.

Everything a command computes lives in :mod:`depmin.api`; everything it prints
is rendered by :mod:`depmin.report`.  Errors of the DepminError family become
one message on stderr and the exit code documented in README.md.  Heavy modules
are imported inside each command so ``depmin --help`` starts fast.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

from depmin import __version__
from depmin.errors import EXIT_INTERNAL, EXIT_UNRESOLVED, DepminError, UnresolvedError

if TYPE_CHECKING:
    from depmin.api import Unresolved
    from depmin.options import RunOptions, ScanJob


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
        # A command is short and makes almost no reference cycles: the cycle
        # collector would walk the whole heap again and again for nothing (5-8% of
        # a run on /usr or a CPython tree, measured).  Back on afterwards for in-process callers.
        collecting = gc.isenabled()
        gc.disable()
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
        finally:
            if collecting:
                gc.enable()

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    import json  # only here: Debian's python3-minimal has no json, and needs none without --json

    click.echo(json.dumps(obj, indent=2))


def _warn(message: str) -> None:
    _echo_err(f"depmin: warning: {message}")


def _warn_all(messages: Sequence[str]) -> None:
    for m in messages:
        _warn(m)


def _show_unresolved(unresolved: Sequence[Unresolved]) -> None:
    from depmin.report.documents import unresolved_lines

    for line in unresolved_lines(unresolved):
        _echo_err(f"depmin: {line}")


@contextmanager
def _scan_errors(quiet: bool) -> Iterator[None]:
    """When the trees need what is missing: the warnings (unless ``quiet``), then each failure."""
    try:
        yield
    except UnresolvedError as exc:
        if not quiet:
            _warn_all(exc.warnings)
        _show_unresolved(exc.unresolved)
        raise


@contextmanager
def _early_scan(opts: RunOptions) -> Iterator[ScanJob]:
    """The trees' scan, started before depmin.api is imported: a worker process walks
    the trees during the imports (~30 ms on every run).  Cancelled if the block fails
    (a no-op once its result was taken)."""
    from depmin.options import start_trees_scan

    scan = start_trees_scan(opts)
    try:
        yield scan
    except BaseException:
        scan.cancel()
        raise


def _emit_list(names: Sequence[str], nul: bool) -> None:
    if nul:
        data = b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in names)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        for n in names:
            click.echo(n)


# -- options shared by several commands -----------------------------------------------------


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
    click.argument("trees", nargs=-1, type=click.Path(), metavar="[PATH]..."),
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

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from depmin.options import RunOptions

            names = set(RunOptions.__dataclass_fields__)
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
    from depmin import api
    from depmin.errors import ElfError
    from depmin.report.ldd import LDD_SCHEMA, ldd_lines, result_json, tree_lines

    run = api.ldd(opts, files, dlopen)
    _warn_all(run.warnings)
    status = 0
    out: list[dict[str, Any]] = []
    for given, item in zip(files, run.items):
        if item.result is None:
            assert item.error is not None
            exc = item.error
            problem = "not a dynamic executable" if isinstance(exc, ElfError) else exc.problem
            if as_json:
                out.append({"file": item.file, "error": exc.problem})
            else:
                _echo_err(f"depmin: {item.file}: {problem} ({exc.problem})")
            status = max(status, exc.exit_code)
            continue
        if not item.result.ok:
            status = max(status, EXIT_UNRESOLVED)
        if as_json:
            out.append(result_json(item.result))
            continue
        lines = tree_lines(item.result) if tree else ldd_lines(item.result)
        if len(files) > 1 and not tree:
            click.echo(f"{given}:")
        for line in lines:
            click.echo(line)
    if as_json:
        emit_json({"schema": LDD_SCHEMA, "root": run.root.top, "files": out})
    sys.exit(status)


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
    with _early_scan(opts) as scan:
        from depmin import api
        from depmin.report.documents import keep_json

        with _scan_errors(quiet=as_json):
            result = api.keep_list(opts, every_owner=all_, scan=scan)
    if as_json:
        _show_unresolved(result.analysis.unresolved)
        emit_json(keep_json(result))
        return
    _warn_all(result.scan_warnings)
    _show_unresolved(result.analysis.unresolved)
    _warn_all(result.warnings)
    _emit_list(result.names, nul)


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
    with _early_scan(opts) as scan:
        from depmin import api
        from depmin.report.documents import plan_json, plan_text

        with _scan_errors(quiet=as_json):
            run = api.plan_run(opts, scan=scan)
    if not as_json:
        _warn_all(run.scan_warnings)
    _show_unresolved(run.analysis.unresolved)
    if as_json:
        emit_json(plan_json(run))
    else:
        for line in plan_text(run):
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
    from depmin import api
    from depmin.report.why import explain_run

    run = api.plan_run(replace(opts, allow_missing=True))
    _show_unresolved(run.analysis.unresolved)
    for line in explain_run(target, run):
        click.echo(line)


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
    from depmin import api
    from depmin.report.graph import build_graph, dumps_json, to_dot, to_graphml

    run = api.plan_run(replace(opts, allow_missing=True))
    _show_unresolved(run.analysis.unresolved)
    g = build_graph(run.analysis, run.requirements, run.graph, run.plan, all_packages)
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
    from depmin import api
    from depmin.report.documents import snapshot_json
    from depmin.rootfs import Root

    snap = api.snapshot(Root(opts.root))
    _warn_all(snap.warnings)
    if as_json:
        emit_json(snapshot_json(snap))
    else:
        _emit_list(snap.manual, nul)


@main.command()
@run_options(_TREES, _LOADER, _APT)
@click.option("--purge", "do_purge", is_flag=True,
              help="Then run apt-get purge -y --auto-remove with the same settings (the root's own "
              "apt-get and dpkg: with --root, only together with --chroot).")  # fmt: skip
@click.option("--chroot", is_flag=True,
              help="With --root and --purge: allow running the root's apt-get and dpkg inside it "
              "(chroot, /proc in a private namespace). Only for a root you trust, of this "
              "machine's architecture.")  # fmt: skip
@click.option("--dry-run", is_flag=True,
              help="Change nothing: show the marks and what apt-get -s says it would purge.")  # fmt: skip
@click.option("--check-with-apt", is_flag=True,
              help="Also verify the plan with python-apt in memory (needs python3-apt).")  # fmt: skip
@click.option("--verify", "then_verify", is_flag=True,
              help="After the purge, check in the same process that everything in PATH still "
              "resolves, as `depmin verify` would (exit 1 if not). Use it when the purge removes "
              "the Python running depmin, e.g. python3-minimal installed only for this step.")  # fmt: skip
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="How long to wait for apt's lock (/var/lib/dpkg/lock-frontend) held by another "
              "process. Default: the root's DPkg::Lock::Timeout, else 0 (fail at once, naming "
              "the holder), as apt-get does.")  # fmt: skip
@handle_errors
def apply(opts: RunOptions, do_purge: bool, chroot: bool, dry_run: bool, check_with_apt: bool,
          then_verify: bool, lock_timeout: float | None) -> None:  # fmt: skip
    """Write the plan into apt's marks in one atomic step, optionally purge.

    Everything is computed and checked first: missing libraries, a clean dpkg
    database, and apt's own simulation of the purge, which must purge exactly what
    depmin planned.  Then, under apt's lock, the new marks (the baseline and the
    keep list manual, every other package auto) replace extended_states the way apt
    writes it: a kill at any instant leaves the old marks or the new ones, never
    something in between, and a rerun converges.  Nothing of --root is run, except
    apt-get and dpkg for --purge with --chroot.
    """
    from depmin import api
    from depmin.report.documents import dry_run_lines, unresolved_lines, verify_summary  # noqa: F401

    if then_verify and not do_purge:
        raise click.UsageError("--verify checks what the purge left: it needs --purge")
    if not dry_run:
        note = api.recover(opts, do_purge, chroot, lock_timeout)
        if note:
            _warn(note)
    with _scan_errors(quiet=False):
        run = api.plan_run(opts)
    _warn_all(run.scan_warnings)
    _show_unresolved(run.analysis.unresolved)
    _warn_all(run.warnings)
    check = api.check_apply(run, opts.overrides, with_python_apt=check_with_apt)
    if check.python_apt:
        click.echo("python-apt agrees with the plan", err=True)
    if dry_run:
        for line in dry_run_lines(check, do_purge):
            click.echo(line)
        return
    done = api.apply(check, purge=do_purge, chroot=chroot, timeout=lock_timeout,
                     verify_with=opts if then_verify else None)  # fmt: skip
    click.echo(f"marked {done.marked} packages manual, every other package auto ({done.marks_file})",
               err=True)  # fmt: skip
    if done.verified is not None:  # nothing below may import: the purge may have removed Python
        shown = set(run.scan_warnings) | set(run.warnings)  # said once, before the purge
        _warn_all([w for w in done.verified.warnings if w not in shown])
        _show_unresolved(done.verified.analysis.unresolved)
        click.echo(verify_summary(done.verified))
        if not done.verified.ok:
            sys.exit(EXIT_UNRESOLVED)


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
    from depmin import api
    from depmin.report.documents import verify_json, verify_summary

    done = api.verify(opts)
    if not as_json:
        _warn_all(done.warnings)
    _show_unresolved(done.analysis.unresolved)
    if as_json:
        emit_json(verify_json(done))
    else:
        click.echo(verify_summary(done))
    if not done.ok:
        sys.exit(EXIT_UNRESOLVED)
