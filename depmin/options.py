"""What a run depends on besides the root's own files, and the scan of its trees started early.

Light on purpose (the standard library, the scan and the base modules): the CLI
builds :class:`RunOptions` and starts the trees' scan before it imports the rest
of depmin, so a worker process walks the trees while this one imports (~30 ms).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from depmin.errors import ConfigError, UsageError
from depmin.loader.scan import ScanJob as ScanJob  # the type start_trees_scan returns
from depmin.loader.scan import start_scan
from depmin.rootfs import Root

if TYPE_CHECKING:
    from depmin.loader.resolve import LoaderSettings

#: The tree scanned when none is given.
DEFAULT_TREE = "/usr/local"


@dataclass(frozen=True)
class RunOptions:
    """Everything a run depends on besides the root's own files (the CLI's shared options)."""

    root: str = "/"
    trees: tuple[str, ...] = ()  # default: /usr/local
    exclude: tuple[str, ...] = ()
    allow_missing: bool = False
    ld_library_path: str | None = None
    isa_level: int = 1
    platform: str | None = None
    working_dir: str | None = None
    image_path: str | None = None
    hints: str | None = None  # a hints file on the host
    drop_recommended_dlopen: bool = False
    no_glibc_dlopens: bool = False
    baseline: tuple[str, ...] = ()  # words, @FILE, or a path with a '/'
    keep: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()  # apt options, KEY=VALUE

    def settings(self, runtime: bool = True) -> LoaderSettings:
        """Loader settings; ``runtime`` adds the loads after start-up (dlopen notes, glibc's)."""
        from depmin.loader.resolve import LoaderSettings

        if self.working_dir is not None and not self.working_dir.startswith("/"):
            raise UsageError("--working-dir must be an absolute path inside the root")
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
        """Words of the baseline values; a value is a file only as @FILE or a path with a '/'.

        A package name never contains '/', so ``--baseline "$savedAptMark"`` can never be
        mistaken for a file that happens to share a package's name.
        """
        words: list[str] = []
        for v in self.baseline:
            path = v[1:] if v.startswith("@") else v if "/" in v else None
            if path is None:
                words.extend(_package_names(v.split(), "--baseline"))
                continue
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    words.extend(_package_names(f.read().split(), f"--baseline file {path}"))
            except OSError as exc:
                raise ConfigError(f"cannot read baseline file: {exc.strerror}", path) from None
        return words

    def keep_names(self) -> list[str]:
        return _package_names(self.keep, "--keep")


    def tree_paths(self, root: Root) -> list[str]:
        """Root-relative trees; on the host, relative paths are taken from the working directory."""
        return [_inside(root, p) for p in self.trees] or [DEFAULT_TREE]


def _package_names(words: Sequence[str], where: str) -> list[str]:
    """Words that are package names as apt-mark accepts them; anything else is a usage error.

    A word such as ``-y`` or ``--purge`` (a shell variable expanded wrongly) or one with
    shell metacharacters is never taken as a name, nor passed on to apt as an option.
    """
    from depmin.debian.aptstate import PACKAGE_NAME

    for w in words:
        if not PACKAGE_NAME.fullmatch(w):
            raise UsageError(f"{where}: {w!r} is not a package name")
    return list(words)


def _inside(root: Root, path: str, normalise: bool = True) -> str:
    """Root-relative form of a path given by the user (``normalise``: abspath on the host)."""
    if root.is_host and (normalise or not path.startswith("/")):
        path = os.path.abspath(path)
    return path if path.startswith("/") else "/" + path


def start_trees_scan(opts: RunOptions, root: Root | None = None, jobs: int | None = None) -> ScanJob:
    """Start the scan of the run's trees (see :class:`~depmin.loader.scan.ScanJob`), in
    ``root`` (default: the options' own).

    Hand the job to :func:`depmin.api.keep_list` or :func:`depmin.api.plan_run`
    (``scan=``), which read the same root and cancel the job if they fail before they
    need it.
    """
    r = root or Root(opts.root)
    return start_scan(r, opts.tree_paths(r), opts.exclude, jobs, keep_others=bool(opts.hints))

