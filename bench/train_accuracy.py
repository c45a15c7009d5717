"""Accuracy targets of `lensflow train` on clothing-small (validation split), with wall time.

Scenarios (each imports clothing-small into a fresh temp dir, so nothing is cached: wall time
includes decoding, packing, feature extraction and the head):

- quick:    `--mode quick`; baseline in the same run: the plain linear probe (center crop only,
            pooled 1280-d features, no mirror averaging, no last-block features), same solver.
- finetune: default mode, model and budget (10 min; on a CPU the Lite0 + Lite2 ensemble, C by
            cross-validation on train); baseline: the quick run before it.
- fewshot:  `--limit-per-class 20 --seed S`, quick and finetune (budget --fewshot-budget), for
            every seed of --seeds (the issue's target is one seeded sample; seeds show the spread).

Every accuracy comes with its 95 % Wilson interval (`val_accuracy_ci95`), and every comparison
with the 95 % interval of the difference in points (Newcombe, from the two Wilson intervals) and
whether it excludes 0 (`significant`). The bench keeps no per-image results, so the interval is
the unpaired one: on the same validation images it is conservative (McNemar, as in
`lensflow evaluate A --compare B`, can call smaller differences real).

Usage: .venv/bin/python bench/train_accuracy.py --scenario quick|finetune|fewshot
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLOTHING = ROOT.parent / "shared" / "datasets" / "clothing-small"


def run(ds: Path, out: Path, cache: Path, **params: Any) -> dict[str, Any]:
    from lensflow.train import train
    from lensflow.train.config import build_config

    config = build_config({"dataset": ds, "out": out, "cache_dir": cache, "quiet": True, **params})
    t0 = time.perf_counter()
    card = train(config)
    return {
        **with_interval(card["best"]["val_accuracy"], card["val_images"]),
        "wall_s": round(time.perf_counter() - t0, 1),
        "epochs": card.get("epochs_run", 1),
        "stopped_by": card.get("stopped_by"),
        "model": card["model"],
        "train_images": card["train_images"],
        "val_images": card["val_images"],
    }


def with_interval(accuracy: float, n: int) -> dict[str, Any]:
    from lensflow.evaluate.intervals import wilson

    lo, hi = wilson(round(accuracy * n), n)
    return {"val_accuracy": round(accuracy, 4), "val_accuracy_ci95": [round(lo, 4), round(hi, 4)]}


def difference(better: dict[str, Any], base: dict[str, Any], n: int) -> dict[str, Any]:
    """`better` - `base` in points with its 95 % interval (unpaired Newcombe: conservative)."""
    from lensflow.evaluate.intervals import difference_ci95

    k1, k2 = round(better["val_accuracy"] * n), round(base["val_accuracy"] * n)
    lo, hi = difference_ci95(k1, n, k2, n)
    return {"points": round(100 * (k1 - k2) / n, 2),
            "ci95_points": [round(100 * lo, 2), round(100 * hi, 2)],
            "significant": bool(lo > 0 or hi < 0)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", choices=["quick", "finetune", "fewshot"], required=True)
    ap.add_argument("--fewshot-budget", default="5m")
    ap.add_argument("--seeds", default="0", help="fewshot: comma-separated sample seeds")
    args = ap.parse_args()
    from lensflow.data import ImportConfig, import_dataset

    result: dict[str, Any] = {"benchmark": f"train_accuracy/{args.scenario}"}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        t0 = time.perf_counter()
        import_dataset(ImportConfig(src=CLOTHING, out=t / "ds"), quiet=True)
        result["import_s"] = round(time.perf_counter() - t0, 1)
        if args.scenario == "quick":
            result["quick"] = run(t / "ds", t / "q", t / "cache", mode="quick")
            # Baseline: the textbook probe (no mirror averaging, no multi-scale features).
            result["baseline_plain_probe"] = _plain_probe(t / "ds", t / "b", t / "cache-b")
            result["quick_minus_baseline"] = difference(
                result["quick"], result["baseline_plain_probe"], result["quick"]["val_images"]
            )
        elif args.scenario == "finetune":
            result["baseline_quick"] = run(t / "ds", t / "q", t / "cache", mode="quick")
            result["finetune"] = run(t / "ds", t / "f", t / "cache", mode="finetune")
            result["finetune_minus_quick"] = difference(
                result["finetune"], result["baseline_quick"], result["finetune"]["val_images"]
            )
        else:
            for seed in (int(v) for v in args.seeds.split(",")):
                result[f"seed{seed}"] = {
                    "quick": run(t / "ds", t / f"q{seed}", t / "cache", mode="quick",
                                 limit_per_class=20, seed=seed),
                    "finetune": run(t / "ds", t / f"f{seed}", t / "cache", mode="finetune",
                                    limit_per_class=20, seed=seed, time_budget=args.fewshot_budget),
                }  # fmt: skip
                pair = result[f"seed{seed}"]
                pair["finetune_minus_quick"] = difference(
                    pair["finetune"], pair["quick"], pair["finetune"]["val_images"]
                )
            accs = [
                v["finetune"]["val_accuracy"] for k, v in result.items() if k.startswith("seed")
            ]
            result["finetune_median"] = round(float(sorted(accs)[len(accs) // 2]), 4)
    print(json.dumps(result))


def _plain_probe(ds: Path, out: Path, cache: Path) -> dict[str, Any]:
    """Pooled 1280-d features of the center crop only + the same C search."""

    from lensflow.models import create_model
    from lensflow.train.config import build_config
    from lensflow.train.context import RunContext
    from lensflow.train.data import load_train_data
    from lensflow.train.probe import fit_probe
    from lensflow.train.quick import backbone_features

    t0 = time.perf_counter()
    config = build_config(
        {"dataset": ds, "out": out, "cache_dir": cache, "quiet": True, "mode": "quick"}
    )
    model = create_model("efficientnet_lite0", 10)
    data = load_train_data(config, model.preprocess)
    feats = backbone_features(RunContext(config, model, data, out))
    y = data.labels
    probe = fit_probe(feats[data.train_idx], y[data.train_idx], feats[data.val_idx],
                      y[data.val_idx], len(data.classes))  # fmt: skip
    return {**with_interval(probe.best["val_acc"], len(data.val_idx)), "wall_s": round(time.perf_counter() - t0, 1),
            "feature_dim": int(feats.shape[1]), "packed_already": True}  # fmt: skip


if __name__ == "__main__":
    main()
