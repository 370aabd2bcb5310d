"""scripts/e2e: depmin against the pipelines it replaces, in a real bookworm root (issue #6).

One run of the script builds (or reuses) a debootstrap root, runs the RUN step of
Dockerfile.example in it, then depmin, the seed pipeline and the official pipeline,
each in its own copy, and writes its raw observations as JSON.  The assertions
compare depmin with the oracles the script recorded inside each root after the
purge: the ELF magic and e_type of every file in /usr/local, ldd's ``not found``
lines, the smoke commands' exit statuses, dpkg's status and apt-mark's manual set.

The script needs root (debootstrap, chroot, unshare) and the Debian mirror; it never
installs anything on this machine when run from here (DEPMIN_E2E_INSTALL=no), so
debootstrap must already be installed (.ci/run installs it).  The roots live under
tmp_path; the cache in DEPMIN_E2E_CACHE (default ~/.cache/depmin-e2e).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "e2e"
PIPELINES = ("seed", "official")


def _mirror() -> tuple[str, int] | None:
    """Host and port of the bookworm mirror this machine's apt sources name."""
    if shutil.which("apt-get") is None:
        return None
    proc = subprocess.run(
        ["apt-get", "indextargets", "--no-release-info", "--format", "$(RELEASE) $(REPO_URI)",
         "Identifier: Packages"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        release, _, uri = line.partition(" ")
        if release == "bookworm":
            u = urlsplit(uri)
            if u.hostname:
                return u.hostname, u.port or (443 if u.scheme == "https" else 80)
    return None


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=10):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class E2E:
    results: dict[str, Any]
    stdout: str
    markdown: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    if os.geteuid() != 0:
        pytest.skip("scripts/e2e needs root (debootstrap, chroot, unshare)")
    mirror = _mirror()
    if mirror is None or not _reachable(*mirror):
        pytest.skip(f"no network to the Debian mirror named by this machine's apt sources ({mirror})")
    assert shutil.which("debootstrap"), "debootstrap is not installed (.ci/run installs it)"
    tmp = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "DEPMIN_E2E_WORK": str(tmp),
        "DEPMIN_E2E_OUT": str(tmp / "e2e-results.md"),
        "DEPMIN_E2E_RESULTS": str(tmp / "results.json"),
        "DEPMIN_E2E_INSTALL": "no",
    }
    proc = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp / "results.json").read_text())
    yield E2E(results, proc.stdout, (tmp / "e2e-results.md").read_text(), env)


def _smoke(variant: dict[str, Any], command: str) -> dict[str, Any]:
    hits = [s for s in variant["smoke"] if s["command"] == command]
    assert len(hits) == 1, f"no smoke command {command!r}"
    return hits[0]


def test_depmin_keeps_everything_the_software_in_usr_local_needs(e2e: E2E) -> None:
    d = e2e.results["variants"]["depmin"]
    assert d["step_rc"] == 0
    # Every program and shared object in /usr/local (by magic and e_type) was verified...
    loadable = [e for e in d["elf_files"] if e["type"] in (2, 3)]
    assert loadable, "no ELF files in /usr/local"
    assert d["verify"]["objects"] == len(loadable)
    assert d["verify_host"]["objects"] == len(loadable)
    # ...and resolves, inside the root and from outside, as ldd confirms.
    assert d["verify"]["ok"] and d["verify_host"]["ok"]
    assert d["ldd_missing"] == []
    failed = [s for s in d["smoke"] if s["rc"] != 0]
    assert failed == []
    assert d["needed_lost"] == []


def test_depmin_marks_exactly_the_baseline_and_its_keep_list(e2e: E2E) -> None:
    r = e2e.results
    d = r["variants"]["depmin"]
    assert d["marked"], "depmin kept nothing beyond the baseline"
    assert set(d["manual"]) == set(r["baseline"]) | {m.split(":")[0] for m in d["marked"]}
    assert not d["debian_python3_left"], "Debian's python3 (installed for the proof) was not purged"


def test_verify_agrees_with_ldd_in_every_root(e2e: E2E) -> None:
    for name, v in e2e.results["variants"].items():
        assert v["verify"]["ran"] and v["verify_host"]["ran"], name
        assert v["verify"]["missing"] == v["ldd_missing"], name
        assert v["verify_host"]["missing"] == v["ldd_missing"], name
        assert v["verify"]["ok"] == (not v["ldd_missing"]), name


def test_the_seed_pipeline_loses_what_dpkg_records_under_usr_lib(e2e: E2E) -> None:
    s = e2e.results["variants"]["seed"]
    sqlite = _smoke(s, "python3 -c 'import sqlite3'")
    assert sqlite["rc"] != 0 and "libsqlite3.so.0" in sqlite["output"]
    assert "libsqlite3.so.0" in s["ldd_missing"]
    assert "libsqlite3-0" in s["needed_lost"]
    ssl = _smoke(s, "python3 -c 'import ssl'")
    if ssl["rc"] == 0:
        # The seed never marks libssl3 (ldd prints /lib/..., dpkg records /usr/lib/...):
        # it survives only when a package the seed did mark depends on it.
        assert not any(m.split(":")[0] == "libssl3" for m in s["marked"])
        chain = s["needed_kept_by_dependency"].get("libssl3")
        assert chain and chain[-1] == "libssl3" and chain[0] in s["manual"]
    else:
        assert "libssl3" in s["needed_lost"]


def test_every_pipeline_failure_is_a_missing_library(e2e: E2E) -> None:
    for name in PIPELINES:
        v = e2e.results["variants"][name]
        for s in v["smoke"]:
            if s["rc"] != 0:
                assert any(lib in s["output"] for lib in v["ldd_missing"]), (name, s)


def test_debian_python3_runs_the_zipapp_alone(e2e: E2E) -> None:
    p = e2e.results["proof"]
    assert p["rc"] == 0
    assert p["keep_debian_python"] and p["keep_debian_python"] == p["keep_local_python"]
    (line,) = p["python"]
    assert line.startswith("/usr/bin/python3 3.")
    paths = line.split(" ", 2)[2]
    assert "/usr/local" not in paths and "packages" not in paths


def test_the_table_is_printed_and_written(e2e: E2E, report: Callable[[str], None]) -> None:
    header = "| | depmin | pipeline (seed, 2020) | pipeline (official, 2025) |"
    assert header in e2e.stdout
    assert header in e2e.markdown
    r = e2e.results
    report(
        f"e2e: cache stage 1 {r['cache']['stage1']}, stage 2 {r['cache']['stage2']}; "
        f"build {r['build_seconds']} s, whole run {r['total_seconds']} s; "
        + ", ".join(
            f"{k}: {len(v['installed'])} packages, {v['size_kib'] // 1024} MiB"
            for k, v in r["variants"].items()
        )
    )


def test_a_second_run_reuses_the_cached_roots_without_network(e2e: E2E) -> None:
    proc = subprocess.run(
        ["unshare", "--net", str(SCRIPT), "--prepare"],
        env=e2e.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["stage1", "reused", "stage2", "reused"]
