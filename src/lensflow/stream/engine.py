"""The pure stream engine: messages in, pair-table changes out. No I/O, no clocks, no threads.

Per message, in this order (the seed's ksqlDB pipeline, made explicit):
1. drop it if it is not a prediction (counted as `invalid`), if its label is a blank label
   (`blank`), or if its probability is under `min_probability` (`low_probability`);
2. take its event time from `ts` (ms since the epoch), else the arrival time the runner passes;
3. put it in a window of its label: a tumbling window aligned to the epoch, or a session;
4. a window with at least `min_count` events is one *sighting* of that label, counted the moment it
   reaches `min_count` (ksqlDB `HAVING COUNT(*) >= n EMIT CHANGES`); when a late event bridges
   two sessions they merge, and sightings are recounted (two sighted sessions become one);
5. the pair table keeps, per label, the number of sightings, Pair/Un-matched (even/odd, as the
   seed) and when it was last seen; every change of a count is returned as a `Change`.

Event time and lateness follow Kafka Streams (and so ksqlDB): the stream time is the largest event
time seen so far over all labels; a tumbling window [start, end) closes once stream time >=
end + grace, a session [first, last] once stream time > last + gap + grace. An event that would
land in a closed window is dropped and counted in `late_dropped`. Out-of-order events within the
grace period are counted in their own window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from lensflow.errors import StreamError
from lensflow.stream.aggregators import COUNT, LATEST
from lensflow.stream.config import PairsConfig
from lensflow.stream.windows import SessionWindows

_NEVER = float("inf")


def pair_seen(sightings: int) -> str:
    """The seed's `(count/2)*2 = count`: an even number of sightings is a Pair."""
    return "Pair" if sightings % 2 == 0 else "Un-matched"


@dataclass(slots=True)
class Window:
    """One open window of one label. Tumbling: end is exclusive; session: end = last event time."""

    start: int
    end: int
    count: int
    latest: int

    def to_list(self) -> list[int]:
        return [self.start, self.end, self.count, self.latest]


@dataclass(slots=True)
class Row:
    """One label of the pair table."""

    sightings: int = 0
    last_seen: int | None = None  # event time (ms) of the newest event in a sighted window

    @property
    def pair_seen(self) -> str:
        return pair_seen(self.sightings)


@dataclass(frozen=True, slots=True)
class Change:
    """A label whose number of sightings changed; what goes to --out-topic."""

    label: str
    number_socks_seen: int
    pair_seen: str
    last_seen: int | None

    def to_message(self) -> dict[str, Any]:
        return {
            "image": self.label,
            "number_socks_seen": self.number_socks_seen,
            "pair_seen": self.pair_seen,
            "last_seen": self.last_seen,
        }


@dataclass(slots=True)
class EngineStats:
    received: int = 0
    accepted: int = 0  # put into a window
    blank: int = 0
    low_probability: int = 0
    invalid: int = 0  # not a JSON object with a string `image`, or a non-numeric ts/probability
    late_dropped: int = 0  # later than the grace period

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class PairTable:
    rows: dict[str, Row] = field(default_factory=dict)

    def row(self, label: str) -> Row:
        row = self.rows.get(label)
        if row is None:
            row = self.rows[label] = Row()
        return row

    def final(self) -> dict[str, dict[str, Any]]:
        """`{"<label>": {"number_socks_seen": n, "pair_seen": ...}}` for labels with sightings."""
        return {
            label: {"number_socks_seen": row.sightings, "pair_seen": row.pair_seen}
            for label, row in sorted(self.rows.items())
            if row.sightings > 0
        }

    def snapshot(self) -> list[dict[str, Any]]:
        """Rows for displays: label, sightings, pair_seen, last_seen (ms), newest first."""
        rows = [
            {
                "label": label,
                "number_socks_seen": row.sightings,
                "pair_seen": row.pair_seen,
                "last_seen": row.last_seen,
            }
            for label, row in self.rows.items()
            if row.sightings > 0
        ]
        return sorted(rows, key=lambda r: (-(r["last_seen"] or 0), r["label"]))


def _number(value: Any) -> float | None:
    """A finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def classify(
    message: Any, blank: frozenset[str], min_probability: float, arrival_ms: int | None
) -> tuple[str, int] | str:
    """(label, event time in ms) of a message to count, else why not: 'invalid', 'blank' or
    'low_probability' (step 1 and 2 of the module docstring; shared with the Flink runner).

    Raises StreamError when a message to count has no `ts` and `arrival_ms` is None (a replay).
    """
    label = message.get("image") if isinstance(message, dict) else None
    if not isinstance(label, str) or not label.strip():
        return "invalid"
    if label in blank:
        return "blank"
    probability = message.get("probability")
    if probability is not None:
        probability = _number(probability)
        if probability is None:
            return "invalid"
    if min_probability > 0 and (probability is None or probability < min_probability):
        return "low_probability"
    ts = message.get("ts")
    if ts is None:
        if arrival_ms is None:
            raise StreamError(
                "message has no 'ts' (event time, ms since the epoch) and no arrival time"
            )
        return label, arrival_ms
    ts = _number(ts)
    if ts is None:
        return "invalid"
    return label, int(ts)


class PairEngine:
    """Turns prediction messages into sightings and a pair table (see the module docstring).

    engine = PairEngine(PairsConfig(window="session:2s", min_count=4))
    changes = engine.process({"image": "Google", "probability": 97.0, "ts": 1_700_000_000_000})
    engine.table.final()
    """

    def __init__(self, config: PairsConfig) -> None:
        self.config = config
        self.windows = config.windows
        self.session = isinstance(self.windows, SessionWindows)
        self.span = self.windows.gap_ms if self.session else self.windows.size_ms  # type: ignore[union-attr]
        self.min_count = config.min_count
        self.min_probability = float(config.min_probability)
        self.blank = frozenset(config.blank)
        self.grace = config.grace_ms
        self.stream_time: int | None = None
        # label -> open windows: {start: Window} for tumbling, [Window, ...] for sessions
        self.open: dict[str, Any] = {}
        self.table = PairTable()
        self.stats = EngineStats()
        self._next_expiry: float = _NEVER

    # ---- input -------------------------------------------------------------------------------

    def process(self, message: Any, arrival_ms: int | None = None) -> list[Change]:
        """One decoded message. `arrival_ms` is the event time when the message has no `ts`.

        Raises StreamError when a message has no `ts` and no arrival time was given (a replay).
        """
        stats = self.stats
        stats.received += 1
        try:
            verdict = classify(message, self.blank, self.min_probability, arrival_ms)
        except StreamError:
            stats.invalid += 1
            raise
        if type(verdict) is str:  # why it is not counted: a field of EngineStats
            setattr(stats, verdict, getattr(stats, verdict) + 1)
            return []
        label, ts = verdict
        return self.add(label, ts)

    def add(self, label: str, ts: int) -> list[Change]:
        """One accepted event of `label` at event time `ts` (ms)."""
        changes = self._add_session(label, ts) if self.session else self._add_tumbling(label, ts)
        if self.stream_time is not None and self.stream_time >= self._next_expiry:
            self._expire()
        return changes

    # ---- tumbling ----------------------------------------------------------------------------

    def _add_tumbling(self, label: str, ts: int) -> list[Change]:
        size = self.span
        start = ts - ts % size
        end = start + size
        st = self.stream_time
        if st is not None and end + self.grace <= st:
            self.stats.late_dropped += 1
            return []
        if st is None or ts > st:
            self.stream_time = ts
        self.stats.accepted += 1
        wins = self.open.get(label)
        if wins is None:
            wins = self.open[label] = {}
        w = wins.get(start)
        if w is None:
            w = wins[start] = Window(start, end, COUNT.initialize(), LATEST.initialize())
            self._next_expiry = min(self._next_expiry, end + self.grace)
        w.count = COUNT.agg(w.count, ts)
        w.latest = LATEST.agg(w.latest, ts)
        return self._sighted(label, w, 1 if w.count == self.min_count else 0)

    # ---- sessions ----------------------------------------------------------------------------

    def _add_session(self, label: str, ts: int) -> list[Change]:
        gap = self.span
        st = self.stream_time
        st = ts if st is None or ts > st else st
        close = st - gap - self.grace  # sessions ending before this are closed
        sessions: list[Window] | None = self.open.get(label)
        if sessions is None:
            sessions = self.open[label] = []
        hits = [s for s in sessions if s.end >= close and s.start - gap <= ts <= s.end + gap]
        if not hits and ts < close:
            self.stats.late_dropped += 1
            return []
        self.stream_time = st
        self.stats.accepted += 1
        if len(hits) == 1:
            w = hits[0]
            before = w.count >= self.min_count
            w.start = min(w.start, ts)
            w.end = max(w.end, ts)
            w.count = COUNT.agg(w.count, ts)
            w.latest = LATEST.agg(w.latest, ts)
            return self._sighted(label, w, int(not before and w.count >= self.min_count))
        w = Window(ts, ts, COUNT.agg(COUNT.initialize(), ts), LATEST.agg(LATEST.initialize(), ts))
        were_sighted = 0
        for s in hits:  # a late event bridged sessions: merge them (ksqlDB does the same)
            were_sighted += s.count >= self.min_count
            w.start = min(w.start, s.start)
            w.end = max(w.end, s.end)
            w.count = COUNT.merge(w.count, s.count)
            w.latest = LATEST.merge(w.latest, s.latest)
            sessions.remove(s)
        sessions.append(w)
        self._next_expiry = min(self._next_expiry, w.end + gap + self.grace + 1)
        return self._sighted(label, w, int(w.count >= self.min_count) - were_sighted)

    # ---- table -------------------------------------------------------------------------------

    def _sighted(self, label: str, w: Window, delta: int) -> list[Change]:
        """Update the label's row after `w` received an event; `delta` = change in sightings."""
        if w.count < self.min_count and delta == 0:
            return []
        row = self.table.row(label)
        # w.latest covers this event and, after a merge or on reaching min_count, the earlier ones.
        if w.count >= self.min_count and (row.last_seen is None or w.latest > row.last_seen):
            row.last_seen = w.latest
        if delta == 0:
            return []
        row.sightings += delta
        return [Change(label, row.sightings, row.pair_seen, row.last_seen)]

    def _expire(self) -> None:
        """Forget closed windows (their sightings stay in the table) and find the next expiry."""
        st = self.stream_time
        assert st is not None
        next_expiry: float = _NEVER
        for label in list(self.open):
            wins = self.open[label]
            if self.session:
                keep = [s for s in wins if s.end + self.span + self.grace >= st]
                if keep:
                    self.open[label] = keep
                    for s in keep:
                        next_expiry = min(next_expiry, s.end + self.span + self.grace + 1)
                else:
                    del self.open[label]
            else:
                for start in [s for s, w in wins.items() if w.end + self.grace <= st]:
                    del wins[start]
                if wins:
                    for w in wins.values():
                        next_expiry = min(next_expiry, w.end + self.grace)
                else:
                    del self.open[label]
        self._next_expiry = next_expiry

    # ---- persistence -------------------------------------------------------------------------

    def open_windows(self) -> dict[str, list[Window]]:
        """label -> its open windows, oldest first."""
        out: dict[str, list[Window]] = {}
        for label, wins in self.open.items():
            items = wins if self.session else list(wins.values())
            out[label] = sorted(items, key=lambda w: w.start)
        return out

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly: stream time, open windows, table, counters."""
        if self.stream_time is not None:
            self._expire()  # canonical: no closed window lingers until the next lazy sweep
        return {
            "stream_time": self.stream_time,
            "open": {
                label: [w.to_list() for w in wins] for label, wins in self.open_windows().items()
            },
            "table": {
                label: [row.sightings, row.last_seen] for label, row in self.table.rows.items()
            },
            "stats": self.stats.to_dict(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.stream_time = snapshot["stream_time"]
        self.open = {}
        for label, items in snapshot["open"].items():
            wins = [Window(*item) for item in items]
            self.open[label] = wins if self.session else {w.start: w for w in wins}
        self.table = PairTable(
            {label: Row(sightings, last) for label, (sightings, last) in snapshot["table"].items()}
        )
        self.stats = EngineStats(**snapshot["stats"])
        self._next_expiry = -_NEVER  # recomputed by the first _expire()
        if self.stream_time is not None:
            self._expire()
