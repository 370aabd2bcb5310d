"""Ask apt itself (python-apt, in memory) what a set of marks would make garbage.

python-apt exists only as Debian's python3-apt, built for Debian's own python3,
and ``apt_pkg.init_config`` is process-global: so the check always runs in a
child interpreter that can import it (this one if it can, else /usr/bin/python3),
shown a root other than '/' as apt-get -s is (apt.md §8.3), the package caches
disabled and nothing committed.  Marks are set inside one
ActionGroup, then ``is_garbage`` is read (apt.md §8.2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence

from depmin.errors import CheckError
from depmin.rootfs import Root

_SCRIPT = r"""
import json, sys
import apt_pkg
req = json.load(sys.stdin)
apt_pkg.init_config()
apt_pkg.config.set("Dir::Cache::pkgcache", "")
apt_pkg.config.set("Dir::Cache::srcpkgcache", "")
for item in req["overrides"]:
    key, _, value = item.partition("=")
    apt_pkg.config.set(key, value)
apt_pkg.init_system()
cache = apt_pkg.Cache(None)
dep = apt_pkg.DepCache(cache)
manual = set(req["manual"])
with apt_pkg.ActionGroup(dep):
    for p in cache.packages:
        if p.current_ver is not None:
            dep.mark_auto(p, True)
    for p in cache.packages:
        if p.current_ver is not None and (
            f"{p.name}:{p.architecture}" in manual or p.name in manual
        ):
            dep.mark_auto(p, False)
out = sorted(f"{p.name}:{p.architecture}" for p in cache.packages
             if p.current_ver is not None and dep.is_garbage(p))
json.dump(out, sys.stdout)
"""


def apt_python() -> str | None:
    """An interpreter that can import apt_pkg, or None."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if exe and os.access(exe, os.X_OK):
            ok = subprocess.run(
                [exe, "-c", "import apt_pkg"], capture_output=True, env={"PATH": "/usr/bin:/bin"}
            )
            if ok.returncode == 0:
                return exe
    return None


def garbage_with_apt(
    root: Root,
    manual: Iterable[str],
    overrides: Sequence[str] = (),
    native_arch: str = "amd64",
) -> frozenset[str]:
    """``name:arch`` of every package apt would autoremove with ``manual`` as the only manual set.

    Names in ``manual`` may be ``name`` or ``name:arch``; apt names Architecture: all
    packages with the native architecture.  apt sees the root through
    :func:`~depmin.debian.aptstate.apt_view`, as apt-get -s does.
    """
    from depmin.debian.aptstate import apt_view

    exe = apt_python()
    if exe is None:
        raise CheckError("python3-apt (apt_pkg) is not importable: cannot check with apt")
    with apt_view(root, native_arch, "") as view:
        env = dict(view.env, PYTHONDONTWRITEBYTECODE="1")
        given = [kv for kv in view.options if kv != "-o"]
        payload = json.dumps({"manual": sorted(set(manual)), "overrides": [*given, *overrides]})
        proc = subprocess.run(
            [exe, "-c", _SCRIPT], input=payload, capture_output=True, text=True, env=env
        )
    if proc.returncode != 0:
        raise CheckError(f"python-apt check failed: {proc.stderr.strip().splitlines()[-1:]}")
    return frozenset(json.loads(proc.stdout))
