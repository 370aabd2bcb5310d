"""Debian version numbers, ordered exactly as dpkg orders them.

A version is ``[epoch:]upstream[-revision]``: the epoch ends at the first ``:``,
the revision starts after the last ``-``.  Parts are compared by alternating
non-digit runs (byte by byte; ``~`` lowest, even below the end of the string,
then end of string, then letters, then everything else) and digit runs
(numerically, an empty run is 0).

Invalid strings are treated as dpkg's ``parseversion`` treats them:

* *errors* (dpkg refuses to compare, ``dpkg --compare-versions`` exits 2) raise
  :class:`~depmin.errors.DpkgError`: an empty string, embedded blanks, an empty,
  non-numeric, negative or too big epoch, nothing after the epoch colon, an empty
  upstream part or an empty revision (``1.0-``);
* *warnings* (dpkg prints one and compares anyway) are compared anyway: an
  upstream part that does not start with a digit, or characters outside
  ``[A-Za-z0-9.+~-:]`` (``[A-Za-z0-9.+~]`` in the revision).  They are reported
  by :func:`version_warning`.

dpkg's ``--compare-versions`` treats an empty argument as "no version"; depmin
never compares a missing version, so an empty string is an error here.
Leading blanks and trailing blanks are ignored, as in dpkg.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Callable

from depmin.errors import DpkgError

#: dpkg keeps the epoch in an int and refuses anything larger.
_INT_MAX = 2**31 - 1
_EPOCH = re.compile(r"[+-]?[0-9]+")
_BAD_UPSTREAM = re.compile(r"[^A-Za-z0-9.+~:-]")
_BAD_REVISION = re.compile(r"[^A-Za-z0-9.+~]")
_RUNS = re.compile(rb"([^0-9]*)([0-9]*)")


def _order(byte: int) -> int:
    """dpkg's ``order()`` for one byte of a non-digit run.

    dpkg works on a signed ``char`` (amd64, i386): bytes >= 0x80 are negative there
    and ``c + 256`` brings them back to 128..255, i.e. after letters but before
    ASCII punctuation, which gets ``c + 256``.
    """
    if byte == 0x7E:  # '~'
        return -1
    if 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A:
        return byte
    if byte >= 0x80:
        return byte
    return byte + 256


#: Byte -> order; a tuple so it cannot be changed.
_ORDER = tuple(_order(b) for b in range(256))

#: A non-digit run and the number that follows it; parts are tuples of these.
_Fragment = tuple[tuple[int, ...], int]
#: What an exhausted side compares as: an empty run (order 0) and the number 0.
_PAD: _Fragment = ((0,), 0)


@dataclass(frozen=True)
class Version:
    """A parsed version; ``str()`` gives the canonical spelling."""

    epoch: int
    upstream: str
    revision: str  # "" when absent (compares equal to "0")

    def __str__(self) -> str:
        explicit = self.epoch or ":" in self.upstream  # "0:1:2" must keep its epoch
        text = f"{self.epoch}:{self.upstream}" if explicit else self.upstream
        return f"{text}-{self.revision}" if self.revision else text


def _bad(text: str, problem: str) -> DpkgError:
    return DpkgError(f"version {text!r} has bad syntax: {problem}")


@lru_cache(maxsize=8192)
def parse_version(text: str) -> Version:
    """Split a version the way dpkg's ``parseversion`` does; raise on dpkg's errors."""
    s = text.lstrip(" \t\n\r\f\v")
    if not s:
        raise _bad(text, "version string is empty")
    end = 0
    while end < len(s) and s[end] not in " \t":
        end += 1
    if s[end:].strip(" \t"):
        raise _bad(text, "version string has embedded spaces")
    s = s[:end]
    epoch = 0
    head, colon, rest = s.partition(":")
    if colon:
        m = _EPOCH.match(head)
        if m is None:
            raise _bad(text, "epoch in version is empty")
        if m.end() != len(head):
            raise _bad(text, "epoch in version is not number")
        epoch = int(head)
        if epoch < 0:
            raise _bad(text, "epoch in version is negative")
        if epoch > _INT_MAX:
            raise _bad(text, "epoch in version is too big")
        if not rest:
            raise _bad(text, "nothing after colon in version number")
        s = rest
    upstream, hyphen, revision = s.rpartition("-")
    if not hyphen:
        upstream, revision = s, ""
    elif not revision:
        raise _bad(text, "revision number is empty")
    if not upstream:
        raise _bad(text, "version number is empty")
    return Version(epoch, upstream, revision)


def version_warning(text: str) -> str | None:
    """dpkg's warning for a version it still compares, or None (errors raise)."""
    v = parse_version(text)
    if not "0" <= v.upstream[0] <= "9":
        return "version number does not start with digit"
    if _BAD_UPSTREAM.search(v.upstream):
        return "invalid character in version number"
    if _BAD_REVISION.search(v.revision):
        return "invalid character in revision number"
    return None


@lru_cache(maxsize=16384)
def _part_key(part: str) -> tuple[_Fragment, ...]:
    """A part as (non-digit run orders + 0 terminator, number) fragments.

    The terminator makes tuple order equal dpkg's zero padding of the shorter
    run: every real order is non-zero, so '~' (-1) sorts below it and any other
    byte above it.
    """
    data = part.encode("utf-8", "surrogateescape")
    frags = []
    for m in _RUNS.finditer(data):
        run, digits = m.group(1), m.group(2)
        if not run and not digits:
            continue
        frags.append((tuple(_ORDER[b] for b in run) + (0,), int(digits or b"0")))
    return tuple(frags)


def _cmp_part(a: str, b: str) -> int:
    ka, kb = _part_key(a), _part_key(b)
    if len(ka) < len(kb):
        ka = ka + (_PAD,) * (len(kb) - len(ka))
    elif len(kb) < len(ka):
        kb = kb + (_PAD,) * (len(ka) - len(kb))
    return (ka > kb) - (ka < kb)


def compare_parsed(a: Version, b: Version) -> int:
    """-1, 0 or 1: epoch, then upstream, then revision (pure Python)."""
    if a.epoch != b.epoch:
        return -1 if a.epoch < b.epoch else 1
    return _cmp_part(a.upstream, b.upstream) or _cmp_part(a.revision, b.revision)


@lru_cache(maxsize=1)
def _apt_version_compare() -> Callable[[str, str], int] | None:
    """python-apt's comparison when importable: a well-kept C++ implementation.

    It is handed canonical spellings only (``str(Version)``), because apt parses
    a few invalid strings differently from dpkg (``+1:2`` has no epoch for apt).
    """
    try:
        import apt_pkg  # type: ignore[import-not-found,unused-ignore]

        apt_pkg.init_system()
        compare: Callable[[str, str], int] = apt_pkg.version_compare
        return compare
    except Exception:  # ImportError, or apt's own SystemError on a broken config
        return None


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, equal to or after ``b`` in Debian order."""
    va, vb = parse_version(a), parse_version(b)
    apt = _apt_version_compare()
    if apt is not None:
        r = apt(str(va), str(vb))
        return (r > 0) - (r < 0)
    return compare_parsed(va, vb)


#: Relation operator -> accepted comparison results.  ``<`` and ``>`` are the
#: obsolete spellings of ``<=`` and ``>=`` (dpkg and apt both read them so).
_RELATIONS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "<<": (-1,),
        "<=": (-1, 0),
        "<": (-1, 0),
        "=": (0,),
        ">=": (0, 1),
        ">": (0, 1),
        ">>": (1,),
    }
)


def check_relation(version: str, op: str, wanted: str) -> bool:
    """Whether ``version op wanted`` holds, e.g. ``check_relation("2.36-9", ">=", "2.34")``."""
    accepted = _RELATIONS.get(op)
    if accepted is None:
        raise DpkgError(f"unknown version relation {op!r}")
    return compare_versions(version, wanted) in accepted
