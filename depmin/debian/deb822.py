"""deb822 files (dpkg status, extended_states, Packages) and relation fields.

Hand-written on purpose: depmin's core must run without python-apt
(``apt_pkg.TagFile``) and python-debian, which the interpreters that usually run
it cannot import.  It is built from a few regular expressions over the whole text
rather than a Python loop per line, so the 710-package status file of the
reference machine (16k lines) parses in about 10 ms.

Grammar, as dpkg's ``parse_stanza`` reads it (apt agrees on every file dpkg
accepts):

* stanzas are separated by empty lines;
* a field is ``Name: value``; blanks may precede the colon; the name is any run of
  non-blank characters except ``:`` that does not start with ``-``;
* continuation lines start with a space or a tab; the value keeps them verbatim,
  joined with ``\\n``, and is stripped at both ends (what apt returns);
* a line of only blanks is a continuation line too (dpkg warns about it, apt
  says nothing); it is reported as a warning;
* field names are case-insensitive: a stanza keeps each name as first written and
  looks names up in any case; a name given twice in any case is an error, as in
  dpkg;
* ``#`` comment lines exist only in deb822 files such as ``.sources`` and
  ``debian/control`` (``comments=True``); the dpkg database has none, and there
  dpkg and apt read ``#x: y`` as a field, so the default does as well;
* line ends are ``\\n`` only, as for dpkg and apt.

A stanza with a line that is neither a field nor a continuation, with a
continuation before its first field, or with a duplicate field is broken: it is
reported as ``file:line: problem`` and skipped, and parsing goes on with the next
stanza, where dpkg would stop.  With ``strict=True`` every reported problem
raises :class:`DpkgError` instead.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from depmin.errors import DpkgError

#: The empty lines between stanzas (with the line end before them), and the
#: line end of the text; every other part of a split is one stanza.
_SEPARATOR = re.compile(r"(\n\n+|\n\Z)")
_LEADING_EMPTY = re.compile(r"\n+")
#: One field: its name and its raw value (the rest of its first line and the
#: continuation lines); values are stripped of C-locale whitespace afterwards.
_FIELD = re.compile(r"^([^\s:-][^\s:]*)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.M)
_WHITESPACE = " \t\n\v\f\r"
#: After a line end: a blank-only line (group 1 set), or (group 1 None) a line
#: that is neither empty, a continuation nor a field start.
_ODD_LINE = re.compile(r"\n(?:([ \t]+)(?=\n|\Z)|(?![ \t\n]|\Z|[^\s:-][^\s:]*[ \t]*:))")
_ODD_LINE_COMMENTS = re.compile(r"\n(?:([ \t]+)(?=\n|\Z)|(?![ \t\n#]|\Z|[^\s:-][^\s:]*[ \t]*:))")
_BLANK_ONLY = "line of only blanks, read as a continuation line (dpkg warns about it)"


class Stanza(Mapping[str, str]):
    """One paragraph: field name -> value, in file order, case-insensitive lookup.

    Names keep the case they were first written in; ``line`` is the 1-based line
    of the first field, for messages.
    """

    __slots__ = ("_fields", "_folded", "line")

    def __init__(self, fields: Mapping[str, str], line: int = 0) -> None:
        self._fields = dict(fields)
        folded: dict[str, str] = {}
        for key in self._fields:
            folded.setdefault(key.lower(), key)
        self._folded = folded
        self.line = line

    @classmethod
    def _trusted(cls, fields: dict[str, str], folded: dict[str, str], line: int) -> Stanza:
        """The parser's fast path: names already known to be unique in any case."""
        self = cls.__new__(cls)
        self._fields, self._folded, self.line = fields, folded, line
        return self

    def __getitem__(self, key: str) -> str:
        try:
            return self._fields[key]
        except KeyError:
            return self._fields[self._folded[key.lower()]]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._fields or key.lower() in self._folded)

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Stanza({self._fields!r}, line={self.line})"


def iter_stanzas(
    text: str,
    name: str,
    *,
    strict: bool = False,
    comments: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Iterator[Stanza]:
    """Yield the stanzas of ``text`` (the contents of file ``name``).

    Problems are described to ``warn`` as ``"name:line: problem"``, or raise
    :class:`DpkgError` with ``strict=True``.
    """
    # One pass over the whole text finds the (rare) odd lines by line number.
    bad: dict[int, str] = {}
    blank: list[int] = []
    for m in (_ODD_LINE_COMMENTS if comments else _ODD_LINE).finditer("\n" + text):
        lineno = text.count("\n", 0, m.start()) + 1
        if m.group(1) is None:
            bad[lineno] = text[m.start() :].split("\n", 1)[0]
        else:
            blank.append(lineno)
    odd = sorted([*bad, *blank])
    lead = _LEADING_EMPTY.match(text)
    skip = lead.end() if lead else 0
    parts = _SEPARATOR.split(text[skip:])
    line = 1 + skip

    def problem(lineno: int, message: str) -> None:
        if strict:
            raise DpkgError(f"line {lineno}: {message}", name)
        if warn is not None:
            warn(f"{name}:{lineno}: {message}")

    for i in range(0, len(parts), 2):
        body, first = parts[i], line
        last = first + body.count("\n")
        line = last + (parts[i + 1].count("\n") if i + 1 < len(parts) else 0)
        if odd:
            j = bisect.bisect_left(odd, first)
            broken = False
            while j < len(odd) and odd[j] <= last:
                if odd[j] in bad:
                    got = bad[odd[j]]
                    problem(odd[j], f"expected 'Field: value' or a continuation, got {got!r}")
                    broken = True
                    break
                problem(odd[j], _BLANK_ONLY)
                j += 1
            if broken:
                continue
        if comments and (body[:1] == "#" or "\n#" in body):
            lines = body.split("\n")
            kept = [n for n, t in enumerate(lines) if not t.startswith("#")]
            first += kept[0] if kept else 0
            body = "\n".join(lines[n] for n in kept)
        if not body.strip():
            continue
        if body[0] in " \t":
            problem(first, "continuation line before the first field")
            continue
        pairs = _FIELD.findall(body)
        fields = {k: v.strip(_WHITESPACE) for k, v in pairs}
        folded = {k.lower(): k for k in fields}
        if len(folded) != len(pairs):
            seen: set[str] = set()
            for m in _FIELD.finditer(body):
                if m.group(1).lower() in seen:
                    lineno = first + body.count("\n", 0, m.start())
                    problem(lineno, f"field {m.group(1)!r} appears twice in the stanza")
                    break
                seen.add(m.group(1).lower())
            continue
        yield Stanza._trusted(fields, folded, first)


@dataclass(frozen=True)
class Deb822:
    """A whole parsed file: its good stanzas and the problems found."""

    stanzas: tuple[Stanza, ...]
    warnings: tuple[str, ...]


def parse_deb822(text: str, name: str, *, strict: bool = False, comments: bool = False) -> Deb822:
    """All stanzas of a file at once, with its warnings."""
    found: list[str] = []
    stanzas = tuple(iter_stanzas(text, name, strict=strict, comments=comments, warn=found.append))
    return Deb822(stanzas, tuple(found))


# --- relation fields -------------------------------------------------------


@dataclass(frozen=True)
class Relation:
    """One alternative of a relation field: ``name[:arch] [(op version)]``.

    ``op`` is one of ``<<``, ``<=``, ``=``, ``>=``, ``>>`` (obsolete ``<``/``>``
    are stored as ``<=``/``>=``), or None with ``version`` None.
    """

    name: str
    arch: str | None = None
    op: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        text = f"{self.name}:{self.arch}" if self.arch else self.name
        return f"{text} ({self.op} {self.version})" if self.op else text


_TERM = re.compile(
    r"""\s*(?P<name>[^\s:(),|\[\]<>]+)
    (?::(?P<arch>[^\s:(),|\[\]<>]+))?
    \s*(?:\(\s*(?P<op><<|<=|>=|>>|<|>|=)?\s*(?P<version>[^\s()<>=]+)\s*\)\s*)?
    (?:\[[^\[\]]*\]\s*)?
    (?:<[^<>]*>\s*)*
    """,
    re.X,
)


@lru_cache(maxsize=8192)
def _parse_term(term: str) -> Relation | None:
    m = _TERM.fullmatch(term)
    if m is None:
        return None
    op, version = m.group("op"), m.group("version")
    if version is not None:
        if not op:
            op = "="  # dpkg and apt read a bare version as an exact match
        elif op in ("<", ">"):
            op += "="  # obsolete spellings of <= and >=
    return Relation(m.group("name"), m.group("arch"), op, version)


@lru_cache(maxsize=4096)
def _relations(text: str) -> tuple[tuple[Relation, ...], ...] | str:
    """Parsed groups, or the offending term (cached: many fields are identical)."""
    groups = text.split(",")
    if len(groups) > 1 and not groups[-1].strip():
        groups.pop()
    if len(groups) == 1 and not groups[0].strip():
        return ()
    result = []
    for group in groups:
        alternatives = []
        for term in group.split("|"):
            rel = _parse_term(term)
            if rel is None:
                return term.strip()
            alternatives.append(rel)
        result.append(tuple(alternatives))
    return tuple(result)


def parse_relations(text: str, where: str = "") -> tuple[tuple[Relation, ...], ...]:
    """A relation field (Depends, Provides, ...) as an AND of OR-groups.

    Architecture restrictions ``[...]`` and build profiles ``<...>`` are accepted
    and ignored (they only matter when building).  A trailing comma is accepted,
    as apt does; an empty group or alternative elsewhere, or any other malformed
    term, raises :class:`DpkgError` naming ``where`` (e.g. ``"status:120:
    Depends"``).
    """
    parsed = _relations(text)
    if isinstance(parsed, str):
        prefix = f"{where}: " if where else ""
        raise DpkgError(f"{prefix}bad relation {parsed!r} in {text.strip()!r}")
    return parsed
