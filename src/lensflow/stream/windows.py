"""Window definitions: what a window is, separate from how events are processed in one.

    parse_window("session:2s")   -> SessionWindows(gap_ms=2000)
    parse_window("tumbling:5s")  -> TumblingWindows(size_ms=5000)
    parse_duration("500ms")      -> 500

Values are checked when a definition is built, and the message shows the bad value and a valid one.
Times are integers in milliseconds since the epoch, like the `ts` of the live messages.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from lensflow.errors import StreamError

WINDOW_KINDS = ("session", "tumbling")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
WINDOW_EXAMPLE = "session:2s or tumbling:5s"


def parse_duration(text: str, what: str = "duration", allow_zero: bool = False) -> int:
    """'2s', '500ms', '1.5s', '1m' -> milliseconds; a unit is required so nobody guesses."""
    match = _DURATION.match(str(text))
    if not match:
        raise StreamError(
            f"bad {what} {text!r}: expected a number with a unit (ms, s, m or h), e.g. 2s or 500ms"
        )
    value = float(match.group(1)) * _UNITS_MS[match.group(2)]
    if value != int(value):
        raise StreamError(f"bad {what} {text!r}: it must be a whole number of milliseconds")
    ms = int(value)
    if ms == 0 and not allow_zero:
        raise StreamError(f"bad {what} {text!r}: it must be longer than 0, e.g. 2s")
    return ms


def format_duration(ms: int) -> str:
    """The shortest exact spelling: 5000 -> '5s', 1500 -> '1500ms', 60000 -> '1m'."""
    for unit in ("h", "m", "s"):
        if ms and ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class TumblingWindows:
    """Fixed windows aligned to the epoch: [k*size, (k+1)*size), start inclusive, end exclusive.

    This is ksqlDB's WINDOW TUMBLING, which the SockSort seed used with SIZE 5 SECONDS.
    """

    size_ms: int
    kind: str = "tumbling"

    def __post_init__(self) -> None:
        if not isinstance(self.size_ms, int) or self.size_ms <= 0:
            raise StreamError(f"tumbling window size must be > 0 ms, got {self.size_ms!r}")

    def start_of(self, ts: int) -> int:
        return ts - ts % self.size_ms

    def __str__(self) -> str:
        return f"tumbling:{format_duration(self.size_ms)}"


@dataclass(frozen=True)
class SessionWindows:
    """Per key, events at most `gap_ms` apart (inclusive) form one session; ksqlDB's WINDOW SESSION.

    A session spans [first event, last event]; an event within the gap of two sessions merges them.
    """

    gap_ms: int
    kind: str = "session"

    def __post_init__(self) -> None:
        if not isinstance(self.gap_ms, int) or self.gap_ms <= 0:
            raise StreamError(f"session gap must be > 0 ms, got {self.gap_ms!r}")

    def __str__(self) -> str:
        return f"session:{format_duration(self.gap_ms)}"


WindowDefinition = TumblingWindows | SessionWindows


def parse_window(text: str) -> WindowDefinition:
    """'session:2s' | 'tumbling:5s' -> a window definition, or a StreamError showing the bad value."""
    kind, sep, duration = str(text).strip().partition(":")
    kind = kind.strip().lower()
    if kind not in WINDOW_KINDS:
        close = difflib.get_close_matches(kind, WINDOW_KINDS, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise StreamError(
            f"bad window {text!r}: the kind must be 'session' or 'tumbling'{hint}; "
            f"e.g. {WINDOW_EXAMPLE}"
        )
    if not sep or not duration.strip():
        raise StreamError(
            f"bad window {text!r}: give a duration after the colon, e.g. {WINDOW_EXAMPLE}"
        )
    what = "session gap" if kind == "session" else "tumbling window size"
    try:
        ms = parse_duration(duration)
    except StreamError:
        raise StreamError(
            f"bad window {text!r}: the {what} must be a number with a unit (ms, s, m or h), "
            f"greater than 0; e.g. {WINDOW_EXAMPLE}"
        ) from None
    return SessionWindows(ms) if kind == "session" else TumblingWindows(ms)
