"""depmin's JSON reader for .note.dlopen against the standard library's json (the oracle).

Every JSON text json.dumps writes, with random whitespace, must read back equal;
random and mutated texts must be refused by both or read equal by both.  The only
differences are documented: NaN/Infinity are not JSON, and nesting is bounded.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depmin.loader import jsontext

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b if not isinstance(a, (list, dict)) else (
        json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True))


def oracle(text: str) -> object:
    """json.loads, with what depmin deliberately refuses refused too."""
    if re.search(r"\b(NaN|Infinity)\b", text):
        raise ValueError("not JSON")
    return json.loads(text)


@settings(max_examples=400, deadline=None)
@given(values, st.sampled_from(["", " ", "\n\t", "  \r\n"]), st.booleans())
def test_what_json_writes_reads_back(value: object, ws: str, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, separators=("," + ws, ":" + ws))
    assert same(jsontext.loads(ws + text + ws), json.loads(text))


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('[]{}",:0123456789.eE+-\\/ubfnrt \n\ttruefalsnul\u00e9\ud800')),
               max_size=30))
def test_any_text_is_refused_or_read_as_json_reads_it(text: str) -> None:
    try:
        want = oracle(text)
    except (ValueError, RecursionError):
        with pytest.raises(ValueError):
            jsontext.loads(text)
        return
    assert same(jsontext.loads(text), want)


@pytest.mark.parametrize("text", ['"\\ud83d\\ude00"', '"\\ud800"', '"\\u00e9\\n"', "-0", "1e400", "[]", "{}",
                                  '{"a":1,"a":2}', " [1, 2.5, -3e-2] "])  # fmt: skip
def test_corners_agree(text: str) -> None:
    assert same(jsontext.loads(text), json.loads(text))


@pytest.mark.parametrize("text", ["", "[", "[1,]", '{"a"}', "01", '"a\x01"', "tru", "NaN", "[1] 2", "'a'"])
def test_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(text)


def test_nesting_is_bounded_not_a_crash() -> None:
    assert jsontext.loads("[" * jsontext.MAX_DEPTH + "]" * jsontext.MAX_DEPTH) is not None
    with pytest.raises(ValueError, match="nested deeper"):
        jsontext.loads("[" * 100_000 + "]" * 100_000)


@settings(max_examples=400, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=25),
    st.sampled_from([None, 0, 2]), st.booleans())  # fmt: skip
def test_dumps_writes_what_json_writes(value: object, indent: int | None, sort_keys: bool) -> None:
    assert jsontext.dumps(value, indent=indent, sort_keys=sort_keys) == json.dumps(
        value, indent=indent, sort_keys=sort_keys
    )
