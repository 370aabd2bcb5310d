"""depmin's resolver on purpose-built fixtures, each checked against the real loader.

Every fixture is compiled here with gcc (loader.md §15) and run through ``ldd``;
depmin must give the same real paths and "not found" names, and the search step
that explains them.  The same fixtures are then copied into a temporary root
(absolute /lib -> /usr/lib style links, as Debian's ld.so link is absolute) and
must give the same answers there, while no path outside the root is touched.
Where this process may chroot, ld.so itself is asked inside the root too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from depmin.cli import main as cli_main
from depmin.loader.resolve import LoaderSettings, LoadResult, Outcome, Request, Resolver, Step
from depmin.rootfs import Root
from tests.oracles import (
    LDSO,
    chroot_trace,
    dynamic_tags,
    gcc,
    gcc_can_link,
    host_isa_level,
    ldd,
    ldd_order,
    loader_diagnostics,
    trace_exec,
)
from tests.spies import host_paths_touched, outside

EM_AARCH64 = 183
NODEFLIB = "-Wl,-z,nodefaultlib"  # DF_1_NODEFLIB; GNU ld has no "-z nodeflib"
LIBZ = "/lib/x86_64-linux-gnu/libz.so.1"
LOAD_ERROR = re.compile(r"error while loading shared libraries: (\S+): (.+)$", re.M)


# -- building fixtures --------------------------------------------------------------------


class Fixtures:
    """Builds libraries and programs under ``top`` with gcc.

    DT_NEEDED strings come from stubs: linking against a stub whose SONAME is the
    wanted string records exactly that string ('/', '$ORIGIN' and all), so the
    real library need not exist, or be findable, at link time.
    """

    def __init__(self, top: Path, stubs: Path) -> None:
        self.top = top
        self.stubs = stubs
        self._made: dict[str, Path] = {}

    def dir(self, rel: str) -> str:
        d = self.top / rel
        d.mkdir(parents=True, exist_ok=True)
        return str(d)

    def _stub(self, name: str) -> str:
        got = self._made.get(name)
        if got is None:
            digest = hashlib.sha256(name.encode()).hexdigest()[:16]
            got = gcc(
                self.stubs / f"stub-{digest}.so",
                "",
                "-shared",
                "-fPIC",
                "-nostdlib",
                f"-Wl,-soname,{name}",
            )
            self._made[name] = got
        return str(got)

    def _build(
        self,
        rel: str,
        source: str,
        needs: tuple[str, ...],
        rpath: str | None,
        runpath: str | None,
        args: tuple[str, ...],
    ) -> Path:
        flags = list(args)
        if rpath is not None:
            flags += ["-Wl,--disable-new-dtags", f"-Wl,-rpath,{rpath}"]
        if runpath is not None:
            flags += ["-Wl,--enable-new-dtags", f"-Wl,-rpath,{runpath}"]
        flags += ["-Wl,--no-as-needed", *(self._stub(n) for n in needs)]
        return gcc(self.top / rel, source, *flags)

    def lib(
        self,
        rel: str,
        *,
        soname: str | None = None,
        needs: tuple[str, ...] = (),
        rpath: str | None = None,
        runpath: str | None = None,
        args: tuple[str, ...] = (),
    ) -> Path:
        """A shared library; its SONAME defaults to its file name ("" for none)."""
        name = Path(rel).name if soname is None else soname
        tag = re.sub(r"\W", "_", rel)
        source = f"int fixture_{tag}(void) {{ return {len(rel)}; }}\n"
        extra = ("-shared", "-fPIC") + ((f"-Wl,-soname,{name}",) if name else ()) + args
        return self._build(rel, source, needs, rpath, runpath, extra)

    def exe(
        self,
        rel: str,
        *,
        needs: tuple[str, ...] = (),
        rpath: str | None = None,
        runpath: str | None = None,
        args: tuple[str, ...] = (),
    ) -> Path:
        return self._build(rel, "int main(void) { return 0; }\n", needs, rpath, runpath, args)

    def symlink(self, rel: str, target: str) -> Path:
        link = self.top / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        return link

    def write(self, rel: str, data: bytes) -> Path:
        path = self.top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


def set_machine(path: Path, machine: int) -> None:
    """Patch e_machine (offset 18, little-endian on x86-64) in place."""
    with open(path, "r+b") as f:
        f.seek(18)
        f.write(machine.to_bytes(2, "little"))


@dataclass(frozen=True)
class Case:
    """A program to resolve and how the process would be started."""

    exe: Path
    ld_library_path: str | None = None
    direct: bool = False  # oracle: run the program itself, not ``ld.so FILE`` (see trace_exec)

    @property
    def env(self) -> dict[str, str]:
        return {"LD_LIBRARY_PATH": self.ld_library_path} if self.ld_library_path else {}


# Each builder makes one fixture tree and returns the program that shows the rule.


def case_rpath_chain(fx: Fixtures) -> Case:
    a, b = fx.dir("A"), fx.dir("B")
    fx.lib("A/libO.so")
    fx.lib("B/libN.so")
    fx.lib("B/libM.so", needs=("libN.so", "libO.so"))  # no paths of its own
    fx.lib("A/libL.so", rpath=b, needs=("libM.so",))
    return Case(fx.exe("main", rpath=a, needs=("libL.so",)))


def case_runpath_blocks_rpath(fx: Fixtures) -> Case:
    """§15 test 1: libL's RUNPATH hides main's RPATH from libL's own requests."""
    a, lib = fx.dir("A"), fx.dir("L")
    fx.lib("A/libD.so")
    fx.lib("L/libC.so")
    fx.lib("L/libL.so", runpath="$ORIGIN", needs=("libC.so", "libD.so"))
    return Case(fx.exe("main", rpath=f"{a}:{lib}", needs=("libL.so",)))


def case_chain_through_runpath(fx: Fixtures) -> Case:
    """§15 test 2: libC (no paths) inherits main's RPATH through libL, which has RUNPATH."""
    a, lib = fx.dir("A"), fx.dir("L")
    fx.lib("A/libD.so")
    fx.lib("L/libC.so", needs=("libD.so",))
    fx.lib("L/libL.so", runpath="$ORIGIN", needs=("libC.so",))
    return Case(fx.exe("main", rpath=f"{a}:{lib}", needs=("libL.so",)))


def case_main_runpath_not_inherited(fx: Fixtures) -> Case:
    """§15 test 3."""
    x = fx.dir("X")
    fx.lib("X/libB.so")
    fx.lib("X/libA.so", needs=("libB.so",))
    return Case(fx.exe("main", runpath=x, needs=("libA.so",)))


def case_empty_runpath(fx: Fixtures) -> Case:
    """§15 test 11: an empty DT_RUNPATH still switches RPATH off; main-control has none."""
    a = fx.dir("A")
    fx.lib("A/libQ.so")
    fx.lib("A/libE0.so", runpath="", needs=("libQ.so",))
    fx.lib("A/libF0.so", needs=("libQ.so",))
    fx.exe("main-control", rpath=a, needs=("libF0.so",))
    return Case(fx.exe("main", rpath=a, needs=("libE0.so",)))


def case_origin_of_library(fx: Fixtures) -> Case:
    """§15 test 5: a library's $ORIGIN is the directory it was opened from, links unresolved."""
    link = fx.dir("link")
    fx.lib("real/libA.so", runpath="$ORIGIN", needs=("libB.so",))
    fx.symlink("link/libA.so", "../real/libA.so")
    fx.lib("link/libB.so")
    return Case(fx.exe("main", runpath=link, needs=("libA.so",)))


def case_origin_of_symlinked_main(fx: Fixtures) -> Case:
    """§15 test 5: a program started through a link has its canonical directory as $ORIGIN."""
    fx.lib("prog/real/lib/libO.so")
    fx.lib("prog/alias/lib/libO.so")
    fx.exe("prog/real/main", runpath="$ORIGIN/lib", needs=("libO.so",))
    return Case(fx.symlink("prog/alias/main", "../real/main"), direct=True)


def case_origin_in_braces(fx: Fixtures) -> Case:
    fx.lib("sub/libY.so")
    return Case(fx.exe("main", runpath="${ORIGIN}/sub", needs=("libY.so",)))


def case_lib_and_platform(fx: Fixtures) -> Case:
    """§15 test 8, with the directories placed where ld.so --list-diagnostics says."""
    diag = loader_diagnostics()
    t = fx.dir("t")
    fx.lib(f"t/{diag['dl_dst_lib']}/libLIB.so")
    fx.lib(f"t/{diag['dl_platform']}/libPLAT.so")
    fx.lib(f"t/{diag['dl_platform']}/libPLAT2.so")
    runpath = f"{t}/$LIB:{t}/$PLATFORM:{t}/${{PLATFORM}}"
    return Case(fx.exe("main", runpath=runpath, needs=("libLIB.so", "libPLAT.so", "libPLAT2.so")))


def case_literal_tokens(fx: Fixtures) -> Case:
    """§15 test 8: ``$ORIGINX`` is no token, nor is an unknown ``$FOO``: both stay literal."""
    x, foo = fx.dir("$ORIGINX"), fx.dir("$FOO")
    fx.lib("$ORIGINX/libX.so")
    fx.lib("$FOO/libF.so")
    return Case(fx.exe("main", runpath=f"{x}:{foo}", needs=("libX.so", "libF.so")))


def case_nodeflib(fx: Fixtures) -> Case:
    """§15 test 7, host half: a NODEFLIB object drops cache hits in system dirs.

    GNU ld spells the flag ``-z nodefaultlib``; it ignores ``-z nodeflib`` with a warning.
    """
    r = fx.dir("R")
    fx.lib("R/libR.so")
    fx.lib("R/libN.so", runpath="$ORIGIN", needs=("libR.so", "libz.so.1"), args=(NODEFLIB,))
    fx.lib("R/libN2.so", runpath="$ORIGIN", needs=("libR.so", "libz.so.1"))
    fx.exe("main-control", runpath=r, needs=("libN2.so",))
    fx.exe("main-nodeflib", args=(NODEFLIB,))  # even libc.so.6 is not found
    return Case(fx.exe("main", runpath=r, needs=("libN.so",)))


def case_wrong_machine(fx: Fixtures) -> Case:
    """§15 test 10: an aarch64-stamped copy earlier in the path is skipped."""
    a, b = fx.dir("A"), fx.dir("B")
    fx.lib("B/libE.so")
    shutil.copy(fx.top / "B/libE.so", fx.top / "A/libE.so")
    set_machine(fx.top / "A/libE.so", EM_AARCH64)
    fx.lib("B/libK.so")
    shutil.copy(fx.top / "B/libK.so", fx.top / "A/libK.so")
    set_machine(fx.top / "A/libK.so", EM_AARCH64)
    os.unlink(fx.top / "B/libK.so")  # only the wrong one left: "not found"
    return Case(fx.exe("main", runpath=f"{a}:{b}", needs=("libE.so", "libK.so")))


def case_wrong_class(fx: Fixtures) -> Case:
    """A 32-bit object is skipped like a wrong machine (needs no multilib: -nostdlib)."""
    a, b = fx.dir("A"), fx.dir("B")
    fx.lib("B/libE.so")
    for name in ("libE.so", "libK.so"):
        flags = ("-m32", "-shared", "-fPIC", "-nostdlib", f"-Wl,-soname,{name}")
        gcc(fx.top / "A" / name, "int f32(void) { return 32; }\n", *flags)
    return Case(fx.exe("main", runpath=f"{a}:{b}", needs=("libE.so", "libK.so")))


def case_not_elf(fx: Fixtures) -> Case:
    """§15 test 10: a text file with the library's name ends the load."""
    a, b = fx.dir("A"), fx.dir("B")
    fx.write("A/libE.so", b"/* GNU ld script */\nINPUT ( /nowhere/libE.so.1 )\n" + b"#" * 64)
    fx.lib("B/libE.so")
    return Case(fx.exe("main", runpath=f"{a}:{b}", needs=("libE.so",)))


def case_too_short(fx: Fixtures) -> Case:
    a, b = fx.dir("A"), fx.dir("B")
    fx.write("A/libE.so", b"\x7fELF short\n")
    fx.lib("B/libE.so")
    return Case(fx.exe("main", runpath=f"{a}:{b}", needs=("libE.so",)))


def case_needed_with_slash(fx: Fixtures) -> Case:
    """§2: names with '/' are opened as they are; libW.so in B proves no search happens."""
    b, direct = fx.dir("B"), fx.dir("direct")
    fx.lib("sub/libS.so")
    fx.lib("direct/libD.so")
    fx.lib("B/libW.so")
    needs = ("$ORIGIN/sub/libS.so", f"{direct}/libD.so", f"{fx.top}/nowhere/libW.so")
    return Case(fx.exe("main", runpath=b, needs=needs))


def case_soname_already_loaded(fx: Fixtures) -> Case:
    """§1: libX.so.1 is already in the process under another name, so libY's copy is unused."""
    a, b = fx.dir("a"), fx.dir("b")
    fx.lib("a/libXalias.so", soname="libX.so.1")
    fx.lib("c/libXpath.so", soname="libX.so.1")
    fx.lib("b/libX.so.1")
    fx.lib("a/libY.so", runpath=b, needs=("libX.so.1",))
    fx.exe("main-path", runpath=a, needs=(f"{fx.top}/c/libXpath.so", "libY.so"))
    fx.exe("main-control", runpath=a, needs=("libY.so",))
    return Case(fx.exe("main", runpath=a, needs=("libXalias.so", "libY.so")))


def case_missing_then_found(fx: Fixtures) -> Case:
    """A miss is not remembered: libA and libC both miss libX.so, then libB finds it."""
    r, r2 = fx.dir("R"), fx.dir("R2")
    fx.lib("R2/libX.so")
    fx.lib("R/libA.so", needs=("libX.so",))
    fx.lib("R/libC.so", needs=("libX.so",))
    fx.lib("R/libB.so", runpath=r2, needs=("libX.so",))
    return Case(fx.exe("main", runpath=r, needs=("libA.so", "libC.so", "libB.so")))


def case_bfs_shared(fx: Fixtures) -> Case:
    """§15 test 4: main's own libS request comes before libA's, breadth first."""
    m, a = fx.dir("M"), fx.dir("A")
    fx.lib("M/libS.so")
    fx.lib("A/libS.so")
    fx.lib("M/libA.so", rpath=a, needs=("libS.so",))
    return Case(fx.exe("main", rpath=m, needs=("libA.so", "libS.so")))


def case_ld_library_path(fx: Fixtures) -> Case:
    """§15 test 9: LD_LIBRARY_PATH beats RUNPATH (but not RPATH: main-rpath)."""
    lp, r = fx.dir("L"), fx.dir("R")
    fx.lib("L/libV.so")
    fx.lib("R/libV.so")
    fx.exe("main-rpath", rpath=r, needs=("libV.so",))
    return Case(fx.exe("main", runpath=r, needs=("libV.so",)), ld_library_path=lp)


CASES: dict[str, Callable[[Fixtures], Case]] = {
    name[len("case_") :]: func for name, func in sorted(globals().items()) if name.startswith("case_")
}


# -- comparing -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings() -> LoaderSettings:
    """The host's loader parameters, read from ld.so itself."""
    return LoaderSettings(isa_level=host_isa_level(), platform=loader_diagnostics()["dl_platform"])


@pytest.fixture
def fx(tmp_path: Path) -> Fixtures:
    return Fixtures(tmp_path / "fx", tmp_path / "stubs")


def answer(result: LoadResult) -> set[str]:
    """depmin's answer in the oracle's terms; a load that would fail gives its first error."""
    if result.failed:
        first = result.failed[0]
        return {f"error: {first.path}: {first.problem}"}
    found = {o.realpath for o in result.libraries}
    return found | {f"{r.expanded or r.name} => not found" for r in result.missing}


def oracle_answer(found: set[str], raw: str) -> set[str]:
    m = LOAD_ERROR.search(raw)
    return {f"error: {m.group(1)}: {m.group(2)}"} if m else found


def oracle(case: Case, path: Path | None = None) -> tuple[set[str], str]:
    target = str(path or case.exe)
    found, raw = (trace_exec if case.direct else ldd)(target, case.env)
    return oracle_answer(found, raw), raw


def resolve(case: Case, settings: LoaderSettings, path: Path | None = None, root: str = "/") -> LoadResult:
    s = replace(settings, ld_library_path=case.ld_library_path)
    return Resolver.for_root(Root(root), s).load(str(path or case.exe))


def check(case: Case, settings: LoaderSettings, path: Path | None = None) -> LoadResult:
    """Resolve ``path`` (default: the case's program) and assert it matches the oracle."""
    expected, raw = oracle(case, path)
    result = resolve(case, settings, path)
    assert answer(result) == expected, f"ldd said:\n{raw}"
    return result


def req(result: LoadResult, name: str, by: str | None = None) -> Request:
    """The request for ``name`` (made by the object whose file name is ``by``)."""
    for r in result.requests:
        requester = result.objects[r.requester]
        if r.name == name and (by is None or os.path.basename(requester.path) == by):
            return r
    raise AssertionError(f"no request for {name!r} by {by!r}")


def target(result: LoadResult, r: Request) -> str:
    assert r.target is not None, r
    return result.objects[r.target].path


# -- the loader's rules, each against ldd ------------------------------------------------


def test_rpath_is_inherited_down_the_loader_chain(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_rpath_chain(fx), settings)
    assert not res.missing
    assert target(res, req(res, "libL.so")) == f"{fx.top}/A/libL.so"
    assert target(res, req(res, "libN.so")) == f"{fx.top}/B/libN.so"  # libL's RPATH
    assert target(res, req(res, "libO.so")) == f"{fx.top}/A/libO.so"  # main's RPATH
    assert {req(res, n).step for n in ("libL.so", "libM.so", "libN.so", "libO.so")} == {Step.RPATH}


def test_runpath_is_not_inherited_and_blocks_rpath(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_runpath_blocks_rpath(fx), settings)
    assert [r.name for r in res.missing] == ["libD.so"]
    assert (fx.top / "A/libD.so").exists()
    assert req(res, "libC.so").step is Step.RUNPATH
    assert req(res, "libL.so").step is Step.RPATH


def test_rpath_chain_passes_through_a_runpath_object(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_chain_through_runpath(fx), settings)
    assert not res.missing
    d = req(res, "libD.so", by="libC.so")
    assert (d.step, target(res, d)) == (Step.RPATH, f"{fx.top}/A/libD.so")


def test_main_runpath_is_not_inherited(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_main_runpath_not_inherited(fx), settings)
    assert [r.name for r in res.missing] == ["libB.so"]
    assert req(res, "libA.so").step is Step.RUNPATH


def test_empty_runpath_disables_rpath(fx: Fixtures, settings: LoaderSettings) -> None:
    case = case_empty_runpath(fx)
    assert ("RUNPATH", "") in dynamic_tags(fx.top / "A/libE0.so"), "the empty tag did not survive"
    res = check(case, settings)
    assert [r.name for r in res.missing] == ["libQ.so"]
    control = check(case, settings, fx.top / "main-control")
    assert req(control, "libQ.so").step is Step.RPATH


def test_origin_of_a_library_is_where_it_was_opened(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_origin_of_library(fx), settings)
    a = res.objects[req(res, "libA.so").target or 0]
    assert (a.path, a.realpath) == (f"{fx.top}/link/libA.so", f"{fx.top}/real/libA.so")
    b = req(res, "libB.so")
    assert (b.step, target(res, b)) == (Step.RUNPATH, f"{fx.top}/link/libB.so")


def test_origin_of_a_symlinked_program_is_canonical(fx: Fixtures, settings: LoaderSettings) -> None:
    """Started by the kernel, $ORIGIN is /proc/self/exe's dir; ``ldd`` (ld.so FILE) differs."""
    case = case_origin_of_symlinked_main(fx)
    res = check(case, settings)
    assert target(res, req(res, "libO.so")) == f"{fx.top}/prog/real/lib/libO.so"
    via_ldd, _ = ldd(str(case.exe))
    assert f"{fx.top}/prog/alias/lib/libO.so" in via_ldd, "ldd now agrees: drop direct=True?"
    os.unlink(fx.top / "prog/real/lib/libO.so")
    gone = check(case, settings)
    assert [r.name for r in gone.missing] == ["libO.so"]


def test_origin_in_braces(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_origin_in_braces(fx), settings)
    assert req(res, "libY.so").step is Step.RUNPATH and not res.missing


def test_lib_and_platform_tokens(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_lib_and_platform(fx), settings)
    assert not res.missing
    assert res.arch is not None and res.arch.lib == loader_diagnostics()["dl_dst_lib"]
    assert {req(res, n).step for n in ("libLIB.so", "libPLAT.so", "libPLAT2.so")} == {Step.RUNPATH}


def test_directories_named_like_tokens_are_literal(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_literal_tokens(fx), settings)
    assert not res.missing
    assert target(res, req(res, "libX.so")) == f"{fx.top}/$ORIGINX/libX.so"
    assert target(res, req(res, "libF.so")) == f"{fx.top}/$FOO/libF.so"


@pytest.mark.skipif(not os.path.exists(LIBZ), reason=f"{LIBZ} (zlib1g) is not installed")
def test_nodeflib_drops_system_dirs(fx: Fixtures, settings: LoaderSettings) -> None:
    case = case_nodeflib(fx)
    assert "NODEFLIB" in dict(dynamic_tags(fx.top / "R/libN.so")).get("FLAGS_1", "")
    res = check(case, settings)
    assert [r.name for r in res.missing] == ["libz.so.1"]
    assert req(res, "libR.so").step is Step.RUNPATH
    control = check(case, settings, fx.top / "main-control")
    assert req(control, "libz.so.1").step is Step.CACHE
    alone = check(case, settings, fx.top / "main-nodeflib")
    assert [r.name for r in alone.missing] == ["libc.so.6"]


def test_wrong_machine_is_skipped(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_wrong_machine(fx), settings)
    e = req(res, "libE.so")
    assert (e.step, target(res, e)) == (Step.RUNPATH, f"{fx.top}/B/libE.so")
    assert e.tried[:2] == (f"{fx.top}/A/libE.so", f"{fx.top}/B/libE.so")
    assert [r.name for r in res.missing] == ["libK.so"]


def test_wrong_class_is_skipped(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_wrong_class(fx), settings)
    assert target(res, req(res, "libE.so")) == f"{fx.top}/B/libE.so"
    assert [r.name for r in res.missing] == ["libK.so"]


@pytest.mark.parametrize(
    "build, problem", [(case_not_elf, "invalid ELF header"), (case_too_short, "file too short")]
)
def test_bad_candidate_fails_the_load(
    fx: Fixtures, settings: LoaderSettings, build: Callable[[Fixtures], Case], problem: str
) -> None:
    case = build(fx)
    expected, raw = oracle(case)
    assert expected == {f"error: {fx.top}/A/libE.so: {problem}"}, raw
    res = check(case, settings)
    e = req(res, "libE.so")
    assert (e.outcome, e.step, e.problem) == (Outcome.FAILED, Step.RUNPATH, problem)
    cli = CliRunner().invoke(cli_main, ["ldd", str(case.exe)])
    assert cli.exit_code == 1, cli.output
    assert f"\tlibE.so => {fx.top}/A/libE.so (load would fail: {problem})" in cli.output


def test_needed_with_slash_is_not_searched(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_needed_with_slash(fx), settings)
    s = req(res, "$ORIGIN/sub/libS.so")
    assert (s.step, target(res, s)) == (Step.DIRECT_PATH, f"{fx.top}/sub/libS.so")
    assert req(res, f"{fx.top}/direct/libD.so").step is Step.DIRECT_PATH
    w = req(res, f"{fx.top}/nowhere/libW.so")
    assert (w.outcome, w.tried) == (Outcome.MISSING, (f"{fx.top}/nowhere/libW.so",))


def test_soname_already_loaded_is_not_searched(fx: Fixtures, settings: LoaderSettings) -> None:
    case = case_soname_already_loaded(fx)
    for prog, first in (("main", "a/libXalias.so"), ("main-path", "c/libXpath.so")):
        res = check(case, settings, fx.top / prog)
        x = req(res, "libX.so.1", by="libY.so")
        assert (x.outcome, x.step, x.tried) == (Outcome.LOADED, Step.ALREADY_LOADED, ())
        assert target(res, x) == f"{fx.top}/{first}"
    control = check(case, settings, fx.top / "main-control")
    assert target(control, req(control, "libX.so.1")) == f"{fx.top}/b/libX.so.1"


def test_a_missing_name_is_searched_again(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_missing_then_found(fx), settings)
    assert [(res.objects[r.requester].path, r.name) for r in res.missing] == [
        (f"{fx.top}/R/libA.so", "libX.so"),
        (f"{fx.top}/R/libC.so", "libX.so"),
    ]
    x = req(res, "libX.so", by="libB.so")
    assert (x.outcome, x.step) == (Outcome.FOUND, Step.RUNPATH)
    assert target(res, x) == f"{fx.top}/R2/libX.so"


def test_breadth_first_decides_the_loader(fx: Fixtures, settings: LoaderSettings) -> None:
    res = check(case_bfs_shared(fx), settings)
    main_s = req(res, "libS.so", by="main")
    assert target(res, main_s) == f"{fx.top}/M/libS.so"
    a_s = req(res, "libS.so", by="libA.so")
    assert (a_s.step, a_s.target) == (Step.ALREADY_LOADED, main_s.target)


def test_ld_library_path_beats_runpath(fx: Fixtures, settings: LoaderSettings) -> None:
    case = case_ld_library_path(fx)
    res = check(case, settings)
    v = req(res, "libV.so")
    assert (v.step, target(res, v)) == (Step.LD_LIBRARY_PATH, f"{fx.top}/L/libV.so")
    rpath = check(case, settings, fx.top / "main-rpath")
    assert req(rpath, "libV.so").step is Step.RPATH
    unset = check(replace(case, ld_library_path=None), settings)
    assert req(unset, "libV.so").step is Step.RUNPATH


def test_32bit_programs(fx: Fixtures) -> None:
    if not gcc_can_link("-m32"):
        pytest.skip("gcc cannot link -m32 programs (gcc-multilib is not installed)")
    r = fx.dir("R32")
    fx.lib("R32/libT.so", args=("-m32",))
    case = Case(fx.exe("main32", runpath=r, needs=("libT.so",), args=("-m32",)))
    res = check(case, LoaderSettings())
    assert res.arch is not None and res.arch.name == "i386"
    assert req(res, "libT.so").step is Step.RUNPATH


# -- the depmin ldd command --------------------------------------------------------------


#: Every case but those where ldd is not the oracle: a symlinked program (ldd runs
#: ``ld.so FILE``, depmin answers for the program started by the kernel) and the
#: loads that fail (ldd stops with an error; depmin goes on and lists the rest).
CLI_CASES = sorted(set(CASES) - {"origin_of_symlinked_main", "not_elf", "too_short"})


def entries(lines: list[str]) -> list[str]:
    """ldd-style lines reduced to what they name: the path, or ``name => not found``."""
    return [
        line.strip() if line.endswith(" => not found") else line.split(" => ")[-1].strip() for line in lines
    ]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_lines_equal_ldd(fx: Fixtures, settings: LoaderSettings, name: str) -> None:
    case = CASES[name](fx)
    opts = ["--isa-level", str(settings.isa_level), "--platform", str(settings.platform)]
    if case.ld_library_path:
        opts += ["--ld-library-path", case.ld_library_path]
    run = CliRunner().invoke(cli_main, ["ldd", *opts, str(case.exe)])
    assert run.output.splitlines() == ldd_order(str(case.exe), case.env)
    res = resolve(case, settings)
    assert run.exit_code == (0 if res.ok else 1)

    as_json = CliRunner().invoke(cli_main, ["ldd", "--json", *opts, str(case.exe)])
    assert as_json.exit_code == run.exit_code
    doc = json.loads(as_json.output)
    assert doc["schema"] == "depmin.ldd/1" and len(doc["files"]) == 1
    got = doc["files"][0]
    assert got["ok"] is res.ok and got["file"] == str(case.exe)
    objects = got["objects"]
    from_json = [o["path"] for o in objects if o["step"] == "interpreter"]
    for r in got["requests"]:
        if r["outcome"] == "found":
            from_json.append(objects[r["target"]]["path"])
        elif r["outcome"] == "missing":
            from_json.append(f"{r['name']} => not found")
    assert sorted(from_json) == sorted(entries(run.output.splitlines()))

    tree = CliRunner().invoke(cli_main, ["ldd", "--tree", *opts, str(case.exe)]).output
    assert tree.splitlines()[0] == f"{case.exe} [amd64]"
    for r in res.requests:
        if r.outcome is Outcome.FOUND:
            assert f"{r.name} => {target(res, r)} [{r.step.value if r.step else ''}]" in tree
        elif r.outcome is Outcome.LOADED:
            assert f"{r.name} => {target(res, r)} [already loaded]" in tree
        elif r.outcome is Outcome.MISSING:
            assert f"{r.name} => NOT FOUND" in tree


# -- the same fixtures inside a root ---------------------------------------------------------


def copy_host_file(top: Path, path: str) -> None:
    """Copy a host file into the root at the same path, recreating each link on the way.

    Directory links are taken as the root's own (/lib -> /usr/lib); only the links
    of the last component are copied, with their exact text.
    """
    d, name = os.path.realpath(os.path.dirname(path)), os.path.basename(path)
    for _ in range(40):
        src = os.path.join(d, name)
        dst = top / src.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not os.path.islink(src):
            if not dst.exists():
                shutil.copy2(src, dst)
            return
        text = os.readlink(src)
        if not dst.is_symlink():
            dst.symlink_to(text)
        nxt = text if text.startswith("/") else os.path.join(d, text)
        d, name = os.path.realpath(os.path.dirname(nxt)), os.path.basename(nxt)
    raise AssertionError(f"link loop at {path}")


def make_root(top: Path, system_files: set[str]) -> None:
    """A minimal merged-/usr root whose top-level links are ABSOLUTE (they must restart at top)."""
    for sub in ("usr/lib/x86_64-linux-gnu", "usr/lib64", "etc/ld.so.conf.d"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    (top / "lib").symlink_to("/usr/lib")
    (top / "lib64").symlink_to("/usr/lib64")
    for path in sorted(system_files | {LDSO, "/lib/x86_64-linux-gnu/libc.so.6"}):
        copy_host_file(top, path)
    (top / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    for conf in ("libc.conf", "x86_64-linux-gnu.conf"):  # Debian's two, not this host's extras
        host = Path("/etc/ld.so.conf.d") / conf
        if host.exists():
            shutil.copy(host, top / "etc/ld.so.conf.d" / conf)


def ldconfig_in(top: Path) -> None:
    """Build the root's ld.so.cache with ``ldconfig -r`` (it chroots); the host's stays as is."""

    def stamp() -> tuple[int, int, int]:
        st = os.stat("/etc/ld.so.cache")
        return st.st_ino, st.st_mtime_ns, st.st_size

    before = stamp()
    p = subprocess.run(["ldconfig", "-r", str(top)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"ldconfig -r cannot build a cache here: {p.stderr.strip()}")
    assert stamp() == before, "ldconfig -r wrote the host's cache"
    assert (top / "etc/ld.so.cache").is_file()


def view(result: LoadResult) -> list[tuple[Any, ...]]:
    """Everything about each request that must not depend on where the root lies."""
    objs = result.objects

    def where(i: int | None) -> tuple[str | None, str | None]:
        return (None, None) if i is None else (objs[i].path, objs[i].realpath)

    return [
        (
            objs[r.requester].path,
            r.name,
            r.kind,
            r.outcome,
            r.step,
            where(r.target),
            r.tried,
            r.problem,
            r.path,
        )
        for r in result.requests
    ]


def chroot_oracle(top: Path, case: Case, path: str | None = None) -> set[str] | None:
    """ld.so's answer inside the root, or None when it cannot be had.

    A program started directly needs /proc/self/exe for its $ORIGIN, and the root
    has no /proc (this test mounts nothing), so direct cases have no chroot oracle.
    """
    if case.direct:
        return None
    got = chroot_trace(str(top), path or str(case.exe), case.env)
    return None if got is None else oracle_answer(*got)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_answers_inside_a_root(
    tmp_path: Path, settings: LoaderSettings, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    fx = Fixtures(tmp_path / "fx", tmp_path / "stubs")
    case = CASES[name](fx)
    host = resolve(case, settings)
    expected, raw = oracle(case)
    assert answer(host) == expected, raw
    top = tmp_path / "root"
    system = {o.path for o in host.objects if not o.realpath.startswith(f"{fx.top}/")}
    make_root(top, system | ({LIBZ} if os.path.exists(LIBZ) else set()))
    inside = top / str(fx.top).lstrip("/")
    inside.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(fx.top), str(inside)], check=True)
    ldconfig_in(top)
    fx.top.rename(tmp_path / "fx-moved")  # from here on the host copy cannot answer

    with host_paths_touched(monkeypatch) as touched:
        rooted = resolve(case, settings, root=str(top))
    assert touched and outside(top, touched) == []
    assert view(rooted) == view(host)
    assert answer(rooted) == expected
    by_ldso = chroot_oracle(top, case)
    if by_ldso is not None:
        assert by_ldso == expected


def test_links_out_of_the_root_never_reach_the_host(
    tmp_path: Path, settings: LoaderSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Absolute and climbing links that work on the host find nothing inside the root."""
    fx = Fixtures(tmp_path / "fx", tmp_path / "stubs")
    top = tmp_path / "root"
    sentinel = Fixtures(tmp_path / "outside", tmp_path / "stubs")  # real files, on the host only
    sentinel.lib("libesc1.so")
    sentinel.lib("libesc2.so")
    shutil.copy("/etc/ld.so.cache", sentinel.top / "ld.so.cache")
    r = fx.dir("R")
    case = Case(fx.exe("main", runpath=r, needs=("libesc1.so", "libesc2.so")))
    make_root(top, set())
    inside = top / str(fx.top).lstrip("/")
    inside.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(fx.top), str(inside)], check=True)
    (inside / "R/libesc1.so").symlink_to(sentinel.top / "libesc1.so")
    (inside / "R/libesc2.so").symlink_to(os.path.relpath(sentinel.top / "libesc2.so", inside / "R"))
    (top / "etc/ld.so.cache").symlink_to(sentinel.top / "ld.so.cache")
    assert (inside / "R/libesc1.so").exists() and (inside / "R/libesc2.so").exists()  # on the host

    with host_paths_touched(monkeypatch) as touched:
        resolver = Resolver.for_root(Root(str(top)), settings)
        res = resolver.load(str(case.exe))
    assert touched and outside(top, touched) == []
    assert resolver.ldcache is None  # the cache link points out of the root
    copied = {os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"), os.path.realpath(LDSO)}
    assert answer(res) == copied | {"libesc1.so => not found", "libesc2.so => not found"}
    assert req(res, "libc.so.6").step is Step.SYSTEM_DIR
    by_ldso = chroot_oracle(top, case)
    if by_ldso is not None:
        assert by_ldso == answer(res)


@pytest.mark.skipif(not os.path.exists(LIBZ), reason=f"{LIBZ} (zlib1g) is not installed")
def test_usr_local_lib_needs_the_cache(tmp_path: Path, settings: LoaderSettings) -> None:
    """§15 tests 6 and 7 in a root: /usr/local/lib only through a cache that lists it."""
    top = tmp_path / "root"
    make_root(top, {LIBZ})
    local = Fixtures(top / "usr/local/lib", tmp_path / "stubs")
    local.lib("libP.so")
    local.lib("libN.so", needs=("libP.so", "libz.so.1"), args=(NODEFLIB,))
    app = Fixtures(top / "opt/app", tmp_path / "stubs")
    app.exe("main", needs=("libP.so",))
    app.exe("main-nodeflib", needs=("libN.so",))
    resolver = Resolver.for_root(Root(str(top)), settings)
    before = resolver.load("/opt/app/main")
    assert [r.name for r in before.missing] == ["libP.so"]
    later = resolver.load("/opt/app/main-nodeflib")
    assert [r.name for r in later.missing] == ["libN.so"]
    case = Case(Path("/opt/app/main"))
    for prog, res in (("main", before), ("main-nodeflib", later)):
        by_ldso = chroot_oracle(top, case, f"/opt/app/{prog}")
        if by_ldso is not None:
            assert by_ldso == answer(res)

    ldconfig_in(top)
    resolver = Resolver.for_root(Root(str(top)), settings)
    after = resolver.load("/opt/app/main")
    p = req(after, "libP.so")
    assert (p.step, target(after, p), after.ok) == (Step.CACHE, "/usr/local/lib/libP.so", True)
    nodeflib = resolver.load("/opt/app/main-nodeflib")
    assert req(nodeflib, "libP.so").step is Step.CACHE  # a hit outside the system dirs stands
    assert [r.name for r in nodeflib.missing] == ["libz.so.1"]  # one inside them is dropped
    assert (top / LIBZ.lstrip("/")).exists()

    for prog, res in (("main", after), ("main-nodeflib", nodeflib)):
        by_ldso = chroot_oracle(top, case, f"/opt/app/{prog}")
        if by_ldso is not None:
            assert by_ldso == answer(res)


def test_a_library_installed_after_ldconfig_is_not_found_and_the_note_says_run_ldconfig(
    tmp_path: Path,
) -> None:
    """ld.so reads /usr/local/lib only through ld.so.cache: depmin agrees, and names the cause.

    The oracle is the real ld.so in the root before and after the real ``ldconfig -r``.
    """
    top = tmp_path / "root"
    make_root(top, set())
    (top / "etc/ld.so.conf.d/libc.conf").write_text("/usr/local/lib\n")
    ldconfig_in(top)  # the cache is built before the library arrives, as when ldconfig is forgotten
    lib = top / "usr/local/lib/libdepmin-late.so.1"
    lib.parent.mkdir(parents=True)
    gcc(lib, "int late(void) { return 0; }\n", "-shared", "-fPIC", "-Wl,-soname,libdepmin-late.so.1")
    gcc(top / "usr/local/bin/late", "int late(void);\nint main(void) { return late(); }\n", str(lib))
    from depmin.api import RunOptions, verify

    before = verify(RunOptions(root=str(top)))
    by_ldso = chroot_trace(str(top), "/usr/local/bin/late")
    if by_ldso is not None:
        assert "libdepmin-late.so.1 => not found" in by_ldso[1], by_ldso[1]
    [missing] = before.analysis.unresolved
    assert (missing.name, missing.outcome) == ("libdepmin-late.so.1", Outcome.MISSING)
    assert missing.note == (
        "/usr/local/lib/libdepmin-late.so.1 exists but ld.so.cache does not list it: run ldconfig"
    )
    res = CliRunner().invoke(cli_main, ["verify", "--root", str(top)])
    assert res.exit_code == 1 and "run ldconfig" in res.output
    ldconfig_in(top)
    after = verify(RunOptions(root=str(top)))
    assert after.ok
    if by_ldso is not None:
        fixed = chroot_trace(str(top), "/usr/local/bin/late")
        assert fixed is not None and "/usr/local/lib/libdepmin-late.so.1" in fixed[0]
