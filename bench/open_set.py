"""Open-set rejection: the max-softmax baseline vs the shipped score, on every set, in one run.

Model: a quick-mode run on clothing-small (`--run`, else trained here), exported by lensflow's
own exporter, which fits and calibrates the shipped score (issue 14). Sets, all scored with the
bundle's ONNX model:
  in-distribution  clothing-small validation (341 photos)
  walls            generated camera frames of empty scenes (`lensflow.live.video.wall_frame`)
  noise            uniform, Gaussian and blurred random noise, 640x480
  mnist            MNIST t10k digits (every 25th)
  socks            socks-sample (18 photos of single socks)
  near-OOD         three splits: 7 classes known, the other 3 scored. Quick mode's backbone is
                   frozen, so a 7-class quick export has the same features: per split only the
                   head (`lensflow.train.probe.fit_probe`, the baseline's softmax) and the score
                   (fitted on the 7 classes' training features) are refitted.
AUROC per set for both scores (OOD = positive). At the operating point: the bundle's threshold
was calibrated on the validation photos (5 % rejected by construction), so an honest check
refits the score on 90 % of train, calibrates it on the other 10 % and measures validation and
wall rejection with that threshold.

    .venv/bin/python bench/open_set.py [--run RUN] [--walls 200]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
SPLITS = [
    ("hat", "shoes", "skirt"),
    ("shorts", "longsleeve", "dress"),
    ("outwear", "pants", "t-shirt"),
]


def noise_image(i: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(10_000 + i)
    if i % 3 == 0:
        return rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    if i % 3 == 1:
        return np.clip(rng.normal(128, 60, (480, 640, 3)), 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)


def ood_sets(walls: int, noise: int, mnist_every: int) -> dict[str, list]:
    from lensflow.live.video import wall_frame

    with gzip.open(SHARED / "mnist-t10k" / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    digits = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    return {
        "walls": [np.ascontiguousarray(wall_frame(i)[:, :, ::-1]) for i in range(walls)],
        "noise": [noise_image(i) for i in range(noise)],
        "mnist": [np.repeat(d[..., None], 3, 2) for d in digits[::mnist_every]],
        "socks": sorted((SHARED / "socks-sample").glob("*/*.jpg")),
    }


def auroc(s_in: np.ndarray, s_out: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    return round(float(roc_auc_score(y, np.r_[s_in, s_out])), 4)


def msp(logits: np.ndarray) -> np.ndarray:
    from lensflow.predictor import softmax

    return 1.0 - softmax(logits).max(1)


def quick_run(workdir: Path) -> Path:
    from lensflow.data import ImportConfig, import_dataset
    from lensflow.train import train
    from lensflow.train.config import build_config

    ds = import_dataset(ImportConfig(src=SHARED / "clothing-small", out=workdir / "ds"), quiet=True)
    train(build_config({"dataset": ds, "out": workdir / "run", "mode": "quick", "quiet": True}))
    return workdir / "run"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="a quick-mode run on clothing-small (else trained)")
    ap.add_argument("--walls", type=int, default=200)
    ap.add_argument("--noise", type=int, default=90)
    ap.add_argument("--mnist-every", type=int, default=25)
    args = ap.parse_args()
    if not (SHARED / "clothing-small").is_dir():
        sys.exit(f"shared datasets not found at {SHARED}")

    from lensflow.export.exporter import ExportConfig, export_run
    from lensflow.openset import fit_scorer
    from lensflow.predictor import Predictor
    from lensflow.train.openset import open_set_images
    from lensflow.train.probe import fit_probe

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or quick_run(Path(tmp))
        bundle = export_run(ExportConfig(run=run, out=Path(tmp) / "bundle"), quiet=True)
        p = Predictor.from_bundle(bundle)
        shipped = p.open_set
        images = open_set_images(
            p.card["parity_dataset"], p.card["train_config"], p.preprocess, max_images=10**9
        )
        reader = images.reader

        def pack_outputs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            parts = [p.run_arrays(x) for x in images.batches(rows)]
            return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])

        tr_rows, va_rows = images.fit_rows, images.heldout_rows
        (_, f_tr), (l_va, f_va) = pack_outputs(tr_rows), pack_outputs(va_rows)
        y_tr, y_va = reader.labels[tr_rows], reader.labels[va_rows]
        ood = {name: p.run_arrays(p.preprocess_images(imgs)) for name, imgs in
               ood_sets(args.walls, args.noise, args.mnist_every).items()}  # fmt: skip
        export_seconds = p.card.get("export_seconds")

    result: dict = {"bench": "open_set", "method": shipped.method, "k": shipped.k,
                    "dims": shipped.to_dict()["dims"], "bank": shipped.to_dict()["bank"],
                    "val_images": len(y_va), "sets": {}}  # fmt: skip
    s_in = {"msp": msp(l_va), "shipped": shipped.score(f_va)}
    for name, (logits, feats) in ood.items():
        result["sets"][name] = {
            "n": len(feats),
            "msp_auroc": auroc(s_in["msp"], msp(logits)),
            "shipped_auroc": auroc(s_in["shipped"], shipped.score(feats)),
        }
    near = []
    for split in SPLITS:
        held = [reader.classes.index(c) for c in split]
        k_tr, k_va = ~np.isin(y_tr, held), ~np.isin(y_va, held)
        probe = fit_probe(f_tr[k_tr], y_tr[k_tr], f_va[k_va], y_va[k_va], len(reader.classes))
        w, b = probe.weight.numpy(), probe.bias.numpy()
        f_out = np.r_[f_va[~k_va], f_tr[~k_tr]]  # the held-out classes' photos: all unseen
        scorer = fit_scorer(f_tr[k_tr], y_tr[k_tr], method=shipped.method, k=shipped.k)
        near.append({
            "held_out": "/".join(split), "n": len(f_out),
            "msp_auroc": auroc(msp(f_va[k_va] @ w.T + b), msp(f_out @ w.T + b)),
            "shipped_auroc": auroc(scorer.score(f_va[k_va]), scorer.score(f_out)),
        })  # fmt: skip
    result["near_ood"] = near
    for key in ("msp_auroc", "shipped_auroc"):
        result[f"near_ood_mean_{key}"] = round(float(np.mean([n[key] for n in near])), 4)

    # the operating point, honestly: threshold from train rows held out of the statistics
    rng = np.random.default_rng(0)
    cal = rng.random(len(f_tr)) < 0.1
    scorer = fit_scorer(f_tr[~cal], y_tr[~cal], method=shipped.method, k=shipped.k)
    scorer = scorer.calibrated(scorer.score(f_tr[cal]), shipped.info.get("unknown_rate", 0.05))
    val_rejected = scorer.is_unknown(scorer.score(f_va))
    correct = l_va.argmax(1) == y_va
    result["operating_point"] = {
        "unknown_rate": scorer.info["unknown_rate"],
        "validation_rejected": round(float(val_rejected.mean()), 4),
        "walls_rejected": round(float(scorer.is_unknown(scorer.score(ood["walls"][1])).mean()), 4),
        "noise_rejected": round(float(scorer.is_unknown(scorer.score(ood["noise"][1])).mean()), 4),
        "val_accuracy_all": round(float(correct.mean()), 4),
        "val_accuracy_accepted": round(float(correct[~val_rejected].mean()), 4),
        "bundle_threshold_walls_rejected": round(
            float(shipped.is_unknown(shipped.score(ood["walls"][1])).mean()), 4
        ),
    }
    result["export_seconds"] = export_seconds
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
