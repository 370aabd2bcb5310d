"""Dynamic string tokens and search-path strings, as glibc's ``elf/dl-load.c`` reads them.

``_dl_dst_substitute`` replaces ``$ORIGIN``, ``$LIB`` and ``$PLATFORM`` (or the
``${...}`` forms); ``fillin_rpath`` splits DT_RPATH, DT_RUNPATH and
LD_LIBRARY_PATH into directories, dropping elements whose token has no value.
``$ORIGIN`` is the directory of the object as ld.so opened it, except for the
main program, whose origin is its canonical directory (``_dl_get_origin`` reads
/proc/self/exe).
"""

from __future__ import annotations

import os
from typing import Callable

from depmin.loader.linkmap import LoadedObject, Step


def expand_dst(text: str, origin: str | None, lib: str, platform: str) -> str | None:
    """Substitute $ORIGIN, $LIB, $PLATFORM (or ${...}); None if a token has no value.

    Only those three names are tokens; ``$NAME`` must not run on into
    ``[A-Za-z0-9_]`` (``$ORIGINX`` is literal) and unknown ``$FOO`` is copied.
    """
    if "$" not in text:
        return text
    values = {"ORIGIN": origin, "LIB": lib, "PLATFORM": platform}
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        matched = None
        if text.startswith("{", i + 1):
            close = text.find("}", i + 2)
            if close > 0 and text[i + 2 : close] in values:
                matched = (text[i + 2 : close], close + 1)
        else:
            for name in values:
                end = i + 1 + len(name)
                if text.startswith(name, i + 1) and not (
                    end < n and (text[end].isalnum() or text[end] == "_")
                ):
                    matched = (name, end)
                    break
        if matched is None:
            out.append(c)
            i += 1
            continue
        value = values[matched[0]]
        if value is None:
            return None
        out.append(value)
        i = matched[1]
    return "".join(out)


def origin(obj: LoadedObject, dlopened_main: bool, working_dir: str | None) -> str | None:
    """$ORIGIN of an object: the program's canonical directory, else the directory as opened.

    A relative opened path needs the working directory; unknown, the token has no value.
    """
    if obj.step is Step.MAIN and not dlopened_main:
        return os.path.dirname(obj.realpath)
    base = obj.path
    if not base.startswith("/"):
        if working_dir is None:
            return None
        base = os.path.join(working_dir, base)
    return os.path.dirname(base) or "/"


def split_search_path(
    text: str,
    expand: Callable[[str], str | None],
    working_dir: str | None,
    env: bool = False,
) -> list[str]:
    """``fillin_rpath``: the directories of a search path, each ending in '/', without repeats.

    LD_LIBRARY_PATH (``env``) also splits on ';'.  An empty element means the working
    directory; an element whose token has no value, or that is relative with the working
    directory unknown, is dropped.
    """
    out: list[str] = []
    for element in (text.replace(";", ":") if env else text).split(":"):
        expanded = expand(element) if element else ""
        if expanded is None:
            continue
        if not expanded.startswith("/"):
            if working_dir is None:
                continue
            expanded = os.path.join(working_dir, expanded)
        expanded = expanded.rstrip("/") + "/"
        if expanded not in out:
            out.append(expanded)
    return out
