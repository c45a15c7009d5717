"""The only part of `pairs` that does I/O: replay files, MQTT in and out, SQLite state, displays.

    replay(config, "events.jsonl")        -> PairsPipeline with the final table
    run_mqtt(config)                       -> subscribe, process, publish changes until Ctrl-C

Live messages are processed and committed inside the MQTT callback, before paho acknowledges
them (QoS 1), and the subscription is a persistent session with a fixed client id: after a kill
and restart the state continues from the last commit and the broker delivers what was queued.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from lensflow.errors import StreamError
from lensflow.signals import stop_on_signals
from lensflow.stream.config import PairsConfig
from lensflow.stream.engine import Change, PairEngine
from lensflow.stream.state import SourceProgress, StateStore

REPLAY_COMMIT_EVERY = 5000  # lines per transaction: a killed replay redoes at most this many

ChangeSink = Callable[[Change], None]


class PairsPipeline:
    """Engine + optional state store + change sinks, guarded by one lock (MQTT thread vs displays)."""

    def __init__(self, config: PairsConfig) -> None:
        self.config = config
        self.engine = PairEngine(config)
        self.store = StateStore(config.state, config) if config.state else None
        self.lock = threading.Lock()
        self.sinks: list[ChangeSink] = []
        self.changes = 0
        self.duplicates = 0
        self.started = time.time()
        # Digest of the last message committed before a restart (see run_mqtt's on_message).
        self.resume_digest: str | None = None
        if self.store is not None:
            snapshot = self.store.load()
            if snapshot is not None:
                self.engine.restore(snapshot)
            self.resume_digest = self.store.meta("last_message")

    def emit(self, changes: list[Change]) -> None:
        for change in changes:
            self.changes += 1
            for sink in self.sinks:
                sink(change)

    def view(self) -> dict[str, Any]:
        """What displays show: the table rows, the counters and the options (a consistent copy)."""
        with self.lock:
            return {
                "ready": True,
                "rows": self.engine.table.snapshot(),
                "stats": self.engine.stats.to_dict(),
                "stream_time": self.engine.stream_time,
                "window": str(self.engine.windows),
                "min_count": self.config.min_count,
                "changes": self.changes,
                "duplicates": self.duplicates,
            }

    def save(
        self,
        source: str | None = None,
        progress: SourceProgress | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if self.store is not None:
            self.store.save(self.engine.snapshot(), source, progress, extra)

    def handle(self, payload: bytes, arrival_ms: int) -> list[Change]:
        """One live MQTT payload: process and commit (with its digest) under the lock.

        QoS 1 is at-least-once: a process killed after the commit but before paho's PUBACK gets
        that message again, first, after the restart. It is recognised by its digest and skipped,
        if it carries a `ts` (without one, identical payloads can be distinct frames).
        """
        digest = hashlib.sha256(payload).hexdigest()
        try:
            decoded = json.loads(payload)
        except ValueError:
            decoded = None
        with self.lock:
            resume, self.resume_digest = self.resume_digest, None
            if resume == digest and isinstance(decoded, dict) and decoded.get("ts") is not None:
                self.duplicates += 1
                return []
            changes = self.engine.process(decoded, arrival_ms=arrival_ms)
            self.save(extra={"last_message": digest})
        return changes

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


# ---- replay -------------------------------------------------------------------------------------


def _source_key(path: Path) -> str:
    return str(path.resolve())


def _skip_done(f: Any, path: Path, done: SourceProgress) -> Any:
    """Skip the prefix already in the state, after checking it is the same bytes."""
    digest = hashlib.sha256()
    if done.bytes:
        prefix = f.read(done.bytes)
        digest.update(prefix)
        if len(prefix) != done.bytes or digest.hexdigest() != done.sha256:
            raise StreamError(
                f"the state has the first {done.lines} lines of {path}, but the file has changed "
                "since; replay it into a new --state file"
            )
    return digest


STDIN = "-"


def replay(
    config: PairsConfig,
    path: str | os.PathLike[str] | None = None,
    sinks: list[ChangeSink] | None = None,
    on_line: Callable[[int], None] | None = None,
    stdin: BinaryIO | None = None,
) -> PairsPipeline:
    """Run every message of a JSON-lines file through the engine (resuming a --state file).

    Path "-" reads standard input (e.g. `lensflow live ... --stdout | lensflow pairs --replay -`):
    there, a message without `ts` takes its arrival time, and a --state continues with whatever
    comes next (there is no file prefix to recognise).
    """
    path = Path(path or config.replay or "")
    from_stdin = str(path) == STDIN
    if not from_stdin and not path.is_file():
        raise StreamError(f"--replay {path}: no such file (expected JSON lines of messages)")
    pipeline = PairsPipeline(config)
    pipeline.sinks.extend(sinks or [])
    key = None if from_stdin else _source_key(path)
    try:
        done = pipeline.store.progress(key) if pipeline.store and key else SourceProgress()
        with contextlib.ExitStack() as stack:
            f = (stdin or sys.stdin.buffer) if from_stdin else stack.enter_context(open(path, "rb"))
            digest = _skip_done(f, path, done)
            lines, nbytes = done.lines, done.bytes
            engine, emit = pipeline.engine, pipeline.emit
            for raw in f:
                lines += 1
                nbytes += len(raw)
                digest.update(raw)
                try:
                    message = json.loads(raw)
                except ValueError:
                    message = None  # counted as invalid, like a broken MQTT payload
                if message is None and not raw.strip():
                    continue
                arrival = int(time.time() * 1000) if from_stdin else None
                try:
                    changes = engine.process(message, arrival_ms=arrival)
                except StreamError as e:
                    raise StreamError(
                        f"{path}:{lines}: {e}; a replay needs a ts on every message"
                    ) from e
                if changes:
                    emit(changes)
                if on_line is not None:
                    on_line(len(raw))
                if pipeline.store is not None and lines % REPLAY_COMMIT_EVERY == 0:
                    pipeline.save(key, SourceProgress(lines, nbytes, digest.hexdigest()))
            pipeline.save(key, SourceProgress(lines, nbytes, digest.hexdigest()))
    except BaseException:
        pipeline.close()
        raise
    stats = pipeline.engine.stats
    if stats.received and stats.invalid == stats.received:
        pipeline.close()
        raise StreamError(
            f"no line of {path} is a prediction message; expected JSON lines like "
            '{"image": "Google", "probability": 97.5, "ts": 1700000000000}'
        )
    pipeline.close()
    return pipeline


# ---- MQTT ---------------------------------------------------------------------------------------


def default_client_id(config: PairsConfig) -> str | None:
    """A fixed id per state file, so the broker keeps the subscription while we are away."""
    if config.client_id:
        return config.client_id
    if config.state is None:
        return None
    digest = hashlib.sha256(str(Path(config.state).resolve()).encode()).hexdigest()[:12]
    return f"lensflow-pairs-{digest}"


def run_mqtt(
    config: PairsConfig,
    sinks: list[ChangeSink] | None = None,
    wait_broker: bool = False,
    stop: threading.Event | None = None,
    on_tick: Callable[[PairsPipeline], None] | None = None,
    ready: Callable[[PairsPipeline], None] | None = None,
) -> PairsPipeline:
    """Subscribe to config.topic, process every message, publish changes; until stop/Ctrl-C."""
    from lensflow.messaging import MqttClient

    if not config.mqtt:
        raise StreamError("give --mqtt mqtt://host:port (or --replay FILE)")
    pipeline = PairsPipeline(config)
    pipeline.sinks.extend(sinks or [])
    client_id = default_client_id(config)
    client = MqttClient(config.mqtt, client_id=client_id, clean_session=client_id is None)
    if config.out_topic:
        out_topic, qos = config.out_topic, config.qos
        pipeline.sinks.append(lambda c: client.publish(out_topic, c.to_message(), qos=qos))

    def on_message(message: Any) -> None:
        # Committed before paho acknowledges the message (after this callback returns).
        changes = pipeline.handle(message.payload, arrival_ms=int(time.time() * 1000))
        pipeline.emit(changes)

    # Subscribe before connecting: a persistent session delivers queued messages right away.
    client.subscribe(config.topic, on_message, qos=config.qos)
    try:
        client.connect(wait=wait_broker, timeout=None if wait_broker else 5.0)
    except BaseException:
        pipeline.close()
        raise
    try:
        if ready is not None:
            ready(pipeline)
        with stop_on_signals() as signalled:
            while not (signalled.is_set() or (stop is not None and stop.is_set())):
                if client.stats.callback_errors:
                    # Bad messages are counted, not raised: this is the state store failing
                    # (disk full, file removed). Going on would acknowledge uncommitted messages.
                    raise StreamError(
                        f"stopped: a message could not be processed and committed "
                        f"({client.stats.last_error})"
                    )
                if on_tick is not None:
                    on_tick(pipeline)
                signalled.wait(0.25)
    finally:
        client.close(flush_timeout=2.0)
        with pipeline.lock:  # every message was committed as it came: nothing left to save
            pipeline.close()
    return pipeline
