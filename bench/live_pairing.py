"""Calibrate `live --pair-by-appearance`'s --min-similarity on the SockSort sample photos.

    .venv/bin/python bench/live_pairing.py [--socks ../shared/datasets/socks-sample] [--orders 5]

Each of the 18 photos (6 designs x 3) is laid on a generated table twice (two places and sizes,
`lensflow.live.scenes`) and embedded the way the live loop does it: the empty-scene model finds
it, a square crop around it goes through the pretrained EfficientNet-Lite0 backbone. Then, over
all 3^6 = 729 ways to keep two photos per design, each shown in `--orders` random orders (the
second showing of a design uses the second placement), the live greedy pairing runs at every
threshold of a grid; reported per threshold: how often every pair is right, and the same with
one photo removed (5 right pairs and the odd sock left open). Baseline, same embeddings: the
global maximum-weight matching `lensflow match` uses (it sees all socks at once), at its 0.45.
Also: the cosine of each sock's appearance with the empty table's crop at the same place, and
the same for 12 soft spots of light or shadow (the `EMPTY_SIMILARITY` check drops sightings
above it). Prints one JSON line; the best threshold is the default `DEFAULT_PAIR_SIMILARITY`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from pathlib import Path

import numpy as np

from lensflow.export import backbone_bundle
from lensflow.live.appearance import EMPTY_SIMILARITY, EmptyScene, appearance, crop_box, shrink
from lensflow.live.pair_loop import embed_views
from lensflow.live.scenes import Show, show_frames
from lensflow.match import DEFAULT_MIN_SIMILARITY
from lensflow.match.pairing import best_pairs, cosine_matrix
from lensflow.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
GRID = [round(0.50 + 0.01 * i, 2) for i in range(46)]  # 0.50 .. 0.95


def live_embedding(
    predictor: Predictor, photo: Path | None, seed: int, light: float = 0.0
) -> tuple[np.ndarray, float]:
    """A photo (or a spot of light) on the table, found and cropped as the live loop does:
    (4 rotation embeddings, cosine of its appearance with the empty table's same crop)."""
    frames = list(show_frames([Show(None, 5), Show(photo, 3, light=light)], seed=seed))
    scene = EmptyScene(5)
    for frame in frames[:5]:
        scene.learn(shrink(frame))
    fg = scene.foreground(shrink(frames[-1]))
    assert fg.present and fg.box is not None, photo
    x0, y0, x1, y1 = crop_box(fg.box, frames[-1].shape)
    views = embed_views(predictor, frames[-1][y0:y1, x0:x1])
    table = embed_views(predictor, frames[0][y0:y1, x0:x1])
    return views, float(appearance(views) @ appearance(table))


def greedy(order: list[int], sim: np.ndarray, threshold: float) -> tuple[list, list[int]]:
    """`PairPool.add`'s rule on precomputed similarities: the best open one (oldest on ties)."""
    pool: list[int] = []
    pairs = []
    for i in order:
        best_j = max(pool, key=lambda j: sim[i, j], default=None)
        if best_j is not None and sim[i, best_j] >= threshold:
            pool.remove(best_j)
            pairs.append((best_j, i))
        else:
            pool.append(i)
    return pairs, pool


def simulate(sim: np.ndarray, label: list[int], designs: int, orders: int) -> dict:
    """Greedy pairing at every GRID threshold over all choices x `orders` random orders, and
    the maximum-weight matching of `lensflow match` (threshold 0.45) on the same vectors."""
    rng = random.Random(0)
    full = dict.fromkeys(GRID, 0)
    odd = dict.fromkeys(GRID, 0)
    wrong = dict.fromkeys(GRID, 0)
    runs = match_full = match_odd = 0
    for choice in itertools.product(itertools.combinations(range(3), 2), repeat=designs):
        # Index 2 * photo + placement: first showing, first placement; second, the other.
        items = [(2 * (3 * d + ks[0]), 2 * (3 * d + ks[1]) + 1) for d, ks in enumerate(choice)]
        shown = [i for pair in items for i in pair]
        ok = best_pairs(sim[np.ix_(shown, shown)], DEFAULT_MIN_SIMILARITY)
        match_full += len(ok.pairs) == designs and all(
            label[shown[a]] == label[shown[b]] for a, b, _ in ok.pairs
        )
        for gone in range(designs):
            sub = [x for d, pair in enumerate(items) for x in (pair if d != gone else pair[:1])]
            ok = best_pairs(sim[np.ix_(sub, sub)], DEFAULT_MIN_SIMILARITY)
            match_odd += (
                len(ok.pairs) == designs - 1
                and all(label[sub[a]] == label[sub[b]] for a, b, _ in ok.pairs)
                and [sub[i] for i in ok.singletons] == [items[gone][0]]
            )
        for _ in range(orders):
            runs += 1
            order = _order(shown, items, rng)
            for t in GRID:
                pairs, _ = greedy(order, sim, t)
                bad = sum(label[a] != label[b] for a, b in pairs)
                wrong[t] += bad
                full[t] += bad == 0 and len(pairs) == designs
            # One sock of a random design missing: 5 right pairs, its twin left open.
            gone = rng.randrange(designs)
            kept = [x for d, pair in enumerate(items) for x in (pair if d != gone else pair[:1])]
            order = _order(kept, items, rng)
            for t in GRID:
                pairs, left = greedy(order, sim, t)
                odd[t] += (
                    len(pairs) == designs - 1
                    and all(label[a] == label[b] for a, b in pairs)
                    and left == [items[gone][0]]
                )
    score = {t: full[t] + odd[t] for t in GRID}
    plateau = [t for t in GRID if score[t] == max(score.values())]
    best = plateau[len(plateau) // 2]  # the middle of the best plateau
    return {
        "best_threshold": best,
        "all_right": _rate(full[best], runs),
        "odd_sock_right": _rate(odd[best], runs),
        "wrong_pairs_per_run": round(wrong[best] / runs, 3),
        "all_right_by_threshold": {str(t): round(full[t] / runs, 3) for t in GRID},
        "odd_sock_right_by_threshold": {str(t): round(odd[t] / runs, 3) for t in GRID},
        "runs": runs,
        "baseline_match_all_right": _rate(match_full, runs // orders),
        "baseline_match_odd_sock_right": _rate(match_odd, runs // orders * designs),
    }


def _rate(k: int, n: int) -> dict:
    """k/n with a 95 % Wilson interval."""
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"rate": round(p, 4), "ci95": [round(centre - half, 4), round(centre + half, 4)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--socks", type=Path, default=ROOT.parent / "shared/datasets/socks-sample")
    parser.add_argument("--orders", type=int, default=5, help="random orders per choice")
    args = parser.parse_args()

    if not args.socks.is_dir():
        raise SystemExit(f"{args.socks} not found (the shared datasets beside the project)")
    start = time.perf_counter()
    predictor = Predictor.from_bundle(backbone_bundle("efficientnet_lite0"))
    designs = sorted(d for d in args.socks.iterdir() if d.is_dir())
    flat = [p for d in designs for p in sorted(d.glob("*.jpg"))]
    shown = [live_embedding(predictor, p, 100 * i + s) for i, p in enumerate(flat) for s in (1, 2)]
    views = np.stack([v for v, _ in shown])  # (2 * photos, 4 rotations, D)
    sock_vs_table = [t for _, t in shown]
    rng = np.random.default_rng(0)
    lights = [float(rng.choice([-1, 1]) * rng.uniform(30, 70)) for _ in range(12)]
    light_vs_table = [live_embedding(predictor, None, 7 + i, a)[1] for i, a in enumerate(lights)]
    label = [i // 6 for i in range(len(views))]
    sim = cosine_matrix(np.stack([appearance(v) for v in views]))
    # Baseline features: one view, no power normalisation (what `lensflow match` embeds).
    single = cosine_matrix(views[:, 0])
    same = [(a, b) for a in range(len(views)) for b in range(a + 1, len(views))
            if label[a] == label[b] and a // 2 != b // 2]  # fmt: skip
    diff = [(a, b) for a in range(len(views)) for b in range(a + 1, len(views))
            if label[a] != label[b]]  # fmt: skip

    def spread(s: np.ndarray) -> dict:
        x, y = np.array([s[p] for p in same]), np.array([s[p] for p in diff])
        return {"same_mean": round(float(x.mean()), 3), "same_min": round(float(x.min()), 3),
                "different_mean": round(float(y.mean()), 3),
                "different_max": round(float(y.max()), 3),
                "auroc": round(float((x[:, None] > y[None, :]).mean()), 4)}  # fmt: skip

    result = {
        "bench": "live_pairing",
        "photos": len(flat),
        "designs": len(designs),
        "orders_per_choice": args.orders,
        "four_rotations": {**spread(sim), **simulate(sim, label, len(designs), args.orders)},
        "single_view": {**spread(single), **simulate(single, label, len(designs), args.orders)},
        "empty_table_check": {
            "sock_vs_table_max": round(max(sock_vs_table), 3),
            "light_or_shadow_vs_table_min": round(min(light_vs_table), 3),
            "light_or_shadow_vs_table": sorted(round(x, 3) for x in light_vs_table),
            "threshold": EMPTY_SIMILARITY,
        },
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


def _order(kept: list[int], items: list[tuple[int, int]], rng: random.Random) -> list[int]:
    """A random showing order of `kept` in which a design's first placement comes first
    (placements stand for "first time on the table" and "second time", not for the photo)."""
    order = kept[:]
    rng.shuffle(order)
    for first, second in items:
        if first in order and second in order:
            i, j = order.index(first), order.index(second)
            if i > j:
                order[i], order[j] = order[j], order[i]
    return order


if __name__ == "__main__":
    main()
