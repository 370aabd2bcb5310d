"""Reader of glibc's ``/etc/ld.so.cache``, and the loader's lookup in it.

ld.so consults the cache before the system directories, and ``/usr/local/lib`` is
reachable *only* through it, so depmin must read the cache the image really has,
even a stale one, and search it with glibc's own binary search: a cache written
in a different order (apko's bytewise sort) hides entries from ld.so that a
linear scan such as ``ldconfig -p`` still shows.

Three shapes are accepted (glibc 2.36 ``elf/dl-cache.c``): old only
(``ld.so-1.7.0``), new only (``glibc-ld.so.cache1.1``), and compat (old table,
padding to 8 bytes, new header); compat files are read through their new table,
as ld.so does.  Every count and offset is checked against the file before use,
so a malformed file raises :class:`~depmin.errors.CacheError` and nothing else.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, cmp_to_key
from types import MappingProxyType

from depmin.errors import CacheError, RootError
from depmin.rootfs import Root

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"
EXTENSION_MAGIC = 0xEAA42174
EXT_TAG_GENERATOR = 0
EXT_TAG_GLIBC_HWCAPS = 1

#: Largest cache depmin reads; Debian's has ~35 KiB for 536 entries.
MAX_CACHE_SIZE = 64 << 20

_OLD_HEADER = 16  # magic[11], pad, u32 nlibs
_OLD_ENTRY = 12  # i32 flags, u32 key, u32 value
_NEW_HEADER = 48
_NEW_ENTRY = 24  # i32 flags, u32 key, u32 value, u32 osversion, u64 hwcap
_NEW_ALIGN = 8  # __alignof__ (struct cache_file_new) on 64-bit targets

_ENDIAN_UNSET, _ENDIAN_INVALID, _ENDIAN_LITTLE, _ENDIAN_BIG = 0, 1, 2, 3

HWCAP_EXTENSION = 1 << 62  # DL_CACHE_HWCAP_EXTENSION
HWCAP_ISA_LEVEL_MASK = 0x3FF  # bits 32..41 of hwcap
HWCAP_TLS = 1 << 63  # legacy "tls" bit, always supported

_TYPE_NAMES = MappingProxyType({0: "libc4", 1: "ELF", 2: "libc5", 3: "libc6"})
_ABI_NAMES = MappingProxyType({
    0x0100: ",64bit", 0x0200: ",IA-64", 0x0300: ",x86-64", 0x0400: ",64bit",
    0x0500: ",64bit", 0x0600: ",N32", 0x0700: ",64bit", 0x0800: ",x32",
    0x0900: ",hard-float", 0x0A00: ",AArch64", 0x0B00: ",soft-float",
    0x0C00: ",nan2008", 0x0D00: ",N32,nan2008", 0x0E00: ",64bit,nan2008",
    0x0F00: ",soft-float", 0x1000: ",double-float", 0x1100: ",soft-float",
    0x1200: ",double-float",
})  # fmt: skip
_ABI_OS = ("Linux", "Hurd", "Solaris", "FreeBSD", "kNetBSD", "Syllable", "Unknown OS")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- libcmp


def _is_digit(c: int) -> bool:
    return 48 <= c <= 57


def _schar(c: int) -> int:
    """x86's ``char`` is signed: bytes >= 0x80 sort below NUL in glibc there."""
    return c - 256 if c >= 128 else c


def _libcmp_bytes(p1: bytes, p2: bytes) -> int:
    i = j = 0
    n1, n2 = len(p1), len(p2)
    while i < n1:
        c1 = p1[i]
        c2 = p2[j] if j < n2 else 0
        if _is_digit(c1):
            if not _is_digit(c2):
                return 1
            s1 = i
            while i < n1 and _is_digit(p1[i]):
                i += 1
            s2 = j
            while j < n2 and _is_digit(p2[j]):
                j += 1
            # Numeric value without int(): runs may be longer than int() accepts.
            d1 = p1[s1:i].lstrip(b"0")
            d2 = p2[s2:j].lstrip(b"0")
            if d1 != d2:
                return -1 if (len(d1), d1) < (len(d2), d2) else 1
        elif _is_digit(c2):
            return -1
        elif c1 != c2:
            return -1 if _schar(c1) < _schar(c2) else 1
        else:
            i += 1
            j += 1
    c2 = p2[j] if j < n2 else 0
    return 0 if c2 == 0 else (-1 if _schar(c2) > 0 else 1)


def libcmp(a: str, b: str) -> int:
    """glibc's ``_dl_cache_libcmp``: the order ldconfig sorts keys in (descending).

    Digit runs compare by value (``libfoo.so.01`` equals ``libfoo.so.1``), a digit
    ranks above any non-digit, other bytes compare as x86's signed ``char`` (only
    non-ASCII names would differ on unsigned-char targets).  A NUL ends a string,
    as in C.  Returns -1, 0 or 1.
    """
    return _libcmp_bytes(_encode(a.split("\0", 1)[0]), _encode(b.split("\0", 1)[0]))


#: Sort key for ``sorted(keys, key=libcmp_key, reverse=True)`` (ldconfig's key order).
libcmp_key = cmp_to_key(libcmp)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class CacheEntry:
    """One cache record, with the raw fields ld.so decides on."""

    key: str  # SONAME (or file name) looked up
    value: str  # path ld.so then opens
    flags: int  # type & 0xff | ABI & 0xff00
    osversion: int
    hwcap: int

    @property
    def is_glibc_hwcaps(self) -> bool:
        """Bit 62 alone in the upper half, ignoring the ISA-level bits."""
        return ((self.hwcap >> 32) & ~HWCAP_ISA_LEVEL_MASK) == HWCAP_EXTENSION >> 32

    @property
    def hwcaps_index(self) -> int | None:
        """Index into :attr:`LdCache.hwcaps_subdirs` for glibc-hwcaps entries."""
        return self.hwcap & 0xFFFFFFFF if self.is_glibc_hwcaps else None

    @property
    def isa_level(self) -> int:
        """ISA level ldconfig recorded (x86: GNU_PROPERTY_X86_ISA_1 bit number)."""
        return (self.hwcap >> 32) & HWCAP_ISA_LEVEL_MASK if self.is_glibc_hwcaps else 0

    @property
    def is_legacy_hwcap(self) -> bool:
        """A pre-2.37 hwcap-mask entry (from ``tls/``, ``x86_64/`` ... dirs)."""
        return self.hwcap != 0 and not self.is_glibc_hwcaps


@dataclass(frozen=True)
class LdCache:
    """A parsed cache; ``entries`` are in file order, which is ldconfig's sort order.

    ``format`` is ``"old"``, ``"new"`` or ``"compat"``; ``byteorder`` is the order
    the entries were read in, so a caller can ignore a cache written for a loader of
    the other endianness, as that loader would.
    """

    entries: tuple[CacheEntry, ...]
    hwcaps_subdirs: tuple[str, ...] = ()
    generator: str | None = None
    format: str = "new"
    byteorder: str = "little"

    def iter_entries(self) -> Iterator[CacheEntry]:
        """Entries in file order, the order ``ldconfig -p`` prints them."""
        return iter(self.entries)

    def hwcaps_name(self, entry: CacheEntry) -> str | None:
        """The glibc-hwcaps subdirectory of an entry, or None (normal, or bad index)."""
        index = entry.hwcaps_index
        if index is None or index >= len(self.hwcaps_subdirs):
            return None
        return self.hwcaps_subdirs[index]

    @cached_property
    def _keys(self) -> tuple[bytes, ...]:
        return tuple(_encode(e.key) for e in self.entries)

    def lookup(
        self,
        name: str,
        accept_flags: frozenset[int],
        active_hwcaps: Sequence[str] = (),
        legacy_hwcap_ok: bool = True,
        cpu_isa_1: int | None = None,
    ) -> str | None:
        """The path ld.so's ``search_cache`` returns for ``name``, or None.

        Binary search over the keys as stored, back to the first equal key, then
        forward: entries with flags outside ``accept_flags`` are skipped; a
        glibc-hwcaps entry is kept if its subdirectory is in ``active_hwcaps``
        (best first) and beats the best one so far; the first accepted normal entry
        ends the scan, returning the best glibc-hwcaps hit if there is one, else
        itself.  A mis-sorted cache therefore misses entries exactly as ld.so does.

        Simplifications, stated so callers know the limits: a legacy hwcap-mask
        entry is usable only when ``legacy_hwcap_ok`` (glibc < 2.40) and its mask
        has no bit but ``tls`` (the CPU's AT_HWCAP and platform bits are not
        modelled); ``osversion`` is not checked.  ``cpu_isa_1`` is glibc's x86
        ``cpu_features->isa_1`` (bit n = ISA level n supported); None accepts every
        level, which is what non-x86 loaders do.  The flags value that stops the
        scan at once (glibc's ``_DL_CACHE_DEFAULT_ID``) is ``max(accept_flags)``.
        """
        query = _Query(
            want=_encode(name.split("\0", 1)[0]),
            accept=accept_flags,
            default_id=max(accept_flags) if accept_flags else None,
            hwcaps=self.format != "old",
            priorities=tuple(_hwcaps_priorities(self.hwcaps_subdirs, active_hwcaps)),
            legacy_ok=legacy_hwcap_ok,
            cpu_isa_1=cpu_isa_1,
        )
        keys = self._keys
        left, right = 0, len(keys) - 1
        while left <= right:
            middle = (left + right) // 2
            cmp = _libcmp_bytes(query.want, keys[middle])
            if cmp == 0:
                first = middle
                while first > 0 and _libcmp_bytes(query.want, keys[first - 1]) == 0:
                    first -= 1
                return self._scan_equal(query, first, middle, right)
            if cmp < 0:
                left = middle + 1
            else:
                right = middle - 1
        return None

    def _scan_equal(self, query: _Query, first: int, hit: int, right: int) -> str | None:
        """The do/while loop of ``search_cache``, forward from the first equal key.

        Like glibc it re-checks keys only past the hit and stops at ``right``, the
        binary search's bound when it hit.
        """
        best: str | None = None
        best_priority = 0
        for index in range(first, right + 1):
            if index > hit and _libcmp_bytes(query.want, self._keys[index]) != 0:
                break
            entry = self.entries[index]
            if entry.flags not in query.accept:
                continue
            named = query.hwcaps and entry.is_glibc_hwcaps
            if named and query.cpu_isa_1 is not None:
                level_bit = 1 << entry.isa_level
                if query.cpu_isa_1 & level_bit != level_bit:
                    continue
            if query.hwcaps and not named:
                if best is not None:
                    break  # glibc-hwcaps entries sort first: the best one wins
                if entry.hwcap != 0 and not (query.legacy_ok and entry.hwcap & ~HWCAP_TLS == 0):
                    continue
            if named:
                slot = entry.hwcap & 0xFFFFFFFF
                priority = query.priorities[slot] if slot < len(query.priorities) else 0
                if priority == 0 or (best is not None and priority >= best_priority):
                    continue
                best_priority = priority
            best = entry.value
            if not named and entry.flags == query.default_id:
                break
        return best


@dataclass(frozen=True)
class _Query:
    """What one lookup compares entries against."""

    want: bytes
    accept: frozenset[int]
    default_id: int | None
    hwcaps: bool  # new-format entries carry hwcap fields
    priorities: tuple[int, ...]
    legacy_ok: bool
    cpu_isa_1: int | None


def _hwcaps_priorities(subdirs: Sequence[str], active: Sequence[str]) -> list[int]:
    """Priority per cache subdir (1 = best, 0 = unusable), merged as glibc does.

    glibc walks the cache's name array and the active names, both assumed sorted
    by ``strcmp``, in step; replaying that merge keeps a mis-sorted array's effect.
    """
    if not subdirs:
        return []
    ranks: dict[bytes, int] = {}
    for position, active_name in enumerate(active, 1):
        ranks.setdefault(_encode(active_name), position)
    right = sorted(ranks.items())
    result: list[int] = []
    li = ri = 0
    left = [_encode(s) for s in subdirs]
    while li < len(left) and ri < len(right):
        wanted, priority = right[ri]
        if left[li] == wanted:
            result.append(priority)
            li += 1
            ri += 1
        elif left[li] < wanted:
            result.append(0)
            li += 1
        else:
            ri += 1
    result.extend([0] * (len(left) - li))
    return result


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Bounds-checked access to the cache bytes; every failure is a CacheError."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self._strings: dict[int, str] = {}

    def fail(self, problem: str) -> CacheError:
        return CacheError(problem, self.name)

    def unpack(self, fmt: str, offset: int, what: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self.data):
            raise self.fail(f"{what} at offset {offset} runs past the end of the file")
        return struct.unpack_from(fmt, self.data, offset)

    def string(self, base: int, offset: int, what: str) -> str:
        pos = base + offset
        if pos >= len(self.data):
            raise self.fail(f"{what} string offset {offset:#x} is outside the file")
        cached = self._strings.get(pos)
        if cached is not None:
            return cached
        end = self.data.find(b"\0", pos)
        if end < 0:
            raise self.fail(f"{what} string at {pos:#x} is not NUL-terminated")
        text = _decode(self.data[pos:end])
        self._strings[pos] = text
        return text


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) & ~(alignment - 1)


def _order(byteorder: str) -> str:
    if byteorder not in ("little", "big"):
        raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
    return "<" if byteorder == "little" else ">"


def parse_ldcache(data: bytes, name: str = "/etc/ld.so.cache", default_byteorder: str = "little") -> LdCache:
    """Parse a whole cache file.

    ``default_byteorder`` applies where the file does not say: the old table, and a
    new header whose endianness flag is unset (ldconfig before 2.33); pass the
    target's order when it is big-endian.  A new header flagged little- or
    big-endian is read in that order whatever the default.
    """
    reader = _Reader(bytes(data), name)
    default = _order(default_byteorder)
    if reader.data.startswith(NEW_MAGIC):
        return _parse_new(reader, 0, default, "new")
    if reader.data.startswith(OLD_MAGIC):
        return _parse_old_or_compat(reader, default)
    raise reader.fail("not an ld.so.cache file (bad magic)")


def _parse_old_or_compat(reader: _Reader, default: str) -> LdCache:
    data = reader.data
    if len(data) < _OLD_HEADER:
        raise reader.fail("old-format header is truncated")
    room = (len(data) - _OLD_HEADER) // _OLD_ENTRY
    other = ">" if default == "<" else "<"
    # The old table has no byte-order mark: the order that leads to an embedded new
    # header wins, else the default.
    for order in (default, other):
        (nlibs,) = struct.unpack_from(order + "I", data, 12)
        if nlibs > room:
            continue
        offset = _align(_OLD_HEADER + nlibs * _OLD_ENTRY, _NEW_ALIGN)
        if data.startswith(NEW_MAGIC, offset) and offset + _NEW_HEADER <= len(data):
            return _parse_new(reader, offset, order, "compat")
    (nlibs,) = struct.unpack_from(default + "I", data, 12)
    if nlibs > room:
        raise reader.fail(f"old-format table of {nlibs} entries runs past the end of the file")
    base = _OLD_HEADER + nlibs * _OLD_ENTRY
    entries = []
    for i in range(nlibs):
        flags, key, value = struct.unpack_from(default + "iII", data, _OLD_HEADER + i * _OLD_ENTRY)
        key_text, value_text = reader.string(base, key, "key"), reader.string(base, value, "value")
        entries.append(CacheEntry(key_text, value_text, flags, 0, 0))
    return LdCache(tuple(entries), (), None, "old", "little" if default == "<" else "big")


def _parse_new(reader: _Reader, base: int, default: str, shape: str) -> LdCache:
    data = reader.data
    if base + _NEW_HEADER > len(data):
        raise reader.fail("new-format header is truncated")
    flags = data[base + 28]
    endian = flags & 3
    if endian == _ENDIAN_INVALID:
        raise reader.fail("cache is flagged invalid (endianness field 1)")
    if flags != 0 and endian == _ENDIAN_UNSET:
        raise reader.fail(f"header flags {flags:#x} carry no byte order")
    order = {_ENDIAN_LITTLE: "<", _ENDIAN_BIG: ">"}.get(endian, default)
    nlibs, _len_strings = struct.unpack_from(order + "II", data, base + 20)
    (ext_offset,) = struct.unpack_from(order + "I", data, base + 32)
    if (len(data) - base - _NEW_HEADER) // _NEW_ENTRY < nlibs:
        raise reader.fail(f"table of {nlibs} entries runs past the end of the file")
    entries = []
    first = base + _NEW_HEADER
    for i in range(nlibs):
        eflags, key, value, osversion, hwcap = struct.unpack_from(
            order + "iIIIQ", data, first + i * _NEW_ENTRY
        )
        key_text, value_text = reader.string(base, key, "key"), reader.string(base, value, "value")
        entries.append(CacheEntry(key_text, value_text, eflags, osversion, hwcap))
    generator, subdirs = _parse_extensions(reader, ext_offset, order)
    byteorder = "little" if order == "<" else "big"
    return LdCache(tuple(entries), subdirs, generator, shape, byteorder)


def _parse_extensions(reader: _Reader, ext_offset: int, order: str) -> tuple[str | None, tuple[str, ...]]:
    """The extension directory; its offsets count from the start of the *file*.

    So do the hwcaps name offsets, as glibc 2.36 reads them (ld.so and
    ``ldconfig -p``).  ldconfig writes those relative to the new header, so in a
    compat file the names come out wrong and ld.so never uses the glibc-hwcaps
    entries; depmin reproduces that rather than repairing it.
    """
    if ext_offset == 0:
        return None, ()
    if ext_offset % 4:
        raise reader.fail(f"extension directory offset {ext_offset:#x} is not 4-aligned")
    magic, count = reader.unpack(order + "II", ext_offset, "extension directory")
    if magic != EXTENSION_MAGIC:
        raise reader.fail(f"extension directory has bad magic {magic:#x}")
    if ext_offset + 8 + count * 16 > len(reader.data):
        raise reader.fail(f"extension directory of {count} sections runs past the end")
    sections: dict[int, tuple[int, int]] = {}
    for i in range(count):
        tag, _flags, offset, size = struct.unpack_from(order + "IIII", reader.data, ext_offset + 8 + i * 16)
        if offset + size > len(reader.data):
            raise reader.fail(f"extension section {i} (tag {tag}) runs past the end")
        if tag in (EXT_TAG_GENERATOR, EXT_TAG_GLIBC_HWCAPS):
            sections[tag] = (offset, size)  # a later duplicate wins, as in glibc
    generator = None
    if EXT_TAG_GENERATOR in sections:
        offset, size = sections[EXT_TAG_GENERATOR]
        generator = _decode(reader.data[offset : offset + size])
    subdirs: tuple[str, ...] = ()
    if EXT_TAG_GLIBC_HWCAPS in sections:
        offset, size = sections[EXT_TAG_GLIBC_HWCAPS]
        if offset % 4 or size % 4:
            raise reader.fail("glibc-hwcaps section is not 4-aligned or not a multiple of 4")
        indices = struct.unpack_from(f"{order}{size // 4}I", reader.data, offset)
        subdirs = tuple(reader.string(0, index, "glibc-hwcaps name") for index in indices)
    return generator, subdirs


# --------------------------------------------------------------------------- loading


def load_ldcache(
    root: Root,
    path: str = "/etc/ld.so.cache",
    default_byteorder: str = "little",
    max_size: int = MAX_CACHE_SIZE,
) -> LdCache | None:
    """The cache of a root, or None when it has none.

    An empty file also gives None: ld.so maps nothing and runs without a cache.
    A file that exists but cannot be read, is not a regular file, is larger than
    ``max_size`` or is malformed raises CacheError; ld.so would silently ignore it,
    depmin reports it.
    """
    try:
        resolved = root.resolve(path)
    except RootError as exc:
        raise CacheError(exc.problem, path) from None
    if resolved is None:
        return None
    try:
        fd = root.open_regular(resolved)
    except OSError as exc:
        raise CacheError(f"cannot open: {exc.strerror or exc}", path) from None
    try:
        size = os.fstat(fd).st_size
        if size > max_size:
            raise CacheError(f"file is {size} bytes, over the {max_size}-byte limit", path)
        chunks = []
        remaining = max_size + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise CacheError(f"cannot read: {exc.strerror or exc}", path) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_size:
        raise CacheError(f"file grew over the {max_size}-byte limit while read", path)
    if not data:
        return None
    return parse_ldcache(data, path, default_byteorder)


# --------------------------------------------------------------------------- ldconfig -p


def flags_text(flags: int) -> str:
    """The flag description ``ldconfig -p`` prints, e.g. ``libc6,x86-64``."""
    text = _TYPE_NAMES.get(flags & 0xFF, "unknown")
    abi = flags & 0xFF00
    if abi:
        text += _ABI_NAMES.get(abi, f",{abi}")
    return text


def format_entry(entry: CacheEntry, hwcaps_name: str | None = None) -> str:
    """One line of ``ldconfig -p`` (without the newline)."""
    extra = ""
    if hwcaps_name is not None:
        extra = f', hwcap: "{hwcaps_name}"'
    elif entry.hwcap:
        extra = f", hwcap: {entry.hwcap:#018x}"
    if entry.osversion:
        os_id = entry.osversion >> 24
        major, minor, patch = (
            (entry.osversion >> 16) & 0xFF,
            (entry.osversion >> 8) & 0xFF,
            entry.osversion & 0xFF,
        )
        extra += f", OS ABI: {_ABI_OS[min(os_id, len(_ABI_OS) - 1)]} {major}.{minor}.{patch}"
    return f"\t{entry.key} ({flags_text(entry.flags)}{extra}) => {entry.value}"


def ldconfig_print(cache: LdCache, name: str = "/etc/ld.so.cache") -> list[str]:
    """The lines ``ldconfig -p`` prints for a cache (ctypes.util parses these)."""
    lines = [f"{len(cache.entries)} libs found in cache `{name}'"]
    lines.extend(format_entry(e, cache.hwcaps_name(e)) for e in cache.entries)
    if cache.generator is not None:
        lines.append(f"Cache generated by: {cache.generator}")
    return lines


def sort_keys(keys: Sequence[str]) -> list[str]:
    """Keys in ldconfig's order (descending libcmp, stable among equals)."""
    return sorted(keys, key=libcmp_key, reverse=True)


__all__ = [
    "CacheEntry",
    "LdCache",
    "flags_text",
    "format_entry",
    "ldconfig_print",
    "libcmp",
    "libcmp_key",
    "load_ldcache",
    "parse_ldcache",
    "sort_keys",
]
