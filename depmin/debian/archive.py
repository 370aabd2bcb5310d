"""What apt's package lists say about the installed versions (Priority, Essential, Important).

apt builds its cache from the lists *and* the status file (apt.md §5): package
flags are applied from every record, the status file last, and a version's
Priority comes from the first index that holds it, so the archive wins.  An
autoremove model that reads only the status file is exact only when the lists
are gone, and the Docker pattern purges before it deletes them.

Compressed lists (Acquire::GzipIndexes) are opened with the standard library
where it can (gz always, through zlib; xz and bz2 when the interpreter has lzma and
bz2, which Debian's python3-minimal has not), else with ``xzcat``, ``bzcat``,
``lz4cat``, ``zstdcat`` or apt's own ``apt-helper cat-file``: decompressors, never
a scanned file.
"""

from __future__ import annotations

import os
import re
import subprocess
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO

from depmin.errors import DepminError
from depmin.rootfs import Root

_SUFFIXES = ("", ".gz", ".xz", ".bz2", ".lz4", ".zst")


@dataclass(frozen=True)
class ArchiveRecord:
    """The fields of one Packages stanza that change apt's view of an installed package."""

    name: str
    arch: str
    version: str
    priority: str | None
    essential: bool | None  # None: field absent (leaves apt's flag unchanged)
    important: bool | None
    protected: bool | None


@dataclass(frozen=True)
class ArchiveIndex:
    """Records of wanted packages from every Packages list, in apt's parse order."""

    records: tuple[ArchiveRecord, ...]
    files: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def for_package(self, name: str, arch: str) -> tuple[ArchiveRecord, ...]:
        return tuple(r for r in self._by_name().get(name, ()) if r.arch in (arch, "all"))

    def _by_name(self) -> Mapping[str, tuple[ArchiveRecord, ...]]:
        """Records grouped by package name, built on first use (one lookup per package)."""
        cached: Mapping[str, tuple[ArchiveRecord, ...]] | None = self.__dict__.get("_index")
        if cached is None:
            groups: dict[str, list[ArchiveRecord]] = {}
            for r in self.records:
                groups.setdefault(r.name, []).append(r)
            cached = MappingProxyType({k: tuple(v) for k, v in groups.items()})
            object.__setattr__(self, "_index", cached)
        return cached


#: The first size of the buffer stanzas are read into and looked at in place; it
#: grows only for a stanza longer than that (a list holds ~60,000 short ones).
_CHUNK = 4 << 20

#: Reads into a buffer, returns the byte count, 0 at the end (``RawIOBase.readinto``).
_ReadInto = Callable[[memoryview], int]


@contextmanager
def _reader(root: Root, resolved: str) -> Iterator[_ReadInto]:
    """The decompressed bytes of a list inside the root (~50 MB unpacked), as ``readinto``.

    ``resolved`` is canonical (no link in it) and is opened only if it is a regular
    file, so neither a planted link nor a FIFO reaches the host or blocks the run.
    Decompression errors are OSErrors.
    """
    fd = root.open_regular(resolved)
    raw = os.fdopen(fd, "rb", buffering=0)
    with raw:
        suffix = os.path.splitext(resolved)[1]
        if suffix == ".gz":
            yield _from_chunks(_gunzip(raw))
            return
        module = {".xz": "lzma", ".bz2": "bz2"}.get(suffix)
        if module is not None:
            try:
                opener = __import__(module).open
            except ImportError:  # python3-minimal: no lzma, no bz2
                opener = None
            if opener is not None:
                with opener(raw) as f:
                    yield _guarded(f.readinto, suffix)
                return
        if suffix in _TOOLS:
            with _through_tool(raw, root.host(resolved), suffix) as read:
                yield read
            return
        yield raw.readinto


def _guarded(readinto: _ReadInto, suffix: str) -> _ReadInto:
    def read(view: memoryview) -> int:
        try:
            return readinto(view)
        except Exception as exc:  # EOFError, lzma.LZMAError (not imported here), OSError
            raise OSError(f"corrupt {suffix} data: {exc}") from None

    return read


def _from_chunks(chunks: Iterator[bytes]) -> _ReadInto:
    """``readinto`` over a stream of byte strings."""
    pending = memoryview(b"")

    def read(view: memoryview) -> int:
        nonlocal pending
        while not pending:
            block = next(chunks, None)
            if block is None:
                return 0
            pending = memoryview(block)
        n = min(len(view), len(pending))
        view[:n] = pending[:n]
        pending = pending[n:]
        return n

    return read


def _gunzip(raw: IO[bytes]) -> Iterator[bytes]:
    """gzip through zlib (built into every CPython), members one after another as gzip does."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for block in iter(lambda: raw.read(1 << 20), b""):
            while block:
                yield d.decompress(block)
                block = d.unused_data
                if block:
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        tail = d.flush()
    except zlib.error as exc:
        raise OSError(f"corrupt gzip data: {exc}") from None
    if not d.eof:
        raise OSError("truncated gzip data")
    yield tail


#: Decompressor programs, for what the interpreter cannot decompress itself.
_TOOLS = {".xz": "xzcat", ".bz2": "bzcat", ".lz4": "lz4cat", ".zst": "zstdcat"}


def _which(name: str) -> str | None:
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


@contextmanager
def _through_tool(raw: IO[bytes], host_path: str, suffix: str) -> Iterator[_ReadInto]:
    """A decompressor program on stdin (xzcat, bzcat, lz4cat, zstdcat), else apt's helper."""
    name = _TOOLS[suffix]
    found = _which(name)
    helper = "/usr/lib/apt/apt-helper"
    if found is not None:
        argv, stdin = [found], raw
    elif os.access(helper, os.X_OK):
        argv, stdin = [helper, "cat-file", host_path], None  # canonical: no link to follow
    else:
        raise OSError(f"no decompressor for {suffix} files ({name} or apt-helper)")
    with subprocess.Popen(
        argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
    ) as proc:
        out = proc.stdout
        assert out is not None
        yield out.readinto  # type: ignore[attr-defined]
    if proc.returncode != 0:
        raise OSError(f"{argv[0]} exited with status {proc.returncode}")


#: The start of a stanza (the buffer always starts with a blank line).
_PACKAGE = re.compile(rb"\n\nPackage:([^\n]*)")
#: The fields kept, at the start of a line; deb822 field names are case-insensitive.
_FIELD = re.compile(rb"^((?i:architecture|version|priority|essential|important|protected)):([^\n]*)", re.M)


def _flag(value: bytes | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() == b"yes"


def _records(readinto: _ReadInto, wanted: frozenset[str]) -> Iterator[ArchiveRecord]:
    """The records of the wanted packages, in the list's order.

    The list is read into one buffer and looked at in place (each byte is copied
    once, by the read: the VM streams memory at ~2 GB/s and a list is ~50 MB); the
    whole stanzas are scanned and the unfinished one moved to the front before the
    next read.
    """
    keys = {n.encode() for n in wanted}
    buf = bytearray(max(_CHUNK, 1) + 2)
    buf[:2] = b"\n\n"
    fill = 2
    while True:
        if fill == len(buf):
            cut = buf.rfind(b"\n\n", 0, fill)
            if cut <= 0:  # one stanza fills the buffer: make room
                buf.extend(bytes(len(buf)))
            else:
                yield from _scan(buf, cut, keys)
                rest = buf[cut:fill]
                buf[: len(rest)] = rest
                fill = len(rest)
        with memoryview(buf) as whole, whole[fill:] as free:
            n = readinto(free)
        if not n:
            break
        fill += n
    yield from _scan(buf, fill, keys)


def _scan(buf: bytearray, end: int, keys: set[bytes]) -> Iterator[ArchiveRecord]:
    """Records of the wanted stanzas among the whole ones in ``buf[:end]``.

    One pass of a regular expression (in C) finds where each stanza starts and its
    name; only the stanzas of wanted packages are looked into, and only for the
    fields that change apt's view.
    """
    for m in _PACKAGE.finditer(buf, 0, end):
        name = m.group(1).strip()
        if name not in keys:
            continue
        stop = buf.find(b"\n\n", m.end(), end)
        fields: dict[bytes, bytes] = {}
        for f in _FIELD.finditer(buf, m.end(), stop if stop >= 0 else end):
            fields[f.group(1).lower()] = f.group(2).strip()
        priority = fields.get(b"priority")
        yield ArchiveRecord(
            name.decode("utf-8", "replace"),
            fields.get(b"architecture", b"").decode("utf-8", "replace"),
            fields.get(b"version", b"").decode("utf-8", "replace"),
            priority.decode("utf-8", "replace") if priority is not None else None,
            _flag(fields.get(b"essential")),
            _flag(fields.get(b"important")),
            _flag(fields.get(b"protected")),
        )


def load_archive_index(
    root: Root, wanted: Iterable[str], lists_dir: str = "/var/lib/apt/lists"
) -> ArchiveIndex:
    """Read every ``*_Packages`` list of the root (sorted, as apt reads sources.list order)."""
    wanted_set = frozenset(wanted)
    real = root.resolve(lists_dir)
    if real is None:
        return ArchiveIndex((), ())
    try:
        names = sorted(os.listdir(root.host(real)))
    except OSError as exc:
        return ArchiveIndex((), (), (f"{lists_dir}: cannot list: {exc.strerror}",))
    records: list[ArchiveRecord] = []
    files: list[str] = []
    warnings: list[str] = []
    for name in names:
        base = next((name[: -len(s)] for s in _SUFFIXES[1:] if name.endswith(s)), name)
        if not base.endswith("_Packages"):
            continue
        rel = real.rstrip("/") + "/" + name
        try:
            resolved = root.resolve(rel)
            if resolved is None:
                continue
            with _reader(root, resolved) as readinto:
                found = list(_records(readinto, wanted_set))
        except (OSError, DepminError) as exc:
            warnings.append(f"{rel}: cannot read package list: {exc}")
            continue
        files.append(rel)
        records.extend(found)
    return ArchiveIndex(tuple(records), tuple(files), tuple(warnings))
