"""Stream engine throughput in replay mode on one core, checked against a batch reference.

    .venv/bin/python bench/stream_throughput.py [--events 500000] [--repeats 5] [--disorder-ms 1500]

Generates a seed-like camera stream (`camera_events`: runs of one sock with ghost labels and blank
frames, each event up to --disorder-ms late), writes it as JSON lines, pins the process to one CPU,
then for each window kind (session:2s, tumbling:5s) times:
- replay: `lensflow.stream.runner.replay` over the file (read, json.loads, engine, table), the
  path `lensflow pairs --replay` runs, without --state;
- engine: `PairEngine.process` over the already-decoded messages;
- baseline: `reference_table`, the straightforward batch computation (filter, sort per label,
  group by window / split on gaps, count), over the same decoded messages.
Every replay's final table must be identical to the reference's (the script fails otherwise).
Prints one JSON line with median events/s of each and the engine/reference time ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lensflow.stream.config import PairsConfig
from lensflow.stream.engine import PairEngine
from lensflow.stream.reference import camera_events, reference_table
from lensflow.stream.runner import replay

TARGET_EVENTS_PER_S = 50_000


def pin_one_core() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    return core


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def engine_only(config: PairsConfig, events: list[dict]) -> dict:
    engine = PairEngine(config)
    process = engine.process
    for e in events:
        process(e)
    return engine.table.final()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--disorder-ms", type=int, default=1500)
    args = parser.parse_args()

    core = pin_one_core()
    events = camera_events(seed=0, n=args.events, disorder_ms=args.disorder_ms)
    results: dict[str, object] = {
        "bench": "stream_throughput",
        "events": len(events),
        "disorder_ms": args.disorder_ms,
        "repeats": args.repeats,
        "pinned_core": core,
        "python": platform.python_version(),
        "cpus_visible": os.cpu_count(),
    }
    identical = True
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        results["file_mb"] = round(path.stat().st_size / 1e6, 1)
        for window in ("session:2s", "tumbling:5s"):
            config = PairsConfig(window=window, min_count=4, min_probability=50, grace="2s")
            ref_s, engine_s, replay_s = [], [], []
            for _ in range(args.repeats):
                t, ref = timed(lambda c=config: reference_table(events, c))
                ref_s.append(t)
                t, table = timed(lambda c=config: engine_only(c, events))
                engine_s.append(t)
                identical &= table == ref
                t, pipeline = timed(lambda c=config: replay(c, path))
                replay_s.append(t)
                identical &= pipeline.engine.table.final() == ref
                late = pipeline.engine.stats.late_dropped
            n = len(events)
            results[window] = {
                "replay_events_per_s": round(n / statistics.median(replay_s)),
                "engine_events_per_s": round(n / statistics.median(engine_s)),
                "reference_events_per_s": round(n / statistics.median(ref_s)),
                "engine_time_over_reference": round(
                    statistics.median(engine_s) / statistics.median(ref_s), 2
                ),
                "labels_sighted": len(ref),
                "sightings": sum(r["number_socks_seen"] for r in ref.values()),
                "late_dropped": late,
            }
    results["identical_to_reference"] = identical
    results["target_events_per_s"] = TARGET_EVENTS_PER_S
    results["meets_target"] = all(
        results[w]["replay_events_per_s"] >= TARGET_EVENTS_PER_S  # type: ignore[index]
        for w in ("session:2s", "tumbling:5s")
    )
    print(json.dumps(results))
    if not identical:
        sys.exit("the engine's table differs from the reference computation")


if __name__ == "__main__":
    main()
