"""Test guards shared by the hostile-input tests: a hang guard, a spy on host file access, a Ctrl-C."""

from __future__ import annotations

import builtins
import importlib
import os
import pkgutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

import depmin

T = TypeVar("T")

_STDLIB = os.path.dirname(os.__file__)
_DEPMIN = os.path.dirname(depmin.__file__)


def in_thread(fn: Callable[[], T], timeout: float = 30, what: str = "the call") -> T | BaseException:
    """Run ``fn`` in a daemon thread; a hang fails the test instead of sticking the suite.

    Returns the result, or the exception ``fn`` raised.
    """
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # handed back to the test
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{what} blocked"
    return box[0]  # type: ignore[no-any-return]


def guarded(fn: Callable[[], T], timeout: float = 300) -> T:
    """``in_thread``, re-raising what ``fn`` raised."""
    got = in_thread(fn, timeout, "depmin")
    if isinstance(got, BaseException):
        raise got
    return got


def _from_depmin() -> bool:
    """Whether the nearest caller outside the standard library is depmin's own code.

    click (gettext catalogs, its stat of path arguments) and the import system touch
    host files of their own; they never read the image.
    """
    f = sys._getframe(2)
    while f is not None:
        name = f.f_code.co_filename
        stdlib = name.startswith(_STDLIB) and "-packages" + os.sep not in name
        if not (stdlib or name.startswith("<frozen")):
            return name.startswith(_DEPMIN)
        f = f.f_back  # type: ignore[assignment]
    return False


@contextmanager
def host_paths_touched(monkeypatch: pytest.MonkeyPatch, only_depmin: bool = False) -> Iterator[list[str]]:
    """Every path given to the os-level file calls and to open() while the block runs.

    ``only_depmin`` keeps just the calls depmin's own code makes (and imports every depmin
    module first, so no import happens under the spy).
    """
    touched: list[str] = []
    readlink = os.readlink

    def spy(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
            if isinstance(path, (str, bytes, os.PathLike)) and (not only_depmin or _from_depmin()):
                name = os.fsdecode(path)
                if kwargs.get("dir_fd") is not None:  # a name relative to an open directory
                    name = os.path.join(readlink(f"/proc/self/fd/{kwargs['dir_fd']}"), name)
                touched.append(os.path.abspath(name))
            return real(path, *args, **kwargs)

        return wrapper

    if only_depmin:
        for mod in pkgutil.walk_packages(depmin.__path__, "depmin."):
            importlib.import_module(mod.name)
    with monkeypatch.context() as mp:
        for name in ("open", "lstat", "stat", "readlink", "scandir", "listdir", "access"):
            mp.setattr(os, name, spy(getattr(os, name)))
        mp.setattr(builtins, "open", spy(builtins.open))
        yield touched


def outside(top: Path, touched: list[str]) -> list[str]:
    """Touched paths that are not ``top`` or below it."""
    t = str(top)
    return sorted({p for p in touched if p != t and not p.startswith(t + "/")})


@contextmanager
def interrupted_after(seconds: float) -> Iterator[None]:
    """KeyboardInterrupt in this thread after ``seconds``, as a Ctrl-C would; then the
    timer and the handler are restored."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
