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
from lensflow.live.loop import Decision, LiveConfig, LiveSummary, RateMeter, Sink

DEFAULT_RATE = 10.0  # frames/s assumed where the source does not say (image folders)
THUMB = 72  # pixels, thumbnails in the view's strip
FLASH_SECONDS = 1.5


@dataclass(frozen=True)
class PairConfig(LiveConfig):
    """`lensflow live --pair-by-appearance`: LiveConfig's source, sinks and view, plus these."""

    bundle: str | None  # None: the pretrained backbone, as `lensflow match` uses
    topic: str = "sockpairs"
    model: str = "efficientnet_lite0"  # the pretrained backbone used without a bundle
    min_similarity: float = DEFAULT_PAIR_SIMILARITY  # cosine a pair needs
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
    **common: Any,
) -> PairConfig:
    """The CLI's options -> PairConfig (None: this mode's defaults)."""
    return PairConfig(
        bundle=bundle,
        topic=topic or PairConfig.topic,
        min_similarity=DEFAULT_PAIR_SIMILARITY if min_similarity is None else min_similarity,
        empty_seconds=empty_seconds,
        min_frames=min_frames,
        **common,
    )


@dataclass
class PairSummary(LiveSummary):
    learned_frames: int = 0  # frames the empty scene was learnt from
    sightings: int = 0
    pairs: list[list[Any]] = field(default_factory=list)  # [a, b, similarity]
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
    flash: tuple[Pair, np.ndarray, np.ndarray] | None = None
    flash_left: int = 0

    def opened(self, sighting_id: int, thumb: np.ndarray) -> None:
        self.thumbs[sighting_id] = thumb

    def paired(self, pair: Pair, thumb: np.ndarray) -> None:
        old = self.thumbs.pop(pair.a, thumb)
        self.flash, self.flash_left = (pair, old, thumb), self.flash_frames

    def tick(self) -> None:
        """One frame passed (the flash of the last pair fades)."""
        self.flash_left = max(0, self.flash_left - 1)

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
        if self.flash is not None and self.flash_left > 0:
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
    from lensflow.live.sources import FrameReader, open_source

    config.validate()
    summary = PairSummary(source=config.source)

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
    rate = source_rate(config, source)
    scene = EmptyScene(max(1, round(config.empty_seconds * rate)))
    tracker = SightingTracker(
        config.min_frames, config.end_gap, config.max_embeddings
    )  # fmt: skip
    pool = PairPool(config.min_similarity)
    view = PairView(flash_frames=max(1, round(FLASH_SECONDS * rate)))
    work: dict[int, _Work] = {}
    embedder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lensflow-embed")

    def embed(crop_bgr: np.ndarray) -> np.ndarray:
        return embed_views(predictor, crop_bgr)

    def send(message: dict[str, Any]) -> None:
        for sink in sinks:
            sink.send(message)

    def looks_like_table(w: _Work, look: np.ndarray) -> bool:
        if w.table_future is not None:
            table = w.table_future.result()
        elif w.table is not None:
            table = embed(w.table)
            summary.embedded += 1
        else:
            return False
        return float(look @ appearance(table)) >= config.empty_similarity

    finished: collections.deque[tuple[Sighting, _Work]] = collections.deque()

    def settle(wait: bool) -> None:
        """Publish finished sightings (and their pairs) in order, once their embeddings are in;
        with wait=False the frame loop never waits for the backbone."""
        while finished:
            s, w = finished[0]
            if not wait and not all(f.done() for f in w.futures):
                return
            finished.popleft()
            vectors = [f.result() for f in w.futures]
            if not vectors and w.fallback is not None:  # never steady: the stillest frame
                vectors = [embed(w.fallback)]
                summary.embedded += 1
            if not vectors:
                continue  # unreachable: a counted sighting always kept a crop
            look = appearance(np.concatenate(vectors))
            if looks_like_table(w, look):
                summary.rejected += 1
                event(f"dropped a sighting of {s.frames} frames: it looks like the empty table")
                continue
            summary.sightings += 1
            s.id = summary.sightings
            send(s.message())
            pair = pool.add(s.id, look)
            crop = w.thumb if w.thumb is not None else w.fallback
            thumb = thumbnail(crop) if crop is not None else np.zeros((THUMB, THUMB, 3), np.uint8)
            if pair is None:
                view.opened(s.id, thumb)
            else:
                summary.pairs.append([pair.a, pair.b, round(pair.similarity, 4)])
                send(pair.message())
                view.paired(pair, thumb)

    mode = "latest" if (source.live or config.fps) else "all"
    reader = FrameReader(
        source, mode=mode, fps=config.fps, every=config.every,
        max_frames=config.max_frames, transform=lambda f: (f, shrink(f.image)),
    )  # fmt: skip
    meter = RateMeter()
    previous: np.ndarray | None = None
    empty_frame: np.ndarray | None = None  # the latest full frame of the empty table
    start = time.monotonic()
    try:
        for frame, small in reader:
            if stop is not None and stop.is_set():
                summary.stopped_by = "stopped"
                break
            meter.tick()
            view.tick()
            summary.classified += 1
            box = None
            if scene.learning:
                scene.learn(small)
                empty_frame = frame.image
                summary.learned_frames = scene.seen
                headline, blank = (
                    f"learning the empty table {scene.seen}/{scene.learn_frames}",
                    True,
                )
            else:
                fg = scene.foreground(small)
                step = tracker.observe(frame.index, frame.ts, fg.present, motion(previous, small))
                if fg.present and fg.box is not None and (step.embed or step.keep_fallback):
                    left, top, right, bottom = crop_box(fg.box, frame.image.shape)
                    crop = frame.image[top:bottom, left:right].copy()
                    w = work.setdefault(step.sighting.key, _Work())  # type: ignore[union-attr]
                    if w.table is None and empty_frame is not None:
                        w.table = empty_frame[top:bottom, left:right].copy()
                    if step.embed and w.table_future is None and w.table is not None:
                        w.table_future = embedder.submit(embed, w.table)
                        summary.embedded += 1
                    if step.embed:
                        w.futures.append(embedder.submit(embed, crop))
                        summary.embedded += 1
                        if w.thumb is None:
                            w.thumb = crop
                    else:
                        w.fallback = crop
                if fg.present and fg.box is not None:
                    box = crop_box(fg.box, frame.image.shape)
                if step.sighting is None and not fg.present:
                    scene.adapt(small)  # only a truly empty table teaches the background
                    empty_frame = frame.image
                if step.discarded is not None:
                    for f in work.pop(step.discarded.key, _Work()).futures:
                        f.cancel()
                if step.closed is not None:
                    finished.append((step.closed, work.pop(step.closed.key, _Work())))
                settle(wait=False)
                headline, blank = _headline(step.sighting, view), step.sighting is None
            previous = small
            if any(getattr(sink, "finished", False) for sink in sinks):
                summary.stopped_by = "stdout closed"
                break
            summary.fps = round(meter.rate, 2)
            summary.last_label = headline
            summary.frames_read = source.frames_read
            summary.published = min((s.published for s in sinks), default=0)
            flashing = view.flash is not None and view.flash_left > 0
            similarity = view.flash[0].similarity if view.flash is not None and flashing else 0.0
            decision = Decision(headline, similarity, -1, blank)
            if hub is not None:
                colour = (160, 160, 160) if blank else (80, 220, 80)
                hub.update(
                    view.render(frame.image, headline, colour, meter.rate, box),
                    label=headline, probability=decision.probability * 100, blank=blank,
                    fps=meter.rate, frames=summary.frames_read, classified=summary.classified,
                    published=summary.published,
                )  # fmt: skip
            if on_classified is not None:
                on_classified(summary, decision)
        else:
            done = tracker.finish()  # the source ended with a sock still in view
            if done.closed is not None:
                finished.append((done.closed, work.pop(done.closed.key, _Work())))
        settle(wait=True)
    except KeyboardInterrupt:
        summary.stopped_by = "interrupted (Ctrl-C)"
        settle(wait=True)  # sightings that had ended still count
    finally:
        reader.stop()
        source.close()
        embedder.shutdown(wait=True, cancel_futures=True)
        summary.seconds = round(time.monotonic() - start, 3)
        summary.frames_read = source.frames_read
        summary.skipped = summary.frames_read - summary.classified
        summary.fps = round(summary.classified / summary.seconds, 2) if summary.seconds else 0.0
        summary.open = list(pool.open)
        summary.labels = {"sightings": summary.sightings, "pairs": len(summary.pairs)}
        for sink in sinks:
            summary.sinks.update(sink.close())
        summary.published = min((s.published for s in sinks), default=0)
        if hub is not None:
            hub.set_status(published=summary.published, running=False)
    if scene.learning and summary.classified:
        event(
            f"the source ended after {scene.seen} frames, while still learning the empty table "
            f"({scene.learn_frames} frames); lower --empty-seconds or show a longer feed"
        )
    return summary


def _headline(current: Sighting | None, view: PairView) -> str:
    if view.flash is not None and view.flash_left > 0:
        pair = view.flash[0]
        return f"pair #{pair.a} + #{pair.b}  {pair.similarity:.2f}"
    if current is None:
        return f"empty table  ({len(view.thumbs)} open)"
    if not current.counted:
        return "something there ..."
    return f"sighting: {current.frames} frames"
