"""Training images/s: lensflow's CPU finetune path vs a naive PyTorch loop, in the same run.

Finetune path (`CachedTailTask`): the frozen stem + early blocks of EfficientNet-Lite0 run once
per cached view with ONNX Runtime; each step trains the last blocks + head on those activations.
Naive baseline: PIL decode + resize/crop + random flip of every image every epoch, contiguous
NCHW tensors, full backprop through the whole network (same model, batch, optimizer).

Both train on the same seeded sample of clothing-small (--per-class images per class) for
--epochs epochs. Reported: steady-state training images/s of each (median over epochs), their
ratio, and the finetune path's one-off cache build time (also amortised over the epochs run).

Usage: .venv/bin/python bench/train_throughput.py [--per-class 24] [--epochs 3] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLOTHING = ROOT.parent / "shared" / "datasets" / "clothing-small"


def naive_epochs(records, classes, epochs: int, batch: int, seed: int) -> list[float]:
    from lensflow.models import create_model

    model = create_model("efficientnet_lite0", len(classes)).train()
    pre = model.preprocess
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    index = {c: i for i, c in enumerate(classes)}
    rates = []
    for _ in range(epochs):
        order = rng.permutation(len(records))
        t0 = time.perf_counter()
        for s in range(0, len(order), batch):
            chunk = [records[i] for i in order[s : s + batch]]
            arrays = []
            for r in chunk:  # decode every image, every epoch
                img = pre.resize_crop(Image.open(r.path))
                if rng.random() < 0.5:
                    img = img.transpose(0)  # FLIP_LEFT_RIGHT
                arrays.append(pre.normalize(np.asarray(img)))
            x = torch.from_numpy(np.stack(arrays))
            y = torch.tensor([index[r.label] for r in chunk])
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        rates.append(len(order) / (time.perf_counter() - t0))
    return rates


def finetune_epochs(config, epochs: int, batch: int) -> tuple[list[float], float, int]:
    from lensflow.train.context import make_context
    from lensflow.train.loop import make_optimizer
    from lensflow.train.tasks import _generator, make_task

    t0 = time.perf_counter()
    ctx = make_context(config, "finetune", Path(tempfile.mkdtemp()))
    task = make_task(ctx, torch.device("cpu"))
    build = time.perf_counter() - t0
    opt = make_optimizer(config, task.param_groups(2e-3, config.backbone_lr_factor))
    rates = []
    for epoch in range(epochs):
        perm = np.random.default_rng([config.seed, epoch]).permutation(task.n_train)
        task.set_train(True)
        t0 = time.perf_counter()
        for i, s in enumerate(range(0, len(perm), batch)):
            x, y = task.train_batch(perm[s : s + batch], _generator(config.seed, epoch, i))
            loss = F.cross_entropy(task.module(x), y, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        rates.append(task.n_train / (time.perf_counter() - t0))
    return rates, build, task.n_train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    from lensflow.data import ImportConfig, import_dataset, load_dataset
    from lensflow.train.config import build_config
    from lensflow.train.data import sample_per_class

    with tempfile.TemporaryDirectory() as tmp:
        ds_dir = Path(tmp) / "clothing"
        import_dataset(ImportConfig(src=CLOTHING, out=ds_dir), quiet=True)
        config = build_config({
            "dataset": ds_dir, "model": "efficientnet_lite0", "out": Path(tmp) / "run", "limit_per_class": args.per_class,
            "cache_dir": Path(tmp) / "cache", "quiet": True, "mini_batch_size": args.batch,
        })  # fmt: skip
        ft_rates, build, n = finetune_epochs(config, args.epochs, args.batch)
        ds = load_dataset(ds_dir)
        train = ds.split("train")
        labels = np.array([ds.classes.index(r.label) for r in train])
        picked = sample_per_class(np.arange(len(train)), labels, args.per_class,
                                  np.random.default_rng(config.seed))  # fmt: skip
        naive_rates = naive_epochs(
            [train[i] for i in picked], ds.classes, args.epochs, args.batch, 0
        )
    ft, naive = statistics.median(ft_rates), statistics.median(naive_rates)
    amortised = n * args.epochs / (build + n * args.epochs / ft)
    print(json.dumps({
        "benchmark": "train_throughput", "images": n, "epochs": args.epochs, "batch": args.batch,
        "finetune_images_per_s": round(ft, 1), "naive_images_per_s": round(naive, 1),
        "ratio": round(ft / naive, 2), "finetune_cache_build_s": round(build, 1),
        "finetune_images_per_s_incl_cache": round(amortised, 1),
        "finetune_epoch_rates": [round(r, 1) for r in ft_rates],
        "naive_epoch_rates": [round(r, 1) for r in naive_rates],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
