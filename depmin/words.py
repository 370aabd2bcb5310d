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

    def __hash__(self) -> int:
        return hash(str(self.value))
