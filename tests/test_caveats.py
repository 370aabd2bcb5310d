"""The two cost warnings (issue #12, "no extra flags"), checked against apt's own simulation.

On a pyenv CPython tree of this machine, whose _tkinter links Tk: the warning that
one module alone keeps some packages must name exactly the packages that
``apt-get -s purge --auto-remove`` purges once that module is excluded (and only
then); the warning about Recommends must count exactly what apt-get -s purges
more with ``APT::AutoRemove::RecommendsImportant=false``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from depmin.api import RunOptions, plan_run
from depmin.debian.aptstate import simulate_purge
from tests.oracles import pyenv_versions

RI = "APT::AutoRemove::RecommendsImportant"
TREES = [v for v in pyenv_versions() if list(v.glob("lib/python3*/lib-dynload/_tkinter*.so"))]
pytestmark = pytest.mark.skipif(not TREES, reason="no pyenv CPython with _tkinter on this machine")


def purged(opts: RunOptions) -> tuple[set[str], list[str]]:
    run = plan_run(opts)
    manual = list(run.plan.baseline) + list(run.plan.keep)
    sim = simulate_purge(run.root, run.graph, manual, opts.overrides)
    return set(sim.purged), list(run.warnings)


@pytest.fixture(scope="module")
def tree() -> Path:
    return TREES[-1]


def test_a_heavy_module_names_what_apt_purges_without_it(tree: Path) -> None:
    opts = RunOptions(trees=(str(tree),), allow_missing=True, overrides=(f"{RI}=false",))
    with_tk, warnings = purged(opts)
    [warning] = [w for w in warnings if " alone keeps " in w]
    m = re.fullmatch(r"(\S+) alone keeps (\d+) packages \(([\d.]+) MiB: (.*)\); if the image does not need "
                     r"it, add --exclude '(\S+)'", warning)  # fmt: skip
    assert m, warning
    module, count, _size, names, pattern = m.groups()
    assert "/_tkinter." in module and pattern == Path(module).name
    without_tk, later = purged(RunOptions(trees=(str(tree),), allow_missing=True,
                                          overrides=opts.overrides, exclude=(pattern,)))  # fmt: skip
    extra = without_tk - with_tk
    assert len(extra) == int(count), sorted(extra)
    shown = [n for n in re.split(r", | and \d+ more", names) if n]
    assert set(shown) <= {n.split(":")[0] for n in extra}
    assert not [w for w in later if " alone keeps " in w]


def test_recommends_only_is_what_apt_purges_more_without_recommends(tree: Path) -> None:
    keep = RunOptions(trees=(str(tree),), allow_missing=True, exclude=("*tkinter*",))
    default, warnings = purged(keep)
    [warning] = [w for w in warnings if "stay only because a kept package Recommends them" in w]
    count = int(warning.split()[0])
    stricter, later = purged(RunOptions(trees=keep.trees, allow_missing=True, exclude=keep.exclude,
                                        overrides=(f"{RI}=false",)))  # fmt: skip
    assert len(stricter - default) == count and default <= stricter
    assert "add -o APT::AutoRemove::RecommendsImportant=false" in warning
    assert not [w for w in later if "Recommends them" in w]
