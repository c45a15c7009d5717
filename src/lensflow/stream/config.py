"""PairsConfig: the one options object of `lensflow pairs`.

The engine, the runner, the SQLite state and the ksqlDB export are all driven by it, so the
local processor and the generated Kafka deployment cannot disagree. Values are validated when it
is built; messages show the bad value and a valid one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from lensflow.errors import StreamError
from lensflow.stream.windows import WindowDefinition, parse_duration, parse_window

DEFAULT_TOPIC = "sockfound"
DEFAULT_OUT_TOPIC = "sockpairs"


@dataclass(frozen=True)
class PairsConfig:
    window: str = "session:2s"  # session:<gap> (default) or tumbling:<size> (the seed's 5s)
    min_count: int = 4  # events a window needs to be a sighting (the seed: count(*) > 3)
    min_probability: float = 0.0  # percent 0..100, as in the messages; lower events are dropped
    blank: tuple[str, ...] = ("Blank",)  # labels that mean "no sock" (dropped first)
    grace: str = "2s"  # how late (event time) an event may arrive and still count
    mqtt: str | None = None  # mqtt://host:port to subscribe to (and publish changes on)
    topic: str = DEFAULT_TOPIC
    out_topic: str = DEFAULT_OUT_TOPIC  # "" = do not publish changes
    qos: int = 1  # subscription and publish QoS; 1 so a restart loses nothing queued
    client_id: str | None = None  # fixed MQTT client id (default derived from --state)
    state: Path | None = None  # SQLite file; None = in memory only
    view: str | None = None  # HOST:PORT of the live table page
    replay: Path | None = None  # JSONL file of messages instead of a broker

    def __post_init__(self) -> None:
        _ = self.windows, self.grace_ms  # parse now: a bad value fails at construction
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int):
            raise StreamError(f"--min-count must be a whole number, got {self.min_count!r}")
        if self.min_count < 1:
            raise StreamError(f"--min-count must be >= 1, got {self.min_count} (the seed used 4)")
        p = self.min_probability
        if not isinstance(p, int | float) or math.isnan(p) or not 0 <= p <= 100:
            raise StreamError(
                f"--min-probability is a percentage 0..100 like the messages' probability, got {p!r}"
            )
        if 0 < p < 1:
            # Messages carry percents: 0.6 would let almost everything through.
            raise StreamError(
                f"--min-probability {p!r} looks like a fraction; it is a percentage like the "
                f"messages' probability: use {p * 100:g} for {p:.0%}"
            )
        if isinstance(self.blank, str):
            object.__setattr__(self, "blank", (self.blank,))
        if any(not isinstance(b, str) or not b.strip() for b in self.blank):
            raise StreamError(f"--blank labels must be non-empty, got {list(self.blank)!r}")
        if not self.topic or any(c in self.topic for c in "#+"):
            raise StreamError(
                f"--topic must be a plain topic name without wildcards, got {self.topic!r}"
            )
        if self.out_topic and any(c in self.out_topic for c in "#+"):
            raise StreamError(f"--out-topic cannot contain wildcards, got {self.out_topic!r}")
        if self.qos not in (0, 1, 2):
            raise StreamError(f"--qos must be 0, 1 or 2, got {self.qos!r}")
        if self.view is not None:
            _ = self.view_address

    @cached_property
    def windows(self) -> WindowDefinition:
        return parse_window(self.window)

    @cached_property
    def grace_ms(self) -> int:
        return parse_duration(self.grace, what="--grace", allow_zero=True)

    @cached_property
    def view_address(self) -> tuple[str, int]:
        host, sep, port = str(self.view).rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise StreamError(f"--view must be HOST:PORT, e.g. 127.0.0.1:8765, got {self.view!r}")
        return host or "127.0.0.1", int(port)

    def engine_options(self) -> dict[str, Any]:
        """What decides the table: a state file made with other values cannot be continued."""
        return {
            "window": str(self.windows),
            "min_count": self.min_count,
            "min_probability": float(self.min_probability),
            "blank": sorted(self.blank),
            "grace_ms": self.grace_ms,
        }
