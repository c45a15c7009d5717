"""Live pairing by appearance (`lensflow live --pair-by-appearance`): the pure state, no I/O.

The loop (`pair_loop.py`) feeds every frame through three small pieces:

- `EmptyScene`: a per-pixel model of the empty table in a small blurred copy of the frame (mean
  and spread per pixel and channel, learnt from the first frames). A frame is compared with it
  after a global gain correction (the median ratio frame / background), so lighting flicker and
  auto-exposure steps on the empty table do not look like an object; what differs by more than
  `k_sigma` spreads (and at least `floor` grey levels) and covers `min_area` of the frame is
  something on the table. This costs well under a millisecond per frame, so only non-empty
  frames pay for an embedding.
- `SightingTracker`: consecutive non-empty frames form one sighting; it ends only after
  `end_gap` empty frames (a hand lifting the sock for a moment does not split it) and counts
  once it has `min_frames` non-empty frames. It says which frames to embed: steady ones (little
  change since the previous frame, so not the motion blur of a sock being put down or picked
  up), at most `max_embeddings` per sighting.
- `appearance`: a crop is embedded in its four rotations (a sock lies any way round; averaging
  them made the pretrained features far less sensitive to how it lies: AUROC same design vs
  different 0.933 -> 0.995 on the sample), a sighting's appearance is the mean over its steady
  frames, square-rooted (power normalisation, a little more separation) and L2-normalised.
  The same is computed for the empty table's crop at the same place: a sighting that looks like
  the table there (a light switched on, a shadow) is dropped (`EMPTY_SIMILARITY`).
- `PairPool`: pairing in two steps. Live, a finished sighting pairs with the most similar open
  one at or above `min_similarity`, set high enough that a live pair is rarely wrong; both
  leave the pool, otherwise it waits there. A live pair is final when made: a later, better
  partner cannot undo it. When the feed ends, the socks still open are paired the way
  `lensflow match` pairs photos: the pairs with the largest total similarity, each at or above
  `final_similarity` (lower than the live threshold: seeing every remaining sock at once is what
  a threshold-only online rule cannot do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from lensflow.errors import LiveError

# Cosines by default, calibrated on the shared sock photos shown on a table (bench/live_pairing.py,
# BENCHMARKS.md "live pairing by appearance"). Live: no different-design pair of the sample is
# above 0.856, and no live pair was wrong at 0.86-0.95; 0.88 keeps a margin (61 % of the pairs
# are still announced live). Final: the least-alike twins of the sample are 0.821 apart; 0.80
# keeps every pair right there and leaves most unmatched socks unmatched.
DEFAULT_PAIR_SIMILARITY = 0.88
DEFAULT_FINAL_SIMILARITY = 0.80
# A sighting at least this similar to the empty table's crop at the same place is a lighting
# change (a lamp, a shadow), not an object: sock crops vs their table <= 0.43 on the sample,
# light and shadow patches 0.61..0.96 (bench/live_pairing.py prints both).
EMPTY_SIMILARITY = 0.55

SMALL = (160, 120)  # (width, height) of the copy the pixel tests run on


def shrink(frame_bgr: np.ndarray) -> np.ndarray:
    """A small, blurred float32 copy of a BGR frame (sensor noise and JPEG blocks averaged out)."""
    import cv2

    small = cv2.resize(frame_bgr, SMALL, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)


def _gain(small: np.ndarray, reference: np.ndarray) -> float:
    """Median brightness ratio small / reference: a global lighting change, robust to an object
    covering less than half of the frame."""
    ratio = small.mean(axis=2) / np.maximum(reference.mean(axis=2), 1.0)
    return float(np.median(ratio))


@dataclass(frozen=True)
class Foreground:
    present: bool  # something covers at least min_area of the frame
    fraction: float  # share of the small frame that differs from the empty scene
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1) in small-frame pixels
    mask: np.ndarray = field(repr=False)  # bool (H, W) of the small frame


class EmptyScene:
    """What the empty table looks like, per pixel of the small frame."""

    def __init__(
        self,
        learn_frames: int,
        k_sigma: float = 4.0,
        floor: float = 20.0,
        min_area: float = 0.01,
        adapt_rate: float = 0.02,
    ) -> None:
        if learn_frames < 1:
            raise LiveError(f"the empty scene needs at least 1 frame to learn, got {learn_frames}")
        if not 0.0 < min_area < 1.0:
            raise LiveError(f"min_area is a share of the frame in (0, 1), got {min_area}")
        self.learn_frames = learn_frames
        self.k_sigma = k_sigma
        self.floor = floor
        self.min_area = min_area
        self.adapt_rate = adapt_rate
        self.seen = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def learning(self) -> bool:
        return self.mean is None

    def learn(self, small: np.ndarray) -> None:
        """Add one empty frame; the model is ready after `learn_frames` of them."""
        x = small.astype(np.float64)
        if self._sum is None or self._sumsq is None:
            self._sum, self._sumsq = np.zeros_like(x), np.zeros_like(x)
        # Each frame is scaled to the first one's brightness so that flicker during learning
        # does not inflate the spread (the gain is corrected at test time anyway).
        if self.seen:
            x = x / max(_gain(small, (self._sum / self.seen).astype(np.float32)), 1e-3)
        self._sum += x
        self._sumsq += x * x
        self.seen += 1
        if self.seen >= self.learn_frames:
            mean = self._sum / self.seen
            var = np.maximum(self._sumsq / self.seen - mean * mean, 0.0)
            self.mean = mean.astype(np.float32)
            self.std = np.sqrt(var).astype(np.float32)
            self._sum = self._sumsq = None

    def foreground(self, small: np.ndarray) -> Foreground:
        """Which part of `small` is not the empty table (after correcting the global gain)."""
        import cv2

        if self.mean is None or self.std is None:
            raise LiveError("the empty scene is still learning")
        gain = _gain(small, self.mean)
        residual = np.abs(small - gain * self.mean) - gain * self.k_sigma * self.std
        mask = (residual.max(axis=2) > self.floor).astype(np.uint8)
        # An opening removes isolated pixels (noise, compression) before anything is counted.
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        fraction = float(mask.mean())
        present = fraction >= self.min_area
        return Foreground(present, fraction, _object_box(mask) if present else None, mask > 0)

    def adapt(self, small: np.ndarray) -> None:
        """Follow slow changes of the empty table (daylight) with a running average."""
        if self.mean is not None:
            self.mean += self.adapt_rate * (small - self.mean)


def _object_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box of the large blobs of `mask` (specks far from the object are ignored)."""
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = stats[1:][areas >= 0.1 * areas.max()]
    x0 = int(keep[:, cv2.CC_STAT_LEFT].min())
    y0 = int(keep[:, cv2.CC_STAT_TOP].min())
    x1 = int((keep[:, cv2.CC_STAT_LEFT] + keep[:, cv2.CC_STAT_WIDTH]).max())
    y1 = int((keep[:, cv2.CC_STAT_TOP] + keep[:, cv2.CC_STAT_HEIGHT]).max())
    return x0, y0, x1, y1


def motion(previous: np.ndarray | None, small: np.ndarray, floor: float = 20.0) -> float:
    """Share of the small frame that changed since the previous one (gain-corrected)."""
    if previous is None:
        return 1.0
    diff = np.abs(small - _gain(small, previous) * previous).max(axis=2)
    return float((diff > floor).mean())


def crop_box(
    box: tuple[int, int, int, int], frame_shape: tuple[int, ...], margin: float = 0.1
) -> tuple[int, int, int, int]:
    """A square around a small-frame box, in full-frame pixels, with a margin, inside the frame.

    Square because the backbone's preprocessing centre-crops: a long thin box would lose its ends.
    """
    h, w = frame_shape[:2]
    sx, sy = w / SMALL[0], h / SMALL[1]
    x0, y0, x1, y1 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
    side = min(max(x1 - x0, y1 - y0) * (1 + 2 * margin), w, h)
    cx = min(max((x0 + x1) / 2, side / 2), w - side / 2)
    cy = min(max((y0 + y1) / 2, side / 2), h - side / 2)
    left, top = round(cx - side / 2), round(cy - side / 2)
    return left, top, left + round(side), top + round(side)


# ---- sightings ---------------------------------------------------------------------------------


@dataclass
class Sighting:
    key: int  # internal, from the first non-empty frame (short blips get one too)
    start_index: int
    start_ts: float
    end_index: int
    end_ts: float
    frames: int = 1  # non-empty frames
    counted: bool = False  # it lasted min_frames
    id: int | None = None  # public number, given when it is published (in order)
    steady: int = 0  # steady frames seen
    embeds: int = 0  # frames sent for embedding
    best_motion: float = float("inf")
    empty_run: int = 0  # empty frames since the last non-empty one

    def message(self) -> dict[str, Any]:
        return {
            "event": "sighting",
            "id": self.id,
            "start_ts": int(self.start_ts * 1000),
            "end_ts": int(self.end_ts * 1000),
            "frames": self.frames,
        }


@dataclass(frozen=True)
class Step:
    """What the tracker decided for one frame."""

    sighting: Sighting | None  # the open sighting this frame belongs to (None: empty scene)
    embed: bool = False  # embed this frame (steady, under the cap)
    keep_fallback: bool = False  # the stillest frame so far of a sighting with no steady frame
    closed: Sighting | None = None  # a sighting that just ended and counts
    discarded: Sighting | None = None  # a blip shorter than min_frames that just ended


class SightingTracker:
    """Frames in (present or not, how much they moved), sightings out."""

    def __init__(
        self,
        min_frames: int = 5,
        end_gap: int = 5,
        max_embeddings: int = 2,
        steady_motion: float = 0.01,
    ) -> None:
        if min_frames < 1:
            raise LiveError(f"--min-frames must be >= 1, got {min_frames}")
        if end_gap < 1:
            raise LiveError(f"the end gap must be >= 1 frame, got {end_gap}")
        if max_embeddings < 1:
            raise LiveError(f"max embeddings per sighting must be >= 1, got {max_embeddings}")
        self.min_frames = min_frames
        self.end_gap = end_gap
        self.max_embeddings = max_embeddings
        self.steady_motion = steady_motion
        self.current: Sighting | None = None
        self.count = 0  # sightings that counted
        self._keys = 0

    def observe(self, index: int, ts: float, present: bool, moved: float) -> Step:
        """One frame: `present` from EmptyScene, `moved` from `motion`."""
        cur = self.current
        if not present:
            if cur is None:
                return Step(None)
            cur.empty_run += 1
            if cur.empty_run < self.end_gap:
                return Step(cur)
            return self._end()
        if cur is None:
            self._keys += 1
            cur = self.current = Sighting(self._keys, index, ts, index, ts, frames=0)
        cur.frames += 1
        cur.end_index, cur.end_ts, cur.empty_run = index, ts, 0
        if not cur.counted and cur.frames >= self.min_frames:
            self.count += 1
            cur.counted = True
        embed = keep = False
        if moved <= self.steady_motion:
            cur.steady += 1
            embed = cur.embeds < self.max_embeddings
            cur.embeds += embed
        elif cur.steady == 0 and moved < cur.best_motion:
            cur.best_motion = moved
            keep = True
        return Step(cur, embed=embed, keep_fallback=keep)

    def finish(self) -> Step:
        """The source ended: close what is open."""
        return self._end() if self.current is not None else Step(None)

    def _end(self) -> Step:
        done, self.current = self.current, None
        if done is not None and done.counted:
            return Step(None, closed=done)
        return Step(None, discarded=done)


def rotations(image: np.ndarray) -> list[np.ndarray]:
    """The image turned by 0, 90, 180 and 270 degrees (contiguous copies for the Predictor)."""
    return [np.ascontiguousarray(np.rot90(image, k)) for k in range(4)]


def appearance(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) embeddings of a sighting's views -> one unit vector: mean, square root, L2."""
    mean = np.asarray(embeddings, dtype=np.float64).reshape(-1, np.shape(embeddings)[-1]).mean(0)
    return unit(np.sqrt(np.maximum(mean, 0.0)))


# ---- pairing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    a: int  # the earlier sighting
    b: int  # the one that completed the pair
    similarity: float
    final: bool = False  # made when the feed ended, from the socks still open

    def message(self) -> dict[str, Any]:
        return {"event": "pair", "a": self.a, "b": self.b,
                "similarity": round(self.similarity, 4), "final": self.final}  # fmt: skip


def unit(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class PairPool:
    """Open (unmatched) sightings: greedy live pairing at `min_similarity` (cosine), and
    best-first pairing of what is left at `final_similarity` when the feed ends."""

    def __init__(self, min_similarity: float, final_similarity: float | None = None) -> None:
        for name, value in (("--min-similarity", min_similarity),
                            ("--final-similarity", final_similarity)):  # fmt: skip
            if value is not None and not -1.0 <= value <= 1.0:
                raise LiveError(f"{name} is a cosine in -1..1, got {value}")
        self.min_similarity = min_similarity
        self.final_similarity = min_similarity if final_similarity is None else final_similarity
        self.open: dict[int, np.ndarray] = {}  # sighting id -> unit appearance, oldest first
        self.pairs: list[Pair] = []

    def add(self, sighting_id: int, appearance: np.ndarray) -> Pair | None:
        """Pair with the most similar open sighting at or above the threshold, or wait."""
        v = unit(appearance)
        best_id, best = None, -np.inf
        for other, u in self.open.items():  # oldest first: ties go to the sock waiting longest
            sim = float(np.clip(v @ u, -1.0, 1.0))
            if sim > best:
                best_id, best = other, sim
        if best_id is not None and best >= self.min_similarity:
            del self.open[best_id]
            pair = Pair(best_id, sighting_id, best)
            self.pairs.append(pair)
            return pair
        self.open[sighting_id] = v
        return None

    def finish(self) -> list[Pair]:
        """The feed ended: pair the open sightings with the largest total similarity, using only
        pairs at or above `final_similarity` (what `lensflow match` does with every photo)."""
        ids = list(self.open)
        if len(ids) < 2:
            return []
        vectors = np.stack([self.open[i] for i in ids])
        sims = np.clip(vectors @ vectors.T, -1.0, 1.0)
        made = [
            Pair(ids[i], ids[j], float(sims[i, j]), final=True)
            for i, j in max_weight_pairs(sims, self.final_similarity)
        ]
        for pair in made:
            del self.open[pair.a], self.open[pair.b]
        self.pairs.extend(made)
        return made


# Larger groups of mutually similar open socks than this are paired best-first (most similar
# pair first): the exact search doubles in cost with every sock, and a real sock drawer leaves
# groups of a few socks (the sample, 12 socks at a time: at most 9).
EXACT_GROUP = 18


def max_weight_pairs(sims: np.ndarray, min_similarity: float) -> list[tuple[int, int]]:
    """Pairs (i < j) of a symmetric similarity matrix with the largest total similarity, each
    index used at most once, only pairs >= min_similarity; sorted by i.

    Exact per group of indices linked by allowed pairs (a search over subsets, memoised), so
    no graph library is needed in the core install; `lensflow match` gets the same matching
    from networkx (tests/unit/live/test_appearance.py compares the two). Best-first: the most
    similar pair first is not enough, e.g. 0.86 between two designs can block two twins at 0.82
    and 0.90.
    """
    n = len(sims)
    allowed = (sims >= min_similarity) & ~np.eye(n, dtype=bool)
    pairs: list[tuple[int, int]] = []
    for group in _groups(allowed):
        if len(group) > EXACT_GROUP:
            pairs += _best_first(sims, allowed, group)
        elif len(group) > 1:
            pairs += _exact(sims, allowed, group)
    return sorted((min(i, j), max(i, j)) for i, j in pairs)


def _groups(allowed: np.ndarray) -> list[list[int]]:
    """Connected components of the allowed pairs."""
    seen: set[int] = set()
    groups = []
    for start in range(len(allowed)):
        if start in seen:
            continue
        group, todo = [], [start]
        seen.add(start)
        while todo:
            i = todo.pop()
            group.append(i)
            for j in np.flatnonzero(allowed[i]):
                if int(j) not in seen:
                    seen.add(int(j))
                    todo.append(int(j))
        groups.append(sorted(group))
    return groups


def _exact(sims: np.ndarray, allowed: np.ndarray, group: list[int]) -> list[tuple[int, int]]:
    @cache
    def best(left: tuple[int, ...]) -> tuple[float, tuple[tuple[int, int], ...]]:
        if len(left) < 2:
            return 0.0, ()
        i, rest = left[0], left[1:]
        top = best(rest)  # i stays single
        for k, j in enumerate(rest):
            if allowed[i, j]:
                weight, chosen = best(rest[:k] + rest[k + 1 :])
                if weight + sims[i, j] > top[0]:
                    top = (weight + float(sims[i, j]), ((i, j), *chosen))
        return top

    return list(best(tuple(group))[1])


def _best_first(sims: np.ndarray, allowed: np.ndarray, group: list[int]) -> list[tuple[int, int]]:
    edges = sorted((-sims[i, j], i, j) for i in group for j in group if i < j and allowed[i, j])
    used: set[int] = set()
    pairs = []
    for _, i, j in edges:
        if i not in used and j not in used:
            used.update((i, j))
            pairs.append((i, j))
    return pairs
