"""Accuracy targets of `lensflow train` on clothing-small (validation split), with wall time.

Scenarios (each imports clothing-small into a fresh temp dir, so nothing is cached: wall time
includes decoding, packing, feature extraction and the head):

- quick:    `--mode quick`; baseline in the same run: the plain linear probe (center crop only,
            pooled 1280-d features, no mirror averaging, no last-block features), same solver.
- finetune: default mode, model and budget (10 min; on a CPU the Lite0 + Lite2 ensemble, C by
            cross-validation on train); baseline: the quick run before it.
- fewshot:  `--limit-per-class 20 --seed S`, quick and finetune (budget --fewshot-budget), for
            every seed of --seeds (the issue's target is one seeded sample; seeds show the spread).

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
        "val_accuracy": round(card["best"]["val_accuracy"], 4),
        "wall_s": round(time.perf_counter() - t0, 1),
        "epochs": card.get("epochs_run", 1),
        "stopped_by": card.get("stopped_by"),
        "model": card["model"],
        "train_images": card["train_images"],
        "val_images": card["val_images"],
    }


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
        elif args.scenario == "finetune":
            result["baseline_quick"] = run(t / "ds", t / "q", t / "cache", mode="quick")
            result["finetune"] = run(t / "ds", t / "f", t / "cache", mode="finetune")
        else:
            for seed in (int(v) for v in args.seeds.split(",")):
                result[f"seed{seed}"] = {
                    "quick": run(t / "ds", t / f"q{seed}", t / "cache", mode="quick",
                                 limit_per_class=20, seed=seed),
                    "finetune": run(t / "ds", t / f"f{seed}", t / "cache", mode="finetune",
                                    limit_per_class=20, seed=seed, time_budget=args.fewshot_budget),
                }  # fmt: skip
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
    return {"val_accuracy": round(probe.best["val_acc"], 4), "wall_s": round(time.perf_counter() - t0, 1),
            "feature_dim": int(feats.shape[1]), "packed_already": True}  # fmt: skip


if __name__ == "__main__":
    main()
