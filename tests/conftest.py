"""Shared pytest wiring: a ``report`` fixture whose lines are printed in the terminal summary.

Tests that compare depmin with an oracle over many files say how many they
compared; the numbers appear at the end of every run (CI's log included).
"""

from __future__ import annotations

from typing import Callable

import pytest

_LINES: list[str] = []


@pytest.fixture
def report() -> Callable[[str], None]:
    return _LINES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("depmin: what the oracle comparisons covered")
        for line in _LINES:
            terminalreporter.write_line(line)
