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

With the [flink] extra and Java (`--flink auto`, the default, skips Flink where they are missing),
the same pipeline also runs as a Flink SQL job in a local mini-cluster (`lensflow pairs --engine
flink`, session:2s), started BEFORE the pin so the JVM may use every core:
- jvm_start_s: starting the JVM and the TableEnvironment, once per process;
- first_job_s / job_startup_s: a job over 10 events, the first one (class loading, JIT) and the
  next (the fixed cost of every job: plan, mini-cluster, deploy, collect);
- per size in --flink-events (default 100k and 1M) and parallelism 1 and 2: the job alone
  (events/s over the job time, and net of job_startup_s), the whole command (reading and
  checking the messages in Python + the job), against the built-in replay of the same file;
  and the marginal rate between the two largest sizes (their difference in events over their
  difference in job time: the throughput without the fixed cost);
  each Flink table and its counters must equal the built-in engine's (the script fails otherwise).
One run per Flink cell (a 1M job takes minutes on a loaded 2-core machine): quote them as such.
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
FLINK_WINDOW = "session:2s"


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


def start_flink(mode: str) -> tuple[float | None, str | None]:
    """(seconds to start the JVM + TableEnvironment, None) or (None, why Flink is skipped)."""
    if mode == "off":
        return None, "--flink off"
    from lensflow.errors import StreamError
    from lensflow.stream import flink

    try:
        flink.check_flink()
    except StreamError as e:
        if mode == "on":
            raise
        return None, str(e)
    t, _ = timed(flink.table_environment)
    return t, None


def flink_bench(sizes: list[int], disorder_ms: int, tmp: Path) -> tuple[dict, bool]:
    """Job start-up and events/s of the Flink job at parallelism 1 and 2, beside the built-in
    replay of the same file; (results, every table identical to the built-in engine's)."""
    from lensflow.stream.flink import run_flink, run_job

    config = PairsConfig(window=FLINK_WINDOW, min_count=4, min_probability=50, grace="2s")
    tiny = tmp / "tiny.jsonl"
    tiny.write_text("".join(json.dumps(e) + "\n" for e in camera_events(seed=1, n=10)))
    first, _ = timed(lambda: run_job(config, tiny))
    startup, _ = timed(lambda: run_job(config, tiny))
    out: dict[str, object] = {
        "window": FLINK_WINDOW,
        "first_job_s": round(first, 1),
        "job_startup_s": round(startup, 1),
    }
    identical = True
    for n in sizes:
        path = tmp / f"flink-{n}.jsonl"
        path.write_text(
            "".join(json.dumps(e) + "\n" for e in camera_events(0, n=n, disorder_ms=disorder_ms))
        )
        builtin_s, pipeline = timed(lambda p=path: replay(config, p))
        cell: dict[str, object] = {
            "builtin_replay_events_per_s": round(n / builtin_s),
            "late_dropped": pipeline.engine.stats.late_dropped,
        }
        for parallelism in (1, 2):
            total_s, result = timed(
                lambda p=path, k=parallelism: run_flink(config, p, parallelism=k)
            )
            job_s = result.seconds["job"]
            same = (
                result.final() == pipeline.engine.table.final()
                and result.stats.to_dict() == pipeline.engine.stats.to_dict()
            )
            identical &= same
            cell[f"parallelism_{parallelism}"] = {
                "job_s": round(job_s, 1),
                "job_events_per_s": round(n / job_s),
                # None when the job was quicker than the tiny one: load noise, not a rate
                "job_events_per_s_net_of_startup": (
                    round(n / (job_s - startup)) if job_s > startup else None
                ),
                "command_s": round(total_s, 1),
                "command_events_per_s": round(n / total_s),
                "identical_to_builtin": same,
            }
        out[str(n)] = cell
    # The rate between the two largest sizes: the job's own throughput, whatever its fixed cost.
    if len(sizes) >= 2:
        small, large = sorted(sizes)[-2:]
        for parallelism in (1, 2):
            key = f"parallelism_{parallelism}"
            dt = out[str(large)][key]["job_s"] - out[str(small)][key]["job_s"]  # type: ignore[index]
            out[f"marginal_events_per_s_{key}"] = round((large - small) / dt) if dt > 0 else None
    return out, identical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--disorder-ms", type=int, default=1500)
    parser.add_argument("--flink", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--flink-events", default="100000,1000000", help="comma-separated sizes")
    args = parser.parse_args()

    jvm_start_s, flink_skipped = start_flink(args.flink)  # before the pin: the JVM keeps 2 cores
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
        if flink_skipped is None:
            sizes = [int(x) for x in args.flink_events.split(",") if x.strip()]
            flink_results, flink_identical = flink_bench(sizes, args.disorder_ms, Path(tmp))
            results["flink"] = {"jvm_start_s": round(jvm_start_s or 0, 1), **flink_results}
            identical &= flink_identical
        else:
            results["flink"] = {"skipped": flink_skipped}
    results["identical_to_reference"] = identical
    results["target_events_per_s"] = TARGET_EVENTS_PER_S
    results["meets_target"] = all(
        results[w]["replay_events_per_s"] >= TARGET_EVENTS_PER_S  # type: ignore[index]
        for w in ("session:2s", "tumbling:5s")
    )
    print(json.dumps(results))
    if not identical:
        sys.exit("the engine's (or Flink's) table differs from the reference computation")


if __name__ == "__main__":
    main()
