"""Hostile ELF input: the reader answers with a typed ElfError or a correct result, fast.

Issue: "Hostile ELF files: truncated at every header boundary; e_phnum/e_shnum huge;
PT_DYNAMIC or DT_STRTAB pointing outside the file; no NUL terminator in a string;
DT_NEEDED cycles; a 2 GB sparse file.  Each gives the typed error or a correct
result, fast.  Fuzz the ELF reader (hypothesis) in the test suite, bounded in time."

"Correct" is the unmodified file's result, which test_elf_oracle checks against
pyelftools; the layout of the sample file comes from pyelftools too.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Union

import pytest
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import NoteSegment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depmin.errors import ElfError
from depmin.loader.elf import ElfFile, read_elf_fd, read_elf_path
from depmin.loader.resolve import LoadResult, Resolver
from depmin.rootfs import Root
from tests.oracles import ldd
from tests.spies import in_thread
from tests.test_elf_oracle import Spec, build

SAMPLE = "/usr/bin/true"  # small, PIE, PT_INTERP, two PT_NOTE, DT_NEEDED libc.so.6
NAME = "hostile.elf"
KINDS = {"not-elf", "too-short", "truncated", "bad-class", "bad-data", "bad-header", "unreadable"}
GIB = 1 << 30


def read_blob(blob: bytes) -> ElfFile:
    """Read bytes through a memfd: a real regular file descriptor, no disk."""
    fd = os.memfd_create("depmin-hostile", os.MFD_CLOEXEC)
    try:
        os.write(fd, blob)
        return read_elf_fd(fd, NAME)
    finally:
        os.close(fd)


def outcome(blob: bytes) -> ElfFile | ElfError:
    try:
        elf = read_blob(blob)
    except ElfError as exc:
        assert exc.kind in KINDS, exc.kind
        assert NAME in str(exc)
        return exc
    # The derived properties must not raise on whatever the reader accepted.
    _ = (elf.x86_isa_needed, elf.nodeflib, elf.loadable, elf.notes_of("GNU", 5))
    return elf


def kind_of(got: ElfFile | ElfError) -> str:
    assert isinstance(got, ElfError), f"expected an ElfError, got {got!r}"
    return got.kind


@dataclass(frozen=True)
class Layout:
    """Where things are in the sample, according to pyelftools."""

    blob: bytes
    phoff: int
    phentsize: int
    phnum: int
    segments: tuple[tuple[str, int, int, int], ...]  # (p_type, header offset, p_offset, p_filesz)
    dynamic: tuple[tuple[str, int, int], ...]  # (d_tag, file offset of the entry, d_val)
    strtab: int  # file offset of DT_STRTAB
    strings: tuple[tuple[int, int], ...]  # (start, end incl. NUL) of every string the reader uses
    notes: tuple[int, ...]  # file offsets of note boundaries

    @property
    def phend(self) -> int:
        return self.phoff + self.phnum * self.phentsize

    def segment(self, p_type: str, nth: int = 0) -> tuple[str, int, int, int]:
        return [s for s in self.segments if s[0] == p_type][nth]

    def tag(self, d_tag: str) -> tuple[str, int, int]:
        return next(t for t in self.dynamic if t[0] == d_tag)


@pytest.fixture(scope="module")
def sample() -> Layout:
    if not os.path.exists(SAMPLE):
        pytest.skip(f"{SAMPLE} missing")
    blob = Path(SAMPLE).read_bytes()
    elf = ELFFile(io.BytesIO(blob))
    h = elf.header
    assert elf.elfclass == 64 and elf.little_endian
    segs, dyn, notes = [], [], []
    strtab = 0
    for i, seg in enumerate(elf.iter_segments()):
        segs.append((seg["p_type"], h["e_phoff"] + i * h["e_phentsize"], seg["p_offset"],
                     seg["p_filesz"]))  # fmt: skip
        if isinstance(seg, DynamicSegment):
            for j, tag in enumerate(seg._iter_tags()):
                dyn.append((tag["d_tag"], seg["p_offset"] + 16 * j, tag["d_val"]))
            _, table = seg.get_table_offset("DT_STRTAB")
            assert table is not None
            strtab = table
        if isinstance(seg, NoteSegment):
            notes += [n["n_offset"] for n in seg.iter_notes()]
            notes.append(seg["p_offset"] + seg["p_filesz"])
    named = ("DT_NEEDED", "DT_SONAME", "DT_RPATH", "DT_RUNPATH", "DT_AUXILIARY", "DT_FILTER")
    strings = []
    for d_tag, _, val in dyn:
        if d_tag in named:
            start = strtab + val
            strings.append((start, blob.index(b"\0", start) + 1))
    return Layout(blob, h["e_phoff"], h["e_phentsize"], h["e_phnum"], tuple(segs), tuple(dyn),
                  strtab, tuple(strings), tuple(notes))  # fmt: skip


@pytest.fixture(scope="module")
def full(sample: Layout) -> ElfFile:
    elf = read_blob(sample.blob)
    assert elf.needed and elf.interp and len(elf.notes) >= 2
    return elf


# --- truncation ------------------------------------------------------------------------


def _boundaries(s: Layout) -> list[int]:
    """Every byte up to the end of the program headers, then every region edge (and ±1)."""
    edges = {len(s.blob)}
    for _, _, off, size in s.segments:
        if off + size <= len(s.blob):
            edges |= {off, off + size}
    edges |= {off for _, off, _ in s.dynamic} | {off + 16 for _, off, _ in s.dynamic}
    edges |= {x for pair in s.strings for x in pair} | set(s.notes) | {s.strtab}
    near = {e + d for e in edges for d in (-1, 0, 1)}
    return sorted(set(range(s.phend + 1)) | {n for n in near if 0 <= n <= len(s.blob)})


def test_truncated_at_every_header_boundary(sample: Layout, full: ElfFile) -> None:
    dyn_off = sample.segment("PT_DYNAMIC")[2]
    null_end = next(off for tag, off, _ in sample.dynamic if tag == "DT_NULL") + 16
    strict = [sample.phend, null_end] + [end for _, end in sample.strings]
    for p_type in ("PT_INTERP", "PT_NOTE"):
        strict += [off + size for t, _, off, size in sample.segments if t == p_type]
    everything = max(strict)
    points = _boundaries(sample)
    assert len(points) > sample.phend
    for n in points:
        got = outcome(sample.blob[:n])
        if n < 64:
            assert kind_of(got) == "too-short", n
        elif n <= sample.phend:
            assert kind_of(got) == "truncated", n  # PT_INTERP starts right after
        elif n >= everything:
            assert got == full, n
        elif isinstance(got, ElfFile):
            # Only the dynamic array may be cut short (read as DT_NULL past the end).
            assert n < null_end and n >= dyn_off, n
            assert got.needed == full.needed[: len(got.needed)], n
            assert (got.interp, got.notes) == (full.interp, full.notes), n
        else:
            assert got.kind in ("truncated", "bad-header"), (n, got)


# --- mutated fields --------------------------------------------------------------------

Mutate = Callable[[Layout, bytearray], None]


def _put(fmt: str, off: int, value: int) -> Mutate:
    def apply(_s: Layout, b: bytearray) -> None:
        struct.pack_into("<" + fmt, b, off, value)

    return apply


def _phdr(p_type: str, field: str, value: int | Callable[[Layout], int]) -> Mutate:
    at = {"p_type": (0, "I"), "p_offset": (8, "Q"), "p_vaddr": (16, "Q"), "p_filesz": (32, "Q")}

    def apply(s: Layout, b: bytearray) -> None:
        rel, fmt = at[field]
        v = value(s) if callable(value) else value
        struct.pack_into("<" + fmt, b, s.segment(p_type)[1] + rel, v)

    return apply


def _dyn(d_tag: str, value: int | Callable[[Layout], int]) -> Mutate:
    def apply(s: Layout, b: bytearray) -> None:
        v = value(s) if callable(value) else value
        struct.pack_into("<Q", b, s.tag(d_tag)[1] + 8, v)

    return apply


def _xnum(count: int, shoff: int | None = None) -> Mutate:
    def apply(s: Layout, b: bytearray) -> None:
        off = struct.unpack_from("<Q", b, 40)[0] if shoff is None else shoff
        struct.pack_into("<H", b, 56, 0xFFFF)
        struct.pack_into("<Q", b, 40, off)
        if off + 48 <= len(b):
            struct.pack_into("<I", b, off + 44, count)

    return apply


def _no_loads(s: Layout, b: bytearray) -> None:
    for p_type, hdr, _, _ in s.segments:
        if p_type == "PT_LOAD":
            struct.pack_into("<I", b, hdr, 0x6474E551)  # PT_GNU_STACK


def _note_namesz(s: Layout, b: bytearray) -> None:
    struct.pack_into("<I", b, s.segment("PT_NOTE")[2], 0xFFFFFFF0)


def _cut_string(s: Layout, b: bytearray) -> None:
    """DT_STRSZ ends inside the needed name: no NUL terminator within the table."""
    start = s.strtab + s.tag("DT_NEEDED")[2]
    struct.pack_into("<Q", b, s.tag("DT_STRSZ")[1] + 8, start - s.strtab + 3)


def _needed_beyond_strsz(s: Layout, b: bytearray) -> None:
    struct.pack_into("<Q", b, s.tag("DT_NEEDED")[1] + 8, s.tag("DT_STRSZ")[2] + 5)


def _drop_strtab(s: Layout, b: bytearray) -> None:
    struct.pack_into("<q", b, s.tag("DT_STRTAB")[1], 0x6FFFFFF0 - 1)  # an unused tag


def _size(s: Layout) -> int:
    return len(s.blob)


# (name, mutation, expected: an ElfError kind, "same" = the unmodified result, or a check)
Check = Union[str, Callable[[ElfFile, ElfFile], bool]]
MUTATIONS: list[tuple[str, Mutate, Check]] = [
    ("magic", _put("B", 1, ord("X")), "not-elf"),
    ("EI_CLASS 3", _put("B", 4, 3), "bad-class"),
    ("EI_DATA 0", _put("B", 5, 0), "bad-data"),
    ("e_type ET_REL", _put("H", 16, 1), lambda g, f: not g.loadable and not g.needed),
    ("e_phnum 0", _put("H", 56, 0), lambda g, f: g.interp is None and not g.has_dynamic),
    ("e_phnum 0xfffe", _put("H", 56, 0xFFFE), "truncated"),
    ("e_phoff 2^64-1", _put("Q", 32, (1 << 64) - 1), "truncated"),
    ("e_phoff past end", _put("Q", 32, 1 << 40), "truncated"),
    ("e_phentsize 0x1000", _put("H", 54, 0x1000), "bad-header"),
    ("e_shnum 0xffff", _put("H", 60, 0xFFFF), "same"),
    ("e_shoff 2^63", _put("Q", 40, 1 << 63), "same"),
    ("e_shentsize 0", _put("H", 58, 0), "same"),
    ("PN_XNUM, true count", lambda s, b: _xnum(s.phnum)(s, b), "same"),
    ("PN_XNUM, sh_info 2^32-1", _xnum(0xFFFFFFFF), "bad-header"),
    ("PN_XNUM, sh_info 70000", _xnum(70000), "bad-header"),
    ("PN_XNUM, sh_info 0", _xnum(0), lambda g, f: g.interp is None and not g.has_dynamic),
    ("PN_XNUM, e_shoff past end", _xnum(13, 1 << 40), "truncated"),
    ("PT_DYNAMIC offset past end", _phdr("PT_DYNAMIC", "p_offset", 1 << 40), "truncated"),
    ("PT_DYNAMIC offset 2^64-1", _phdr("PT_DYNAMIC", "p_offset", (1 << 64) - 1), "truncated"),
    (
        "PT_DYNAMIC offset = size",
        _phdr("PT_DYNAMIC", "p_offset", _size),
        lambda g, f: g.has_dynamic and not g.needed,
    ),
    ("PT_DYNAMIC filesz huge", _phdr("PT_DYNAMIC", "p_filesz", 1 << 62), "same"),
    (
        "PT_DYNAMIC filesz 0",
        _phdr("PT_DYNAMIC", "p_filesz", 0),
        lambda g, f: g.has_dynamic and not g.needed and g.interp == f.interp,
    ),
    ("PT_INTERP offset past end", _phdr("PT_INTERP", "p_offset", 1 << 40), "truncated"),
    ("PT_INTERP filesz huge", _phdr("PT_INTERP", "p_filesz", 1 << 62), "same"),
    ("PT_NOTE filesz huge", _phdr("PT_NOTE", "p_filesz", 1 << 40), "bad-header"),
    ("PT_NOTE filesz past end", _phdr("PT_NOTE", "p_filesz", lambda s: len(s.blob)), "truncated"),
    ("PT_NOTE namesz huge", _note_namesz, "bad-header"),
    ("DT_STRTAB outside every PT_LOAD", _dyn("DT_STRTAB", 1 << 40), "bad-header"),
    ("DT_STRTAB mapped past end", _phdr("PT_LOAD", "p_offset", 1 << 40), "bad-header"),
    ("no PT_LOAD at all", _no_loads, "bad-header"),
    ("no DT_STRTAB", _drop_strtab, "bad-header"),
    ("DT_STRSZ huge", _dyn("DT_STRSZ", 1 << 62), "same"),
    ("DT_STRSZ cuts the needed name", _cut_string, "bad-header"),
    ("DT_NEEDED beyond DT_STRSZ", _needed_beyond_strsz, "bad-header"),
    ("DT_NEEDED 2^64-1", _dyn("DT_NEEDED", (1 << 64) - 1), "bad-header"),
]


@pytest.mark.parametrize(("name", "mutate", "want"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutated_field(sample: Layout, full: ElfFile, name: str, mutate: Mutate,
                       want: Check) -> None:  # fmt: skip
    blob = bytearray(sample.blob)
    mutate(sample, blob)
    assert blob != sample.blob or name.startswith("PN_XNUM, true")
    got = outcome(bytes(blob))
    if want == "same":
        assert got == full
    elif isinstance(want, str):
        assert kind_of(got) == want, got
    else:
        assert isinstance(got, ElfFile), got
        assert want(got, full), got


# --- a 2 GB sparse file ------------------------------------------------------------------


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of every os.pread the reader makes."""
    sizes: list[int] = []
    real = os.pread

    def pread(fd: int, n: int, off: int) -> bytes:
        data = real(fd, n, off)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", pread)
    return sizes


def _sparse(tmp_path: Path, blob: bytes, tail: tuple[int, bytes] | None = None) -> str:
    path = tmp_path / "sparse.elf"
    with open(path, "wb") as f:
        f.write(blob)
        if tail is not None:
            f.seek(tail[0])
            f.write(tail[1])
    os.truncate(path, 2 * GIB)
    if os.stat(path).st_blocks * 512 > 64 << 20:
        pytest.skip("tmp_path does not keep files sparse")
    return str(path)


def test_sparse_2gb_file(tmp_path: Path, sample: Layout, full: ElfFile,
                         count_reads: list[int]) -> None:  # fmt: skip
    path = _sparse(tmp_path, sample.blob)
    assert replace(read_elf_path(path), path=NAME) == full
    assert sum(count_reads) <= 64 << 10


def test_sparse_2gb_dynamic_at_the_end(tmp_path: Path, sample: Layout, full: ElfFile,
                                       count_reads: list[int]) -> None:  # fmt: skip
    """PT_DYNAMIC moved to the last bytes, its p_filesz as large as the file: cut at EOF."""
    _, hdr, off, size = sample.segment("PT_DYNAMIC")
    dyn = sample.blob[off : off + size]
    end_off = 2 * GIB - len(dyn)
    blob = bytearray(sample.blob)
    struct.pack_into("<QQQQ", blob, hdr + 8, end_off, 0, 0, 2 * GIB)  # offset, vaddr, paddr, filesz
    path = _sparse(tmp_path, bytes(blob), (end_off, dyn))
    assert replace(read_elf_path(path), path=NAME) == full
    assert sum(count_reads) <= 2 << 20


@pytest.mark.parametrize(("what", "p_type", "field"), [
    ("notes spanning the whole file", "PT_NOTE", "p_filesz"),
    ("strings table as large as the file", "DT_STRSZ", ""),
])  # fmt: skip
def test_sparse_2gb_huge_regions(tmp_path: Path, sample: Layout, full: ElfFile,
                                 count_reads: list[int], what: str, p_type: str,
                                 field: str) -> None:  # fmt: skip
    blob = bytearray(sample.blob)
    if field:
        _phdr(p_type, field, 2 * GIB - sample.segment(p_type)[2])(sample, blob)
    else:
        _dyn(p_type, 2 * GIB - sample.strtab)(sample, blob)
    path = _sparse(tmp_path, bytes(blob))
    try:
        got: ElfFile | ElfError = replace(read_elf_path(path), path=NAME)
    except ElfError as exc:
        got = exc
    if p_type == "PT_NOTE":
        assert kind_of(got) == "bad-header"
    else:
        assert got == full
    assert sum(count_reads) <= 2 << 20, what


# --- files that are not regular ----------------------------------------------------------


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.so"
    os.mkfifo(fifo)
    got = in_thread(lambda: read_elf_path(str(fifo)))
    assert isinstance(got, ElfError) and got.kind == "unreadable"
    assert "not a regular file (FIFO)" in str(got) and str(fifo) in str(got)


def test_pipe_descriptor_is_refused() -> None:
    r, w = os.pipe()
    try:
        got = in_thread(lambda: read_elf_fd(r, "pipe"))
    finally:
        os.close(r)
        os.close(w)
    assert isinstance(got, ElfError) and got.kind == "unreadable"


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/"])
def test_devices_and_directories_are_refused(path: str) -> None:
    got = in_thread(lambda: read_elf_path(path))
    assert isinstance(got, ElfError) and got.kind == "unreadable"
    assert "not a regular file" in str(got)


# --- fuzzing -------------------------------------------------------------------------------

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_VALUES = [0, 1, 2, 3, 4, 7, 8, 0x40, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32,
           1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]  # fmt: skip


def _mutations(size: int, hot: list[int]) -> st.SearchStrategy[list[tuple[int, int, int]]]:
    """(offset, width, value): single bytes anywhere, or whole fields at offsets that matter."""
    anywhere = st.tuples(st.integers(0, size - 1), st.just(1), st.integers(0, 255))
    field = st.tuples(st.sampled_from(hot), st.sampled_from([1, 2, 4, 8]),
                      st.sampled_from(_VALUES) | st.integers(0, size + 64))  # fmt: skip
    return st.lists(anywhere | field, min_size=1, max_size=6)


def _apply(blob: bytes, muts: list[tuple[int, int, int]], cut: int | None, bo: str) -> bytes:
    out = bytearray(blob)
    for off, width, value in muts:
        if off + width <= len(out):
            fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
            struct.pack_into(bo + fmt, out, off, value & ((1 << (8 * width)) - 1))
    return bytes(out[:cut] if cut is not None else out)


def _hot_offsets(blob: bytes) -> list[int]:
    """Offsets of the Ehdr, every Phdr field and every dynamic entry, from pyelftools."""
    elf = ELFFile(io.BytesIO(blob))
    h = elf.header
    hot = list(range(0, 64 if elf.elfclass == 64 else 52, 2))
    word = 8 if elf.elfclass == 64 else 4
    for i, seg in enumerate(elf.iter_segments()):
        base = h["e_phoff"] + i * h["e_phentsize"]
        hot += range(base, base + h["e_phentsize"], 4)
        if seg["p_type"] == "PT_DYNAMIC":
            hot += range(seg["p_offset"], seg["p_offset"] + seg["p_filesz"], word)
        if seg["p_type"] == "PT_NOTE":
            hot += range(seg["p_offset"], seg["p_offset"] + min(seg["p_filesz"], 64), 4)
    return hot


_PREFIXES = [b"", b"\x7fELF"] + [b"\x7fELF" + bytes([c, d, 1]) for c in (1, 2) for d in (1, 2)]


@FUZZ
@given(st.sampled_from(_PREFIXES), st.binary(max_size=4096))
def test_fuzz_random_bytes(prefix: bytes, body: bytes) -> None:
    outcome(prefix + body)


_SAMPLE_BLOB = Path(SAMPLE).read_bytes() if os.path.exists(SAMPLE) else b""
_SAMPLE_HOT = _hot_offsets(_SAMPLE_BLOB) if _SAMPLE_BLOB else [0]


@pytest.mark.skipif(not _SAMPLE_BLOB, reason=f"{SAMPLE} missing")
@FUZZ
@given(_mutations(max(len(_SAMPLE_BLOB), 1), _SAMPLE_HOT),
       st.none() | st.integers(0, max(len(_SAMPLE_BLOB), 1)))  # fmt: skip
def test_fuzz_mutated_real_binary(muts: list[tuple[int, int, int]], cut: int | None) -> None:
    outcome(_apply(_SAMPLE_BLOB, muts, cut, "<"))


_BUILT = {(c, d): build(Spec(c, d)) for c in (1, 2) for d in (1, 2)}


def _built_cases() -> Iterator[tuple[tuple[int, int], bytes]]:
    yield from _BUILT.items()


@FUZZ
@given(st.data())
def test_fuzz_mutated_hand_built(data: st.DataObject) -> None:
    """Small objects of both classes and byte orders: random edits hit headers most of the time."""
    (cls, order), blob = data.draw(st.sampled_from(list(_built_cases())))
    muts = data.draw(_mutations(len(blob), _hot_offsets(blob)))
    cut = data.draw(st.none() | st.integers(0, len(blob)))
    got = outcome(_apply(blob, muts, cut, "<" if order == 1 else ">"))
    if isinstance(got, ElfFile) and got.elfclass == cls and got.data == order:
        assert all(isinstance(n, str) for n in got.needed)


# --- DT_NEEDED cycles ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libcyca.so and libcycb.so need each other; main needs libcyca.so."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    d = tmp_path_factory.mktemp("cycle")
    (d / "a.c").write_text("extern int b(int);\nint a(int n) { return n ? b(n - 1) : 0; }\n")
    (d / "b.c").write_text("extern int a(int);\nint b(int n) { return n ? a(n - 1) : 1; }\n")
    (d / "main.c").write_text("extern int a(int);\nint main(void) { return a(3); }\n")
    link = ["gcc", "-Wl,--no-as-needed", "-Wl,-rpath,$ORIGIN", "-L."]
    lib = link + ["-shared", "-fPIC"]
    steps = [  # a first libcyca.so without its dependency, to link libcycb.so against
        lib + ["-Wl,-soname,libcyca.so", "a.c", "-o", "libcyca.so", "-Wl,-z,undefs"],
        lib + ["-Wl,-soname,libcycb.so", "b.c", "-o", "libcycb.so", "-lcyca"],
        lib + ["-Wl,-soname,libcyca.so", "a.c", "-o", "libcyca.so", "-lcycb"],
        link + ["main.c", "-o", "main", "-lcyca"],
    ]
    for cmd in steps:
        p = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    return d


def test_needed_cycle_terminates_and_lists_each_once(cycle: Path) -> None:
    a, b, main = (str(cycle / n) for n in ("libcyca.so", "libcycb.so", "main"))
    assert read_elf_path(a).needed[0] == "libcycb.so"
    assert read_elf_path(b).needed[0] == "libcyca.so"
    resolver = Resolver.for_root(Root("/"))
    for path in (main, a, b):
        res = in_thread(functools.partial(resolver.load, path))
        assert isinstance(res, LoadResult), res
        reals = [o.realpath for o in res.objects]
        assert len(reals) == len(set(reals)), reals
        assert {a, b} <= set(reals)
        expected, raw = ldd(path)  # the real loader, on our own trusted fixture
        assert {o.realpath for o in res.libraries} == expected, raw
