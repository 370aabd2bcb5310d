"""depmin's ELF reader against pyelftools, the oracle.

Every ELF file of /usr/bin and /usr/lib/x86_64-linux-gnu is read by both; then
objects this x86-64 host does not produce on its own (32-bit, big-endian,
PN_XNUM) are built, from real binaries where possible, and read by both again.
Strings are compared as bytes: pyelftools decodes the dynamic string table as
strict UTF-8, depmin with ``surrogateescape``.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import stat
import struct
import subprocess
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import pytest
from elftools.common.utils import parse_cstring_from_stream
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import (
    ENUM_CORE_NOTE_N_TYPE,
    ENUM_E_MACHINE,
    ENUM_E_TYPE,
    ENUM_EI_OSABI,
    ENUM_NOTE_N_TYPE,
)
from elftools.elf.segments import NoteSegment

from depmin.errors import ElfError
from depmin.loader.elf import ElfFile, read_elf_fd, read_elf_path

TREES = ("/usr/bin", "/usr/lib/x86_64-linux-gnu")

#: Files where depmin deliberately differs from pyelftools, with the reason.
#: Empty: on this Debian 12 host the two agree on every file.
EXCEPTIONS: dict[str, str] = {}

_NOTE_TYPES = {**ENUM_NOTE_N_TYPE, **ENUM_CORE_NOTE_N_TYPE}


@dataclass(frozen=True)
class Fields:
    """The reader's fields in a form both readers can fill: numbers and raw bytes."""

    elfclass: int
    data: int
    machine: int
    osabi: int
    abiversion: int
    type: int
    interp: bytes | None = None
    needed: tuple[bytes, ...] = ()
    rpath: bytes | None = None
    runpath: bytes | None = None
    soname: bytes | None = None
    flags_1: int = 0
    auxiliary: tuple[bytes, ...] = ()
    filter: tuple[bytes, ...] = ()
    notes: tuple[tuple[bytes, int, bytes], ...] = ()


def _b(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8", "surrogateescape")


def ours(elf: ElfFile) -> Fields:
    return Fields(
        elfclass=elf.elfclass,
        data=elf.data,
        machine=elf.machine,
        osabi=elf.osabi,
        abiversion=elf.abiversion,
        type=elf.type,
        interp=_b(elf.interp),
        needed=tuple(s.encode("utf-8", "surrogateescape") for s in elf.needed),
        rpath=_b(elf.rpath),
        runpath=_b(elf.runpath),
        soname=_b(elf.soname),
        flags_1=elf.flags_1,
        auxiliary=tuple(s.encode("utf-8", "surrogateescape") for s in elf.auxiliary),
        filter=tuple(s.encode("utf-8", "surrogateescape") for s in elf.filter),
        notes=tuple((_b(n.owner) or b"", n.type, n.desc) for n in elf.notes),
    )


def _num(value: str | int, names: Any) -> int:
    """pyelftools gives known enum values as names and unknown ones as numbers."""
    return value if isinstance(value, int) else int(names[value])


def theirs(stream: IO[bytes]) -> Fields:
    """The same fields through pyelftools' segment API (no section headers)."""
    elf = ELFFile(stream)
    ident = elf.header["e_ident"]
    e_type = _num(elf.header["e_type"], ENUM_E_TYPE)
    head = Fields(
        elfclass=1 if elf.elfclass == 32 else 2,
        data=1 if elf.little_endian else 2,
        machine=_num(elf.header["e_machine"], ENUM_E_MACHINE),
        osabi=_num(ident["EI_OSABI"], ENUM_EI_OSABI),
        abiversion=ident["EI_ABIVERSION"],
        type=e_type,
    )
    if e_type not in (2, 3):
        # ld.so maps only ET_EXEC and ET_DYN; the reader stops at the header for others.
        return head
    interp: bytes | None = None
    dynamic: Any = None
    notes: list[tuple[bytes, int, bytes]] = []
    for seg in elf.iter_segments():
        kind = seg["p_type"]
        if kind == "PT_INTERP" and interp is None:
            interp = parse_cstring_from_stream(stream, seg["p_offset"])
        elif kind == "PT_DYNAMIC" and dynamic is None:
            dynamic = seg
        elif isinstance(seg, NoteSegment):
            for note in seg.iter_notes():
                owner = (note["n_name"] or "").encode("latin-1")
                notes.append((owner, _num(note["n_type"], _NOTE_TYPES), bytes(note["n_descdata"])))
    head = replace(head, interp=interp, notes=tuple(notes))
    if dynamic is None:
        return head
    strtab: int | None = None
    lists: dict[str, list[int]] = {"DT_NEEDED": [], "DT_AUXILIARY": [], "DT_FILTER": []}
    single: dict[str, int] = {}
    flags_1 = 0
    for tag in dynamic._iter_tags():  # raw entries: no string decoding
        name, val = tag["d_tag"], tag["d_val"]
        if name in lists:
            lists[name].append(val)
        elif name in ("DT_SONAME", "DT_RPATH", "DT_RUNPATH"):
            single[name] = val  # ld.so's l_info keeps the last of repeated tags
        elif name == "DT_STRTAB":
            strtab = val
        elif name == "DT_FLAGS_1":
            flags_1 = val
    table = None if strtab is None else next(elf.address_offsets(strtab), None)

    def string(index: int) -> bytes:
        assert table is not None, "strings named but no DT_STRTAB"
        got = parse_cstring_from_stream(stream, table + index)
        assert got is not None, f"string {index} has no NUL"
        return got

    return replace(
        head,
        needed=tuple(string(v) for v in lists["DT_NEEDED"]),
        auxiliary=tuple(string(v) for v in lists["DT_AUXILIARY"]),
        filter=tuple(string(v) for v in lists["DT_FILTER"]),
        soname=string(single["DT_SONAME"]) if "DT_SONAME" in single else None,
        rpath=string(single["DT_RPATH"]) if "DT_RPATH" in single else None,
        runpath=string(single["DT_RUNPATH"]) if "DT_RUNPATH" in single else None,
        flags_1=flags_1,
    )


def differences(a: Fields, b: Fields) -> list[str]:
    return [
        f"{name}: depmin {getattr(a, name)!r} != pyelftools {getattr(b, name)!r}"
        for name in Fields.__dataclass_fields__
        if getattr(a, name) != getattr(b, name)
    ]


def compare_path(path: str) -> tuple[Fields | None, list[str]]:
    """depmin's fields for one file, and the problems found: none when both readers agree."""
    try:
        mine = ours(read_elf_path(path))
    except ElfError as exc:
        return None, [f"depmin raised {exc.kind}: {exc}"]
    try:
        with open(path, "rb") as f:
            other = theirs(f)
    except Exception as exc:  # the oracle's own failures are reported, not hidden
        return mine, [f"pyelftools raised {type(exc).__name__}: {exc}"]
    return mine, differences(mine, other)


def compare_bytes(blob: bytes, tmp: Path) -> tuple[Fields, list[str]]:
    path = tmp / "obj"
    path.write_bytes(blob)
    mine = ours(read_elf_path(str(path)))
    return mine, differences(mine, theirs(io.BytesIO(blob)))


def _compare_chunk(paths: list[str]) -> list[tuple[str, Fields | None, list[str]]]:
    return [(p, *compare_path(p)) for p in paths]


def elf_files(tops: tuple[str, ...]) -> list[str]:
    """Regular files (not links) that start with the ELF magic, in a stable order."""
    found: list[str] = []
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                try:
                    if not stat.S_ISREG(os.lstat(path).st_mode):
                        continue
                    with open(path, "rb") as f:
                        if f.read(4) == b"\x7fELF":
                            found.append(path)
                except OSError:
                    continue
    return found


def test_every_host_elf_file_matches_pyelftools() -> None:
    files = elf_files(TREES)
    assert len(files) > 500, f"only {len(files)} ELF files in {TREES}?"
    chunks = [files[i : i + 40] for i in range(0, len(files), 40)]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        results = [r for chunk in pool.map(_compare_chunk, chunks) for r in chunk]
    problems = [f"{p}: {'; '.join(d)}" for p, _, d in results if d and p not in EXCEPTIONS]
    seen = [f for _, f, _ in results if f is not None]
    print(f"compared {len(files)} ELF files with pyelftools; {len(EXCEPTIONS)} exceptions")
    assert not problems, "\n".join(problems[:50])
    # The comparison is not vacuous: most files have the fields being compared.
    assert sum(1 for f in seen if f.needed) > len(files) // 2
    assert sum(1 for f in seen if f.notes) > len(files) // 2
    assert sum(1 for f in seen if f.interp) > 100 and any(f.soname for f in seen)


# --- objects the host does not provide ---------------------------------------------------


def _small_binary() -> bytes:
    """A small real dynamic executable with an interpreter, needed libs and notes."""
    for cand in ("/usr/bin/true", "/usr/bin/env", "/usr/bin/ls"):
        if os.path.exists(cand):
            return Path(cand).read_bytes()
    pytest.skip("no small dynamic binary on this host")


def _ehdr_layout(blob: bytes) -> tuple[str, int]:
    return ("<" if blob[5] == 1 else ">"), blob[4]


def to_pn_xnum(blob: bytes) -> bytes:
    """The same object with e_phnum = PN_XNUM and the count in section 0's sh_info.

    Adds a section header table holding only section 0 when the file has none.
    """
    bo, cls = _ehdr_layout(blob)
    out = bytearray(blob)
    phnum_at, shoff_at, shnum_at = (56, 40, 60) if cls == 2 else (44, 32, 48)
    shent = 64 if cls == 2 else 40
    phnum = struct.unpack_from(bo + "H", out, phnum_at)[0]
    shoff = struct.unpack_from(bo + ("Q" if cls == 2 else "I"), out, shoff_at)[0]
    if shoff == 0:
        shoff = (len(out) + 7) & ~7
        out += bytes(shoff - len(out) + shent)
        struct.pack_into(bo + ("Q" if cls == 2 else "I"), out, shoff_at, shoff)
        struct.pack_into(bo + "HHH", out, shnum_at - 2, shent, 1, 0)
    struct.pack_into(bo + "H", out, phnum_at, 0xFFFF)
    struct.pack_into(bo + "I", out, shoff + (44 if cls == 2 else 28), phnum)
    return bytes(out)


def to_big_endian(blob: bytes) -> bytes:
    """Re-encode a little-endian object big-endian: Ehdr, Phdrs, dynamic array, note headers.

    Section headers are dropped (e_shoff = e_shnum = 0): the reader never uses them,
    and leaving them little-endian would mislead pyelftools.  Note descriptors are
    copied unchanged, except GNU property notes, whose words pyelftools decodes.
    """
    assert blob[5] == 1
    cls = blob[4]
    out = bytearray(blob)
    out[5] = 2
    ehdr = "HHIIIIIHHHHHH" if cls == 1 else "HHIQQQIHHHHHH"
    f = list(struct.unpack_from("<" + ehdr, blob, 16))
    f[5], f[10], f[11], f[12] = 0, 0, 0, 0  # e_shoff, e_shentsize, e_shnum, e_shstrndx
    struct.pack_into(">" + ehdr, out, 16, *f)
    phoff, phent, phnum = f[4], f[8], f[9]
    phdr = "IIQQQQQQ" if cls == 2 else "IIIIIIII"
    dyn = "qQ" if cls == 2 else "iI"
    for i in range(phnum):
        ph = struct.unpack_from("<" + phdr, blob, phoff + i * phent)
        struct.pack_into(">" + phdr, out, phoff + i * phent, *ph)
        p_type = ph[0]
        p_offset, p_filesz = (ph[2], ph[5]) if cls == 2 else (ph[1], ph[4])
        if p_type == 2:
            for pos in range(p_offset, p_offset + p_filesz, struct.calcsize(dyn)):
                struct.pack_into(">" + dyn, out, pos, *struct.unpack_from("<" + dyn, blob, pos))
        elif p_type == 4:
            pos, end = p_offset, p_offset + p_filesz
            align = 8 if ph[7] == 8 else 4  # p_align is field 7 in both classes
            while pos + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
                struct.pack_into(">III", out, pos, namesz, descsz, ntype)
                desc = (pos + 12 + namesz + align - 1) & ~(align - 1)
                if ntype == 5 and blob[pos + 12 : pos + 16] == b"GNU\0":
                    out[desc : desc + descsz] = swap_words(blob[desc : desc + descsz])
                pos = (desc + descsz + align - 1) & ~(align - 1)
    return bytes(out)


def swap_words(desc: bytes) -> bytes:
    """GNU property descriptors on x86 are 32-bit words: swap each."""
    n = len(desc) // 4
    return struct.pack(f">{n}I", *struct.unpack(f"<{n}I", desc[: 4 * n])) + desc[4 * n :]


def swapped_notes(fields: Fields) -> Fields:
    """What ``to_big_endian`` does to the notes of ``fields``, and the data byte."""
    notes = tuple((o, t, swap_words(d) if (o, t) == (b"GNU", 5) else d) for o, t, d in fields.notes)
    return replace(fields, data=2, notes=notes)


@dataclass(frozen=True)
class Spec:
    """What to put in a hand-built object."""

    elfclass: int
    data: int
    interp: bytes | None = b"/lib/ld-test.so.1"
    needed: tuple[bytes, ...] = (b"libone.so.1", b"libtwo.so.2")
    soname: bytes | None = b"libself.so.3"
    rpath: bytes | None = b"/opt/rpath"
    runpath: bytes | None = b""
    auxiliary: tuple[bytes, ...] = (b"libaux.so",)
    filter: tuple[bytes, ...] = (b"libfilt.so",)
    flags_1: int = 0x800
    notes: tuple[tuple[bytes, int, bytes], ...] = (
        (b"GNU", 3, bytes(range(20))),
        (b"Linux", 0x4E4F4E45, b"\x01\x02\x03"),
        (b"", 7, b""),
        (b"FDO", 0x407C0C0A, b'{"type":"dlopen"}\x00'),
    )
    xnum: bool = False


def build(spec: Spec) -> bytes:
    """A minimal but well-formed ET_DYN object: one PT_LOAD mapping the whole file at
    0x10000, then PT_INTERP, PT_DYNAMIC and PT_NOTE (4-byte aligned notes)."""
    bo = "<" if spec.data == 1 else ">"
    c64 = spec.elfclass == 2
    ehsize, phent, shent = (64, 56, 64) if c64 else (52, 32, 40)
    base = 0x10000
    nph = 4
    strtab = bytearray(b"\0")

    def add(s: bytes) -> int:
        strtab.extend(s + b"\0")
        return len(strtab) - len(s) - 1

    tags: list[tuple[int, int]] = [(1, add(n)) for n in spec.needed]
    if spec.soname is not None:
        tags.append((14, add(spec.soname)))
    if spec.rpath is not None:
        tags.append((15, add(spec.rpath)))
    if spec.runpath is not None:
        tags.append((29, add(spec.runpath)))
    tags += [(0x7FFFFFFD, add(n)) for n in spec.auxiliary]
    tags += [(0x7FFFFFFF, add(n)) for n in spec.filter]
    tags.append((0x6FFFFFFB, spec.flags_1))
    notes = bytearray()
    for owner, ntype, desc in spec.notes:
        name = owner + b"\0" if owner else b""
        notes += struct.pack(bo + "III", len(name), len(desc), ntype)
        notes += name + bytes(-len(name) % 4) + desc + bytes(-len(desc) % 4)
    interp = b"" if spec.interp is None else spec.interp + b"\0"
    off_ph = ehsize
    off_interp = off_ph + nph * phent
    off_str = off_interp + len(interp)
    off_notes = (off_str + len(strtab) + 7) & ~7
    off_dyn = off_notes + len(notes)
    dynent = "qQ" if c64 else "iI"
    tags += [(5, base + off_str), (10, len(strtab)), (0, 0)]
    dyn = b"".join(struct.pack(bo + dynent, t, v) for t, v in tags)
    off_sh = off_dyn + len(dyn)
    total = off_sh + (shent if spec.xnum else 0)

    def ph(p_type: int, off: int, size: int, align: int) -> bytes:
        if c64:
            return struct.pack(bo + "IIQQQQQQ", p_type, 4, off, base + off, base + off,
                               size, size, align)  # fmt: skip
        return struct.pack(bo + "IIIIIIII", p_type, off, base + off, base + off, size, size, 4,
                           align)  # fmt: skip

    phdrs = ph(1, 0, total, 0x1000) + ph(3, off_interp, len(interp), 1)
    phdrs += ph(2, off_dyn, len(dyn), 8 if c64 else 4) + ph(4, off_notes, len(notes), 4)
    if spec.interp is None:
        phdrs = phdrs[:phent] + ph(6, off_ph, nph * phent, 8) + phdrs[2 * phent :]  # PT_PHDR
    ident = b"\x7fELF" + bytes([spec.elfclass, spec.data, 1, 3, 0]) + bytes(7)
    efmt = bo + ("HHIQQQIHHHHHH" if c64 else "HHIIIIIHHHHHH")
    shoff, phnum, shnum = (off_sh, 0xFFFF, 1) if spec.xnum else (0, nph, 0)
    machine = 62 if c64 else 3
    ehdr = ident + struct.pack(efmt, 3, machine, 1, 0, off_ph, shoff, 0, ehsize, phent, phnum,
                               shent, shnum, 0)  # fmt: skip
    out = bytearray(ehdr + phdrs + interp + strtab)
    out += bytes(off_notes - len(out)) + notes + dyn
    if spec.xnum:
        sh0 = bytearray(shent)
        struct.pack_into(bo + "I", sh0, 44 if c64 else 28, nph)
        out += sh0
    assert len(out) == total
    return bytes(out)


def expected(spec: Spec) -> Fields:
    return Fields(
        elfclass=spec.elfclass, data=spec.data, machine=62 if spec.elfclass == 2 else 3,
        osabi=3, abiversion=0, type=3, interp=spec.interp, needed=spec.needed,
        rpath=spec.rpath, runpath=spec.runpath, soname=spec.soname, flags_1=spec.flags_1,
        auxiliary=spec.auxiliary, filter=spec.filter, notes=spec.notes,
    )  # fmt: skip


def _combos() -> Iterator[tuple[int, int, bool]]:
    for cls in (1, 2):
        for data in (1, 2):
            for xnum in (False, True):
                yield cls, data, xnum


@pytest.mark.parametrize(("cls", "data", "xnum"), list(_combos()))
def test_hand_built_objects(tmp_path: Path, cls: int, data: int, xnum: bool) -> None:
    spec = Spec(cls, data, xnum=xnum)
    mine, diffs = compare_bytes(build(spec), tmp_path)
    assert not diffs
    assert mine == expected(spec)  # the builder's own intent, as a second check


def test_hand_built_without_interp_or_runpath(tmp_path: Path) -> None:
    spec = Spec(2, 2, interp=None, runpath=None, rpath=b"", soname=None, notes=())
    mine, diffs = compare_bytes(build(spec), tmp_path)
    assert not diffs
    assert mine.interp is None and mine.runpath is None and mine.rpath == b""


def test_pn_xnum_on_a_real_binary(tmp_path: Path) -> None:
    blob = _small_binary()
    plain, diffs = compare_bytes(blob, tmp_path)
    assert not diffs
    patched = to_pn_xnum(blob)
    assert struct.unpack_from("<H", patched, 56)[0] == 0xFFFF
    xnum, diffs = compare_bytes(patched, tmp_path)
    assert not diffs
    assert xnum == plain and plain.needed


def test_real_binary_byte_swapped_to_big_endian(tmp_path: Path) -> None:
    blob = _small_binary()
    little, _ = compare_bytes(blob, tmp_path)
    big, diffs = compare_bytes(to_big_endian(blob), tmp_path)
    assert not diffs
    assert big == swapped_notes(little) and little.needed
    xnum, diffs = compare_bytes(to_pn_xnum(to_big_endian(blob)), tmp_path)
    assert not diffs and xnum == big


@pytest.fixture(scope="module")
def m32_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 32-bit i386 library and executable from gcc -m32 -nostdlib (no 32-bit libc needed)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    d = tmp_path_factory.mktemp("m32")
    (d / "b.c").write_text("int b(void) { return 1; }\n")
    (d / "a.c").write_text("extern int b(void);\nint a(void) { return b(); }\n")
    (d / "e.c").write_text("extern int a(void);\nvoid _start(void) { a(); }\n")
    cmds = [
        ["gcc", "-m32", "-shared", "-nostdlib", "-fPIC", "-Wl,-soname,libb.so.1", "b.c",
         "-o", "libb.so.1"],
        ["gcc", "-m32", "-shared", "-nostdlib", "-fPIC", "-Wl,-soname,liba.so.7",
         "-Wl,-rpath,$ORIGIN/x:/opt/y", "-Wl,--enable-new-dtags", "-Wl,-z,nodefaultlib",
         "-Wl,--auxiliary=libaux.so", "-Wl,-F,libfilt.so", "a.c", "-L.", "-l:libb.so.1",
         "-o", "liba.so"],
        ["gcc", "-m32", "-nostdlib", "-fPIE", "-pie", "-Wl,--dynamic-linker=/lib/ld-linux.so.2",
         "-Wl,-rpath,/opt/old", "-Wl,--disable-new-dtags", "e.c", "-L.", "-l:liba.so",
         "-l:libb.so.1", "-o", "e32"],
    ]  # fmt: skip
    for cmd in cmds:
        p = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"gcc -m32 cannot link here: {p.stderr.strip()[:200]}")
    return {"lib": d / "liba.so", "exe": d / "e32"}


def _readelf_dynamic(path: Path) -> str:
    return subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True).stdout


@pytest.mark.parametrize("which", ["lib", "exe"])
def test_gcc_m32_objects(m32_objects: dict[str, Path], tmp_path: Path, which: str) -> None:
    blob = m32_objects[which].read_bytes()
    mine, diffs = compare_bytes(blob, tmp_path)
    assert not diffs
    assert mine.elfclass == 1 and mine.machine == 3
    dynamic = _readelf_dynamic(m32_objects[which])  # a third reader, for the strings
    for name in mine.needed + mine.auxiliary + mine.filter:
        assert f"[{name.decode()}]" in dynamic
    if which == "lib":
        assert mine.runpath == b"$ORIGIN/x:/opt/y" and mine.rpath is None
        assert mine.flags_1 & 0x800 and mine.auxiliary and mine.filter
    else:
        assert mine.interp == b"/lib/ld-linux.so.2" and mine.rpath == b"/opt/old"
        assert mine.runpath is None
    big, diffs = compare_bytes(to_big_endian(blob), tmp_path)
    assert not diffs and big == swapped_notes(mine)
    for src in (blob, to_big_endian(blob)):
        xnum, diffs = compare_bytes(to_pn_xnum(src), tmp_path)
        assert not diffs and xnum == (mine if src is blob else big)


def test_fd_and_path_agree() -> None:
    path = "/usr/bin/true"
    if not os.path.exists(path):
        pytest.skip("no /usr/bin/true")
    fd = os.open(path, os.O_RDONLY)
    try:
        via_fd = read_elf_fd(fd, path)
    finally:
        os.close(fd)
    assert via_fd == read_elf_path(path)
