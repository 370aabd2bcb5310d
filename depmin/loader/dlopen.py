"""Dependencies that DT_NEEDED does not show: ``.note.dlopen``, glibc's own dlopens, NSS.

* ``.note.dlopen`` (UAPI.12, systemd's convention): PT_NOTE entries of owner
  ``FDO``, type 0x407c0c0a, whose descriptor is a NUL-terminated JSON array of
  objects (``soname`` list in order of preference, ``feature``,
  ``description``, ``priority`` required/recommended/suggested); the older
  single-object form with a string ``soname`` is accepted too.
* glibc dlopens ``libgcc_s.so.1`` (pthread_cancel, pthread_exit, unwinding) and
  the NSS modules named in ``/etc/nsswitch.conf``; ``files`` and ``dns`` are
  built into libc since 2.34.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from depmin.errors import RootError
from depmin.loader import jsontext
from depmin.loader.elf import ElfFile
from depmin.rootfs import Root

NOTE_OWNER = "FDO"
NOTE_TYPE = 0x407C0C0A
PRIORITIES = ("required", "recommended", "suggested")
LIBGCC_S = "libgcc_s.so.1"


@dataclass(frozen=True)
class DlopenEntry:
    """One dependency declared in a ``.note.dlopen``."""

    sonames: tuple[str, ...]  # in order of preference: the first available is used
    priority: str = "recommended"
    feature: str | None = None
    description: str | None = None


def _entry(obj: Any, where: str, problems: list[str]) -> DlopenEntry | None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: .note.dlopen entry is not a JSON object")
        return None
    raw = obj.get("soname")
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        problems.append(f"{where}: .note.dlopen entry without a soname list")
        return None
    priority = obj.get("priority", "recommended")
    if priority not in PRIORITIES:
        problems.append(
            f"{where}: .note.dlopen priority {priority!r} unknown; taken as recommended"
        )
        priority = "recommended"
    feature = obj.get("feature")
    description = obj.get("description")
    return DlopenEntry(
        tuple(names),
        priority,
        feature if isinstance(feature, str) else None,
        description if isinstance(description, str) else None,
    )


def dlopen_entries(elf: ElfFile) -> tuple[tuple[DlopenEntry, ...], tuple[str, ...]]:
    """The declared dlopen dependencies of an object, and problems with malformed notes."""
    entries: list[DlopenEntry] = []
    problems: list[str] = []
    for note in elf.notes:
        if note.owner != NOTE_OWNER or note.type != NOTE_TYPE:
            continue
        text = note.desc.split(b"\0", 1)[0].decode("utf-8", "replace")
        try:
            data = jsontext.loads(text)
        except ValueError as exc:
            problems.append(f"{elf.path}: .note.dlopen is not valid JSON ({type(exc).__name__})")
            continue
        for obj in data if isinstance(data, list) else [data]:
            e = _entry(obj, elf.path, problems)
            if e is not None:
                entries.append(e)
    return tuple(entries), tuple(problems)


def nss_services(text: str) -> tuple[str, ...]:
    """Service words of an nsswitch.conf, in first-seen order, ``[...]`` actions skipped."""
    seen: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        if ":" not in line:
            continue
        rest = re.sub(r"\[[^\]]*\]", " ", line.split(":", 1)[1])
        for word in rest.split():
            if word not in seen:
                seen.append(word)
    return tuple(seen)


def nss_modules(root: Root, glibc: tuple[int, int]) -> tuple[str, ...]:
    """``libnss_<svc>.so.2`` names that libc would dlopen for the root's nsswitch.conf."""
    text = root.read_text("/etc/nsswitch.conf")
    if text is None:
        return ()
    builtin = {"files", "dns"} if glibc >= (2, 34) else set()
    return tuple(f"libnss_{s}.so.2" for s in nss_services(text) if s not in builtin)


_RELEASE = re.compile(rb"release version (\d+)\.(\d+)")


def glibc_version(root: Root, triplets: tuple[str, ...]) -> tuple[int, int] | None:
    """The glibc release of a root, read from its libc.so.6's version string (bounded read).

    A libc that cannot be found or read (a link loop, a FIFO) gives None: the
    caller keeps its default, as for a root without libc.
    """
    for t in triplets:
        for d in (f"/lib/{t}", f"/usr/lib/{t}"):
            try:
                real = root.resolve(f"{d}/libc.so.6")
                data = root.read_bytes(real, 16 << 20) if real is not None else b""
            except (OSError, RootError):
                continue
            m = _RELEASE.search(data)
            if m:
                return int(m.group(1)), int(m.group(2))
    return None
