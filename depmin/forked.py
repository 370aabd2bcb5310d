"""Work done by a forked child process, its answer pickled back through a pipe.

CPython runs Python code on one core per process, and a depmin run is short: a
bare ``fork`` and a pipe cost well under a millisecond, where multiprocessing's
import and threads cost more than the work handed over.  The child shares the
parent's memory as it was at the fork (copy on write), computes one value,
pickles it (or its exception) to the pipe and leaves with ``os._exit``, running
no ``atexit`` handler or ``finally`` block of the parent's stack.

Only plain, small values should travel: pickling is dearer than most of the work
depmin could hand over (a package list's wanted records travel, an index of
every file does not).
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable, Sequence
from typing import Generic, NoReturn, TypeVar

from depmin.errors import WorkerError

T = TypeVar("T")


def can_fork() -> bool:
    return hasattr(os, "fork")


def cores() -> int:
    """The cores this process may run on (a container's cpuset, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def child_main(
    task: Callable[[], object], out_w: int, what: str, error: type[WorkerError] = WorkerError
) -> NoReturn:
    """A child's whole life: run ``task``, write ``(ok, value)`` pickled to ``out_w``, exit."""
    code = 0
    try:
        try:
            value = task()
        except BaseException as exc:  # handed to the parent, which raises it
            try:
                payload = pickle.dumps((False, exc), pickle.HIGHEST_PROTOCOL)
                pickle.loads(payload)  # some exceptions dump but cannot be rebuilt
            except Exception:
                payload = pickle.dumps((False, error(f"{what} failed: {exc!r}")))
        else:
            try:
                payload = pickle.dumps((True, value), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                payload = pickle.dumps((False, error(f"{what} failed: its answer cannot be pickled: {exc}")))
        view = memoryview(payload)
        while view:
            view = view[os.write(out_w, view) :]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def spawn(
    task: Callable[[], object],
    what: str,
    error: type[WorkerError] = WorkerError,
    nice: int = 0,
    close: Sequence[int] = (),
) -> tuple[int, int]:
    """Fork a child that runs :func:`child_main`; its pid and the pipe to :func:`receive` from.

    The child closes ``close`` (the parent's other children's pipes) and never returns
    into the caller's code.  OSError (nothing left open) when the pipe or fork fails.
    """
    out_r, out_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(out_r)
        os.close(out_w)
        raise
    if pid == 0:
        try:
            os.close(out_r)
            for fd in close:
                os.close(fd)
            if nice:
                try:
                    os.nice(nice)
                except OSError:
                    pass
            child_main(task, out_w, what, error)
        finally:
            os._exit(1)
    os.close(out_w)
    return pid, out_r


def receive(pid: int, fd: int, what: str, error: type[WorkerError] = WorkerError) -> tuple[bool, object]:
    """Read a child's answer to the end, reap it, and return ``(ok, value)``.

    A child that died before writing all of it (killed, out of memory) is ``error``,
    with the signal or exit status.  ``fd`` is left open for the caller to close.
    """
    chunks: list[bytes] = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    except BaseException:  # interrupted while waiting: the child must not outlive it
        kill(pid)
        raise
    try:
        ok, value = pickle.loads(b"".join(chunks))
    except Exception:  # nothing or a torn payload: the child died
        why = (
            f"killed by signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        return False, error(f"a {what} process died ({why})")
    return bool(ok), value


def kill(pid: int) -> None:
    """Stop and reap a child (it may have exited already)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


class Forked(Generic[T]):
    """One value computed in a child process while this one goes on.

    ``Forked.start(task, what)`` forks and returns at once (``nice``: the child yields
    the cores to this process and its other workers, for work that is needed last); :meth:`result` waits for
    the value (raising the child's exception, or :class:`~depmin.errors.WorkerError`
    if it died); :meth:`cancel` kills it.  Where this system cannot fork, or the
    fork fails, the task runs in this process inside ``start``.
    """

    def __init__(
        self, what: str, pid: int = -1, fd: int = -1, outcome: tuple[bool, object] | None = None
    ) -> None:
        self._what, self._pid, self._fd, self._outcome = what, pid, fd, outcome

    @classmethod
    def start(cls, task: Callable[[], T], what: str, nice: int = 0) -> Forked[T]:
        """Fork a child for ``task``; ``nice`` lowers its priority (for work needed last)."""
        return cls.fork(task, what, nice) or cls.done(task, what)

    @classmethod
    def fork(cls, task: Callable[[], T], what: str, nice: int = 0) -> Forked[T] | None:
        """Like :meth:`start`, but None where no child can be forked (for work that is
        worth handing over only if it runs beside this process)."""
        if can_fork():
            try:
                pid, fd = spawn(task, what, nice=nice)
            except OSError:
                return None
            return cls(what, pid, fd)
        return None

    @classmethod
    def done(cls, task: Callable[[], T], what: str = "task") -> Forked[T]:
        """The task run in this process, now: the same interface without a child."""
        try:
            return cls(what, outcome=(True, task()))
        except Exception as exc:
            return cls(what, outcome=(False, exc))

    @property
    def running(self) -> bool:
        """True while the child has not been waited for."""
        return self._pid >= 0

    def result(self) -> T:
        if self._outcome is None:
            if self._pid < 0:
                raise WorkerError(f"the {self._what} was cancelled")
            try:
                self._outcome = receive(self._pid, self._fd, self._what)
            finally:
                os.close(self._fd)
                self._pid = self._fd = -1
        ok, value = self._outcome
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value  # type: ignore[return-value]

    def cancel(self) -> None:
        if self._pid >= 0:
            kill(self._pid)
            os.close(self._fd)
            self._pid = self._fd = -1
