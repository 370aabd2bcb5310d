"""A strict JSON reader (and writer) so depmin needs no ``json`` module.

Debian's smallest interpreter, python3-minimal, ships no ``json`` package, and it is
what an image without Python installs to run depmin for one build step.  The
notes are small (systemd writes an array of a few objects), so a plain recursive
descent over RFC 8259 is enough; it accepts exactly what ``json.loads`` accepts
(the tests compare the two), except that nesting deeper than :data:`MAX_DEPTH`
is refused instead of exhausting the stack, and ``NaN``/``Infinity`` (which
``json.loads`` allows) are not JSON.  :func:`dumps` writes what ``json.dumps``
writes for plain data, so :mod:`depmin.compat` can serve both as ``json`` where
the standard library has none.
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


_ESCAPE_OUT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
# Everything but printable ASCII other than '"' and '\\' (ensure_ascii): the class
# written as its complement compiles in microseconds, the range to U+10FFFF in ms.
_NEEDS_ESCAPE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')


def _quote(s: str) -> str:
    def one(m: re.Match[str]) -> str:
        c = m.group(0)
        if c in _ESCAPE_OUT:
            return _ESCAPE_OUT[c]
        n = ord(c)
        if n < 0x20:
            return f"\\u{n:04x}"
        if n > 0xFFFF:
            n -= 0x10000
            return f"\\u{0xD800 | (n >> 10):04x}\\u{0xDC00 | (n & 0x3FF):04x}"
        return f"\\u{n:04x}"

    return '"' + _NEEDS_ESCAPE.sub(one, s) + '"'


def dumps(obj: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """``json.dumps(obj, indent=indent, sort_keys=sort_keys)`` for plain data, byte for byte."""
    out: list[str] = []

    def emit(value: Any, level: int) -> None:
        if value is None:
            out.append("null")
        elif value is True:
            out.append("true")
        elif value is False:
            out.append("false")
        elif isinstance(value, str):
            out.append(_quote(value))
        elif isinstance(value, int):
            out.append(int.__repr__(value))
        elif isinstance(value, float):
            if value != value:
                out.append("NaN")
            elif value in (float("inf"), float("-inf")):
                out.append("Infinity" if value > 0 else "-Infinity")
            else:
                out.append(float.__repr__(value))
        elif isinstance(value, (list, tuple)):
            container(list(value), "[", "]", level, lambda v: emit(v, level + 1))
        elif isinstance(value, dict):
            items = sorted(value.items()) if sort_keys else list(value.items())
            container(items, "{", "}", level, lambda kv: pair(kv, level + 1))
        else:
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    def pair(kv: tuple[Any, Any], level: int) -> None:
        key, value = kv
        if not isinstance(key, str):
            key = "true" if key is True else "false" if key is False else "null" if key is None else str(key)
        out.append(_quote(key))
        out.append(": ")
        emit(value, level)

    def container(items: list[Any], open_: str, close: str, level: int, each: Any) -> None:
        if not items:
            out.append(open_ + close)
            return
        out.append(open_)
        for i, item in enumerate(items):
            if i:
                out.append("," if indent is not None else ", ")
            if indent is not None:
                out.append("\n" + " " * (indent * (level + 1)))
            each(item)
        if indent is not None:
            out.append("\n" + " " * (indent * level))
        out.append(close)

    emit(obj, 0)
    return "".join(out)
