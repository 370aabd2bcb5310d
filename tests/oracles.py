"""Helpers that ask the real tools (ldd, ld.so, gcc, pyenv) for the answers depmin must give.

Used only on trusted files (the host's own and fixtures the tests compile):
ldd runs the loader, which is exactly what depmin itself never does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

LDSO = "/lib64/ld-linux-x86-64.so.2"
_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def host_isa_level() -> int:
    """The highest x86-64 ISA level this CPU supports, read from ld.so --help."""
    out = subprocess.run([LDSO, "--help"], capture_output=True, text=True, env=_ENV).stdout
    levels = [int(m) for m in re.findall(r"x86-64-v(\d) \(supported", out)]
    return max(levels, default=1)


def ldd(path: str, env: Optional[dict[str, str]] = None) -> tuple[set[str], str]:
    """Real paths ldd resolves for ``path`` (vdso aside), and its raw output.

    ``not found`` entries are reported as ``"<name> => not found"`` strings in the set.
    """
    full_env = dict(_ENV, **(env or {}))
    p = subprocess.run(["ldd", path], capture_output=True, text=True, env=full_env,
                       errors="surrogateescape")  # fmt: skip
    found: set[str] = set()
    for line in p.stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        if "=>" in parts:
            i = parts.index("=>")
            target = parts[i + 1] if len(parts) > i + 1 else ""
            if target == "not":
                found.add(f"{parts[0]} => not found")
            elif target.startswith("/"):
                found.add(os.path.realpath(target))
        elif parts[0].startswith("/"):
            found.add(os.path.realpath(parts[0]))
    return found, p.stdout + p.stderr


def ldd_order(path: str, env: Optional[dict[str, str]] = None) -> list[str]:
    """ldd's lines, load addresses stripped, for exact comparisons with ``depmin ldd``."""
    full_env = dict(_ENV, **(env or {}))
    p = subprocess.run(["ldd", path], capture_output=True, text=True, env=full_env)
    lines = []
    for line in p.stdout.splitlines():
        if "linux-vdso" in line:
            continue
        lines.append(re.sub(r" \(0x[0-9a-f]+\)$", "", line))
    return lines


def pyenv_versions() -> list[Path]:
    """CPython installations pyenv built from source on this machine."""
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
    if not root:
        root = os.path.expanduser("~/.pyenv")
    versions = Path(root) / "versions"
    if not versions.is_dir():
        return []
    return sorted(p for p in versions.iterdir() if p.is_dir() and not p.is_symlink())


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
