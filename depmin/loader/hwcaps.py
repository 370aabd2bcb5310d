"""The hardware-capability subdirectories ld.so tries in every search directory.

glibc 2.33 added ``glibc-hwcaps/<name>`` subdirectories (``elf/dl-hwcaps.c``:
x86-64-v2..v4 by the CPU's ISA level, best first); up to 2.36 the legacy
``tls``/hwcap/platform subdirectories are tried too (``_dl_important_hwcaps``).
Which of them exist is the file view's business; here are only the names.
"""

from __future__ import annotations

from depmin.loader.arch import Arch


def legacy_subdirs(platform: str, hwcap_names: tuple[str, ...] = ()) -> tuple[str, ...]:
    """glibc ≤ 2.36's legacy hwcap subdirectories, best first, ending with "".

    Every subset of [tls, hwcap names..., platform] in descending bitmask order,
    tls being the most significant bit; on x86-64 (hwcap "x86_64", platform
    "x86_64") this gives the verified order tls/x86_64/x86_64, tls/x86_64, tls,
    x86_64/x86_64, x86_64, "".
    """
    parts = ("tls",) + hwcap_names + (platform,)
    k = len(parts)
    seen: list[str] = []
    for mask in range((1 << k) - 1, -1, -1):
        sub = "/".join(p for bit, p in enumerate(parts) if mask & (1 << (k - 1 - bit)))
        if sub not in seen:
            seen.append(sub)
    return tuple(seen)


def subdir_names(arch: Arch, glibc: tuple[int, int], isa_level: int, platform: str) -> list[str]:
    """Every hwcaps subdirectory a glibc of this version tries, best first (without "")."""
    names = []
    if glibc >= (2, 33):  # glibc-hwcaps subdirectories arrived in 2.33
        names += [f"glibc-hwcaps/{h}" for h in arch.active_hwcaps(isa_level)]
    if glibc <= (2, 36):
        hw = ("x86_64",) if arch.name == "amd64" else ()
        names += [d for d in legacy_subdirs(platform, hw) if d]
    return names
