"""Aggregators: what is kept per window, as small classes (initialize, agg, merge, result).

`merge` exists because session windows merge when a late event bridges their gap. Each
aggregator is stateless; the state it returns lives in the window.
"""

from __future__ import annotations


class Count:
    """Number of events in the window (ksqlDB COUNT(*))."""

    name = "count"

    def initialize(self) -> int:
        return 0

    def agg(self, state: int, ts: int) -> int:
        return state + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, state: int) -> int:
        return state


class Latest:
    """Time of the newest event in the window (for the table's "last seen")."""

    name = "latest"

    def initialize(self) -> int:
        return -(2**63)

    def agg(self, state: int, ts: int) -> int:
        return ts if ts > state else state

    def merge(self, a: int, b: int) -> int:
        return a if a > b else b

    def result(self, state: int) -> int:
        return state


COUNT = Count()
LATEST = Latest()
