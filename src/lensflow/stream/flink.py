"""The pair pipeline as Flink SQL: `pairs --engine flink` (a local mini-cluster) and
`pairs --export-flink DIR` (the same job for a Flink cluster reading Kafka).

    job = flink_job(config)                  -> the statements, generated from PairsConfig
    run_flink(config, "events.jsonl")        -> FlinkResult: the table the built-in engine prints
    export_flink(config, "flink/")           -> pairs.sql, mqtt-source.json, README.md, config.yaml

One text for both: `flink_job(config).statements(source_with)` is the source table and the
views (`.settings()` the options the export writes as SET statements); the local run executes
exactly these with a filesystem source, the export writes them with a Kafka source (only the
`WITH (...)` clause differs) and adds an upsert-kafka sink and its INSERT. The local run reads the pair table with `to_pandas()`, which applies the
update stream inside the JVM and hands Python only the final rows.

How the SQL matches the built-in engine (stream/engine.py) to the millisecond:
- the watermark follows counted events only (`CASE WHEN counted THEN ...`), as the engine's
  stream time does: blank, low-probability and untimed messages do not move it;
- a tumbling window [start, end) fires when the watermark reaches end - 1, a session ending at
  its last event `last` at last + gap - 1; the engine closes them once stream time >= end + grace
  and > last + gap + grace. So the watermark trails the newest counted event by grace + 1 ms
  (tumbling) or grace + 2 ms (session), and late events are dropped at the same moment;
- `pipeline.auto-watermark-interval` = 0 emits a watermark after every event (the default 200 ms
  period would decide lateness by the wall clock);
- windows are aligned to the epoch (`table.local-time-zone` = UTC), sessions join events at most
  gap apart (Flink's session windows [t, t + gap) merge when they touch, like the engine's).
The engine also counts a sighting the moment a window reaches min-count and recounts on merges;
Flink emits a window once it closes. The final table is the same; only the timing of the
changes differs (see the README of the export).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

from lensflow.errors import StreamError
from lensflow.stream.config import PairsConfig
from lensflow.stream.engine import EngineStats, classify
from lensflow.stream.ksql import (
    KAFKA_BOOTSTRAP,
    kafka_topic,
    options_line,
    sql_string,
    write_export,
)
from lensflow.stream.windows import SessionWindows, format_duration

FLINK_EXTRA = "pip install 'lensflow[flink]'"
JAVA_HINT = "apt-get install openjdk-17-jre-headless, or set JAVA_HOME"
MIN_JAVA = 11  # Flink 2.x runs on Java 11, 17 (recommended) and 21
# The objects the job creates, in creation order (dropped in reverse before a rerun).
TABLES = ("sock_stream",)
VIEWS = ("sock_events", "sock_windows", "sock_sightings", "sock_pairs")


def _interval(ms: int) -> str:
    """An exact SQL interval. Flink's plans take only the default precisions (SECOND(2, 6),
    DAY(2) TO SECOND(6)): '2.001' SECOND under 100 s, else '1 02:30:00.000' DAY TO SECOND."""
    seconds, millis = divmod(ms, 1000)
    if seconds < 100:
        return f"INTERVAL '{seconds}.{millis:03d}' SECOND"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days > 99:
        raise StreamError(f"{format_duration(ms)} is too long for a Flink interval (< 100 days)")
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND"


def with_clause(options: dict[str, str]) -> str:
    body = ",\n".join(f"  {sql_string(k)} = {sql_string(v)}" for k, v in options.items())
    return f"WITH (\n{body}\n)"


@dataclass(frozen=True)
class FlinkJob:
    """The Flink SQL of one PairsConfig; every statement is one string without the final ';'."""

    config: PairsConfig

    @property
    def session(self) -> bool:
        return isinstance(self.config.windows, SessionWindows)

    @property
    def watermark_delay_ms(self) -> int:
        """grace + 1 ms (tumbling) or + 2 ms (session): see the module docstring."""
        return self.config.grace_ms + (2 if self.session else 1)

    def settings(self) -> dict[str, str]:
        """Set on the local TableEnvironment; `SET` statements in the export."""
        return {"table.local-time-zone": "UTC", "pipeline.auto-watermark-interval": "0"}

    def counted(self) -> str:
        """Step 1 of the engine: the condition for a message to be counted at all."""
        c = self.config
        conditions = ["image IS NOT NULL", "TRIM(image) <> ''", "ts IS NOT NULL"]
        conditions.append(f"image NOT IN ({', '.join(sql_string(b) for b in c.blank)})")
        if c.min_probability > 0:
            conditions.append(f"probability >= {float(c.min_probability)!r}")
        return " AND ".join(conditions)

    def source(self, source_with: dict[str, str]) -> str:
        return (
            "CREATE TABLE sock_stream (\n"
            "  image STRING,\n"
            "  probability DOUBLE,\n"
            "  ts BIGINT,\n"
            "  event_time AS TO_TIMESTAMP_LTZ(COALESCE(ts, 0), 3),\n"
            f"  counted AS {self.counted()},\n"
            "  WATERMARK FOR event_time AS\n"
            f"    CASE WHEN counted THEN event_time - {_interval(self.watermark_delay_ms)} END\n"
            f") {with_clause(source_with)}"
        )

    def views(self) -> list[str]:
        c = self.config
        w = c.windows
        if isinstance(w, SessionWindows):
            tvf = (
                "SESSION(TABLE sock_events PARTITION BY image, DESCRIPTOR(event_time), "
                f"{_interval(w.gap_ms)})"
            )
        else:
            tvf = f"TUMBLE(TABLE sock_events, DESCRIPTOR(event_time), {_interval(w.size_ms)})"
        return [
            "CREATE VIEW sock_events AS\n"
            "  SELECT image, probability, ts, event_time FROM sock_stream WHERE counted",
            "CREATE VIEW sock_windows AS\n"
            "  SELECT image, window_start, window_end, COUNT(*) AS events, MAX(ts) AS last_ts\n"
            f"  FROM TABLE({tvf})\n"
            "  GROUP BY image, window_start, window_end",
            "CREATE VIEW sock_sightings AS\n"
            "  SELECT image, window_start, window_end, events, last_ts FROM sock_windows\n"
            f"  WHERE events >= {c.min_count}",
            "CREATE VIEW sock_pairs AS\n"
            "  SELECT image,\n"
            "         COUNT(*) AS number_socks_seen,\n"
            "         CASE WHEN (COUNT(*) / 2) * 2 = COUNT(*) THEN 'Pair' ELSE 'Un-matched' END"
            " AS pair_seen,\n"
            "         MAX(last_ts) AS last_seen\n"
            "  FROM sock_sightings\n"
            "  GROUP BY image",
        ]

    def statements(self, source_with: dict[str, str]) -> list[str]:
        """What the local run executes and the export writes (with another `source_with`)."""
        return [self.source(source_with), *self.views()]

    def sink(self, sink_with: dict[str, str]) -> list[str]:
        """The export's updating output: one row per label, keyed by it."""
        return [
            "CREATE TABLE sock_pairs_out (\n"
            "  image STRING,\n"
            "  number_socks_seen BIGINT,\n"
            "  pair_seen STRING,\n"
            "  last_seen BIGINT,\n"
            "  PRIMARY KEY (image) NOT ENFORCED\n"
            f") {with_clause(sink_with)}",
            "INSERT INTO sock_pairs_out\n"
            "  SELECT image, number_socks_seen, pair_seen, last_seen FROM sock_pairs",
        ]


def flink_job(config: PairsConfig) -> FlinkJob:
    return FlinkJob(config)


# The local run's result query: the pair table, plus one row with the number of events that
# landed in a window (the rest of the counted events were later than the grace period).
RESULT_QUERY = (
    "SELECT image, number_socks_seen, pair_seen, last_seen FROM sock_pairs\n"
    "UNION ALL\n"
    "SELECT CAST(NULL AS STRING), SUM(events), CAST(NULL AS STRING), CAST(NULL AS BIGINT)\n"
    "FROM sock_windows"
)


# ---- the local run ------------------------------------------------------------------------------


def java_major(executable: str) -> int | None:
    """17 for `openjdk version "17.0.15"`, 8 for `"1.8.0_392"`; None when it cannot be read."""
    try:
        out = subprocess.run(
            [executable, "-version"], capture_output=True, text=True, timeout=60
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_flink() -> None:
    """A one-line StreamError naming the [flink] extra or Java 17 when either is missing."""
    try:
        import pyflink  # noqa: F401
    except ImportError:
        raise StreamError(f"--engine flink needs the [flink] extra: {FLINK_EXTRA}") from None
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise StreamError(f"--engine flink needs a Java 17 runtime and found none: {JAVA_HINT}")
    major = java_major(java)
    if major is None or major < MIN_JAVA:
        raise StreamError(
            f"--engine flink needs Java 17 (at least {MIN_JAVA}); {java} is "
            f"{'unreadable' if major is None else f'Java {major}'}: {JAVA_HINT}"
        )


@cache
def table_environment() -> Any:
    """One streaming TableEnvironment (and JVM) per process: starting them takes seconds."""
    check_flink()
    # PyFlink imports Apache Beam, which warns on stderr about cloud filesystems it cannot load.
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    from pyflink.table import EnvironmentSettings, TableEnvironment

    return TableEnvironment.create(EnvironmentSettings.in_streaming_mode())


@dataclass
class FlinkResult:
    """The final table and counters of one Flink run, shaped like the built-in engine's."""

    rows: list[dict[str, Any]]  # label, number_socks_seen, pair_seen, last_seen
    stats: EngineStats
    config: PairsConfig
    statements: list[str]  # what was executed, in order (the export writes the same text)
    seconds: dict[str, float] = field(default_factory=dict)  # prepare, job

    def final(self) -> dict[str, dict[str, Any]]:
        """`{"<label>": {"number_socks_seen": n, "pair_seen": ...}}`, as PairTable.final()."""
        return {
            r["label"]: {"number_socks_seen": r["number_socks_seen"], "pair_seen": r["pair_seen"]}
            for r in sorted(self.rows, key=lambda r: r["label"])
        }

    def view(self) -> dict[str, Any]:
        """What rich_table shows, as PairsPipeline.view() (rows newest first)."""
        return {
            "ready": True,
            "rows": sorted(self.rows, key=lambda r: (-(r["last_seen"] or 0), r["label"])),
            "stats": self.stats.to_dict(),
            "stream_time": None,
            "window": str(self.config.windows),
            "min_count": self.config.min_count,
            "changes": 0,
            "duplicates": 0,
        }


def prepare_events(
    config: PairsConfig,
    source: BinaryIO,
    out: BinaryIO,
    from_stdin: bool,
    on_line: Callable[[int], None] | None = None,
) -> EngineStats:
    """Copy every message but the invalid ones to `out` and count them as the engine does.

    Flink's JSON format would coerce what the engine rejects ("97" read as 97.0) and cannot read
    standard input; so Python keeps the engine's notion of a message and gives a message without
    ts its arrival time (stdin only). The filters themselves run in the SQL.
    """
    stats = EngineStats()
    blank, floor = frozenset(config.blank), float(config.min_probability)
    lines = 0
    for raw in source:
        lines += 1
        if on_line is not None:
            on_line(len(raw))
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if message is None and not raw.strip():
            continue
        stats.received += 1
        arrival = int(time.time() * 1000) if from_stdin else None
        try:
            verdict = classify(message, blank, floor, arrival)
        except StreamError as e:
            raise StreamError(
                f"--replay line {lines}: {e}; a replay needs a ts on every message"
            ) from None
        if verdict == "invalid":
            stats.invalid += 1
            continue
        if type(verdict) is str:
            setattr(stats, verdict, getattr(stats, verdict) + 1)
        else:
            stats.accepted += 1  # counted; Flink tells how many of these were late
        if arrival is not None and message.get("ts") is None:
            raw = (json.dumps({**message, "ts": arrival}) + "\n").encode()
        out.write(raw if raw.endswith(b"\n") else raw + b"\n")
    if stats.received and stats.invalid == stats.received:
        raise StreamError(
            "no line of the replay is a prediction message; expected JSON lines like "
            '{"image": "Google", "probability": 97.5, "ts": 1700000000000}'
        )
    return stats


def _drop_objects(env: Any) -> None:
    for view in reversed(VIEWS):
        env.execute_sql(f"DROP VIEW IF EXISTS {view}")
    for table in TABLES:
        env.execute_sql(f"DROP TABLE IF EXISTS {table}")


def create_job(config: PairsConfig, events_file: Path, parallelism: int = 1) -> list[str]:
    """Set up the process's TableEnvironment for `config` over a JSON-lines file (replacing the
    objects of an earlier run); returns the statements executed. Queries on the views run it."""
    env = table_environment()
    job = flink_job(config)
    for key, value in {**job.settings(), "parallelism.default": str(parallelism)}.items():
        env.get_config().set(key, value)
    _drop_objects(env)
    source_with = {"connector": "filesystem", "path": str(events_file), "format": "json"}
    statements = job.statements(source_with)
    for statement in statements:
        env.execute_sql(statement)
    return statements


def run_job(config: PairsConfig, events_file: Path, parallelism: int = 1) -> tuple[Any, list[str]]:
    """Run the job over a JSON-lines file of messages; (pandas frame of RESULT_QUERY, statements)."""
    statements = create_job(config, events_file, parallelism)
    return table_environment().sql_query(RESULT_QUERY).to_pandas(), statements


def run_flink(
    config: PairsConfig,
    path: str | os.PathLike[str] | None = None,
    stdin: BinaryIO | None = None,
    on_line: Callable[[int], None] | None = None,
    parallelism: int = 1,
    on_prepared: Callable[[], None] | None = None,
) -> FlinkResult:
    """`pairs --replay FILE --engine flink`: the replay as one Flink SQL job in a mini-cluster."""
    check_flink()
    path = Path(path or config.replay or "")
    from_stdin = str(path) == "-"
    if not from_stdin and not path.is_file():
        raise StreamError(f"--replay {path}: no such file (expected JSON lines of messages)")
    with tempfile.TemporaryDirectory(prefix="lensflow-flink-") as tmp:
        events_file = Path(tmp) / "events.jsonl"
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack, open(events_file, "wb") as out:
            f = (stdin or sys.stdin.buffer) if from_stdin else stack.enter_context(open(path, "rb"))
            stats = prepare_events(config, f, out, from_stdin, on_line)
        t1 = time.perf_counter()
        if on_prepared is not None:
            on_prepared()
        frame, statements = run_job(config, events_file, parallelism)
        t2 = time.perf_counter()
    rows, in_windows = [], 0
    for label, n, pair, last in frame.itertuples(index=False):
        if label is None or label != label:  # the NULL-labelled row: events in windows
            in_windows = 0 if n is None or n != n else int(n)
        else:
            rows.append(
                {
                    "label": label,
                    "number_socks_seen": int(n),
                    "pair_seen": pair,
                    "last_seen": int(last),
                }
            )
    counted, stats.accepted = stats.accepted, in_windows
    stats.late_dropped = counted - in_windows
    return FlinkResult(rows, stats, config, statements, {"prepare": t1 - t0, "job": t2 - t1})


# ---- the export ---------------------------------------------------------------------------------


def kafka_source_with(config: PairsConfig) -> dict[str, str]:
    return {
        "connector": "kafka",
        "topic": kafka_topic(config.topic),
        "properties.bootstrap.servers": KAFKA_BOOTSTRAP,
        "properties.group.id": "lensflow-pairs",
        "scan.startup.mode": "earliest-offset",
        "format": "json",
        # A payload that is not JSON is skipped instead of failing the job.
        "json.ignore-parse-errors": "true",
    }


def kafka_sink_with(config: PairsConfig) -> dict[str, str]:
    return {
        "connector": "upsert-kafka",
        "topic": kafka_topic(config.out_topic or "sockpairs"),
        "properties.bootstrap.servers": KAFKA_BOOTSTRAP,
        "key.format": "json",
        "value.format": "json",
    }


def export_sql(config: PairsConfig) -> str:
    job = flink_job(config)
    settings, source, views = job.settings(), job.source(kafka_source_with(config)), job.views()
    sink, insert = job.sink(kafka_sink_with(config))
    text = [
        "-- Generated by `lensflow pairs --export-flink`; equivalent to:",
        f"--   lensflow pairs {options_line(config)}",
        "-- Submit with the SQL client: ./bin/sql-client.sh -f pairs.sql (see README.md).",
        "-- Everything but the WITH (...) clauses is the text `lensflow pairs --engine flink`",
        "-- runs locally.",
        "",
        "-- Windows aligned to the epoch; a watermark after every event (lateness decided",
        "-- exactly as the built-in engine does it).",
        *(f"SET {sql_string(k)} = {sql_string(v)};" for k, v in settings.items()),
        "",
        "-- The MQTT messages, as the connector in mqtt-source.json writes them to Kafka.",
        f"-- 1. Counted: not blank{', not under the probability floor' if config.min_probability > 0 else ''},",
        "--    with a ts. Event time is ts; the watermark follows counted events and trails",
        f"--    them by the grace period ({format_duration(config.grace_ms)}) + "
        f"{job.watermark_delay_ms - config.grace_ms} ms.",
        source + ";",
        "",
        "-- 2. Sightings: windows of one label with at least "
        f"{config.min_count} events; later events than the",
        "--    grace period are dropped. 3. The pair table: an even number of sightings is a Pair.",
        *(v + ";\n" for v in views),
        "-- The pair table, one record per change, keyed by label.",
        sink + ";",
        "",
        insert + ";",
        "",
    ]
    return "\n".join(text)


def readme(config: PairsConfig) -> str:
    source = kafka_topic(config.topic)
    out = kafka_topic(config.out_topic or "sockpairs")
    return f"""# lensflow pairs on Kafka + Flink SQL

Generated by `lensflow pairs --export-flink`, equivalent to
`lensflow pairs {options_line(config)}`.
The statements in `pairs.sql` are the ones `lensflow pairs --engine flink` runs in a local
mini-cluster; only the connectors (`WITH (...)`) differ.

1. Create the Kafka topic `{source}` with ONE partition (the watermark then follows the newest
   counted event of all messages, as the built-in engine's stream time), and start the MQTT
   source connector (the Confluent MQTT connector plugin on the Connect workers):

       curl -X POST -H 'Content-Type: application/json' \\
            --data @mqtt-source.json http://localhost:8083/connectors

2. Give the Flink cluster (2.x) the Kafka SQL connector: copy `flink-sql-connector-kafka`
   (the release built for your Flink version) into `lib/` of every JobManager and TaskManager,
   or `ADD JAR '/path/flink-sql-connector-kafka.jar';` in the SQL client.

3. Submit the job, with the SQL client:

       ./bin/sql-client.sh -f pairs.sql

   or through the SQL gateway (`./bin/sql-gateway.sh start`, then the statements in order
   through its REST API or `./bin/sql-client.sh gateway --endpoint localhost:8083 -f pairs.sql`).

4. The pair table arrives on the compacted topic `{out}`: one JSON record per change, keyed by
   `{{"image": ...}}`, valued `{{"image", "number_socks_seen", "pair_seen", "last_seen"}}`.

## Where Flink differs from the built-in engine
- Timing: the built-in engine counts a sighting the moment its window reaches the minimum
  count; Flink emits a window when it closes (the watermark passes its end, i.e. gap or size
  plus grace later). The final table is the same; changes arrive later.
- A late event that bridges two sessions merges them in both; Flink never emits the
  intermediate two sightings, so the table never counts one sighting too many in between.
- More partitions scale the source, but Flink's watermark is then the slowest partition's
  (set `'scan.watermark.idle-timeout'` so an idle one does not hold every window open): events
  are judged late later than in the built-in engine, so more late events count, never fewer.
- Lateness is decided per event because `pipeline.auto-watermark-interval` is 0. The Flink
  default (200 ms) is cheaper at high rates; it only lets *more* late events in, never fewer.
- A message without `ts` is not counted (the built-in engine gives it its arrival time; add a
  Kafka `timestamp` metadata column and use it in `event_time` if your publisher omits `ts`).
- Fields of the wrong type are coerced by Flink's JSON format (`"probability": "97"` is read as
  97.0), where the built-in engine counts the message invalid.
- Broker address, Kafka bootstrap servers and replication factor are set for a single-machine
  setup (`localhost`); edit them for a real cluster.
"""


def export_flink(config: PairsConfig, out: str | Path, overwrite: bool = False) -> list[Path]:
    """Write the four files into a new directory `out` (atomically); returns their paths."""
    return write_export(config, out, export_sql(config), readme(config), overwrite)
