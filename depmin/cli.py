"""The ``depmin`` command line: a thin layer over the library API in depmin/__init__.py.

Heavy modules are imported inside each command so ``depmin --help`` and small
runs start fast; errors of the DepminError family become one message on stderr
and the exit code documented in README.md.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, Optional, TypeVar

import click

from depmin.errors import EXIT_INTERNAL, DepminError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    click.echo(f"depmin: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Map the DepminError family to exit codes; never show a traceback for bad input."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DepminError as exc:
            _fail(f"error: {exc}", exc.exit_code)
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
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True),
    default="/",
    show_default=True,
    help="Treat DIR as '/': an unpacked image, even of another architecture. "
    "Links are resolved inside it; nothing outside it is read.",
)


def loader_options(func: F) -> F:
    opts = [
        click.option(
            "--ld-library-path",
            metavar="PATH",
            default=None,
            help="The target's LD_LIBRARY_PATH (off by default: images rarely set it).",
        ),
        click.option(
            "--isa-level",
            type=click.IntRange(1, 4),
            default=1,
            show_default=True,
            help="x86-64 ISA level of the target CPU (1 = baseline, 2-4 = x86-64-v2..v4): "
            "decides which glibc-hwcaps directories and cache entries apply.",
        ),
        click.option(
            "--platform",
            metavar="NAME",
            default=None,
            help="Value of $PLATFORM (AT_PLATFORM); default from the architecture.",
        ),
        click.option(
            "--working-dir",
            metavar="DIR",
            default=None,
            help="The process working directory, for relative paths in RPATH or DT_NEEDED.",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _settings(ld_library_path: Optional[str], isa_level: int, platform: Optional[str],
              working_dir: Optional[str]) -> Any:  # fmt: skip
    from depmin.resolve import LoaderSettings

    return LoaderSettings(
        ld_library_path=ld_library_path,
        isa_level=isa_level,
        platform=platform,
        working_dir=working_dir,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="depmin")
def main() -> None:
    """Decide which Debian packages the software in /usr/local needs, without running it.

    depmin reads ELF files statically, resolves their libraries exactly as glibc's
    ld.so would (inside --root if given), maps each library to the installed Debian
    package that owns it, and plans the minimal `apt-mark manual` list that survives
    `apt-get purge --auto-remove`.

    \b
    Typical image build step (replacing the ldd | awk | dpkg-query pipeline):
      depmin apply --baseline "$savedAptMark" --purge
    See what would be kept and why, without changing anything:
      depmin plan
      depmin why libssl3
    """


@main.command()
@root_option
@loader_options
@click.option("--tree", is_flag=True, help="Show the dependency tree and the step that found each library.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (schema depmin.ldd/1).")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@handle_errors
def ldd(root: str, ld_library_path: Optional[str], isa_level: int, platform: Optional[str],
        working_dir: Optional[str], tree: bool, as_json: bool, files: tuple[str, ...]) -> None:  # fmt: skip
    """Print the libraries FILE... would load, as ldd does, but without running anything.

    Paths are inside --root (absolute, or relative to the current directory when
    no root is given).  Exit status 1 when any library is missing or would fail
    to load, 3 when a FILE cannot be read as ELF.
    """
    import os

    from depmin.errors import EXIT_UNRESOLVED, ElfError
    from depmin.lddout import LDD_SCHEMA, ldd_lines, result_json, tree_lines
    from depmin.resolve import Resolver
    from depmin.rootfs import Root

    r = Root(root)
    resolver = Resolver.for_root(r, _settings(ld_library_path, isa_level, platform, working_dir))
    for w in resolver.warnings:
        click.echo(f"depmin: warning: {w}", err=True)
    status = 0
    out: list[dict[str, Any]] = []
    for f in files:
        path = f if (f.startswith("/") or not r.is_host) else os.path.abspath(f)
        if not path.startswith("/"):
            path = "/" + path
        try:
            result = resolver.load(path)
        except (ElfError, DepminError) as exc:
            problem = "not a dynamic executable" if isinstance(exc, ElfError) else exc.problem
            if as_json:
                out.append({"file": path, "error": f"{exc.problem}"})
            else:
                click.echo(f"depmin: {path}: {problem} ({exc.problem})", err=True)
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
