"""What the epoch loop trains: a module, how to make a training batch, how to score validation.

- `CachedTailTask` (finetune on CPU, EfficientNet): the stem and early blocks are frozen and run
  once per cached view with ONNX Runtime (clean, mirrored, and `views - 2` augmented views of
  every training image); only the last `trainable_blocks` blocks, the head conv and the linear
  head are trained, on those activations. About 3x less compute per step than full backprop and
  no decoding at all during training.
- `FullTask` (scratch, CUDA finetune, other families): whole-model training on pack rows with
  batch augmentation on the device, channels_last, bf16 autocast on CUDA; on a CPU, large images
  go through a batch in pieces (`micro_batch_size`) to bound the memory backprop keeps.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from lensflow.train.augment import augment_batch, to_input
from lensflow.train.context import RunContext, class_weights
from lensflow.train.features import cache_key, cache_root, onnx_session, run_cached, state_digest

CACHE_BUDGET_SHARE = 0.4
# Whole-model training on a CPU goes through a batch in pieces of at most this many input pixels
# (16 images at 224 px): the activations kept for backprop grow with it (`loop.forward_backward`).
MICRO_BATCH_PIXELS = 16 * 224 * 224


def micro_batch_size(input_size: int, batch: int, device: torch.device) -> int | None:
    """Rows per piece of a training batch, or None for the whole batch (small images, CUDA)."""
    if device.type != "cpu":
        return None
    rows = max(8, MICRO_BATCH_PIXELS // (input_size * input_size))
    return rows if rows < batch else None


def _generator(*seeds: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(hashlib.sha256(repr(seeds).encode()).hexdigest()[:15], 16))
    return g


class _Tail(nn.Module):
    """Blocks [start:], head conv and head of an EfficientNetLite, on cached block activations."""

    def __init__(self, model: nn.Module, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start

    def features(self, a: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.forward_top(m.forward_blocks(a, self.start, len(m._blocks)))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.features(a))


class CachedTailTask:
    def __init__(self, ctx: RunContext, device: torch.device) -> None:
        self.ctx, self.device = ctx, device
        config, data, model = ctx.config, ctx.data, ctx.model
        n_blocks = len(model._blocks)
        self.start = max(0, n_blocks - config.trainable_blocks)
        model.eval()  # frozen part: running BN statistics, as at inference
        for p in model.parameters():
            p.requires_grad_(False)
        self.tail = _Tail(model, self.start)
        for mod in [*model._blocks[self.start :], model._conv_head, model._bn1, model._fc]:
            for p in mod.parameters():
                p.requires_grad_(True)
        self.train_rows = data.train_idx
        self.n_train = len(self.train_rows)
        self.views = max(2, config.views)
        self.clean, self.flipped = self._cache_all_rows()
        self.augmented: list[np.ndarray] = []
        for v in range(2, self.views):
            # Views are worth less than epochs once caching has eaten 40% of the budget.
            if ctx.elapsed() > CACHE_BUDGET_SHARE * config.time_budget:
                ctx.warn(f"time budget: cached {v} of {self.views} views")
                break
            self.augmented.append(self._cache_augmented(v))
        self.views = 2 + len(self.augmented)
        if config.head_init == "probe":
            self._probe_head()

    def _probe_head(self) -> None:
        """Linear probe first, then fine-tune (LP-FT): the head starts where quick mode ends, so
        fine-tuning refines good features instead of tearing them up with a random head."""
        from lensflow.train.probe import fit_probe

        data, m = self.ctx.data, self.ctx.model
        cw = class_weights(data) if self.ctx.config.class_weights == "auto" else None
        y = data.labels
        # Train on the mirror-averaged features plus each augmented view: more samples per
        # class for the probe, which matters most in few-shot runs.
        train_x = [self._features(data.train_idx)]
        with torch.no_grad():
            for view in self.augmented:
                train_x.append(np.concatenate([
                    self.tail.features(torch.from_numpy(np.asarray(view[s : s + 256], np.float32))).numpy()
                    for s in range(0, len(view), 256)
                ]))  # fmt: skip
        train_y = np.concatenate([y[data.train_idx]] * len(train_x))
        probe = fit_probe(np.concatenate(train_x), train_y, self._features(data.val_idx),
                          y[data.val_idx], len(data.classes), cw)  # fmt: skip
        with torch.no_grad():
            m._fc.weight.copy_(probe.weight)
            m._fc.bias.copy_(probe.bias)
        self.probe_val_acc = probe.best["val_acc"]

    @torch.no_grad()
    def _features(self, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Pooled features (mirror-averaged when flip_tta) of pack rows from the caches."""
        self.tail.eval()
        out = []
        for s in range(0, len(rows), batch_size):
            r = rows[s : s + batch_size]
            f = self.tail.features(torch.from_numpy(self.clean[r]).float())
            if self.ctx.model.flip_tta:
                f = (f + self.tail.features(torch.from_numpy(self.flipped[r]).float())) / 2
            out.append(f.numpy())
        return np.concatenate(out)

    # -- caches --------------------------------------------------------------------------------
    def _frozen_key(self) -> str:
        m = self.ctx.model
        frozen = {
            k: v
            for k, v in m.state_dict().items()
            if k.startswith(("_conv_stem", "_bn0"))
            or any(k.startswith(f"_blocks.{i}.") for i in range(self.start))
        }
        return cache_key(model=m.model_name, start=self.start, weights=state_digest(frozen))

    def _session(self) -> Any:
        m, pre = self.ctx.model, self.ctx.data.preprocess
        root = cache_root(self.ctx.config.cache_dir)
        example = torch.zeros(1, pre.channels, pre.input_size, pre.input_size)

        def frozen(x: torch.Tensor) -> torch.Tensor:
            return m.forward_blocks(m.forward_stem(x), 0, self.start)

        return onnx_session(frozen, m, example, root / "onnx" / f"{self._frozen_key()}.onnx")

    def _run(self, name: str, rows: np.ndarray, make: Any) -> np.ndarray:
        data, config = self.ctx.data, self.ctx.config
        key = cache_key(
            net=self._frozen_key(),
            dataset=data.reader.dataset_hash,
            pack=data.reader.path.name,
            view=name,
            rows=hashlib.sha256(rows.tobytes()).hexdigest()[:16],
        )
        return run_cached(
            key,
            cache_root(config.cache_dir) / "activations",
            len(rows),
            lambda local: make(rows[local], local),
            self._session,
            f"caching {name}",
            dtype=np.float16,  # halves memory; the tail computes in float32
            quiet=config.quiet,
        )

    def _cache_all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.ctx.data
        pre = data.preprocess
        rows = np.arange(len(data.reader))

        def clean(r: np.ndarray, _: np.ndarray) -> np.ndarray:
            return pre.normalize(data.images(r))

        def flipped(r: np.ndarray, _: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(pre.normalize(data.images(r))[..., ::-1])

        return self._run("clean", rows, clean), self._run("mirror", rows, flipped)

    def _cache_augmented(self, view: int) -> np.ndarray:
        data, config = self.ctx.data, self.ctx.config

        def make(r: np.ndarray, local: np.ndarray) -> np.ndarray:
            g = _generator(config.seed, view, int(local[0]))
            x = torch.from_numpy(data.images(r))
            return augment_batch(x, config.augmentation_type, data.preprocess, g).numpy()

        name = f"view{view}-{config.augmentation_type}-seed{config.seed}"
        return self._run(name, self.train_rows, make)

    # -- the loop's interface ------------------------------------------------------------------
    @property
    def module(self) -> nn.Module:
        return self.tail

    def param_groups(self, lr: float, backbone_factor: float) -> list[dict[str, Any]]:
        m = self.ctx.model
        head = list(m._fc.parameters())
        body = [
            p for p in self.tail.parameters() if p.requires_grad and all(p is not h for h in head)
        ]
        return [{"params": head, "lr": lr}, {"params": body, "lr": lr * backbone_factor}]

    def set_train(self, training: bool) -> None:
        self.tail.train(training)
        if training and self.ctx.config.freeze_bn:
            # Keep ImageNet batch-norm statistics: batches of cached views are small and skewed.
            for mod in self.tail.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.eval()

    def train_batch(
        self, positions: np.ndarray, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`positions` index train_rows; each sample takes one of the cached views at random."""
        view = torch.randint(0, self.views, (len(positions),), generator=g).numpy()
        rows = self.train_rows[positions]
        a = np.empty((len(positions), *self.clean.shape[1:]), np.float16)
        for v in range(self.views):
            sel = view == v
            if not sel.any():
                continue
            if v == 0:
                a[sel] = self.clean[rows[sel]]
            elif v == 1:
                a[sel] = self.flipped[rows[sel]]
            else:
                a[sel] = self.augmented[v - 2][positions[sel]]
        x = torch.from_numpy(a).to(self.device, torch.float32)
        y = torch.from_numpy(self.ctx.data.labels[rows]).to(self.device)
        return x, y

    @torch.no_grad()
    def val_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.ctx.data.val_idx
        logits = self.ctx.model.forward_head(torch.from_numpy(self._features(rows)))
        return logits, torch.from_numpy(self.ctx.data.labels[rows])


class FullTask:
    def __init__(self, ctx: RunContext, device: torch.device) -> None:
        self.ctx, self.device = ctx, device
        self.model = ctx.model.to(device)
        if device.type == "cuda" or ctx.data.preprocess.input_size >= 64:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_rows = ctx.data.train_idx
        self.n_train = len(self.train_rows)
        self.micro_batch = micro_batch_size(
            ctx.data.preprocess.input_size, ctx.config.mini_batch_size, device
        )
        for p in self.model.parameters():
            p.requires_grad_(True)

    @property
    def module(self) -> nn.Module:
        return self.model

    def param_groups(self, lr: float, backbone_factor: float) -> list[dict[str, Any]]:
        m = self.model
        head = [p for n, p in m.named_parameters() if n in m.head_keys]
        body = [p for n, p in m.named_parameters() if n not in m.head_keys]
        pretrained = self.ctx.config.mode == "finetune"
        return [
            {"params": head, "lr": lr},
            {"params": body, "lr": lr * (backbone_factor if pretrained else 1.0)},
        ]

    def set_train(self, training: bool) -> None:
        self.model.train(training)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" or x.shape[-1] >= 64:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def train_batch(
        self, positions: np.ndarray, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        data, config = self.ctx.data, self.ctx.config
        rows = self.train_rows[positions]
        images = torch.from_numpy(data.images(rows)).to(self.device)
        x = augment_batch(images, config.augmentation_type, data.preprocess, g)
        return self._input(x), torch.from_numpy(data.labels[rows]).to(self.device)

    @torch.no_grad()
    def val_logits(self, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        data = self.ctx.data
        rows = data.val_idx
        out = []
        for s in range(0, len(rows), batch_size):
            images = torch.from_numpy(data.images(rows[s : s + batch_size])).to(self.device)
            with autocast(self.ctx.config, self.device):
                out.append(self.model(self._input(to_input(images, data.preprocess))).float().cpu())
        return torch.cat(out), torch.from_numpy(data.labels[rows])


def autocast(config: Any, device: torch.device) -> Any:
    """bf16/fp16 autocast on CUDA when asked; a no-op context on CPU."""
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(config.precision_dtype)
    enabled = device.type == "cuda" and dtype is not None
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=enabled)


def make_task(ctx: RunContext, device: torch.device) -> CachedTailTask | FullTask:
    model = ctx.model
    cached = (
        ctx.config.mode == "finetune"
        and device.type == "cpu"
        and hasattr(model, "forward_blocks")
        and ctx.config.trainable_blocks >= 0
        and ctx.config.trainable_blocks < len(model._blocks)
    )
    return CachedTailTask(ctx, device) if cached else FullTask(ctx, device)
