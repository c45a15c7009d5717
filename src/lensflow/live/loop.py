"""The capture -> classify -> publish loop of `lensflow live`.

Pure pieces first (label decision, message shape), then the sinks (MQTT, stdout), then `run_live`,
the only function doing I/O: a FrameReader thread decodes and preprocesses frames while the main
thread runs the Predictor, publishes, feeds the browser view and the status line.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TextIO

import numpy as np

from lensflow.errors import LiveError

# Class names treated as "nothing there" in addition to --blank-label (case-insensitive).
BLANK_NAMES = {"blank", "none", "background", "nothing", "empty", "unknown"}


@dataclass(frozen=True)
class LiveConfig:
    """Everything `lensflow live` was asked to do (printed with --json)."""

    bundle: str
    source: str
    mqtt: str | None = None  # mqtt://[user:pass@]host:port
    topic: str = "sockfound"
    qos: int = 0
    stdout: bool = False  # JSON lines on stdout
    view: str | None = None  # HOST:PORT of the browser view
    fps: float | None = None  # pace the source (files play like a camera at this rate)
    loop: bool = False  # play a video file / image folder again at its end (until Ctrl-C)
    every: int = 1  # classify every k-th frame of the source
    threshold: float = 0.5  # probability 0..1 under which a prediction is published as blank
    blank_label: str = "Blank"
    reject_unknown: bool = True  # frames the bundle's open-set score calls unknown -> blank label
    wait_broker: bool = False
    buffer: int = 1000  # messages kept while the broker is away
    max_frames: int | None = None  # stop after this many classified frames
    threads: int | None = None  # onnxruntime threads (default: all cores)
    reconnect_timeout: float = 30.0  # seconds a lost camera/stream is retried before giving up
    stream_timeout: float = 10.0  # seconds a stream may take to answer, or stay silent

    def validate(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise LiveError(
                f"--threshold must be a probability 0..1 (or a percent 1..100), got {self.threshold}"
            )
        if self.qos not in (0, 1, 2):
            raise LiveError(f"--qos must be 0, 1 or 2, got {self.qos}")
        if self.every < 1:
            raise LiveError(f"--every must be >= 1, got {self.every}")
        if self.fps is not None and self.fps <= 0:
            raise LiveError(f"--fps must be > 0, got {self.fps}")
        if not self.blank_label.strip():
            raise LiveError("--blank-label must not be empty")
        if not self.topic or any(c in self.topic for c in "#+"):
            raise LiveError(
                f"--topic must be a plain topic name (no # or + wildcards), got {self.topic!r}"
            )
        if self.buffer < 1:
            raise LiveError(f"--buffer must be >= 1, got {self.buffer}")
        if self.max_frames is not None and self.max_frames < 1:
            raise LiveError(f"--max-frames must be >= 1, got {self.max_frames}")


def threshold_from_cli(value: float) -> float:
    """--threshold accepts 0..1 or a percent (1 < P <= 100), the unit messages use."""
    if 1.0 < value <= 100.0:
        return value / 100.0
    return value


# ---- pure pieces -------------------------------------------------------------------------------


def blank_indices(classes: Sequence[str], blank_label: str) -> set[int]:
    names = BLANK_NAMES | {blank_label.strip().lower()}
    return {i for i, c in enumerate(classes) if c.strip().lower() in names}


@dataclass(frozen=True)
class Decision:
    label: str  # the class, or the blank label
    probability: float  # 0..1 of the top class
    index: int  # top class index
    blank: bool
    unknown: bool = False  # the open-set score says: none of the classes


def decide(
    proba: np.ndarray,
    classes: Sequence[str],
    threshold: float,
    blank_label: str,
    blanks: set[int],
    unknown: bool = False,
) -> Decision:
    """Top class, or the blank label when it is a blank class, below the threshold or unknown
    (`unknown`: the open-set score rejected the frame)."""
    i = int(np.argmax(proba))
    p = float(proba[i])
    if unknown:
        return Decision(blank_label, p, i, True, unknown=True)
    if i in blanks or p < threshold:
        return Decision(blank_label, p, i, True)
    return Decision(classes[i], p, i, False)


def make_message(decision: Decision, ts: float, source: str, frame: int) -> dict[str, Any]:
    """The seed's shape {"image", "probability" (percent)} first, then the optional extras."""
    return {
        "image": decision.label,
        "probability": round(decision.probability * 100.0, 4),
        "ts": int(ts * 1000),
        "source": source,
        "frame": frame,
    }


class RateMeter:
    """Events per second over a sliding window of the last `n` events."""

    def __init__(self, n: int = 30) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=n)

    def tick(self, now: float | None = None) -> None:
        self._times.append(time.monotonic() if now is None else now)

    @property
    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


# ---- sinks -------------------------------------------------------------------------------------


class Sink(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...

    @property
    def published(self) -> int: ...

    def close(self) -> dict[str, Any]: ...


class StdoutSink:
    """One JSON object per line (JSON Lines), flushed per message so pipes see it at once."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._count = 0
        self.finished = False  # the reader went away (`lensflow live ... --stdout | head`)

    def send(self, message: dict[str, Any]) -> None:
        if self.finished:
            return
        try:
            self.stream.write(json.dumps(message) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.finished = True
            # Point stdout at /dev/null so the interpreter's final flush does not complain.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            return
        self._count += 1

    @property
    def published(self) -> int:
        return self._count

    def close(self) -> dict[str, Any]:
        return {"stdout_lines": self._count}


class MqttSink:
    """Publish to a topic through the shared MqttClient (buffered across broker loss)."""

    def __init__(
        self, url: str, topic: str, qos: int, buffer: int = 1000, wait: bool = False
    ) -> None:
        from lensflow.messaging import MqttClient

        self.topic = topic
        self.qos = qos
        self.client = MqttClient(url, buffer_size=buffer)
        self.client.connect(wait=wait, timeout=None if wait else 5.0)

    def send(self, message: dict[str, Any]) -> None:
        self.client.publish(self.topic, message, self.qos)

    @property
    def published(self) -> int:
        return self.client.stats.published

    def close(self) -> dict[str, Any]:
        stats = self.client.close(flush_timeout=10.0)
        return {
            "mqtt_published": stats.published,
            "mqtt_dropped": stats.dropped,
            "mqtt_disconnects": stats.disconnects,
        }


# ---- the loop ----------------------------------------------------------------------------------


@dataclass
class LiveSummary:
    source: str
    frames_read: int = 0
    classified: int = 0
    published: int = 0
    skipped: int = 0  # frames read but not classified (the classifier was busy, or --every)
    seconds: float = 0.0
    fps: float = 0.0  # classified frames/s: recent rate while running, whole-run rate at the end
    last_label: str | None = None
    labels: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    sinks: dict[str, Any] = field(default_factory=dict)
    stopped_by: str = "end of source"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _classify(predictor: Any, x: np.ndarray, reject_unknown: bool) -> tuple[np.ndarray, bool]:
    """Probabilities of one frame, and whether the bundle's open-set score rejects it."""
    if not reject_unknown:
        return predictor.predict_arrays(x)[0], False
    proba, scores = predictor.classify_arrays(x)
    unknown = predictor.is_unknown(scores)
    return proba[0], bool(unknown is not None and unknown[0])


@dataclass
class _Prepared:
    frame: Any  # sources.Frame
    x: np.ndarray  # float32 1 x C x S x S


def run_live(
    config: LiveConfig,
    predictor: Any,
    sinks: Sequence[Sink] = (),
    hub: Any | None = None,
    on_event: Callable[[str], None] | None = None,
    on_classified: Callable[[LiveSummary, Decision], None] | None = None,
    stop: threading.Event | None = None,
    source: Any | None = None,
) -> LiveSummary:
    """Classify frames of `config.source` until it ends (or `stop` is set, or Ctrl-C).

    `source` may be an already opened FrameSource (the CLI opens it first to fail early).
    """
    from lensflow.live.frames import bgr_to_rgb, draw_overlay
    from lensflow.live.sources import FrameReader

    config.validate()
    summary = LiveSummary(source=config.source)
    pp = predictor.preprocess
    classes = list(predictor.classes)
    blanks = blank_indices(classes, config.blank_label)
    _, source = open_run(config, summary, on_event, source)

    def prepare(frame: Any) -> _Prepared:
        # Runs in the reader thread: decode-side preprocessing overlaps the classifier.
        return _Prepared(frame, pp.normalize(pp.to_uint8(bgr_to_rgb(frame.image))[None]))

    mode = "latest" if (source.live or config.fps) else "all"
    reader = FrameReader(
        source, mode=mode, fps=config.fps, every=config.every,
        max_frames=config.max_frames, transform=prepare,
    )  # fmt: skip
    meter = RateMeter()
    start = time.monotonic()
    try:
        for item in reader:
            if stop is not None and stop.is_set():
                summary.stopped_by = "stopped"
                break
            proba, unknown = _classify(predictor, item.x, config.reject_unknown)
            decision = decide(proba, classes, config.threshold, config.blank_label, blanks, unknown)
            message = make_message(decision, item.frame.ts, config.source, item.frame.index)
            for sink in sinks:
                sink.send(message)
            if any(getattr(sink, "finished", False) for sink in sinks):
                summary.stopped_by = "stdout closed"
                break
            meter.tick()
            summary.classified += 1
            summary.fps = round(meter.rate, 2)
            summary.last_label = decision.label
            summary.labels[decision.label] = summary.labels.get(decision.label, 0) + 1
            summary.frames_read = source.frames_read
            summary.published = min((s.published for s in sinks), default=0)
            if hub is not None:
                hub.update(
                    draw_overlay(item.frame.image,
                                 "unknown" if decision.unknown else decision.label,
                                 decision.probability * 100, meter.rate, decision.blank),
                    label=decision.label, probability=decision.probability * 100,
                    blank=decision.blank, fps=meter.rate, frames=summary.frames_read,
                    classified=summary.classified, published=summary.published,
                )  # fmt: skip
            if on_classified is not None:
                on_classified(summary, decision)
    except KeyboardInterrupt:
        summary.stopped_by = "interrupted (Ctrl-C)"
    finally:
        close_run(summary, reader, source, sinks, hub, start)
    return summary


def open_run(
    config: LiveConfig, summary: LiveSummary, on_event: Callable[[str], None] | None,
    source: Any | None,
) -> tuple[Callable[[str], None], Any]:  # fmt: skip
    """A loop's event reporter (kept in the summary, passed on to `on_event`) and its source,
    opened here unless the caller opened it first (the CLI does, to fail early)."""
    from lensflow.live.sources import open_source

    def event(message: str) -> None:
        summary.events.append(message)
        if on_event is not None:
            on_event(message)

    if source is None:
        source = open_source(
            config.source, event, config.reconnect_timeout, config.loop, config.stream_timeout
        )
    else:
        source.report = event
    return event, source


def close_run(
    summary: LiveSummary, reader: Any, source: Any, sinks: Sequence[Sink], hub: Any | None,
    start: float,
) -> None:  # fmt: skip
    """Whatever ended a loop: stop reading, close the source and the sinks, final counts."""
    reader.stop()
    source.close()
    summary.seconds = round(time.monotonic() - start, 3)
    summary.frames_read = source.frames_read
    summary.skipped = summary.frames_read - summary.classified
    summary.fps = round(summary.classified / summary.seconds, 2) if summary.seconds else 0.0
    for sink in sinks:
        summary.sinks.update(sink.close())
    summary.published = min((s.published for s in sinks), default=0)
    if hub is not None:
        hub.set_status(published=summary.published, running=False)
