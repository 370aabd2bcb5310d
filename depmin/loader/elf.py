"""A small, bounded, static ELF reader: only the fields the loader looks at.

pyelftools builds every header object and parses hash tables; constructing one
``ELFFile`` costs about 25 times more than reading the few fields ld.so needs
with ``struct`` (loader.md §13).  This reader follows the format's own path
(Ehdr → Phdrs → PT_DYNAMIC → DT_STRTAB strings; PT_INTERP; PT_NOTE), never
relies on section headers (they may be stripped), never reads a whole file,
and turns every defect into one ``ElfError`` naming the file.  pyelftools stays
the oracle in the tests.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from types import MappingProxyType

from depmin.errors import ElfError

ELF_MAGIC = b"\x7fELF"

ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
PN_XNUM = 0xFFFF

DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH = 0, 1, 5, 10, 14, 15
DT_RUNPATH = 29
DT_FLAGS_1 = 0x6FFFFFFB
DT_AUXILIARY = 0x7FFFFFFD
DT_FILTER = 0x7FFFFFFF
DF_1_NODEFLIB = 0x800

NT_GNU_PROPERTY_TYPE_0 = 5
GNU_PROPERTY_X86_ISA_1_NEEDED = 0xC0008002

# Bounds that no real object reaches; past them the file is hostile or broken.
_HEAD = 4096  # first read: Ehdr, usually the Phdrs, PT_INTERP and notes too
_MAX_PHNUM = 1 << 16
_MAX_DYNAMIC = 1 << 20
_MAX_NOTES = 1 << 20
_MAX_STRING = 1 << 16
_MAX_INTERP = 4096

_EI_NIDENT = 16
_EHDR = MappingProxyType({1: "HHIIIIIHHHHHH", 2: "HHIQQQIHHHHHH"})
EHDR_SIZE = MappingProxyType({1: 52, 2: 64})  # by EI_CLASS; ld.so needs this much or says 'file too short'
_PHENTSIZE = MappingProxyType({1: 32, 2: 56})
_DYN = MappingProxyType({1: ("iI", 8), 2: ("qQ", 16)})


@dataclass(frozen=True)
class Note:
    """One PT_NOTE entry: owner name, type and raw descriptor bytes."""

    owner: str
    type: int
    desc: bytes


@dataclass(frozen=True)
class ElfFile:
    """What ld.so (and depmin) needs to know about one ELF object."""

    path: str
    elfclass: int  # 1 = ELFCLASS32, 2 = ELFCLASS64
    data: int  # 1 = little endian, 2 = big endian
    osabi: int
    abiversion: int
    type: int  # e_type
    machine: int  # e_machine
    phentsize_ok: bool
    ident_version: int = 1  # e_ident[EI_VERSION]
    version: int = 1  # e_version
    ident_padding_zero: bool = True
    interp: str | None = None
    needed: tuple[str, ...] = ()
    soname: str | None = None
    rpath: str | None = None  # None: no DT_RPATH tag
    runpath: str | None = None  # None: no DT_RUNPATH tag ("" still disables RPATH)
    flags_1: int = 0
    auxiliary: tuple[str, ...] = ()
    filter: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()
    has_dynamic: bool = False

    @property
    def nodeflib(self) -> bool:
        return bool(self.flags_1 & DF_1_NODEFLIB)

    @property
    def loadable(self) -> bool:
        """ld.so maps only ET_EXEC and ET_DYN."""
        return self.type in (ET_EXEC, ET_DYN)

    def notes_of(self, owner: str, type_: int) -> tuple[Note, ...]:
        return tuple(n for n in self.notes if n.owner == owner and n.type == type_)

    @property
    def x86_isa_needed(self) -> int:
        """GNU_PROPERTY_X86_ISA_1_NEEDED bits (1 baseline, 2 v2, 4 v3, 8 v4), 0 if absent."""
        bo = "<" if self.data == 1 else ">"
        align = 8 if self.elfclass == 2 else 4
        bits = 0
        for note in self.notes_of("GNU", NT_GNU_PROPERTY_TYPE_0):
            d, pos = note.desc, 0
            while pos + 8 <= len(d):
                pr_type, pr_size = struct.unpack_from(bo + "II", d, pos)
                pos += 8
                if pos + pr_size > len(d):
                    break
                if pr_type == GNU_PROPERTY_X86_ISA_1_NEEDED and pr_size >= 4:
                    bits |= struct.unpack_from(bo + "I", d, pos)[0]
                pos += (pr_size + align - 1) & ~(align - 1)
        return bits


class _Reader:
    """Positional reads from a descriptor, served from a first block when possible."""

    __slots__ = ("fd", "size", "head", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            # st_size means nothing for pipes and devices, and reads may block.
            raise ElfError(path, f"not a regular file ({_file_kind(st.st_mode)})", "unreadable")
        self.size = st.st_size
        self.head = os.pread(fd, _HEAD, 0)

    def read(self, off: int, n: int, what: str) -> bytes:
        if off < 0 or n < 0 or off + n > self.size:
            raise ElfError(self.path, f"{what} lies outside the file", "truncated")
        if off + n <= len(self.head):
            return self.head[off : off + n]
        data = os.pread(self.fd, n, off)
        if len(data) != n:
            raise ElfError(self.path, f"{what}: short read (file changed?)", "truncated")
        return data


def read_elf_path(path: str) -> ElfFile:
    """Read an ELF file by host path; FIFOs, devices and directories are refused, never opened.

    Opening a FIFO can block and opening a device can have side effects, hence
    the stat first; O_NONBLOCK and the fstat in ``_Reader`` cover a swap in between.
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ElfError(path, f"not a regular file ({_file_kind(st.st_mode)})", "unreadable")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ElfError(path, f"cannot open: {exc.strerror}", "unreadable") from None
    try:
        return read_elf_fd(fd, path)
    finally:
        os.close(fd)


def read_elf_fd(fd: int, path: str) -> ElfFile:
    """Read an ELF object from an open descriptor; ``path`` is for messages and the result."""
    try:
        return _parse(_Reader(fd, path))
    except ElfError:
        raise
    except OSError as exc:
        raise ElfError(path, f"cannot read: {exc.strerror}", "unreadable") from None
    except (struct.error, ValueError, OverflowError) as exc:  # defence in depth
        raise ElfError(path, f"malformed ELF ({exc})", "bad-header") from None


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def is_elf_magic(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


def _parse(r: _Reader) -> ElfFile:
    head, path = r.head, r.path
    if len(head) < 4 or head[:4] != ELF_MAGIC:
        kind = "too-short" if len(head) < 4 else "not-elf"
        raise ElfError(path, "invalid ELF header (not an ELF file)", kind)
    if len(head) < _EI_NIDENT:
        raise ElfError(path, "file too short for an ELF header", "too-short")
    elfclass, data = head[4], head[5]
    if elfclass not in _EHDR:
        raise ElfError(path, f"invalid ELF class {elfclass}", "bad-class")
    if data not in (1, 2):
        raise ElfError(path, f"invalid ELF data encoding {data}", "bad-data")
    if len(head) < EHDR_SIZE[elfclass]:
        raise ElfError(path, "file too short for an ELF header", "too-short")
    bo = "<" if data == 1 else ">"
    (
        e_type,
        e_machine,
        _ver,
        _entry,
        e_phoff,
        e_shoff,
        _flags,
        _ehsize,
        e_phentsize,
        e_phnum,
        e_shentsize,
        _shnum,
        _shstrndx,
    ) = struct.unpack_from(bo + _EHDR[elfclass], head, 16)
    base = dict(
        path=path,
        elfclass=elfclass,
        data=data,
        osabi=head[7],
        abiversion=head[8],
        type=e_type,
        machine=e_machine,
        phentsize_ok=(e_phnum == 0 or e_phentsize == _PHENTSIZE[elfclass]),
        ident_version=head[6],
        version=_ver,
        ident_padding_zero=not any(head[9:16]),
    )
    if e_phnum == PN_XNUM:
        # The real count lives in sh_info of section header 0.
        sh_info_off = 44 if elfclass == 2 else 28
        raw = r.read(e_shoff + sh_info_off, 4, "section header 0 (PN_XNUM)")
        e_phnum = struct.unpack(bo + "I", raw)[0]
    if e_phnum == 0 or e_type not in (ET_EXEC, ET_DYN):
        return ElfFile(**base)
    if e_phentsize != _PHENTSIZE[elfclass]:
        raise ElfError(path, f"bad program header entry size {e_phentsize}", "bad-header")
    if e_phnum > _MAX_PHNUM:
        raise ElfError(path, f"absurd program header count {e_phnum}", "bad-header")
    phdrs = r.read(e_phoff, e_phnum * e_phentsize, "program headers")

    fmt = bo + ("IIQQQQQQ" if elfclass == 2 else "IIIIIIII")
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
    interp: str | None = None
    dynamic: tuple[int, int] | None = None
    note_segs: list[tuple[int, int, int]] = []
    for i in range(e_phnum):
        f = struct.unpack_from(fmt, phdrs, i * e_phentsize)
        if elfclass == 2:
            p_type, _pf, p_offset, p_vaddr, _pa, p_filesz, _pm, p_align = f
        else:
            p_type, p_offset, p_vaddr, _pa, p_filesz, _pm, _pf, p_align = f
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_filesz, p_offset))
        elif p_type == PT_INTERP and interp is None:
            raw = r.read(p_offset, min(p_filesz, _MAX_INTERP), "PT_INTERP")
            interp = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif p_type == PT_DYNAMIC and dynamic is None:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_NOTE:
            note_segs.append((p_offset, p_filesz, p_align))

    notes: list[Note] = []
    for off, size, align in note_segs:
        notes.extend(_parse_notes(r, bo, off, size, align))

    if dynamic is None:
        return ElfFile(**base, interp=interp, notes=tuple(notes))
    return _parse_dynamic(r, bo, elfclass, dynamic, loads, base, interp, tuple(notes))


def _parse_notes(r: _Reader, bo: str, off: int, size: int, align: int) -> list[Note]:
    if size > _MAX_NOTES:
        raise ElfError(r.path, f"PT_NOTE segment of {size} bytes", "bad-header")
    blob = r.read(off, size, "PT_NOTE segment")
    step = 8 if align == 8 else 4
    notes: list[Note] = []
    pos = 0
    while pos + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from(bo + "III", blob, pos)
        name_end = pos + 12 + namesz
        desc_off = (name_end + step - 1) & ~(step - 1)
        desc_end = desc_off + descsz
        if desc_end > len(blob):
            raise ElfError(r.path, "PT_NOTE entry runs past its segment", "bad-header")
        owner = blob[pos + 12 : name_end].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        notes.append(Note(owner, ntype, blob[desc_off:desc_end]))
        pos = (desc_end + step - 1) & ~(step - 1)
    return notes


def _parse_dynamic(
    r: _Reader,
    bo: str,
    elfclass: int,
    dynamic: tuple[int, int],
    loads: list[tuple[int, int, int]],
    base: dict[str, object],
    interp: str | None,
    notes: tuple[Note, ...],
) -> ElfFile:
    off, size = dynamic
    dfmt, dsize = _DYN[elfclass]
    size = min(size, _MAX_DYNAMIC)
    # A PT_DYNAMIC that runs past the end of file is cut at the file's end: the
    # loader would read zeroes there, i.e. DT_NULL.
    if off > r.size:
        raise ElfError(r.path, "PT_DYNAMIC lies outside the file", "truncated")
    size = min(size, r.size - off) // dsize * dsize
    blob = r.read(off, size, "PT_DYNAMIC")
    strs: dict[int, list[int]] = {DT_NEEDED: [], DT_AUXILIARY: [], DT_FILTER: []}
    single: dict[int, int] = {}
    strtab: int | None = None
    strsz: int | None = None
    flags_1 = 0
    for tag, val in struct.iter_unpack(bo + dfmt, blob):
        if tag == DT_NULL:
            break
        if tag in strs:
            strs[tag].append(val)
        elif tag in (DT_SONAME, DT_RPATH, DT_RUNPATH):
            single[tag] = val  # glibc keeps the last of repeated tags
        elif tag == DT_STRTAB:
            strtab = val
        elif tag == DT_STRSZ:
            strsz = val
        elif tag == DT_FLAGS_1:
            flags_1 = val
    if not single and not any(strs.values()):
        return ElfFile(**base, interp=interp, flags_1=flags_1, notes=notes, has_dynamic=True)  # type: ignore[arg-type]
    if strtab is None:
        raise ElfError(r.path, "dynamic section names strings but has no DT_STRTAB", "bad-header")
    str_off = _vaddr_to_offset(strtab, loads)
    if str_off is None or str_off >= r.size:
        raise ElfError(r.path, f"DT_STRTAB 0x{strtab:x} is not inside the file", "bad-header")
    limit = r.size - str_off if strsz is None else min(strsz, r.size - str_off)
    table = _StringTable(r, str_off, limit)

    def many(tag: int) -> tuple[str, ...]:
        return tuple(table.get(v) for v in strs[tag])

    def one(tag: int) -> str | None:
        return table.get(single[tag]) if tag in single else None

    return ElfFile(
        **base,  # type: ignore[arg-type]
        interp=interp,
        needed=many(DT_NEEDED),
        soname=one(DT_SONAME),
        rpath=one(DT_RPATH),
        runpath=one(DT_RUNPATH),
        flags_1=flags_1,
        auxiliary=many(DT_AUXILIARY),
        filter=many(DT_FILTER),
        notes=notes,
        has_dynamic=True,
    )


def _vaddr_to_offset(addr: int, loads: list[tuple[int, int, int]]) -> int | None:
    for vaddr, filesz, offset in loads:
        if vaddr <= addr < vaddr + filesz:
            return addr - vaddr + offset
    return None


class _StringTable:
    """NUL-terminated strings of DT_STRTAB, bounded by DT_STRSZ and the file."""

    __slots__ = ("r", "off", "limit", "blob")

    def __init__(self, r: _Reader, off: int, limit: int) -> None:
        self.r, self.off, self.limit = r, off, limit
        self.blob: bytes | None = r.read(off, limit, "DT_STRTAB") if limit <= _MAX_STRING else None

    def get(self, index: int) -> str:
        if index >= self.limit:
            raise ElfError(self.r.path, f"string offset {index} beyond DT_STRSZ", "bad-header")
        if self.blob is not None:
            end = self.blob.find(b"\0", index)
            raw = self.blob[index:end] if end >= 0 else None
        else:
            n = min(self.limit - index, _MAX_STRING)
            chunk = self.r.read(self.off + index, n, "dynamic string")
            end = chunk.find(b"\0")
            raw = chunk[:end] if end >= 0 else None
        if raw is None:
            raise ElfError(self.r.path, f"string at offset {index} has no NUL terminator", "bad-header")
        return raw.decode("utf-8", "surrogateescape")
