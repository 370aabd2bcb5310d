"""scripts/e2e on trixie: the official python and redis images built from upstream source,
depmin in place of the pipeline, beside the official pipeline in a copy of the same root.

One run of the script (``--suite trixie``, both images) builds or reuses its cached
roots and writes its raw observations as JSON; these tests read them.  The oracles
the script recorded inside each root after the purge: dpkg's installed set, apt-mark's
manual set, ``ldd`` of every ELF file in /usr/local, every lib-dynload module imported
alone, pip and venv, redis-server answering PING; and ``depmin plan`` run before the
purge, for what was needed.  The official pipeline is measured, not judged: its
losses are what depmin is for, and a test says what they are.

Needs root, debootstrap, unshare and zstd (.ci/run installs them), and the Debian
mirror until the cache (DEPMIN_E2E_CACHE, default ~/.cache/depmin-e2e) holds the
stage tarballs.  Nothing of this machine changes: roots live under tmp_path, the
table goes to a scratch copy of docs/e2e-results.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
IMAGES = ("python", "redis")


@dataclass(frozen=True)
class Run:
    rc: int
    stderr: str
    results: dict[str, Any]
    markdown: str


@pytest.fixture(scope="module")
def trixie(tmp_path_factory: pytest.TempPathFactory) -> Run:
    if os.geteuid() != 0:
        pytest.skip("scripts/e2e needs root (debootstrap, chroot, unshare)")
    for tool in ("debootstrap", "unshare", "zstd"):
        assert shutil.which(tool), f"{tool} is not installed (.ci/run installs it)"
    tmp = tmp_path_factory.mktemp("e2e")
    doc = tmp / "e2e-results.md"
    shutil.copy(REPO / "docs/e2e-results.md", doc)
    env = dict(
        os.environ,
        DEPMIN_E2E_WORK=str(tmp),
        DEPMIN_E2E_OUT=str(doc),
        DEPMIN_E2E_RESULTS=str(tmp / "results.json"),
    )
    p = subprocess.run(
        [sys.executable, str(REPO / "scripts/e2e"), "--suite", "trixie"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert p.returncode in (0, 1), p.stderr[-4000:]  # 2: it could not set up
    return Run(p.returncode, p.stderr, json.loads((tmp / "results.json").read_text()), doc.read_text())


def variant(run: Run, image: str, name: str) -> dict[str, Any]:
    return run.results[image]["variants"][name]  # type: ignore[no-any-return]


def test_the_script_passes_and_says_so(trixie: Run) -> None:
    assert trixie.rc == 0, [line for line in trixie.stderr.splitlines() if "FAIL" in line]
    assert "done: 0 failures" in trixie.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_depmin_runs_the_step_and_everything_still_works(trixie: Run, image: str) -> None:
    d = variant(trixie, image, "depmin")
    assert d["step_rc"] == 0 and d["later_rc"] == 0, d["step_tail"]
    failed = [s for s in d["smoke"] if s["rc"] != 0]
    assert not failed
    assert len(d["smoke"]) >= (60 if image == "python" else 3)  # every lib-dynload module, one by one
    assert d["ldd_missing"] == []
    assert d["verify_outside"]["ok"], d["verify_outside"]
    assert 0 < d["verify_outside"]["objects"] <= len(d["elf_files"])
    if image == "python":
        assert d["verify_inside"]["ok"], d["verify_inside"]


@pytest.mark.parametrize("image", IMAGES)
def test_depmin_keeps_every_needed_package_and_purges_the_build(trixie: Run, image: str) -> None:
    r = trixie.results[image]
    d = variant(trixie, image, "depmin")
    assert r["needed"], "depmin plan found nothing needed: the oracle saw no ELF"
    assert d["needed_lost"] == []
    installed = set(d["installed"])
    build = {"gcc", "make", "dpkg-dev", "libc6-dev", "libssl-dev"}
    assert not build & installed, "the build dependencies stayed"
    # apt-mark showmanual is the baseline plus depmin's keep list, nothing else
    assert set(d["manual"]) - set(r["baseline"]) == set(d["manual_beyond_baseline"])
    assert set(d["manual_beyond_baseline"]) <= set(r["needed"])


def test_redis_image_keeps_no_trace_of_depmin_or_python(trixie: Run) -> None:
    d = variant(trixie, "redis", "depmin")
    assert d["python_left"] == []
    assert d["verify_inside"] is None  # nothing left to run it with: verify ran before apply returned
    assert not [p for p in d["installed"] if p.startswith(("python3", "libpython3"))]


def test_the_official_pipeline_is_measured_the_same_way(trixie: Run, report: Callable[[str], None]) -> None:
    for image in IMAGES:
        d, o = variant(trixie, image, "depmin"), variant(trixie, image, "official")
        assert [s["test"] for s in d["smoke"]] == [s["test"] for s in o["smoke"]]
        assert o["step_rc"] == 0, o["step_tail"]
        lost = o["needed_lost"]
        # what the official pipeline loses is exactly what ldd then cannot find, or nothing
        assert bool(lost) == bool(o["ldd_missing"])
        report(
            f"e2e trixie {image}: depmin {len(d['installed'])} packages {d['size_kib'] // 1024} MiB, all "
            f"{len(d['smoke'])} smoke tests pass; official {len(o['installed'])} packages "
            f"{o['size_kib'] // 1024} MiB, {sum(s['rc'] != 0 for s in o['smoke'])} smoke tests fail, "
            f"needed packages purged: {len(lost)}"
        )


def test_every_warning_the_user_saw_is_in_the_document(trixie: Run) -> None:
    for image in IMAGES:
        for w in variant(trixie, image, "depmin")["warnings"]:
            assert f"- `{w}`" in trixie.markdown
    assert "<!-- e2e:trixie -->" in trixie.markdown and "### python on trixie" in trixie.markdown
