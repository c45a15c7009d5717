"""`lensflow live --pair-by-appearance`: the loop around `appearance.py`'s pure state.

Per frame: the reader thread shrinks the frame for the pixel tests (`appearance.shrink`); the main
thread learns the empty table for the first --empty-seconds, then asks the EmptyScene whether
something is there and the SightingTracker what to do with it. Only steady frames of a sighting
are embedded (a square crop around the object, by the pretrained backbone `lensflow match` uses,
or by --bundle's), in a worker thread, so the frame loop does not wait for the network; the
embeddings are collected when the sighting ends. Events go to the sinks of `loop.py` (stdout,
MQTT), the browser view shows the current sighting and a strip of the open socks.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lensflow.errors import LiveError
from lensflow.live.appearance import (
    DEFAULT_FINAL_SIMILARITY,
    DEFAULT_PAIR_SIMILARITY,
    EMPTY_SIMILARITY,
    EmptyScene,
    Pair,
    PairPool,
    Sighting,
    SightingTracker,
    appearance,
    crop_box,
    motion,
    rotations,
    shrink,
)
from lensflow.live.loop import (
    Decision,
    LiveConfig,
    LiveSummary,
    RateMeter,
    Sink,
    close_run,
    open_run,
)

DEFAULT_RATE = 10.0  # frames/s assumed where the source does not say (image folders)
THUMB = 72  # pixels, thumbnails in the view's strip
FLASH_SECONDS = 1.5


@dataclass(frozen=True)
class PairConfig(LiveConfig):
    """`lensflow live --pair-by-appearance`: LiveConfig's source, sinks and view, plus these."""

    bundle: str | None  # None: the pretrained backbone, as `lensflow match` uses
    topic: str = "sockpairs"
    model: str = "efficientnet_lite0"  # the pretrained backbone used without a bundle
    min_similarity: float = DEFAULT_PAIR_SIMILARITY  # cosine a pair announced live needs
    final_similarity: float = DEFAULT_FINAL_SIMILARITY  # ... a pair made when the feed ends
    empty_seconds: float = 2.0  # the feed starts with this much empty table
    min_frames: int = 5  # non-empty frames a sighting needs to count
    end_gap: int = 5  # empty frames that end a sighting
    max_embeddings: int = 2  # steady frames embedded per sighting (their mean is its appearance)
    empty_similarity: float = EMPTY_SIMILARITY  # this like the empty table there: not an object

    def validate(self) -> None:
        super().validate()
        if not -1.0 <= self.min_similarity <= 1.0:
            raise LiveError(
                f"--min-similarity is a cosine similarity in -1..1, got {self.min_similarity} "
                f"(default {DEFAULT_PAIR_SIMILARITY})"
            )
        if not -1.0 <= self.final_similarity <= 1.0:
            raise LiveError(
                f"--final-similarity is a cosine similarity in -1..1, got "
                f"{self.final_similarity} (default {DEFAULT_FINAL_SIMILARITY}; 1 leaves the "
                "open socks open)"
            )
        if not 0.0 < self.empty_seconds <= 600.0:
            raise LiveError(f"--empty-seconds must be in (0, 600], got {self.empty_seconds}")
        if self.min_frames < 1:
            raise LiveError(f"--min-frames must be >= 1, got {self.min_frames}")
        if self.end_gap < 1 or self.max_embeddings < 1:
            raise LiveError("end_gap and max_embeddings must be >= 1")


def pair_config(
    bundle: str | None,
    topic: str | None,
    min_similarity: float | None,
    empty_seconds: float,
    min_frames: int,
    final_similarity: float | None = None,
    **common: Any,
) -> PairConfig:
    """The CLI's options -> PairConfig (None: this mode's defaults)."""
    return PairConfig(
        bundle=bundle,
        topic=topic or PairConfig.topic,
        min_similarity=DEFAULT_PAIR_SIMILARITY if min_similarity is None else min_similarity,
        final_similarity=(
            DEFAULT_FINAL_SIMILARITY if final_similarity is None else final_similarity
        ),
        empty_seconds=empty_seconds,
        min_frames=min_frames,
        **common,
    )


@dataclass
class PairSummary(LiveSummary):
    learned_frames: int = 0  # frames the empty scene was learnt from
    sightings: int = 0
    pairs: list[list[Any]] = field(default_factory=list)  # [a, b, similarity], live then final
    final_pairs: int = 0  # of those, made when the feed ended
    open: list[int] = field(default_factory=list)  # sightings still waiting for a partner
    embedded: int = 0  # crops that went through the backbone (4 rotations each)
    rejected: int = 0  # sightings dropped because they looked like the empty table there


def embedding_predictor(config: PairConfig, quiet: bool = True) -> Any:
    """The bundle's Predictor, or the cached pretrained backbone bundle (built on first use)."""
    from lensflow.predictor import Predictor

    if config.bundle:
        return Predictor.from_bundle(config.bundle, threads=config.threads)
    from lensflow.export import backbone_bundle

    return Predictor.from_bundle(backbone_bundle(config.model), threads=config.threads)


def embed_views(predictor: Any, crop_bgr: np.ndarray) -> np.ndarray:
    """(4, D) backbone embeddings of a BGR crop in its four rotations."""
    from lensflow.live.frames import bgr_to_rgb

    return np.asarray(predictor.embed(rotations(bgr_to_rgb(crop_bgr))))


def source_rate(config: LiveConfig, source: Any) -> float:
    """Frames/s of the feed: --fps, else what the video/camera says, else DEFAULT_RATE."""
    return float(config.fps or getattr(source, "native_fps", 0.0) or DEFAULT_RATE)


# ---- the view ----------------------------------------------------------------------------------


def thumbnail(crop_bgr: np.ndarray, side: int = THUMB) -> np.ndarray:
    import cv2

    return cv2.resize(crop_bgr, (side, side), interpolation=cv2.INTER_AREA)


@dataclass
class PairView:
    """What the browser shows besides the frame: the open socks, and a pair while it flashes."""

    flash_frames: int
    thumbs: dict[int, np.ndarray] = field(default_factory=dict)  # sighting id -> thumbnail
    waiting: collections.deque[tuple[Pair, np.ndarray, np.ndarray]] = field(
        default_factory=collections.deque
    )  # pairs found but not shown yet (two can be found at once)
    flash: tuple[Pair, np.ndarray, np.ndarray] | None = None  # the pair flashing now
    flash_left: int = 0

    def opened(self, sighting_id: int, thumb: np.ndarray) -> None:
        self.thumbs[sighting_id] = thumb

    def paired(self, pair: Pair, thumb: np.ndarray) -> None:
        self.waiting.append((pair, self.thumbs.pop(pair.a, thumb), thumb))
        if self.flash_left == 0:
            self.tick()

    def tick(self) -> None:
        """One frame passed: the flash fades, the next found pair (if any) starts flashing."""
        self.flash_left = max(0, self.flash_left - 1)
        if self.flash_left == 0:
            self.flash = self.waiting.popleft() if self.waiting else None
            self.flash_left = self.flash_frames if self.flash is not None else 0

    def render(
        self, frame_bgr: np.ndarray, headline: str, colour: tuple[int, int, int],
        fps: float, box: tuple[int, int, int, int] | None,
    ) -> np.ndarray:  # fmt: skip
        import cv2

        from lensflow.live.frames import draw_banner

        out = draw_banner(frame_bgr, headline, f"{fps:.1f} fps", colour)
        h, w = out.shape[:2]
        if box is not None:
            cv2.rectangle(out, box[:2], box[2:], (0, 220, 255), 2)
        # The strip of open socks along the bottom, newest last.
        strip_h = THUMB + 16
        out[h - strip_h :] = (out[h - strip_h :] * 0.35).astype(np.uint8)
        fit = max(1, (w - 8) // (THUMB + 8))
        ids = list(self.thumbs)[-fit:]
        for i, sid in enumerate(ids):
            x, y = 8 + i * (THUMB + 8), h - strip_h + 8
            out[y : y + THUMB, x : x + THUMB] = self.thumbs[sid]
            cv2.putText(out, f"#{sid}", (x + 3, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
        if self.flash is not None:
            pair, a, b = self.flash
            side = min(2 * THUMB, h // 3)
            on = (self.flash_left // 3) % 2 == 0  # blink
            border = (80, 230, 80) if on else (255, 255, 255)
            x0, y0 = w // 2 - side - 6, int(h * 0.15)
            for j, im in enumerate((a, b)):
                x = x0 + j * (side + 12)
                cv2.rectangle(out, (x - 4, y0 - 4), (x + side + 4, y0 + side + 4), border, -1)
                out[y0 : y0 + side, x : x + side] = cv2.resize(im, (side, side))
            cv2.putText(out, f"pair #{pair.a} + #{pair.b}  {pair.similarity:.2f}",
                        (x0, y0 + side + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, border, 2,
                        cv2.LINE_AA)  # fmt: skip
        return out


# ---- the loop ----------------------------------------------------------------------------------


@dataclass
class _Work:
    """Embeddings under way for one sighting, and the crops to fall back on / show."""

    futures: list[Future[np.ndarray]] = field(default_factory=list)
    fallback: np.ndarray | None = None  # stillest crop, if no frame was steady
    thumb: np.ndarray | None = None  # the first embedded crop, shown in the strip
    table: np.ndarray | None = None  # the empty table's crop at the same place
    table_future: Future[np.ndarray] | None = None


class _PairRun:
    """The state of one run: what the frames showed so far, embeddings under way, the pool."""

    def __init__(
        self, config: PairConfig, predictor: Any, sinks: Sequence[Sink], rate: float,
        summary: PairSummary, event: Callable[[str], None], wait_for_embeddings: bool = False,
    ) -> None:  # fmt: skip
        self.config, self.predictor, self.sinks = config, predictor, sinks
        # A file read frame by frame has no clock to keep up with: waiting for each sighting's
        # embeddings makes every event and view frame the same on any machine. A camera never
        # waits (the embeddings run beside the frame loop).
        self.wait_for_embeddings = wait_for_embeddings
        self.summary, self.event = summary, event
        self.scene = EmptyScene(max(1, round(config.empty_seconds * rate)))
        self.tracker = SightingTracker(config.min_frames, config.end_gap, config.max_embeddings)
        self.pool = PairPool(config.min_similarity, config.final_similarity)
        self.view = PairView(flash_frames=max(1, round(FLASH_SECONDS * rate)))
        self.work: dict[int, _Work] = {}
        self.finished: collections.deque[tuple[Sighting, _Work]] = collections.deque()
        self.embedder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lensflow-embed")
        self.previous: np.ndarray | None = None  # the last small frame
        self.empty_frame: np.ndarray | None = None  # the latest full frame of the empty table

    def embed(self, crop_bgr: np.ndarray) -> np.ndarray:
        return embed_views(self.predictor, crop_bgr)

    def submit(self, crop_bgr: np.ndarray) -> Future[np.ndarray]:
        self.summary.embedded += 1
        return self.embedder.submit(self.embed, crop_bgr)

    def frame(
        self, image: np.ndarray, small: np.ndarray, index: int, ts: float
    ) -> tuple[str, bool, tuple[int, int, int, int] | None]:
        """One frame in; returns (headline, blank, box to draw or None)."""
        if self.scene.learning:
            self.scene.learn(small)
            self.summary.learned_frames = self.scene.seen
            self.previous, self.empty_frame = small, image
            return (
                f"learning the empty table {self.scene.seen}/{self.scene.learn_frames}",
                True,
                None,
            )
        fg = self.scene.foreground(small)
        step = self.tracker.observe(index, ts, fg.present, motion(self.previous, small))
        self.previous = small
        box = crop_box(fg.box, image.shape) if fg.present and fg.box is not None else None
        if box is not None and step.sighting is not None and (step.embed or step.keep_fallback):
            self._keep(self.work.setdefault(step.sighting.key, _Work()), image, box, step.embed)
        if step.sighting is None and not fg.present:
            self.scene.adapt(small)  # only a truly empty table teaches the background
            self.empty_frame = image
        if step.discarded is not None:
            for f in self.work.pop(step.discarded.key, _Work()).futures:
                f.cancel()
        if step.closed is not None:
            self.finished.append((step.closed, self.work.pop(step.closed.key, _Work())))
        self.settle(wait=self.wait_for_embeddings)
        return _headline(step.sighting, self.view), step.sighting is None, box

    def _keep(
        self, w: _Work, image: np.ndarray, box: tuple[int, int, int, int], embed: bool
    ) -> None:
        """Crop the sighting (and the empty table at the same place); embed or keep it."""
        left, top, right, bottom = box
        crop = image[top:bottom, left:right].copy()
        if w.table is None and self.empty_frame is not None:
            w.table = self.empty_frame[top:bottom, left:right].copy()
        if not embed:
            w.fallback = crop
            return
        w.futures.append(self.submit(crop))
        if w.thumb is None:
            w.thumb = crop
        if w.table_future is None and w.table is not None:
            w.table_future = self.submit(w.table)

    def end(self) -> None:
        """The source ended: the sock still on the table counts, then wait for every embedding."""
        done = self.tracker.finish()
        if done.closed is not None:
            self.finished.append((done.closed, self.work.pop(done.closed.key, _Work())))
        self.settle(wait=True)

    def settle(self, wait: bool) -> None:
        """Publish finished sightings (and their pairs) in order, once their embeddings are in;
        with wait=False the frame loop never waits for the backbone."""
        while self.finished:
            s, w = self.finished[0]
            if not wait and not all(f.done() for f in w.futures):
                return
            self.finished.popleft()
            vectors = [f.result() for f in w.futures]
            if not vectors and w.fallback is not None:  # never steady: the stillest frame
                vectors = [self.submit(w.fallback).result()]
            if vectors:  # always: a counted sighting kept a crop
                self._publish(s, w, appearance(np.concatenate(vectors)))

    def _publish(self, s: Sighting, w: _Work, look: np.ndarray) -> None:
        if self._looks_like_table(w, look):
            self.summary.rejected += 1
            self.event(f"dropped a sighting of {s.frames} frames: it looks like the empty table")
            return
        self.summary.sightings += 1
        s.id = self.summary.sightings
        self.send(s.message())
        pair = self.pool.add(s.id, look)
        crop = w.thumb if w.thumb is not None else w.fallback
        thumb = thumbnail(crop) if crop is not None else np.zeros((THUMB, THUMB, 3), np.uint8)
        if pair is None:
            self.view.opened(s.id, thumb)
            return
        self._announce(pair, thumb)

    def _announce(self, pair: Pair, thumb: np.ndarray) -> None:
        self.summary.pairs.append([pair.a, pair.b, round(pair.similarity, 4)])
        self.summary.final_pairs += pair.final
        self.send(pair.message())
        self.view.paired(pair, thumb)

    def final_match(self) -> None:
        """The feed ended (or was stopped): pair the socks still open, best-first."""
        for pair in self.pool.finish():
            self.event(
                f"final pair #{pair.a} + #{pair.b} ({pair.similarity:.2f}): matched among the "
                "socks still open when the feed ended"
            )
            blank = np.zeros((THUMB, THUMB, 3), np.uint8)
            self._announce(pair, self.view.thumbs.pop(pair.b, blank))

    def _looks_like_table(self, w: _Work, look: np.ndarray) -> bool:
        if w.table_future is None and w.table is not None:
            w.table_future = self.submit(w.table)
        if w.table_future is None:
            return False  # no empty frame to compare with (cannot happen after learning)
        table = appearance(w.table_future.result())
        return float(look @ table) >= self.config.empty_similarity

    def send(self, message: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.send(message)

    def close(self) -> None:
        self.embedder.shutdown(wait=True, cancel_futures=True)
        self.summary.open = list(self.pool.open)


def run_pairing(
    config: PairConfig,
    predictor: Any,
    sinks: Sequence[Sink] = (),
    hub: Any | None = None,
    on_event: Callable[[str], None] | None = None,
    on_classified: Callable[[LiveSummary, Decision], None] | None = None,
    stop: threading.Event | None = None,
    source: Any | None = None,
) -> PairSummary:
    """Pair what `config.source` shows by appearance until it ends (or `stop`, or Ctrl-C)."""
    from lensflow.live.sources import FrameReader

    config.validate()
    summary = PairSummary(source=config.source)
    event, source = open_run(config, summary, on_event, source)
    mode = "latest" if (source.live or config.fps) else "all"
    run = _PairRun(
        config, predictor, sinks, source_rate(config, source), summary, event,
        wait_for_embeddings=mode == "all",
    )  # fmt: skip
    reader = FrameReader(
        source, mode=mode, fps=config.fps, every=config.every,
        max_frames=config.max_frames, transform=lambda f: (f, shrink(f.image)),
    )  # fmt: skip
    meter = RateMeter()
    start = time.monotonic()
    try:
        for frame, small in reader:
            if stop is not None and stop.is_set():
                summary.stopped_by = "stopped"
                break
            meter.tick()
            run.view.tick()
            summary.classified += 1
            headline, blank, box = run.frame(frame.image, small, frame.index, frame.ts)
            if any(getattr(sink, "finished", False) for sink in sinks):
                summary.stopped_by = "stdout closed"
                break
            summary.fps = round(meter.rate, 2)
            summary.last_label = headline
            summary.frames_read = source.frames_read
            summary.published = min((s.published for s in sinks), default=0)
            decision = Decision(headline, 0.0, -1, blank)  # no class, no probability
            if hub is not None:
                colour = (160, 160, 160) if blank else (80, 220, 80)
                hub.update(
                    run.view.render(frame.image, headline, colour, meter.rate, box),
                    label=headline, probability=0.0, blank=blank,
                    fps=meter.rate, frames=summary.frames_read, classified=summary.classified,
                    published=summary.published,
                )  # fmt: skip
            if on_classified is not None:
                on_classified(summary, decision)
        else:
            run.end()
        run.settle(wait=True)  # after a stop: sightings that had ended still count
        run.final_match()
    except KeyboardInterrupt:
        summary.stopped_by = "interrupted (Ctrl-C)"
        run.settle(wait=True)
        run.final_match()
    finally:
        run.close()
        summary.labels = {"sightings": summary.sightings, "pairs": len(summary.pairs)}
        close_run(summary, reader, source, sinks, hub, start)
    if run.scene.learning and summary.classified:
        event(
            f"the source ended after {run.scene.seen} frames, while still learning the empty "
            f"table ({run.scene.learn_frames} frames); lower --empty-seconds or show a longer feed"
        )
    return summary


def _headline(current: Sighting | None, view: PairView) -> str:
    """The banner: the sock on the table first; on an empty table, the pair flashing."""
    if current is not None:
        return f"sighting: {current.frames} frames" if current.counted else "something there ..."
    if view.flash is not None:
        pair = view.flash[0]
        return f"pair #{pair.a} + #{pair.b}  {pair.similarity:.2f}"
    return f"empty table  ({len(view.thumbs)} open)"
