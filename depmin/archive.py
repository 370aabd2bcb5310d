"""What apt's package lists say about the installed versions (Priority, Essential, Important).

apt builds its cache from the lists *and* the status file (apt.md §5): package
flags are applied from every record, the status file last, and a version's
Priority comes from the first index that holds it, so the archive wins.  An
autoremove model that reads only the status file is exact only when the lists
are gone, and the Docker pattern purges before it deletes them.

Compressed lists (Acquire::GzipIndexes) are opened with the standard library
where it can (gz, xz, bz2), else with apt's own ``apt-helper cat-file`` or
``lz4cat``/``zstdcat``: decompressors, never a scanned file.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Callable, Optional, cast

from depmin.rootfs import Root

_SUFFIXES = ("", ".gz", ".xz", ".bz2", ".lz4", ".zst")


@dataclass(frozen=True)
class ArchiveRecord:
    """The fields of one Packages stanza that change apt's view of an installed package."""

    name: str
    arch: str
    version: str
    priority: Optional[str]
    essential: Optional[bool]  # None: field absent (leaves apt's flag unchanged)
    important: Optional[bool]
    protected: Optional[bool]


@dataclass(frozen=True)
class ArchiveIndex:
    """Records of wanted packages from every Packages list, in apt's parse order."""

    records: tuple[ArchiveRecord, ...]
    files: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def for_package(self, name: str, arch: str) -> tuple[ArchiveRecord, ...]:
        return tuple(r for r in self.records if r.name == name and (r.arch in (arch, "all")))


_CHUNK = 1 << 20


def _chunks(host_path: str) -> Iterator[bytes]:
    """The decompressed bytes of a list, 1 MiB at a time (a list is ~50 MB unpacked)."""
    openers: dict[str, Callable[[str], IO[bytes]]] = {
        ".gz": lambda p: cast(IO[bytes], gzip.open(p, "rb")),
        ".xz": lambda p: cast(IO[bytes], lzma.open(p, "rb")),
        ".bz2": lambda p: cast(IO[bytes], bz2.open(p, "rb")),
    }
    opener = openers.get(os.path.splitext(host_path)[1])
    if opener is not None:
        with opener(host_path) as f:
            yield from iter(lambda: f.read(_CHUNK), b"")
        return
    if host_path.endswith((".lz4", ".zst")):
        helper = "/usr/lib/apt/apt-helper"
        tool = [helper, "cat-file"] if os.access(helper, os.X_OK) else None
        if tool is None:
            name = "lz4cat" if host_path.endswith(".lz4") else "zstdcat"
            found = shutil.which(name)
            if found is None:
                raise OSError(f"no decompressor for {os.path.basename(host_path)}")
            tool = [found]
        with subprocess.Popen(
            tool + [host_path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=_CHUNK
        ) as proc:
            assert proc.stdout is not None
            yield from iter(lambda: proc.stdout.read(_CHUNK), b"")  # type: ignore[union-attr]
        if proc.returncode != 0:
            raise OSError(f"{tool[0]} exited with status {proc.returncode}")
        return
    with open(host_path, "rb") as f:
        yield from iter(lambda: f.read(_CHUNK), b"")


def _stanzas(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Stanzas of a deb822 byte stream, split on blank lines across chunk boundaries."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n\n")
        rest = parts.pop()
        yield from parts
    if rest.strip():
        yield rest


def _flag(value: Optional[str]) -> Optional[bool]:
    if value is None:
        return None
    return value.strip().lower() == "yes"


def _parse(stanzas: Iterable[bytes], wanted: frozenset[str]) -> Iterable[ArchiveRecord]:
    """Only stanzas of wanted packages are parsed: a list holds ~60,000 of them.

    Splitting the bytes is done in C; only wanted stanzas are decoded.
    """
    keys = {n.encode() for n in wanted}
    for raw in stanzas:
        raw = raw.lstrip(b"\n")
        if raw[8 : raw.find(b"\n")].strip() not in keys or not raw.startswith(b"Package:"):
            continue
        stanza = raw.decode("utf-8", "replace")
        name = stanza[8 : stanza.find("\n")].strip()
        fields: dict[str, str] = {}
        for line in stanza.split("\n"):
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.lower()] = value.strip()
        yield ArchiveRecord(
            name,
            fields.get("architecture", ""),
            fields.get("version", ""),
            fields.get("priority"),
            _flag(fields.get("essential")),
            _flag(fields.get("important")),
            _flag(fields.get("protected")),
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
            found = list(_parse(_stanzas(_chunks(root.host(rel))), wanted_set))
        except (OSError, EOFError, lzma.LZMAError) as exc:
            warnings.append(f"{rel}: cannot read package list: {exc}")
            continue
        files.append(rel)
        records.extend(found)
    return ArchiveIndex(tuple(records), tuple(files), tuple(warnings))
