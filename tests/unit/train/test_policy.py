"""Defaults that fit the data: the auto augmentation policy, shift never mirrors, and the
mirror test-time choice is measured on validation and written into best.pt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from lensflow.models import create_model
from lensflow.preprocess import Preprocess
from lensflow.train.augment import augment_batch
from lensflow.train.checkpoint import checkpoint_dict, read_checkpoint, save_checkpoint
from lensflow.train.config import build_config
from lensflow.train.context import RunContext
from lensflow.train.loop import choose_mirror_tta
from lensflow.train.policy import mirror_choice, resolve_augmentation

GREY = Preprocess(28, 28, "none", (0.0,), (255.0,), "bilinear", 1)


@dataclass
class Record:
    width: int
    height: int


@dataclass
class FakeData:
    """The parts of TrainData the policy reads: images drawn per class by `draw`."""

    images_: np.ndarray
    labels: np.ndarray
    side: int = 28
    classes: list[str] = field(default_factory=lambda: ["a", "b"])

    def __post_init__(self) -> None:
        n = len(self.labels)
        self.train_idx = np.arange(0, n, 2)
        self.val_idx = np.arange(1, n, 2)
        self.dataset = type("D", (), {"records": [Record(self.side, self.side)] * n})()

    def images(self, idx: np.ndarray) -> np.ndarray:
        return self.images_[idx]


def _data(shape: str, side: int = 28) -> FakeData:
    """Two classes of 28x28 grey images with noise: 'glyph' = a bar on the left vs the right
    (a mirror swaps the classes), 'garment' = a horizontal vs a vertical bar (mirror-safe)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, (80, 28, 28, 1)).astype(np.uint8)
    y = (np.arange(80) // 2) % 2  # both classes in train (even rows) and validation (odd)
    for i, label in enumerate(y):
        if shape == "glyph":
            cols = slice(3, 9) if label == 0 else slice(19, 25)
            x[i, 4:24, cols] = 220
        elif label == 0:
            x[i, 12:16, 4:24] = 220
        else:
            x[i, 4:24, 12:16] = 220
    return FakeData(x, y, side)


def test_auto_keeps_the_mirror_only_where_mirrored_images_keep_their_class() -> None:
    glyph, why = resolve_augmentation("auto", _data("glyph"), seed=0)
    assert glyph == "shift" and why["mirror_test"]["ratio"] < 0.5
    garment, why = resolve_augmentation("auto", _data("garment"), seed=0)
    assert garment == "shift_flip" and why["mirror_test"]["ratio"] > 0.9


def test_auto_keeps_crop_color_for_photos_and_a_set_policy_is_kept() -> None:
    assert resolve_augmentation("auto", _data("glyph", side=300), seed=0)[0] == "crop_color"
    assert resolve_augmentation("none", _data("glyph"), seed=0) == (
        "none",
        {"policy": "none", "chosen_by": "configuration"},
    )


@pytest.mark.parametrize(("kind", "mirrors"), [("shift", False), ("shift_flip", True)])
def test_shift_moves_a_glyph_a_little_and_mirrors_only_when_asked(kind, mirrors) -> None:
    x = torch.zeros(64, 28, 28, 1, dtype=torch.uint8)
    x[:, 6:22, 3:9] = 255  # a bar on the left
    out = augment_batch(x, kind, GREY, torch.Generator().manual_seed(0))[:, 0]
    left, right = out[:, :, :14].sum((1, 2)), out[:, :, 14:].sum((1, 2))
    on_right = int((right > left).sum())
    assert (on_right > 10) is mirrors  # about half mirrored, or none at all
    assert not torch.equal(out[0], out[1])  # and every image moved differently


def test_mirror_choice_needs_a_real_gain() -> None:
    assert mirror_choice(0.9, 0.92)["kept"] is True
    assert mirror_choice(0.9, 0.9)["kept"] is False  # a tie: plain costs half


class LogitsByMirror:
    """A task whose validation logits are right for 3 of 4 images with the mirror, 2 without."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def val_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        right = 3 if self.model.flip_tta else 2
        y = torch.tensor([0, 0, 0, 0])
        logits = torch.zeros(4, 10)
        logits[:right, 0] = 1.0
        logits[right:, 1] = 1.0
        return logits, y


@pytest.mark.parametrize("allowed", [True, False])
def test_trainer_measures_the_mirror_and_writes_the_choice_into_best_pt(tmp_path: Path, allowed):
    config = build_config({"mode": "scratch", "model": "cnn3", "flip_tta": allowed})
    model = create_model("cnn3", 10, pretrained=False)
    data = type("D", (), {"classes": [str(i) for i in range(10)], "preprocess": GREY})()
    ctx = RunContext(config, model, data, tmp_path)  # type: ignore[arg-type]
    save_checkpoint(tmp_path / "best.pt", checkpoint_dict(model, data.classes, GREY, 3, config))
    state = {"best_acc": 0.5, "best_top_k": 1.0, "best_epoch": 3}
    choice = choose_mirror_tta(ctx, LogitsByMirror(model), state)
    saved = read_checkpoint(tmp_path / "best.pt")
    assert choice["kept"] is allowed and model.flip_tta is allowed
    if allowed:
        assert (choice["val_accuracy_plain"], choice["val_accuracy_mirror"]) == (0.5, 0.75)
        assert state["best_acc"] == 0.75 and saved["model_kwargs"]["flip_tta"] is True
        assert saved["epoch"] == 3
        mirrored = create_model("cnn3", 10, pretrained=False, **saved["model_kwargs"])
        mirrored.load_state_dict(saved["state_dict"])
        x = torch.rand(2, 1, 28, 28)
        mirrored.eval(), model.eval()
        assert torch.allclose(mirrored(x), mirrored(x.flip(3)), atol=1e-5)  # mirror-invariant
