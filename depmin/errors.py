"""The one exception family of depmin, and the exit codes the CLI maps it to.

Results such as "library not found" are data, not exceptions; an exception means
depmin could not produce a trustworthy answer for some input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from depmin.loader.needs import Unresolved

#: Exit codes, documented in README.md ("Exit codes").
EXIT_OK = 0
EXIT_UNRESOLVED = 1  # a needed library is missing or would fail to load
EXIT_USAGE = 2  # bad command line (click's own code)
EXIT_INPUT = 3  # unreadable or malformed input that the run cannot go past
EXIT_APT = 4  # apt/dpkg state refused or failed to change; nothing was changed
EXIT_CHECK = 5  # apply refused: apt-get -s or python-apt disagrees, or a check cannot run
EXIT_INTERNAL = 70  # a bug in depmin: please report it


class DepminError(Exception):
    """Base of every error depmin raises on purpose."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        self.problem = message
        super().__init__(f"{path}: {message}" if path else message)


class ElfError(DepminError):
    """A file is not a well-formed ELF object.

    ``kind`` is a short stable code (``not-elf``, ``too-short``, ``truncated``,
    ``bad-class``, ``bad-data``, ``bad-header``, ``unreadable``) so callers such as
    the resolver can decide skip-or-fail the way ld.so does.
    """

    def __init__(self, path: str, problem: str, kind: str = "bad-header") -> None:
        self.kind = kind
        super().__init__(problem, path)


class RootError(DepminError):
    """A path cannot be resolved inside the root (link loop, too many links)."""


class WorkerError(DepminError):
    """A worker process died or its answer could not travel back (not the work's own error)."""


class ScanError(WorkerError):
    """The scan itself failed, not one of its files (a worker process died)."""


class CacheError(DepminError):
    """``ld.so.cache`` is malformed; ld.so would ignore it, depmin reports it."""


class ConfigError(DepminError):
    """An ld.so.conf, apt configuration, nsswitch.conf or hints file is unusable."""


class DpkgError(DepminError):
    """The dpkg database of a root is missing or malformed."""


class UsageError(DepminError):
    """An option's value is unusable (the CLI's bad command line, exit 2)."""

    exit_code = EXIT_USAGE


class UnresolvedError(DepminError):
    """Needed libraries are missing or would fail to load.

    ``unresolved`` holds the failing requests (:class:`depmin.loader.needs.Unresolved`)
    and ``warnings`` what else the run found, so a caller can show both.
    """

    exit_code = EXIT_UNRESOLVED

    def __init__(
        self, message: str, unresolved: tuple[Unresolved, ...] = (), warnings: tuple[str, ...] = ()
    ) -> None:
        self.unresolved = unresolved
        self.warnings = warnings
        super().__init__(message)


class AptError(DepminError):
    """apt refused or failed to change state (not root, lock held, apt-get failed)."""

    exit_code = EXIT_APT


class CheckError(DepminError):
    """An independent check disagrees with depmin's answer."""

    exit_code = EXIT_CHECK
