"""Calibrate `live --pair-by-appearance`'s --min-similarity and --final-similarity on the
SockSort sample photos.

    .venv/bin/python bench/live_pairing.py [--socks ../shared/datasets/socks-sample] [--orders 2]

Each of the 18 photos (6 designs x 3) is laid on a generated table twice (two places and sizes,
`lensflow.live.scenes`) and embedded the way the live loop does it: the empty-scene model finds
it, a square crop around it goes through the pretrained EfficientNet-Lite0 backbone in four
rotations. Then, over all 3^6 = 729 ways to keep two photos per design, each in `--orders`
random orders (the second showing of a design uses the second placement), and three scenarios
(all pairs; one design with a single sock; two designs with a single sock), the shipped
`PairPool` pairs live and then finishes: reported per live threshold (final at its default)
and per final threshold (live at its default) how often every pair is right and the unmatched
socks stay open, how many pairs were announced live, and wrong live pairs per run. Baselines on
the same vectors: live pairing alone at 0.82 (the first version, no final step) and the global
maximum-weight matching `lensflow match` uses at its 0.45 (it sees all socks at once). Also the
cosine of each sock's appearance with the empty table's crop at the same place, and of 12 soft
spots of light or shadow (the `EMPTY_SIMILARITY` check drops sightings above it). Prints one
JSON line.
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
from lensflow.live.appearance import (
    DEFAULT_FINAL_SIMILARITY,
    DEFAULT_PAIR_SIMILARITY,
    EMPTY_SIMILARITY,
    EmptyScene,
    PairPool,
    appearance,
    crop_box,
    shrink,
)
from lensflow.live.pair_loop import embed_views
from lensflow.live.scenes import Show, show_frames
from lensflow.match import DEFAULT_MIN_SIMILARITY
from lensflow.match.pairing import best_pairs, cosine_matrix
from lensflow.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]


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


LIVE_GRID = [round(0.80 + 0.01 * i, 2) for i in range(16)]  # 0.80 .. 0.95
FINAL_GRID = [round(0.70 + 0.01 * i, 2) for i in range(17)]  # 0.70 .. 0.86
SCENARIOS = ("all_pairs", "one_odd_sock", "two_odd_socks")


def run_pool(order: list[int], vectors: np.ndarray, live: float, final: float) -> tuple:
    """The shipped `PairPool` on one showing order: (live pairs, final pairs, still open)."""
    pool = PairPool(live, final)
    made = [pool.add(i, vectors[i]) for i in order]
    live_pairs = [(p.a, p.b) for p in made if p is not None]
    final_pairs = [(p.a, p.b) for p in pool.finish()]
    return live_pairs, final_pairs, sorted(pool.open)


def showings(designs: int, orders: int, rng: random.Random):
    """Every way to keep two of the three photos per design, each in `orders` random orders, as
    (scenario, order, the socks that must stay open): all pairs; one design with one sock only;
    two designs with one sock only."""
    for choice in itertools.product(itertools.combinations(range(3), 2), repeat=designs):
        # Index 2 * photo + placement: first showing, first placement; second, the other.
        items = [(2 * (3 * d + ks[0]), 2 * (3 * d + ks[1]) + 1) for d, ks in enumerate(choice)]
        for _ in range(orders):
            for scenario, singles in zip(SCENARIOS, (0, 1, 2), strict=True):
                gone = set(rng.sample(range(designs), singles))
                kept = [
                    x for d, pair in enumerate(items) for x in (pair[:1] if d in gone else pair)
                ]
                yield scenario, _order(kept, items, rng), sorted(items[d][0] for d in gone)


def simulate(vectors: np.ndarray, label: list[int], designs: int, orders: int) -> dict:
    """Live pairing at every LIVE_GRID threshold (final step at the default) and the final
    step at every FINAL_GRID threshold (live at the default), over `showings`. Baselines on the
    same vectors: live pairing alone (the first version: no final step) and `lensflow match`'s
    maximum-weight matching at its 0.45, which sees every sock at once."""
    right = {
        (k, t): 0 for k in ("live", "final") for t in (LIVE_GRID if k == "live" else FINAL_GRID)
    }
    per = {(k, t, sc): 0 for (k, t) in right for sc in SCENARIOS}
    wrong_live = dict.fromkeys(LIVE_GRID, 0)
    live_made = dict.fromkeys(LIVE_GRID, 0)
    runs = dict.fromkeys(SCENARIOS, 0)
    live_only = dict.fromkeys(SCENARIOS, 0)
    matched = dict.fromkeys(SCENARIOS, 0)
    sim = cosine_matrix(vectors)

    def ok(pairs: list, still: list[int], expect: list[int]) -> bool:
        return all(label[a] == label[b] for a, b in pairs) and still == expect

    for scenario, order, expect in showings(designs, orders, random.Random(0)):
        runs[scenario] += 1
        for t in LIVE_GRID:
            lp, fp, still = run_pool(order, vectors, t, DEFAULT_FINAL_SIMILARITY)
            good = ok(lp + fp, still, expect)
            per["live", t, scenario] += good
            wrong_live[t] += sum(label[a] != label[b] for a, b in lp)
            live_made[t] += len(lp)
        for f in FINAL_GRID:
            lp, fp, still = run_pool(order, vectors, DEFAULT_PAIR_SIMILARITY, f)
            per["final", f, scenario] += ok(lp + fp, still, expect)
        lp, _, still = run_pool(order, vectors, 0.82, 1.0)  # the first version: 0.82, live only
        live_only[scenario] += ok(lp, still, expect)
        m = best_pairs(sim[np.ix_(order, order)], DEFAULT_MIN_SIMILARITY)
        pairs = [(order[a], order[b]) for a, b, _ in m.pairs]
        matched[scenario] += ok(pairs, sorted(order[i] for i in m.singletons), expect)
    total = sum(runs.values())
    expected_pairs = sum(runs[sc] * (designs - i) for i, sc in enumerate(SCENARIOS))

    def rates(kind: str, t: float) -> dict:
        return {sc: round(per[kind, t, sc] / runs[sc], 4) for sc in SCENARIOS}

    def by_live(t: float) -> dict:
        share = round(live_made[t] / expected_pairs, 3)
        return {**rates("live", t), "live_share": share,
                "wrong_live_per_run": round(wrong_live[t] / total, 4)}  # fmt: skip

    return {
        "runs": runs,
        "defaults": {"live": DEFAULT_PAIR_SIMILARITY, "final": DEFAULT_FINAL_SIMILARITY},
        "at_defaults": {
            sc: _rate(per["live", DEFAULT_PAIR_SIMILARITY, sc], runs[sc]) for sc in SCENARIOS
        },
        "live_share_at_default": round(live_made[DEFAULT_PAIR_SIMILARITY] / expected_pairs, 3),
        "wrong_live_pairs_per_run_at_default": round(
            wrong_live[DEFAULT_PAIR_SIMILARITY] / total, 4
        ),
        "by_live_threshold": {str(t): by_live(t) for t in LIVE_GRID},
        "by_final_threshold": {str(f): rates("final", f) for f in FINAL_GRID},
        "baseline_live_only_0.82": {sc: _rate(live_only[sc], runs[sc]) for sc in SCENARIOS},
        "baseline_match": {sc: _rate(matched[sc], runs[sc]) for sc in SCENARIOS},
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
    parser.add_argument("--orders", type=int, default=2, help="random orders per choice")
    parser.add_argument("--views", type=Path, help="also save the embeddings to this .npy file")
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
    if args.views:
        np.save(args.views, views)
    rng = np.random.default_rng(0)
    lights = [float(rng.choice([-1, 1]) * rng.uniform(30, 70)) for _ in range(12)]
    light_vs_table = [live_embedding(predictor, None, 7 + i, a)[1] for i, a in enumerate(lights)]
    label = [i // 6 for i in range(len(views))]
    looks = np.stack([appearance(v) for v in views])
    sim = cosine_matrix(looks)
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
        "similarity": {"four_rotations": spread(sim), "single_view": spread(single)},
        **simulate(looks, label, len(designs), args.orders),
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
