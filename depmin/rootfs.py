"""Paths inside a root directory, resolved the way the loader sees them from inside it.

The host must never follow a link on the root's behalf: ``open``/``realpath`` on
``<root>/lib`` would send an absolute target such as ``/usr/lib`` to the host.
So every path is resolved one component at a time with ``lstat``/``readlink``,
absolute link targets restart at the root and ``..`` stops there (ldconfig's
``chroot_canon`` does the same).  Paths handed around depmin are root-relative
("/usr/lib/x86_64-linux-gnu/libz.so.1"); only this module adds the root prefix.
"""

from __future__ import annotations

import errno
import os
import stat

from depmin.errors import RootError

#: Linux's MAXSYMLINKS: more hops than this is ELOOP for the kernel too.
MAX_LINK_HOPS = 40

#: How a file of a root is opened for reading: never through a link swapped in as its
#: last component, never blocking on a FIFO swapped in (the read then fails).
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

_MISSING = (FileNotFoundError, NotADirectoryError, PermissionError)


def _normalise(path: str) -> str:
    """Absolute, single slashes, no trailing slash; '.' and '..' are kept for resolution."""
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


class Root:
    """A directory treated as '/': resolves, stats and opens root-relative paths.

    Instances cache resolved directories, so keep one per run; the cache is the
    only state and it is private to the instance.
    """

    def __init__(self, top: str = "/") -> None:
        top = os.path.abspath(top)
        self.top = top
        self._prefix = "" if top == "/" else top
        self._dirs: dict[str, str | None] = {"/": "/"}

    def __repr__(self) -> str:
        return f"Root({self.top!r})"

    @property
    def is_host(self) -> bool:
        return self._prefix == ""

    def host(self, path: str) -> str:
        """The host path of a *resolved* root-relative path (never resolve this again)."""
        return self._prefix + path if path != "/" else (self._prefix or "/")

    def relative(self, host_path: str) -> str | None:
        """Map a host path under the root back to root-relative form (no resolution)."""
        host_path = os.path.abspath(host_path)
        if not self._prefix:
            return host_path
        if host_path == self._prefix:
            return "/"
        if host_path.startswith(self._prefix + "/"):
            return host_path[len(self._prefix) :]
        return None

    def resolve(self, path: str, follow: bool = True) -> str | None:
        """Canonical root-relative path, or None when a component is missing.

        ENOENT, ENOTDIR and EACCES give None (ld.so moves on to its next candidate);
        a link loop or chain longer than MAX_LINK_HOPS raises RootError.  With
        ``follow=False`` a final symlink is returned as is (lstat semantics).
        """
        if "\0" in path:
            return None  # no file name holds a NUL: the kernel would refuse the path
        try:
            resolved, _ = self._resolve(_normalise(path), 0, follow)
        except UnicodeEncodeError:
            return None  # not encodable as a file name (a lone surrogate from JSON or a note)
        return resolved

    def _resolve_dir(self, head: str, hops: int) -> tuple[str | None, int]:
        if head in self._dirs:
            return self._dirs[head], hops
        # From the deepest cached ancestor down, one level at a time: a hostile root may
        # nest thousands of directories, which must not cost one stack frame each.
        todo = [head]
        while (todo[-1].rpartition("/")[0] or "/") not in self._dirs:
            todo.append(todo[-1].rpartition("/")[0])
        resolved: str | None = None
        for prefix in reversed(todo):
            resolved, hops = self._resolve(prefix, hops, True)
            self._dirs[prefix] = resolved
            if resolved is None:
                break
        self._dirs[head] = resolved
        return resolved, hops

    def _resolve(self, path: str, hops: int, follow: bool) -> tuple[str | None, int]:
        if path == "/":
            return "/", hops
        head, _, base = path.rpartition("/")
        cdir, hops = self._resolve_dir(head or "/", hops)
        if cdir is None:
            return None, hops
        if base == ".":
            return cdir, hops
        if base == "..":
            return (cdir.rpartition("/")[0] or "/"), hops
        cand = cdir.rstrip("/") + "/" + base
        try:
            st = os.lstat(self.host(cand))
        except _MISSING:
            return None, hops
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG):
                raise RootError(os.strerror(exc.errno), path) from None
            return None, hops
        if follow and stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise RootError("too many levels of symbolic links", path)
            try:
                target = os.readlink(self.host(cand))
            except OSError:
                return None, hops
            if not target:
                return None, hops
            nxt = target if target.startswith("/") else cdir.rstrip("/") + "/" + target
            return self._resolve(_normalise(nxt), hops, True)
        return cand, hops

    def lstat(self, resolved: str) -> os.stat_result:
        return os.lstat(self.host(resolved))

    def open_regular(self, resolved: str) -> int:
        """Open a resolved path for reading, only if it is a regular file.

        O_NOFOLLOW and O_NONBLOCK guard against the file being swapped for a link
        or a FIFO between the check and the open; devices are never opened.
        """
        hp = self.host(resolved)
        st = os.lstat(hp)
        if not stat.S_ISREG(st.st_mode):
            raise (
                IsADirectoryError(errno.EISDIR, "not a regular file", hp)
                if stat.S_ISDIR(st.st_mode)
                else OSError(errno.EINVAL, "not a regular file", hp)
            )
        fd = os.open(hp, READ_FLAGS)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", hp)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read_bytes(self, resolved: str, limit: int = 64 << 20) -> bytes:
        """At most ``limit`` bytes of a resolved regular file (OSError if it is not one).

        The one way depmin reads a whole file inside a root: no link followed, no FIFO
        opened, no unbounded read.
        """
        fd = self.open_regular(resolved)
        with os.fdopen(fd, "rb") as f:
            return f.read(limit)

    def read_text(self, path: str, limit: int = 16 << 20) -> str | None:
        """Text of a config file inside the root, or None if absent or unreadable (bounded)."""
        resolved = self.resolve(path)
        if resolved is None:
            return None
        try:
            data = self.read_bytes(resolved, limit)
        except OSError:
            return None
        return data.decode("utf-8", "surrogateescape")
