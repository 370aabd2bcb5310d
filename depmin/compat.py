"""Stand-ins for the standard-library modules Debian's python3-minimal leaves out.

An image with no Python installs ``python3-minimal`` for the one build step that
runs depmin, and depmin's own ``apply --purge`` removes it again.  That
interpreter has no ``dataclasses`` and no ``json`` (bookworm; trixie has both),
no ``gettext`` and no ``shutil`` (neither has them), which depmin and click
import.  :func:`install` appends a finder to
``sys.meta_path``: it is asked only after every real finder failed, so a full
standard library is always used where it exists, and a stand-in only where the
module is missing.  The zipapp's entry point (``python3 depmin.pyz``) and
``python -m depmin`` (both ``depmin.__main__:main``) install it; it changes
nothing else.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from importlib.machinery import ModuleSpec


def _gettext() -> types.ModuleType:
    """``gettext`` without catalogs: every message is its own translation (what C locales get)."""
    mod = types.ModuleType("gettext", "depmin's stand-in: messages are not translated")

    def gettext(message: str) -> str:
        return message

    def ngettext(singular: str, plural: str, n: int) -> str:
        return singular if n == 1 else plural

    def pgettext(context: str, message: str) -> str:
        return message

    def npgettext(context: str, singular: str, plural: str, n: int) -> str:
        return ngettext(singular, plural, n)

    def dgettext(domain: str, message: str) -> str:
        return message

    mod.__dict__.update(gettext=gettext, ngettext=ngettext, pgettext=pgettext, npgettext=npgettext,
                        dgettext=dgettext, dngettext=lambda d, s, p, n: ngettext(s, p, n))  # fmt: skip
    return mod


def _shutil() -> types.ModuleType:
    """The two calls click makes: the terminal's size (for help text) and a program on PATH."""
    import os

    mod = types.ModuleType("shutil", "depmin's stand-in: get_terminal_size and which only")

    def get_terminal_size(fallback: tuple[int, int] = (80, 24)) -> os.terminal_size:
        try:
            columns, lines = int(os.environ.get("COLUMNS", 0)), int(os.environ.get("LINES", 0))
        except ValueError:
            columns = lines = 0
        if columns <= 0 or lines <= 0:
            try:
                size = os.get_terminal_size(sys.__stdout__.fileno())  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                size = os.terminal_size(fallback)
            columns, lines = columns or size.columns, lines or size.lines
        return os.terminal_size((columns, lines))

    def which(cmd: str, mode: int = os.F_OK | os.X_OK, path: str | None = None) -> str | None:
        if os.path.dirname(cmd):
            return cmd if os.access(cmd, mode) and not os.path.isdir(cmd) else None
        for d in (path or os.environ.get("PATH", os.defpath)).split(os.pathsep):
            cand = os.path.join(d, cmd)
            if os.access(cand, mode) and not os.path.isdir(cand):
                return cand
        return None

    mod.__dict__.update(get_terminal_size=get_terminal_size, which=which)
    return mod


def _json() -> types.ModuleType:
    """``loads``/``dumps`` (and the file forms) of depmin's own JSON reader and writer."""
    from typing import IO, Any

    from depmin.loader import jsontext

    mod = types.ModuleType("json", "depmin's stand-in: plain data only")

    def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False, **_: Any) -> str:
        return jsontext.dumps(obj, indent=indent, sort_keys=sort_keys)

    def dump(obj: Any, fp: IO[str], **kw: Any) -> None:
        fp.write(dumps(obj, **kw))

    def loads(text: str | bytes, **_: Any) -> Any:
        return jsontext.loads(text.decode("utf-8") if isinstance(text, bytes) else text)

    def load(fp: IO[str], **kw: Any) -> Any:
        return loads(fp.read(), **kw)

    mod.__dict__.update(dumps=dumps, dump=dump, loads=loads, load=load, JSONDecodeError=ValueError)
    return mod


def _dataclasses() -> types.ModuleType:
    from depmin import records

    return records


#: Module name -> how to make its stand-in.
STANDINS = {"gettext": _gettext, "dataclasses": _dataclasses, "shutil": _shutil, "json": _json}


# Plain classes, not importlib.abc's: trixie's importlib.abc imports importlib.resources,
# which imports tempfile, which needs shutil, the very module this may have to stand in for.
class _Loader:
    def __init__(self, make: types.FunctionType) -> None:
        self.make = make

    def create_module(self, spec: ModuleSpec) -> types.ModuleType:
        return self.make()  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class StandinFinder:
    """Finds a stand-in for a module no other finder found."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> ModuleSpec | None:
        make = STANDINS.get(fullname)
        if make is None:
            return None
        return ModuleSpec(fullname, _Loader(make))  # type: ignore[arg-type]


def install() -> None:
    """Append the stand-in finder (once); real modules keep priority."""
    if not any(isinstance(f, StandinFinder) for f in sys.meta_path):
        sys.meta_path.append(StandinFinder())

