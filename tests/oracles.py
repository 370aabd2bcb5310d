"""Helpers that ask the real tools (ldd, ld.so, gcc, pyenv) for the answers depmin must give.

Used only on trusted files (the host's own and fixtures the tests compile):
ldd runs the loader, which is exactly what depmin itself never does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

LDSO = "/lib64/ld-linux-x86-64.so.2"
_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def host_isa_level() -> int:
    """The highest x86-64 ISA level this CPU supports, read from ld.so --help."""
    out = subprocess.run([LDSO, "--help"], capture_output=True, text=True, env=_ENV).stdout
    levels = [int(m) for m in re.findall(r"x86-64-v(\d) \(supported", out)]
    return max(levels, default=1)


def ldd(path: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Real paths ldd resolves for ``path`` (vdso aside), and its raw output.

    ``not found`` entries are reported as ``"<name> => not found"`` strings in the set.
    """
    full_env = dict(_ENV, **(env or {}))
    p = subprocess.run(["ldd", path], capture_output=True, text=True, env=full_env, errors="surrogateescape")
    return parse_trace(p.stdout, os.path.realpath), p.stdout + p.stderr


def parse_trace(text: str, canonical: Callable[[str], str]) -> set[str]:
    """The answer in ld.so's trace output: canonical paths and ``"<name> => not found"``."""
    found: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if "=>" in parts:
            i = parts.index("=>")
            target = parts[i + 1] if len(parts) > i + 1 else ""
            if target == "not":
                found.add(f"{parts[0]} => not found")
            elif target.startswith("/"):
                found.add(canonical(target))
        elif parts[0].startswith("/"):
            found.add(canonical(parts[0]))
    return found


def trace_exec(path: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Like :func:`ldd`, but the kernel starts ``path`` itself (LD_TRACE_LOADED_OBJECTS=1).

    ldd runs ``ld.so FILE``, so the main program's $ORIGIN is the directory of the
    path as given; started by the kernel, ld.so takes it from /proc/self/exe, the
    canonical path.  Only for fixtures the tests built themselves: the file is run.
    """
    full_env = dict(_ENV, LD_TRACE_LOADED_OBJECTS="1", **(env or {}))
    p = subprocess.run([path], capture_output=True, text=True, env=full_env, errors="surrogateescape")
    return parse_trace(p.stdout, os.path.realpath), p.stdout + p.stderr


_CHROOT_TRACE = """
import json, os, subprocess, sys
root, env, argv = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
try:
    os.chroot(root)
except OSError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
os.chdir("/")
p = subprocess.run(argv, capture_output=True, env=env)
out, err = os.fsdecode(p.stdout), os.fsdecode(p.stderr)
words = {w for w in out.split() if w.startswith("/")}
print(json.dumps({"stdout": out, "stderr": err, "real": {w: os.path.realpath(w) for w in words}}))
"""


def chroot_trace(
    root: str, path: str, env: dict[str, str] | None = None, direct: bool = False
) -> tuple[set[str], str] | None:
    """ld.so's own answer for ``path`` inside ``root``, or None when chroot is not permitted.

    A Python child chroots (so the kernel, not depmin, resolves every link inside
    the root), then runs ``ld.so path`` under LD_TRACE_LOADED_OBJECTS=1 (what ldd
    does) or, with ``direct``, the program itself; printed paths are made
    canonical inside the root too.  The root must hold the loader and libc.
    """
    full_env = dict(_ENV, LD_TRACE_LOADED_OBJECTS="1", **(env or {}))
    argv = [path] if direct else [LDSO, path]  # ldd's own call; --list would stop at a miss
    p = subprocess.run(
        [sys.executable, "-c", _CHROOT_TRACE, root, json.dumps(full_env), *argv],
        capture_output=True,
        text=True,
        env=_ENV,
    )
    if p.returncode != 0:
        raise RuntimeError(f"chroot helper failed: {p.stderr}")
    got = json.loads(p.stdout)
    if "error" in got:
        return None
    real: dict[str, str] = got["real"]
    return parse_trace(got["stdout"], lambda w: real.get(w, w)), got["stdout"] + got["stderr"]


def ldd_order(path: str, env: dict[str, str] | None = None) -> list[str]:
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


def loader_diagnostics() -> dict[str, str]:
    """``ld.so --list-diagnostics`` as key => value (string values unquoted)."""
    out = subprocess.run([LDSO, "--list-diagnostics"], capture_output=True, text=True, env=_ENV).stdout
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value[1:-1] if value.startswith('"') and value.endswith('"') else value
    return values


def gcc(out: Path, source: str, *args: str) -> Path:
    """Compile and link C ``source`` into ``out`` with the host gcc (arguments after the source).

    The source comes from stdin so no ``.c`` file lands in a fixture directory.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-x", "c", "-", "-x", "none", *args, "-o", str(out)]
    p = subprocess.run(cmd, input=source, capture_output=True, text=True, env=_ENV)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr}")
    return out


def gcc_can_link(*args: str) -> bool:
    """Whether gcc can build a trivial program with these flags (e.g. -m32 needs multilib)."""
    p = subprocess.run(
        ["gcc", "-x", "c", "-", *args, "-o", os.devnull],
        input="int main(void) { return 0; }\n",
        capture_output=True,
        text=True,
        env=_ENV,
    )
    return p.returncode == 0


def dynamic_tags(path: Path) -> list[tuple[str, str]]:
    """``readelf -dW`` as (TAG, value); string values without their brackets."""
    out = subprocess.run(
        ["readelf", "-dW", str(path)], capture_output=True, text=True, env=_ENV, check=True
    ).stdout
    tags: list[tuple[str, str]] = []
    for line in out.splitlines():
        m = re.match(r"\s*0x[0-9a-f]+\s+\((\w+)\)\s+(.*)$", line)
        if m:
            value = m.group(2)
            b = re.search(r"\[(.*)\]$", value)
            tags.append((m.group(1), b.group(1) if b else value))
    return tags
