"""A straightforward batch computation of the pair table, to check the engine against.

It sees all events at once (sort, group, count), so it has no notion of lateness: it equals the
engine's result whenever no event arrives later than the grace period. `camera_events` makes
seed-like streams to compare the two on. Used by the tests and by bench/stream_throughput.py.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from lensflow.stream.config import PairsConfig
from lensflow.stream.engine import pair_seen
from lensflow.stream.windows import SessionWindows


def reference_table(
    messages: Iterable[dict[str, Any]], config: PairsConfig
) -> dict[str, dict[str, Any]]:
    """The final `{"<label>": {"number_socks_seen", "pair_seen"}}` table of timed messages."""
    times: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        label, probability = m.get("image"), m.get("probability")
        if not isinstance(label, str) or not label.strip() or label in config.blank:
            continue
        if config.min_probability > 0 and (
            probability is None or probability < config.min_probability
        ):
            continue
        times[label].append(int(m["ts"]))
    sightings: dict[str, int] = {}
    for label, ts in times.items():
        ts.sort()
        if isinstance(config.windows, SessionWindows):
            runs, size = [], 1
            for a, b in itertools.pairwise(ts):
                if b - a > config.windows.gap_ms:
                    runs.append(size)
                    size = 0
                size += 1
            runs.append(size)
            n = sum(1 for r in runs if r >= config.min_count)
        else:
            per_window = Counter(t // config.windows.size_ms for t in ts)
            n = sum(1 for c in per_window.values() if c >= config.min_count)
        if n:
            sightings[label] = n
    return {
        label: {"number_socks_seen": n, "pair_seen": pair_seen(n)}
        for label, n in sorted(sightings.items())
    }


CAMERA_LABELS = ("Google", "Mongo", "Confluent", "Github", "Databricks", "Streamset")


def camera_events(
    seed: int, n: int = 3000, disorder_ms: int = 0, t0: int = 1_700_000_000_000
) -> list[dict[str, Any]]:
    """A camera-like stream: runs of one sock (30-400 ms apart) with ghost labels and blanks,
    pauses between socks; with `disorder_ms`, locally shuffled (each event up to that much late).
    """
    rng = random.Random(seed)
    labels = CAMERA_LABELS[:4]
    events: list[dict[str, Any]] = []
    t = t0 + rng.randrange(5000)
    while len(events) < n:
        label = rng.choice(labels)
        for _ in range(rng.randint(1, 30)):
            t += rng.randint(30, 400)
            shown = label if rng.random() > 0.08 else rng.choice([*labels, "Blank"])
            events.append({"image": shown, "probability": round(rng.uniform(30, 100), 2), "ts": t})
        t += rng.choice([100, 1500, 2500, 6000])
    events = events[:n]
    if disorder_ms:
        events.sort(key=lambda m: m["ts"] + rng.uniform(0, disorder_ms))
    return events
