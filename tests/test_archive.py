"""Package lists in every compression apt writes them in read the same (issue #12: python3-minimal).

The oracle is this machine's own uncompressed Packages lists, read by depmin; each
compressed copy (gzip through zlib, xz and bz2 through their modules or, where the
interpreter has none, through xzcat/bzcat) must give the same records; damaged
copies must give a warning naming the file, never a traceback.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from depmin.debian.archive import load_archive_index
from depmin.debian.dpkg import load_dpkg_database
from depmin.rootfs import Root

HELPER = "/usr/lib/apt/apt-helper"
#: This machine's lists, smallest first (apt stores them compressed: lz4 here).
LISTS = sorted(Path("/var/lib/apt/lists").glob("*_Packages*"), key=lambda p: p.stat().st_size)[:2]
pytestmark = pytest.mark.skipif(not LISTS or not Path(HELPER).exists(), reason="no Packages lists here")


def plain_bytes(path: Path) -> bytes:
    """A list as apt itself decompresses it (apt-helper cat-file): the oracle's bytes."""
    return subprocess.run([HELPER, "cat-file", str(path)], capture_output=True, check=True).stdout


def base_name(path: Path) -> str:
    return path.name.split("_Packages")[0] + "_Packages"


@pytest.fixture(scope="module")
def wanted() -> frozenset[str]:
    return frozenset(p.name for p in load_dpkg_database(Root("/")).installed_packages())


def root_with(tmp: Path, suffix: str, writer: object) -> Root:
    lists = tmp / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    for src in LISTS:
        data = plain_bytes(src)
        packed = writer(data) if callable(writer) else data
        (lists / (base_name(src) + suffix)).write_bytes(packed)
    return Root(str(tmp))


def gzip_two_members(data: bytes) -> bytes:
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


CODECS = {".gz": gzip.compress, ".gz-members": gzip_two_members, ".xz": lzma.compress, ".bz2": bz2.compress}


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("without_module", [False, True])
def test_every_compression_reads_as_the_plain_list(
    tmp_path: Path, wanted: frozenset[str], codec: str, without_module: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = codec.split("-")[0]
    if without_module:
        if suffix == ".gz":
            pytest.skip("gzip is read through zlib, which every CPython has")
        tool = {".xz": "xzcat", ".bz2": "bzcat"}[suffix]
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
        monkeypatch.setitem(sys.modules, {".xz": "lzma", ".bz2": "bz2"}[suffix], None)  # import fails
    plain = load_archive_index(root_with(tmp_path / "plain", "", None), wanted)
    packed = load_archive_index(root_with(tmp_path / "packed", suffix, CODECS[codec]), wanted)
    assert plain.records and not plain.warnings and not packed.warnings
    assert packed.records == plain.records
    native = load_archive_index(Root("/"), wanted)
    assert set(plain.records) <= set(native.records)  # the same records apt's own lz4 copies give


@pytest.mark.parametrize("suffix", [".gz", ".xz", ".bz2"])
def test_damaged_lists_are_warnings_naming_the_file(
    tmp_path: Path, wanted: frozenset[str], suffix: str
) -> None:
    data = CODECS[suffix](plain_bytes(LISTS[0]))
    lists = tmp_path / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    (lists / f"truncated_Packages{suffix}").write_bytes(data[: len(data) // 2])
    (lists / f"garbage_Packages{suffix}").write_bytes(data[:10] + b"\xff" * 200 + data[210:])
    index = load_archive_index(Root(str(tmp_path)), wanted)
    assert sorted(w.split(":")[0] for w in index.warnings) == sorted(
        f"/var/lib/apt/lists/{n}_Packages{suffix}" for n in ("garbage", "truncated")
    ), index.warnings


#: A list with what real lists may hold and a naive reader gets wrong: blank lines
#: before the first stanza and several between stanzas, field names in any case,
#: continuation lines that look like fields, unwanted stanzas with flags, spaces
#: around values, and no newline at the end.
AWKWARD = (
    b"\n\n"
    b"Package: libfoo1\nVersion: 1.0-1\nArchitecture: amd64\nPriority: required\n"
    b"Description: foo\n Essential: yes\n Important: yes\n\n\n\n"
    b"Package: bar  \nessential: Yes\nARCHITECTURE: all\nversion: 2:3\nProtected: yes\n\n"
    b"Package: unwanted\nEssential: yes\nVersion: 1\nArchitecture: amd64\n\n"
    b"Package: baz\nArchitecture: amd64\nVersion: 4\nImportant: no\nPriority:   optional  \n\n"
    b"Package: libfoo1\nVersion: 1.1-1\nArchitecture: i386\nImportant: yes"
)


def apt_records(data: bytes, path: Path, wanted: frozenset[str]) -> list[object]:
    """The records as apt's own deb822 parser (python-apt's TagFile) reads the list."""
    apt_pkg = pytest.importorskip("apt_pkg")
    from depmin.debian.archive import ArchiveRecord

    path.write_bytes(data)

    def flag(v: str | None) -> bool | None:
        return None if v is None else v.strip().lower() == "yes"

    out: list[object] = []
    with apt_pkg.TagFile(str(path)) as tags:
        for s in tags:
            if s.get("Package") not in wanted:
                continue
            out.append(ArchiveRecord(
                s["Package"], s.get("Architecture", ""), s.get("Version", ""), s.get("Priority"),
                flag(s.get("Essential")), flag(s.get("Important")), flag(s.get("Protected")),
            ))  # fmt: skip
    return out


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_stanzas_read_as_apt_reads_them_whatever_the_chunk_size(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import depmin.debian.archive as archive

    monkeypatch.setattr(archive, "_CHUNK", chunk)
    wanted = frozenset({"libfoo1", "bar", "baz"})
    lists = tmp_path / "root/var/lib/apt/lists"
    lists.mkdir(parents=True)
    (lists / "x_Packages").write_bytes(AWKWARD)
    got = load_archive_index(Root(str(tmp_path / "root")), wanted)
    expected = apt_records(AWKWARD, tmp_path / "oracle", wanted)
    assert len(expected) == 4 and not got.warnings
    assert list(got.records) == expected


def test_the_real_lists_read_as_apt_reads_them(tmp_path: Path, wanted: frozenset[str]) -> None:
    got = load_archive_index(root_with(tmp_path / "plain", "", None), wanted)
    expected: list[object] = []
    for i, src in enumerate(sorted(LISTS, key=base_name)):  # apt's order: by file name
        expected += apt_records(plain_bytes(src), tmp_path / f"oracle{i}", wanted)
    assert expected and list(got.records) == expected
