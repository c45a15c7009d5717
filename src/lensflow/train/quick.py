"""Quick mode: frozen backbone features once (ONNX Runtime, cached), then a logistic-regression head.

The backbone's `forward_features` (for EfficientNet-Lite0: the ends of its last three stages,
each max-pooled over the top, middle and bottom thirds, and the pooled head, each L2-normalised
and averaged with the mirror image) is exported to ONNX and run over the pack; features are cached
by dataset hash + backbone weights + kwargs + preprocessing. The probe's weights are copied into
the model's `nn.Linear` head, so the checkpoint is an ordinary torch model, and the reported
validation accuracy is exactly that model's accuracy on the validation images.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from lensflow.train.checkpoint import checkpoint_dict, save_checkpoint
from lensflow.train.context import RunContext, class_weights
from lensflow.train.features import cache_key, cache_root, onnx_session, run_cached, state_digest
from lensflow.train.policy import mirror_choice
from lensflow.train.probe import fit_probe


def backbone_features(ctx: RunContext, rows: np.ndarray | None = None) -> np.ndarray:
    """`forward_features` of pack `rows` (default: all), cached; float32 (len(rows), D)."""
    model, data, config = ctx.model, ctx.data, ctx.config
    head = set(model.head_keys)
    backbone = {k: v for k, v in model.state_dict().items() if k not in head}
    net_key = cache_key(
        model=model.model_name,
        kwargs={k: v for k, v in model.model_kwargs.items() if k != "dropout"},
        weights=state_digest(backbone),
    )
    pre = data.preprocess
    everything = rows is None or len(rows) == len(data.reader)
    rows = np.arange(len(data.reader)) if rows is None else np.asarray(rows)
    key = cache_key(net=net_key, dataset=data.reader.dataset_hash, pack=data.reader.path.name,
                    preprocess=pre.to_dict(),
                    rows=None if everything else hashlib.sha256(rows.tobytes()).hexdigest()[:16])  # fmt: skip
    root = cache_root(config.cache_dir)
    example = torch.zeros(1, pre.channels, pre.input_size, pre.input_size)

    def session() -> Any:
        return onnx_session(
            model.forward_features, model, example, root / "onnx" / f"{net_key}.onnx"
        )

    def batches(local: np.ndarray) -> np.ndarray:
        return pre.normalize(data.images(rows[local]))

    # Large inputs (the 352 px ensemble) in smaller batches: ONNX Runtime's arena grows with them.
    batch_size = 64 if pre.input_size <= 256 else 16
    return run_cached(key, root / "features", len(rows), batches, session,
                      "features", batch_size=batch_size, quiet=config.quiet)  # fmt: skip


def run_quick(ctx: RunContext, select: str = "val") -> dict[str, Any]:
    data, model = ctx.data, ctx.model
    # Only the rows this run uses: a few-shot sample of a big dataset embeds a few hundred images.
    rows = np.union1d(data.train_idx, data.val_idx)
    feats = backbone_features(ctx, rows)
    train_x = feats[np.searchsorted(rows, data.train_idx)]
    val_x = feats[np.searchsorted(rows, data.val_idx)]
    y = data.labels
    cw = class_weights(data) if ctx.config.class_weights == "auto" else None
    probe = fit_probe(
        train_x, y[data.train_idx], val_x, y[data.val_idx],
        len(data.classes), cw, select=select,
    )  # fmt: skip
    fc = getattr(model, model.head_keys[0].split(".")[0])
    with torch.no_grad():
        fc.weight.copy_(probe.weight)
        fc.bias.copy_(probe.bias)
    best = dict(probe.best)
    if select == "cv" and getattr(model, "flip_tta", False):
        # finetune: mirror averaging stays only when it helps on validation (ties: plain, half
        # the inference cost); plain features of the validation images only.
        mirror, plain_x = choose_mirror_tta(ctx, probe, best["val_acc"])
        ctx.choices["mirror_tta"] = mirror
        if not mirror["kept"]:
            val_x = plain_x
            best["val_acc"] = mirror["val_accuracy_plain"]
    val_logits = val_x @ probe.weight.numpy().T + probe.bias.numpy()
    top_k = topk_accuracy(val_logits, y[data.val_idx], ctx)
    seconds = ctx.elapsed()
    ckpt = checkpoint_dict(model, data.classes, data.preprocess, 1, ctx.config, probe_C=probe.C)
    save_checkpoint(ctx.stage / "best.pt", ckpt)
    save_checkpoint(ctx.stage / "last.pt", ckpt)
    if best["train_acc"] - best["val_acc"] > 0.15:
        ctx.warn(
            f"train accuracy {best['train_acc']:.1%} is far above validation {best['val_acc']:.1%}: "
            "the head overfits; more images per class will help"
        )
    row = {
        "epoch": 1,
        "train_loss": best["train_loss"],
        "train_acc": best["train_acc"],
        "val_loss": best["val_loss"],
        "val_acc": best["val_acc"],
        "lr": "",
        "seconds": round(seconds, 2),
        "images_per_s": round(len(data.train_idx) / max(seconds, 1e-9), 1),
    }
    return {
        "metrics": [row],
        "curve_rows": probe.sweep,
        "curve_x": "C",
        "best": {"val_accuracy": best["val_acc"], "epoch": 1, f"val_top{ctx.config.top_k}": top_k},
        "card": {
            "quick": {
                "C": probe.C,
                "C_chosen_by": "cross-validation on train" if select == "cv" else "validation",
                "sweep": probe.sweep,
                "feature_dim": feats.shape[1],
            }
        },
    }


def choose_mirror_tta(
    ctx: RunContext, probe: Any, mirror_acc: float
) -> tuple[dict[str, Any], np.ndarray]:
    """(choice, plain validation features): the fitted head on plain features; switches the model
    to plain (flip_tta=False in the model and its kwargs) unless the mirror average is better."""
    model, data = ctx.model, ctx.data
    model.flip_tta = False
    model.model_kwargs = {**model.model_kwargs, "flip_tta": False}
    plain_x = backbone_features(ctx, data.val_idx)
    logits = plain_x @ probe.weight.numpy().T + probe.bias.numpy()
    plain_acc = float((logits.argmax(1) == data.labels[data.val_idx]).mean())
    choice = mirror_choice(plain_acc, mirror_acc)
    model.flip_tta = choice["kept"]
    model.model_kwargs = {**model.model_kwargs, "flip_tta": choice["kept"]}
    return choice, plain_x


def topk_accuracy(logits: np.ndarray, y: np.ndarray, ctx: RunContext) -> float:
    k = min(ctx.config.top_k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == y[:, None]).any(1).mean())
