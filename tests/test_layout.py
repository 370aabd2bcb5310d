"""The layout is the architecture: two halves that never import each other, a CLI that only renders.

Issue #15.  Imports are read from the source (ast), so the check covers imports
inside functions too; the README's "How it works" map states the same rules.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import depmin

PKG = Path(depmin.__file__).parent

#: Where each part may import from (besides itself and the standard library).
ALLOWED = {
    "loader": {"depmin.errors", "depmin.forked", "depmin.rootfs", "depmin.words"},
    "debian": {"depmin.errors", "depmin.forked", "depmin.rootfs", "depmin.words"},
}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def depmin_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("depmin"):
            if node.module == "depmin":
                found.update(f"depmin.{a.name}" if a.name != "__version__" else "depmin" for a in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("depmin"))
    return found


@pytest.mark.parametrize("half", sorted(ALLOWED))
def test_each_half_imports_only_itself_and_the_base(half: str) -> None:
    bad = {}
    for name, path in modules().items():
        if name.startswith(f"depmin.{half}"):
            other = {m for m in depmin_imports(path) if not m.startswith(f"depmin.{half}")}
            if other - ALLOWED[half]:
                bad[name] = sorted(other - ALLOWED[half])
    assert not bad


def test_the_cli_imports_only_the_api_its_options_the_reports_errors_and_rootfs() -> None:
    got = depmin_imports(PKG / "cli.py")
    allowed = {"depmin", "depmin.api", "depmin.errors", "depmin.options", "depmin.rootfs"}
    assert {m for m in got if not m.startswith("depmin.report.")} <= allowed, got
    assert "depmin.api" in got and any(m.startswith("depmin.report.") for m in got)


def test_nothing_below_the_cli_imports_it_and_the_api_renders_nothing() -> None:
    for name, path in modules().items():
        imports = depmin_imports(path)
        if name != "depmin.__main__":
            assert "depmin.cli" not in imports, name
        if not name.startswith("depmin.report") and name != "depmin.cli":
            assert not any(m.startswith("depmin.report") for m in imports), name


def test_no_module_shadows_the_standard_library() -> None:
    names = getattr(sys, "stdlib_module_names", None)
    if names is None:
        pytest.skip("sys.stdlib_module_names needs Python 3.10")
    clash = [n for n in modules() if n.rsplit(".", 1)[-1] in names]
    assert not clash


def test_every_public_name_resolves_to_the_module_it_is_documented_in() -> None:
    for name in depmin.__all__:
        value = getattr(depmin, name)
        assert value is getattr(importlib.import_module(depmin._EXPORTS[name]), name)
        assert name in (depmin.__doc__ or ""), f"{name} is exported but not documented"


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert sorted(depmin.__all__) == sorted(depmin._EXPORTS)


def test_every_word_is_its_word_as_text_as_key_and_in_json() -> None:
    import json

    import depmin.api  # noqa: F401 - imports every module that defines words
    from depmin.words import Word

    kinds = Word.__subclasses__()
    assert len(kinds) >= 6
    for kind in kinds:
        for member in kind:
            word = member.value
            assert str(member) == f"{member}" == f"{member:>1}".strip() == word
            assert hash(member) == hash(word) and {word: kind}[member] is kind and {member: 1}[word] == 1
            assert json.dumps({member: [member]}) == json.dumps({word: [word]})
