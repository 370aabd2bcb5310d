"""A strict JSON reader for ``.note.dlopen`` payloads, so the loader needs no ``json`` module.

Debian's smallest interpreter, python3-minimal, ships no ``json`` package, and it is
what an image without Python installs to run depmin for one build step.  The
notes are small (systemd writes an array of a few objects), so a plain recursive
descent over RFC 8259 is enough; it accepts exactly what ``json.loads`` accepts
(the tests compare the two), except that nesting deeper than :data:`MAX_DEPTH`
is refused instead of exhausting the stack, and ``NaN``/``Infinity`` (which
``json.loads`` allows) are not JSON.
"""

from __future__ import annotations

import re
from typing import Any

MAX_DEPTH = 64

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def loads(text: str) -> Any:
    """The value of a JSON text; ValueError (with the offset) when it is not JSON."""
    value, end = _value(text, _skip(text, 0), 0)
    end = _skip(text, end)
    if end != len(text):
        raise ValueError(f"extra data at offset {end}")
    return value


def _skip(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


def _value(text: str, i: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} at offset {i}")
    c = text[i : i + 1]
    if c == '"':
        return _string(text, i + 1)
    if c == "[":
        return _array(text, i + 1, depth)
    if c == "{":
        return _object(text, i + 1, depth)
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, i):
            return value, i + len(word)
    m = _NUMBER.match(text, i)
    if m is None or m.end() == i:
        raise ValueError(f"expected a value at offset {i}")
    if m.group(1) is None and m.group(2) is None:
        return int(m.group(0)), m.end()
    return float(m.group(0)), m.end()


def _array(text: str, i: int, depth: int) -> tuple[list[Any], int]:
    out: list[Any] = []
    i = _skip(text, i)
    if text.startswith("]", i):
        return out, i + 1
    while True:
        value, i = _value(text, _skip(text, i), depth + 1)
        out.append(value)
        i = _skip(text, i)
        c = text[i : i + 1]
        if c == "]":
            return out, i + 1
        if c != ",":
            raise ValueError(f"expected ',' or ']' at offset {i}")
        i += 1


def _object(text: str, i: int, depth: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    i = _skip(text, i)
    if text.startswith("}", i):
        return out, i + 1
    while True:
        if not text.startswith('"', i):
            raise ValueError(f"expected a string key at offset {i}")
        key, i = _string(text, i + 1)
        i = _skip(text, i)
        if not text.startswith(":", i):
            raise ValueError(f"expected ':' at offset {i}")
        out[key], i = _value(text, _skip(text, i + 1), depth + 1)
        i = _skip(text, i)
        c = text[i : i + 1]
        if c == "}":
            return out, i + 1
        if c != ",":
            raise ValueError(f"expected ',' or '}}' at offset {i}")
        i = _skip(text, i + 1)


def _string(text: str, i: int) -> tuple[str, int]:
    """A string whose opening quote is just before ``i``; surrogate pairs joined as json does."""
    parts: list[str] = []
    while True:
        m = _PLAIN.match(text, i)
        assert m is not None  # the pattern matches the empty string
        parts.append(m.group(0))
        i = m.end()
        c = text[i : i + 1]
        if c == '"':
            return "".join(parts), i + 1
        if c != "\\":
            raise ValueError(f"unterminated string or control character at offset {i}")
        esc = text[i + 1 : i + 2]
        if esc in _ESCAPES:
            parts.append(_ESCAPES[esc])
            i += 2
            continue
        if esc != "u":
            raise ValueError(f"invalid escape at offset {i}")
        code = _hex4(text, i + 2)
        i += 6
        if 0xD800 <= code <= 0xDBFF and text.startswith("\\u", i):
            low = _hex4(text, i + 2)
            if 0xDC00 <= low <= 0xDFFF:
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                i += 6
        parts.append(chr(code))


def _hex4(text: str, i: int) -> int:
    digits = text[i : i + 4]
    if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"invalid \\u escape at offset {i - 2}")
    return int(digits, 16)
