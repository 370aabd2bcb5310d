"""Per-architecture loader parameters (Debian multiarch builds of glibc).

ld.so's search depends on constants compiled into it: the system directories,
``$LIB``, ``$PLATFORM``, the hwcaps subdirectory names and the ld.so.cache flags
it accepts.  They are read off ``ld.so --list-diagnostics`` on reference
machines (x86-64 verified; others follow Debian's multiarch layout), never from
the target, which depmin never runs.
"""

from __future__ import annotations

from dataclasses import dataclass

ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2

# Cache entry flags: type & 0xff (3 = ELF libc6), ABI & 0xff00.
FLAG_ELF_LIBC6 = 0x0003
FLAG_ELF = 0x0001


@dataclass(frozen=True)
class Arch:
    """One loader flavour: which files it accepts and where it looks."""

    name: str  # Debian architecture name
    triplet: str  # multiarch tuple
    elfclass: int
    data: int
    machine: int  # e_machine
    interpreter: str  # canonical PT_INTERP
    cache_flags: frozenset[int]
    platform: str  # default AT_PLATFORM ($PLATFORM)
    hwcaps: tuple[str, ...] = ()  # glibc-hwcaps names, best first
    extra_machines: frozenset[int] = frozenset()

    @property
    def lib(self) -> str:
        """Debian patches ``$LIB`` to ``lib/<triplet>``."""
        return f"lib/{self.triplet}"

    @property
    def system_dirs(self) -> tuple[str, ...]:
        t = self.triplet
        return (f"/lib/{t}/", f"/usr/lib/{t}/", "/lib/", "/usr/lib/")

    def accepts(self, elfclass: int, machine: int) -> bool:
        """ld.so's elf_machine_matches_host plus the class check (skip, not fail)."""
        return elfclass == self.elfclass and (
            machine == self.machine or machine in self.extra_machines
        )

    def active_hwcaps(self, level: int) -> tuple[str, ...]:
        """glibc-hwcaps subdirectories active at an ISA level (0 = baseline).

        Names are best first; for x86-64 level N activates x86-64-v2..vN.
        """
        if not self.hwcaps or level <= 0:
            return ()
        if self.name == "amd64":
            return tuple(f"x86-64-v{n}" for n in range(min(level, 4), 1, -1))
        return self.hwcaps[len(self.hwcaps) - min(level, len(self.hwcaps)) :]


_ARCHES = (
    Arch("amd64", "x86_64-linux-gnu", ELFCLASS64, ELFDATA2LSB, 62,
         "/lib64/ld-linux-x86-64.so.2", frozenset({0x303}), "x86_64",
         ("x86-64-v4", "x86-64-v3", "x86-64-v2")),
    Arch("x32", "x86_64-linux-gnux32", ELFCLASS32, ELFDATA2LSB, 62,
         "/libx32/ld-linux-x32.so.2", frozenset({0x803}), "x86_64"),
    Arch("i386", "i386-linux-gnu", ELFCLASS32, ELFDATA2LSB, 3,
         "/lib/ld-linux.so.2", frozenset({FLAG_ELF, FLAG_ELF_LIBC6}), "i686"),
    Arch("arm64", "aarch64-linux-gnu", ELFCLASS64, ELFDATA2LSB, 183,
         "/lib/ld-linux-aarch64.so.1", frozenset({0xA03}), "aarch64"),
    Arch("armhf", "arm-linux-gnueabihf", ELFCLASS32, ELFDATA2LSB, 40,
         "/lib/ld-linux-armhf.so.3", frozenset({0x903}), "v7l"),
    Arch("armel", "arm-linux-gnueabi", ELFCLASS32, ELFDATA2LSB, 40,
         "/lib/ld-linux.so.3", frozenset({FLAG_ELF, FLAG_ELF_LIBC6}), "v5l"),
    Arch("ppc64el", "powerpc64le-linux-gnu", ELFCLASS64, ELFDATA2LSB, 21,
         "/lib64/ld64.so.2", frozenset({0x503}), "power8", ("power10", "power9")),
    Arch("s390x", "s390x-linux-gnu", ELFCLASS64, ELFDATA2MSB, 22,
         "/lib/ld64.so.1", frozenset({0x403}), "z196",
         ("z17", "z16", "z15", "z14", "z13")),
    Arch("mips64el", "mips64el-linux-gnuabi64", ELFCLASS64, ELFDATA2LSB, 8,
         "/lib64/ld.so.1", frozenset({0x703, 0xE03}), "mips64"),
    Arch("riscv64", "riscv64-linux-gnu", ELFCLASS64, ELFDATA2LSB, 243,
         "/lib/ld-linux-riscv64-lp64d.so.1", frozenset({0x1003}), "riscv64"),
    Arch("loong64", "loongarch64-linux-gnu", ELFCLASS64, ELFDATA2LSB, 258,
         "/lib64/ld-linux-loongarch-lp64d.so.1", frozenset({0x1203}), "loongarch64"),
)  # fmt: skip


def all_arches() -> tuple[Arch, ...]:
    return _ARCHES


def arch_by_name(name: str) -> Arch:
    for a in _ARCHES:
        if a.name == name or a.triplet == name:
            return a
    raise KeyError(name)


def arch_for(elfclass: int, data: int, machine: int, interp: str | None = None) -> Arch | None:
    """The loader flavour an object belongs to (interp tells armel from armhf)."""
    found = [
        a for a in _ARCHES if a.elfclass == elfclass and a.data == data and a.machine == machine
    ]
    if interp and len(found) > 1:
        for a in found:
            if a.interpreter.rsplit("/", 1)[-1] == interp.rsplit("/", 1)[-1]:
                return a
    return found[0] if found else None
