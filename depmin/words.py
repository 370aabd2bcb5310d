"""Closed sets of words (steps, outcomes, kinds, verdicts) as enums that print as their words.

A ``(str, Enum)`` member compares equal to its word and is written as it by
``json``; ``format()`` of one changed in Python 3.12 (it gives ``Step.CACHE``),
so :class:`Word` pins ``str()`` and ``format()`` to the word on every version, and
hashes as the word (Enum hashes the member's name), so a word and its member are
the same key of a dict.
"""

from __future__ import annotations

from enum import Enum


class Word(str, Enum):
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    # A member is the str of its word, so str's own (C) hash is the word's: the resolver
    # hashes these words tens of thousands of times per run.
    __hash__ = str.__hash__
