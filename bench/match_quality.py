"""`lensflow match` quality on the SockSort sample: max-weight matching vs mutual nearest neighbours.

    .venv/bin/python bench/match_quality.py [--socks ../shared/datasets/socks-sample]

Embeds the 18 photos (6 designs x 3) once with the pretrained EfficientNet-Lite0 feature bundle,
then reports: mean cosine of same-design and different-design photo pairs, leave-one-out
nearest-neighbour accuracy, and, over all 3^6 = 729 ways to keep two photos per design, how often
the pairing is entirely right (6 correct pairs), plus the 729 x 12 cases where one photo is removed
(5 correct pairs + the right singleton). Pairing: `best_pairs` (maximum-weight matching, what
`lensflow match` uses) against the baseline of iterated mutual nearest neighbours, both with the
default threshold. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from lensflow.export import backbone_bundle
from lensflow.match import DEFAULT_MIN_SIMILARITY
from lensflow.match.pairing import best_pairs, cosine_matrix
from lensflow.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]


def mutual_nn_pairs(sim: np.ndarray, min_similarity: float) -> list[tuple[int, int]]:
    """Baseline: pair mutual nearest neighbours, remove them, repeat until none is left."""
    left = list(range(sim.shape[0]))
    pairs: list[tuple[int, int]] = []
    while len(left) >= 2:
        sub = sim[np.ix_(left, left)].copy()
        np.fill_diagonal(sub, -np.inf)
        nn = sub.argmax(axis=1)
        new = [
            (left[i], left[j])
            for i, j in enumerate(nn)
            if nn[j] == i and i < j and sub[i, j] >= min_similarity
        ]
        if not new:
            break
        pairs += new
        used = {k for p in new for k in p}
        left = [k for k in left if k not in used]
    return pairs


def all_correct(pairs: list[tuple[int, int]], labels: list[str], expected: int) -> bool:
    return len(pairs) == expected and all(labels[a] == labels[b] for a, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--socks", type=Path, default=ROOT.parent / "shared/datasets/socks-sample")
    args = parser.parse_args()
    files = sorted(args.socks.glob("*/*.jpg"))
    labels = [f.parent.name for f in files]
    predictor = Predictor.from_bundle(backbone_bundle("efficientnet_lite0"))
    t = time.perf_counter()
    sim = cosine_matrix(predictor.embed(files))
    embed_s = time.perf_counter() - t
    n = len(files)
    same = [sim[i, j] for i, j in itertools.combinations(range(n), 2) if labels[i] == labels[j]]
    diff = [sim[i, j] for i, j in itertools.combinations(range(n), 2) if labels[i] != labels[j]]
    masked = sim - 2 * np.eye(n)
    loo = sum(labels[i] == labels[int(masked[i].argmax())] for i in range(n))

    by_design: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_design.setdefault(label, []).append(i)
    designs = sorted(by_design)
    thr = DEFAULT_MIN_SIMILARITY
    score = {"max_weight": [0, 0], "mutual_nn": [0, 0]}  # [all pairs right, odd-one-out right]
    subsets = odd_cases = 0
    for picks in itertools.product([(0, 1), (0, 2), (1, 2)], repeat=len(designs)):
        keep = [by_design[d][p] for d, pick in zip(designs, picks, strict=True) for p in pick]
        subsets += 1
        for drop in [None, *range(len(keep))]:
            idx = keep if drop is None else keep[:drop] + keep[drop + 1 :]
            sub = sim[np.ix_(idx, idx)]
            sub_labels = [labels[k] for k in idx]
            expected = len(idx) // 2
            odd_cases += drop is not None
            slot = 0 if drop is None else 1
            mw = [(a, b) for a, b, _ in best_pairs(sub, thr).pairs]
            score["max_weight"][slot] += all_correct(mw, sub_labels, expected)
            score["mutual_nn"][slot] += all_correct(mutual_nn_pairs(sub, thr), sub_labels, expected)
    print(
        json.dumps(
            {
                "bench": "match_quality",
                "photos": n,
                "designs": len(designs),
                "embed_seconds": round(embed_s, 2),
                "same_design_cosine_mean": round(float(np.mean(same)), 3),
                "same_design_cosine_min": round(float(np.min(same)), 3),
                "different_design_cosine_mean": round(float(np.mean(diff)), 3),
                "different_design_cosine_max": round(float(np.max(diff)), 3),
                "leave_one_out_nn_correct": f"{loo}/{n}",
                "min_similarity": thr,
                "two_per_design_all_correct": {k: f"{v[0]}/{subsets}" for k, v in score.items()},
                "odd_one_out_all_correct": {k: f"{v[1]}/{odd_cases}" for k, v in score.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
