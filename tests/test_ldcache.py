"""depmin.loader.ldcache against glibc 2.36 itself.

Oracles: ``ldconfig -p`` (what a cache holds, in file order), the real ldconfig
building caches in temporary roots (``ldconfig -r``, which chroots), and the real
loader: ``LD_DEBUG=libs`` run in a chroot whose ``/etc/ld.so.cache`` is the cache
under test prints, after `` search cache=``, the ``trying file=`` that
``_dl_load_cache_lookup`` returned.  Library paths in those caches do not exist in
the chroot, so each lookup is independent and nothing is loaded.  Nothing here
writes outside ``tmp_path``.
"""

from __future__ import annotations

import os
import platform
import random
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from depmin.errors import CacheError
from depmin.loader.arch import arch_by_name
from depmin.loader.ldcache import (
    HWCAP_EXTENSION,
    CacheEntry,
    LdCache,
    flags_text,
    ldconfig_print,
    libcmp,
    libcmp_key,
    load_ldcache,
    parse_ldcache,
    sort_keys,
)
from depmin.rootfs import Root

HOST_CACHE = "/etc/ld.so.cache"
LDCONFIG = shutil.which("ldconfig") or next(
    (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None
)
LDSO = "/lib64/ld-linux-x86-64.so.2"
GCC = shutil.which("gcc")
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
C_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
NATIVE = arch_by_name("amd64").cache_flags  # {0x303}
BUILTIN_HWCAPS = ("x86-64-v4", "x86-64-v3", "x86-64-v2")

x86_64 = pytest.mark.skipif(
    platform.machine() != "x86_64" or not os.path.exists(LDSO),
    reason="expects Debian's x86-64 loader",
)
needs_ldconfig = pytest.mark.skipif(LDCONFIG is None, reason="ldconfig is not installed")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="ldconfig -r and the loader oracle chroot, which needs root"
)
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc builds the loader probe")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -------------------------------------------------------------------- oracles


def ldconfig_p(cache_file: str) -> list[str]:
    """``ldconfig -p`` output lines for a cache file (exit status must be 0)."""
    assert LDCONFIG is not None
    proc = subprocess.run([LDCONFIG, "-p", "-C", cache_file], env=C_ENV, capture_output=True, check=True)
    return proc.stdout.decode("utf-8", "surrogateescape").splitlines()


_LINE = re.compile(r"^\t(.*) \((.*)\) => (.*)$")


def ldconfig_p_entries(lines: Iterable[str]) -> list[tuple[str, str, str]]:
    """(key, description, value) of each entry line of ``ldconfig -p``."""
    found = []
    for line in lines:
        m = _LINE.match(line)
        if m:
            found.append((m.group(1), m.group(2), m.group(3)))
    return found


def supported_hwcaps() -> tuple[str, ...]:
    """glibc-hwcaps names this CPU supports, best first, from ``ld.so --help``."""
    out = subprocess.run([LDSO, "--help"], env=C_ENV, capture_output=True, text=True).stdout
    return tuple(n for n in BUILTIN_HWCAPS if re.search(rf"^\s+{n} \(supported", out, re.M))


def loader_lookups(root: Path, names: Sequence[str], mask: Sequence[str] = ()) -> dict[str, str | None]:
    """What the real ld.so's cache lookup returns for each name, in a chroot.

    ``mask`` limits the built-in glibc-hwcaps names (none when empty).  Names the
    loader did not search (already loaded) are absent from the result.
    """
    cmd = [CHROOT, str(root), "/lib64/ld-linux-x86-64.so.2"]
    cmd += ["--glibc-hwcaps-mask", ":".join(mask) or "none", "/bin/dlprobe", *names]
    env = {"LD_DEBUG": "libs", "LC_ALL": "C"}
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    text = proc.stderr.decode("utf-8", "surrogateescape")
    messages = [re.sub(r"^\s*\d+:\t?", "", line) for line in text.splitlines()]
    result: dict[str, str | None] = {}
    current = None
    for i, msg in enumerate(messages):
        m = re.match(r"find library=(.*) \[\d+\]; searching$", msg)
        if m:
            current = m.group(1)
        elif current is not None and msg.startswith(" search cache="):
            nxt = messages[i + 1] if i + 1 < len(messages) else ""
            hit = nxt.startswith("  trying file=")
            result[current] = nxt[len("  trying file=") :] if hit else None
            current = None
    return result


def active_for(mask: Sequence[str]) -> tuple[str, ...]:
    """The active names, best first, that ``--glibc-hwcaps-mask`` leaves."""
    return tuple(n for n in supported_hwcaps() if n in mask)


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A program that dlopen()s each argument, so ld.so looks each one up."""
    if GCC is None or os.geteuid() != 0 or not os.path.exists(LDSO) or not os.path.exists(CHROOT):
        pytest.skip("the loader oracle needs gcc, root, chroot(8) and the x86-64 loader")
    work = tmp_path_factory.mktemp("probe")
    (work / "p.c").write_text(
        "#include <dlfcn.h>\n"
        "int main(int c, char **v) { for (int i = 1; i < c; i++) dlopen(v[i], RTLD_LAZY);"
        " return 0; }\n"
    )
    subprocess.run([GCC, "-o", str(work / "dlprobe"), str(work / "p.c")], check=True)
    return work / "dlprobe"


def install_loader(root: Path, probe: Path) -> None:
    """ld.so, libc.so.6 and the probe, so the chroot can run the probe."""
    for src, dst in (
        (LDSO, "lib64/ld-linux-x86-64.so.2"),
        ("/lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libc.so.6"),
        (str(probe), "bin/dlprobe"),
    ):
        target = root / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(src), target)


@pytest.fixture(scope="module")
def loader_root(tmp_path_factory: pytest.TempPathFactory, probe: Path) -> Path:
    """A chroot with the loader; tests put the cache under test in etc/."""
    root = tmp_path_factory.mktemp("loader")
    install_loader(root, probe)
    (root / "etc").mkdir()
    return root


def host_cache() -> LdCache:
    cache = load_ldcache(Root("/"))
    if cache is None:
        pytest.skip("this machine has no /etc/ld.so.cache")
    return cache


# -------------------------------------------------------------------- writers


def _strings(texts: Iterable[str], start: int) -> tuple[bytes, dict[str, int]]:
    blob = bytearray()
    where: dict[str, int] = {}
    for text in texts:
        if text not in where:
            where[text] = start + len(blob)
            blob += text.encode("utf-8", "surrogateescape") + b"\0"
    return bytes(blob), where


def write_new(
    entries: Sequence[CacheEntry],
    subdirs: Sequence[str] = (),
    generator: str | None = None,
    order: str = "<",
) -> bytes:
    """A new-format-only cache laid out as §9 of docs/loader.md describes."""
    table = 48 + 24 * len(entries)
    texts = [t for e in entries for t in (e.key, e.value)] + list(subdirs)
    blob, at = _strings(texts, table)
    out = bytearray(b"glibc-ld.so.cache1.1")
    ext_offset = (table + len(blob) + 3) & ~3 if (generator is not None or subdirs) else 0
    out += struct.pack(order + "IIB3xI12x", len(entries), len(blob), 2 if order == "<" else 3,
                       ext_offset)  # fmt: skip
    for e in entries:
        out += struct.pack(order + "iIIIQ", e.flags, at[e.key], at[e.value], e.osversion, e.hwcap)
    out += blob
    if ext_offset:
        out += b"\0" * (ext_offset - len(out))
        sections = []
        data = bytearray()
        after = ext_offset + 8 + 16 * ((generator is not None) + bool(subdirs))
        if subdirs:
            sections.append((1, after + len(data), 4 * len(subdirs)))
            data += b"".join(struct.pack(order + "I", at[s]) for s in subdirs)
        if generator is not None:
            raw = generator.encode()
            sections.append((0, after + len(data), len(raw)))
            data += raw
        out += struct.pack(order + "II", 0xEAA42174, len(sections))
        for tag, offset, size in sections:
            out += struct.pack(order + "IIII", tag, 0, offset, size)
        out += data
    return bytes(out)


def write_old(entries: Sequence[CacheEntry]) -> bytes:
    """An old-format-only cache (``ld.so-1.7.0``), strings after the table."""
    blob, at = _strings([t for e in entries for t in (e.key, e.value)], 0)
    out = bytearray(b"ld.so-1.7.0\0") + struct.pack("<I", len(entries))
    for e in entries:
        out += struct.pack("<iII", e.flags, at[e.key], at[e.value])
    return bytes(out + blob)


def same_records(a: Iterable[CacheEntry], b: Iterable[CacheEntry]) -> bool:
    return [(e.key, e.value, e.flags) for e in a] == [(e.key, e.value, e.flags) for e in b]


# -------------------------------------------------------------------- host cache


@needs_ldconfig
def test_host_cache_equals_ldconfig_p() -> None:
    cache = host_cache()
    expected = ldconfig_p(HOST_CACHE)
    assert ldconfig_print(cache, HOST_CACHE) == expected
    ours = [(e.key, flags_text(e.flags), e.value) for e in cache.iter_entries()]
    theirs = ldconfig_p_entries(expected)
    assert len(theirs) == len(cache.entries) > 0
    assert [(k, d.split(", hwcap")[0].split(", OS ABI")[0], v) for k, d, v in theirs] == ours


@needs_ldconfig
@x86_64
def test_host_lookup_equals_first_native_ldconfig_p_line() -> None:
    cache = host_cache()
    lines = ldconfig_p_entries(ldconfig_p(HOST_CACHE))
    native = flags_text(max(NATIVE))
    assert native == "libc6,x86-64"
    checked = 0
    for key in {k for k, _, _ in lines}:
        if any(libcmp(key, k) == 0 and key != k for k, _, _ in lines):
            continue  # a libcmp-equal spelling would make "first line" ambiguous
        first = next((v for k, d, v in lines if k == key and d == native), None)
        assert cache.lookup(key, NATIVE) == first, key
        checked += 1
    assert checked > 0


@x86_64
def test_host_lookup_equals_loader(loader_root: Path) -> None:
    cache = host_cache()
    shutil.copy(HOST_CACHE, loader_root / "etc/ld.so.cache")
    names = sorted({e.key for e in cache.entries})
    for mask in ((), supported_hwcaps()):
        truth = loader_lookups(loader_root, names, mask)
        assert len(truth) >= len(names) - 5  # only the already-loaded ones are missing
        for name, path in truth.items():
            assert cache.lookup(name, NATIVE, active_for(mask)) == path, name


def test_host_keys_are_sorted_by_libcmp() -> None:
    keys = [e.key for e in host_cache().entries]
    assert all(libcmp(a, b) >= 0 for a, b in zip(keys, keys[1:]))
    assert sort_keys(keys) == keys


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_libcmp_is_a_consistent_order_on_real_keys(data: st.DataObject) -> None:
    keys = [e.key for e in host_cache().entries]
    i, j = sorted(data.draw(st.lists(st.integers(0, len(keys) - 1), min_size=2, max_size=2)))
    assert libcmp(keys[i], keys[j]) >= 0  # file order is descending, transitively
    assert libcmp(keys[i], keys[j]) == -libcmp(keys[j], keys[i])
    assert libcmp(keys[i], keys[i]) == 0


# -------------------------------------------------------------------- libcmp vs ldconfig


@pytest.fixture(scope="module")
def stub_library(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tiny shared library whose SONAME can be overwritten in place."""
    if GCC is None:
        pytest.skip("gcc is not installed")
    work = tmp_path_factory.mktemp("stub")
    (work / "s.c").write_text("void stub_function(void) {}\n")
    soname = "lib" + "X" * 60 + ".so"
    subprocess.run([GCC, "-shared", "-fPIC", "-o", str(work / "s.so"),
                    f"-Wl,-soname,{soname}", str(work / "s.c")], check=True)  # fmt: skip
    data = (work / "s.so").read_bytes()
    assert data.count(soname.encode()) == 1
    return data


def with_soname(stub: bytes, soname: str) -> bytes:
    placeholder = b"lib" + b"X" * 60 + b".so"
    raw = soname.encode()
    assert len(raw) <= len(placeholder)
    return stub.replace(placeholder, raw + b"\0" * (len(placeholder) - len(raw)))


def run_ldconfig(root: Path, fmt: str = "new") -> Path:
    assert LDCONFIG is not None
    subprocess.run([LDCONFIG, "-r", str(root), "-X", "-c", fmt], env=C_ENV, check=True,
                   capture_output=True)  # fmt: skip
    return root / "etc/ld.so.cache"


_SONAMES = st.lists(
    st.builds(
        lambda body, suffix: f"lib{body}.so{suffix}",
        st.one_of(
            st.sampled_from(["a", "a1", "a9", "a10", "a01", "aé", "a-", "a_", "A", "a.b"]),
            st.text(alphabet="aZb09._-+é", min_size=1, max_size=8),
        ),
        st.sampled_from(["", ".0", ".1", ".01", ".9", ".10", ".1.2", ".a", "é"]),
    ),
    min_size=2,
    max_size=12,
    unique=True,
)


@needs_ldconfig
@needs_root
@given(sonames=_SONAMES)
@example(
    sonames=[
        "libfoo.so.9",
        "libfoo.so.10",
        "libfoo.so.1",
        "libfoo.so",
        "libfoo1.so",
        "libfooé.so",
        "libfoo_.so",
        "libfoo-2.so",
        "libFoo.so.2",
        "libfoo.so.1a",
    ]
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_libcmp_orders_keys_as_ldconfig_sorts_them(stub_library: bytes, sonames: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "etc").mkdir()
        (root / "etc/ld.so.conf").write_text("/l\n")
        (root / "l").mkdir()
        for i, soname in enumerate(sonames):
            (root / f"l/lib{i}.so").write_bytes(with_soname(stub_library, soname))
        cache = parse_ldcache(run_ldconfig(root).read_bytes())
    keys = [e.key for e in cache.entries]
    assert sorted(keys) == sorted(sonames)
    assert all(libcmp(a, b) >= 0 for a, b in zip(keys, keys[1:]))
    if all(libcmp(a, b) != 0 for a in sonames for b in sonames if a != b):
        assert sort_keys(random.sample(sonames, len(sonames))) == keys


# -------------------------------------------------------------------- caches built by ldconfig


def real_library(soname: str) -> Path:
    path = host_cache().lookup(soname, NATIVE)
    if path is None or not os.path.exists(path):
        pytest.skip(f"{soname} is not installed")
    return Path(os.path.realpath(path))


def build_root(root: Path, conf: Sequence[str]) -> None:
    """/opt/a and /opt/b both hold libz (same SONAME), also in glibc-hwcaps subdirs."""
    libz, libgcc = real_library("libz.so.1"), real_library("libgcc_s.so.1")
    places = {
        "opt/a": [libz],
        "opt/a/glibc-hwcaps/x86-64-v2": [libz],
        "opt/a/glibc-hwcaps/x86-64-v3": [libz, libgcc],
        "opt/b": [libz, libgcc],
        "opt/b/glibc-hwcaps/x86-64-v2": [libz],
    }
    for where, files in places.items():
        (root / where).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, root / where / f.name)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/ld.so.conf").write_text("".join(f"{d}\n" for d in conf))


@needs_ldconfig
@needs_root
@x86_64
@pytest.mark.parametrize("fmt", ["new", "compat", "old"])
def test_ldconfig_built_cache(tmp_path: Path, probe: Path, fmt: str) -> None:
    build_root(tmp_path, ["/opt/a", "/opt/b"])
    cache_file = run_ldconfig(tmp_path, fmt)
    cache = parse_ldcache(cache_file.read_bytes(), str(cache_file))
    assert cache.format == fmt
    assert ldconfig_print(cache, str(cache_file)) == ldconfig_p(str(cache_file))
    if fmt == "new":
        assert cache.hwcaps_subdirs == ("x86-64-v2", "x86-64-v3")
        named = [e for e in cache.entries if e.is_glibc_hwcaps]
        assert {cache.hwcaps_name(e) for e in named} == {"x86-64-v2", "x86-64-v3"}
        assert all(e.hwcap & HWCAP_EXTENSION and e.isa_level == 0 for e in named)
    install_loader(tmp_path, probe)
    names = sorted({e.key for e in cache.entries})
    supported = supported_hwcaps()
    for mask in ((), ("x86-64-v2",), ("x86-64-v3",), ("x86-64-v2", "x86-64-v3")):
        if not set(mask) <= set(supported):
            continue
        truth = loader_lookups(tmp_path, names, mask)
        assert set(names) <= set(truth)  # plus libc.so.6, the probe's own need
        for name, path in truth.items():
            assert cache.lookup(name, NATIVE, active_for(mask)) == path, (name, mask)


@needs_ldconfig
@needs_root
@x86_64
def test_hwcaps_path_only_when_level_active(tmp_path: Path, probe: Path) -> None:
    build_root(tmp_path, ["/opt/a", "/opt/b"])
    cache = parse_ldcache(run_ldconfig(tmp_path).read_bytes())
    install_loader(tmp_path, probe)
    if "x86-64-v2" not in supported_hwcaps():
        pytest.skip("the CPU lacks x86-64-v2")
    off = loader_lookups(tmp_path, ["libz.so.1"], ())["libz.so.1"]
    on = loader_lookups(tmp_path, ["libz.so.1"], ("x86-64-v2",))["libz.so.1"]
    assert on is not None and "/glibc-hwcaps/x86-64-v2/" in on
    assert off is not None and "/glibc-hwcaps/" not in off
    assert cache.lookup("libz.so.1", NATIVE, ("x86-64-v2",)) == on
    assert cache.lookup("libz.so.1", NATIVE, ()) == off
    # An ISA level the CPU lacks disqualifies the entry, as glibc's isa_1 check does.
    assert cache.lookup("libz.so.1", NATIVE, ("x86-64-v2",), cpu_isa_1=0) == off


@needs_ldconfig
@needs_root
@pytest.mark.parametrize("order", [["/opt/a", "/opt/b"], ["/opt/b", "/opt/a"]])
def test_duplicate_soname_first_directory_wins(tmp_path: Path, order: list[str]) -> None:
    build_root(tmp_path, order)
    cache_file = run_ldconfig(tmp_path)
    cache = parse_ldcache(cache_file.read_bytes())
    lines = ldconfig_p_entries(ldconfig_p(str(cache_file)))
    normal = [v for k, d, v in lines if k == "libz.so.1" and d == "libc6,x86-64"]
    assert len(normal) == 2  # both directories are in the cache...
    assert cache.lookup("libz.so.1", NATIVE) == normal[0]  # ...the first line wins
    assert normal[0] == f"{order[0]}/libz.so.1"


# -------------------------------------------------------------------- hand-built caches


@needs_ldconfig
def test_old_format_built_by_hand(tmp_path: Path) -> None:
    cache = host_cache()
    old = tmp_path / "old.cache"
    old.write_bytes(write_old(cache.entries))
    parsed = parse_ldcache(old.read_bytes(), str(old))
    assert parsed.format == "old" and same_records(parsed.entries, cache.entries)
    assert ldconfig_print(parsed, str(old)) == ldconfig_p(str(old))
    for e in cache.entries:
        assert parsed.lookup(e.key, NATIVE) == cache.lookup(e.key, NATIVE)


@needs_ldconfig
@needs_root
def test_big_endian_new_format_built_by_hand(tmp_path: Path) -> None:
    build_root(tmp_path, ["/opt/a", "/opt/b"])
    cache = parse_ldcache(run_ldconfig(tmp_path).read_bytes())
    little, big = tmp_path / "le.cache", tmp_path / "be.cache"
    little.write_bytes(write_new(cache.entries, cache.hwcaps_subdirs, cache.generator, "<"))
    big.write_bytes(write_new(cache.entries, cache.hwcaps_subdirs, cache.generator, ">"))
    # The writer is right: glibc prints the little-endian copy like the original.
    assert ldconfig_p(str(little))[1:] == ldconfig_print(cache)[1:]
    # glibc on this little-endian host refuses the big-endian copy by its flag...
    assert LDCONFIG is not None
    refused = subprocess.run([LDCONFIG, "-p", "-C", str(big)], env=C_ENV, capture_output=True)
    assert refused.returncode != 0 and b"endianness" in refused.stderr
    # ...and depmin reads it in the order the flag names.
    parsed = parse_ldcache(big.read_bytes())
    assert parsed.byteorder == "big" and parsed.entries == cache.entries
    assert parsed.hwcaps_subdirs == cache.hwcaps_subdirs
    assert parsed.generator == cache.generator
    for e in cache.entries:
        for active in ((), ("x86-64-v3", "x86-64-v2")):
            assert parsed.lookup(e.key, NATIVE, active) == cache.lookup(e.key, NATIVE, active)


@needs_ldconfig
def test_unset_byte_order_means_host_order(tmp_path: Path) -> None:
    entries = host_cache().entries[:20]
    blob = bytearray(write_new(entries, (), "depmin test"))
    blob[28] = 0  # endianness flag unset, as ldconfig < 2.33 wrote it
    unset = tmp_path / "unset.cache"
    unset.write_bytes(bytes(blob))
    parsed = parse_ldcache(bytes(blob))
    assert parsed.entries == entries and parsed.byteorder == "little"
    assert ldconfig_print(parsed, str(unset)) == ldconfig_p(str(unset))  # glibc agrees
    with pytest.raises(CacheError):  # read as big-endian the counts make no sense
        parse_ldcache(bytes(blob), default_byteorder="big")


@x86_64
@pytest.mark.parametrize("shape", ["bytewise-descending", "ascending"])
def test_mis_sorted_cache_behaves_like_glibc(loader_root: Path, shape: str) -> None:
    cache = host_cache()
    raw = lambda e: e.key.encode("utf-8", "surrogateescape")  # noqa: E731
    entries = sorted(cache.entries, key=raw, reverse=shape == "bytewise-descending")
    mis = parse_ldcache(write_new(entries))
    (loader_root / "etc/ld.so.cache").write_bytes(write_new(entries))
    truth = loader_lookups(loader_root, sorted({e.key for e in entries}))
    assert len(truth) > len(entries) // 2
    for name, path in truth.items():
        assert mis.lookup(name, NATIVE) == path, name
    linear = {e.key: e.value for e in reversed(entries)}
    if shape == "ascending":  # the binary search misses what a linear scan lists
        assert any(path is None and name in linear for name, path in truth.items())


_KEYS = ["libz.so.1", "libz.so.01", "libz.so.10", "libz.so.9", "liba.so", "libX.so.1"]
_LEGACY = {"normal": 0, "tls": 1 << 63, "platform": 1 << 48}


def random_entry(key: str, flags: int, kind: str, n: int, subdirs: Sequence[str]) -> CacheEntry:
    hwcap = HWCAP_EXTENSION | subdirs.index(kind) if kind in subdirs else _LEGACY[kind]
    return CacheEntry(key, f"/nowhere/{n}/{key}", flags, 0, hwcap)


@x86_64
@given(st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_caches_lookup_like_glibc(loader_root: Path, data: st.DataObject) -> None:
    """Random order, duplicate keys, foreign flags, hwcaps and legacy entries vs ld.so."""
    subdirs = data.draw(st.permutations([*BUILTIN_HWCAPS, "power9"]))  # any array order
    entry = st.builds(
        random_entry,
        st.sampled_from(_KEYS),
        st.sampled_from([0x303, 0x303, 0x3, 0x803]),
        st.sampled_from(["normal", "normal", *_LEGACY, *subdirs]),
        st.integers(0, 9),
        st.just(subdirs),
    )
    entries = data.draw(st.lists(entry, min_size=1, max_size=20))
    if data.draw(st.booleans()):  # sorted as ldconfig would, or left in random order
        entries = sorted(entries, key=lambda e: libcmp_key(e.key), reverse=True)
    blob = write_new(entries, subdirs)
    (loader_root / "etc/ld.so.cache").write_bytes(blob)
    cache = parse_ldcache(blob)
    masks = [(), ("x86-64-v2",), ("x86-64-v3", "x86-64-v2"), BUILTIN_HWCAPS]
    mask = data.draw(st.sampled_from(masks))
    names = sorted(set(_KEYS))
    truth = loader_lookups(loader_root, names, mask)
    assert set(names) <= set(truth)
    for name, path in truth.items():
        assert cache.lookup(name, NATIVE, active_for(mask)) == path, name


# -------------------------------------------------------------------- malformed input


@pytest.fixture(scope="module")
def small_caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Small real caches (libz in a dir and a hwcaps subdir) in each format."""
    if LDCONFIG is None or os.geteuid() != 0:
        pytest.skip("needs ldconfig -r (root)")
    out = {}
    for fmt in ("new", "compat", "old"):
        root = tmp_path_factory.mktemp(f"small-{fmt}")
        libz = real_library("libz.so.1")
        for where in ("opt/a", "opt/a/glibc-hwcaps/x86-64-v2"):
            (root / where).mkdir(parents=True)
            shutil.copy(libz, root / where / libz.name)
        (root / "etc").mkdir()
        (root / "etc/ld.so.conf").write_text("/opt/a\n")
        out[fmt] = run_ldconfig(root, fmt).read_bytes()
    return out


def check_robust(data: bytes) -> None:
    """Either a cache whose every use works, or CacheError: nothing else escapes."""
    try:
        cache = parse_ldcache(data, "/fuzz/ld.so.cache")
    except CacheError as exc:
        assert str(exc).startswith("/fuzz/ld.so.cache: ")
        return
    ldconfig_print(cache)
    for e in cache.entries:
        cache.lookup(e.key, NATIVE, BUILTIN_HWCAPS, cpu_isa_1=0xF)
        cache.lookup(e.key, frozenset({1, 3}))


@pytest.mark.parametrize("fmt", ["new", "compat", "old"])
def test_every_truncation_is_a_cache_error(small_caches: dict[str, bytes], fmt: str) -> None:
    data = small_caches[fmt]
    parse_ldcache(data)  # the whole file is fine
    for size in range(len(data)):
        with pytest.raises(CacheError):
            parse_ldcache(data[:size])


def test_targeted_corruptions(small_caches: dict[str, bytes]) -> None:
    new = small_caches["new"]

    def patched(offset: int, fmt: str, value: int, base: bytes = new) -> bytes:
        return base[:offset] + struct.pack(fmt, value) + base[offset + struct.calcsize(fmt) :]

    bad = {
        "bad magic": b"glibc-ld.so.cache1.2" + new[20:],
        "huge nlibs": patched(20, "<I", 0xFFFFFFFF),
        "key offset out of range": patched(48 + 4, "<I", len(new)),
        "value offset out of range": patched(48 + 8, "<I", 0xFFFFFFF0),
        "flagged invalid": patched(28, "<B", 1),
        "flags without byte order": patched(28, "<B", 4),
        "misaligned extension": patched(32, "<I", struct.unpack_from("<I", new, 32)[0] + 2),
        "extension past end": patched(32, "<I", (len(new) + 4) & ~3),
        "old nlibs huge": patched(12, "<I", 0x7FFFFFFF, small_caches["old"]),
    }
    for what, data in bad.items():
        with pytest.raises(CacheError):
            parse_ldcache(data)
        assert what  # each case is named for the report


@given(data=st.data())
@FUZZ
def test_fuzzed_caches_raise_only_cache_error(small_caches: dict[str, bytes], data: st.DataObject) -> None:
    blob = bytearray(small_caches[data.draw(st.sampled_from(["new", "compat", "old"]))])
    for _ in range(data.draw(st.integers(0, 6))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        if data.draw(st.booleans()):
            blob[pos] = data.draw(st.integers(0, 255))
        else:
            word = data.draw(st.sampled_from([0, 1, 3, 0x7FFFFFFF, 0xFFFFFFFF, len(blob)]))
            blob[pos : pos + 4] = struct.pack("<I", word)[: len(blob) - pos]
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    check_robust(bytes(blob))


@given(st.binary(max_size=300))
@FUZZ
def test_random_bytes_after_magic(tail: bytes) -> None:
    for magic in (b"glibc-ld.so.cache1.1", b"ld.so-1.7.0", b""):
        check_robust(magic + tail)


# -------------------------------------------------------------------- loading from a root


def test_load_ldcache_in_root(tmp_path: Path) -> None:
    # A fresh Root per step: Root caches directory lookups for one unchanging tree.
    assert load_ldcache(Root(str(tmp_path))) is None  # absent
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ld.so.cache").write_bytes(b"")
    assert load_ldcache(Root(str(tmp_path))) is None  # empty: ld.so runs without a cache
    entries = host_cache().entries[:3]
    (tmp_path / "c").mkdir()
    (tmp_path / "c/real.cache").write_bytes(write_new(entries))
    (tmp_path / "etc/ld.so.cache").unlink()
    # An absolute link is resolved inside the root, not on the host.
    os.symlink("/c/real.cache", tmp_path / "etc/ld.so.cache")
    os.symlink("/etc/loop", tmp_path / "etc/loop")
    root = Root(str(tmp_path))
    loaded = load_ldcache(root)
    assert loaded is not None and loaded.entries == entries
    with pytest.raises(CacheError, match="limit"):
        load_ldcache(root, max_size=100)
    with pytest.raises(CacheError):
        load_ldcache(root, "/etc/loop")  # a link loop
    with pytest.raises(CacheError):
        load_ldcache(root, "/c")  # a directory


def test_parse_error_names_the_file() -> None:
    with pytest.raises(CacheError) as info:
        parse_ldcache(b"nonsense", "/img/etc/ld.so.cache")
    assert info.value.path == "/img/etc/ld.so.cache"
    assert "magic" in info.value.problem
