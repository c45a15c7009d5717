"""Schedule, optimizers and batch augmentation: the pure pieces of the training loop."""

from __future__ import annotations

import itertools

import pytest
import torch

from lensflow.preprocess import Preprocess
from lensflow.train.augment import augment_batch, to_input
from lensflow.train.config import build_config
from lensflow.train.loop import lr_factor, make_optimizer


def test_cosine_with_warmup() -> None:
    cfg = build_config({"lr_scheduler": "cosine", "warmup_epochs": 1})
    f = [lr_factor(cfg, s, 10, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[-1] < 0.01
    assert all(a >= b for a, b in itertools.pairwise(f[10:]))


def test_step_schedule_uses_sagemaker_milestones() -> None:
    cfg = build_config(
        {"lr_scheduler": "step", "lr_scheduler_step": "2,4", "lr_scheduler_factor": 0.5,
         "warmup_epochs": 0}
    )  # fmt: skip
    per_epoch = [lr_factor(cfg, (e - 1) * 10, 10, 100) for e in range(1, 7)]
    assert per_epoch == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), ("nag", torch.optim.SGD), ("adam", torch.optim.Adam),
     ("adamw", torch.optim.AdamW), ("rmsprop", torch.optim.RMSprop)],
)  # fmt: skip
def test_optimizers(name: str, cls: type) -> None:
    opt = make_optimizer(
        build_config({"optimizer": name}),
        [{"params": [torch.zeros(2, requires_grad=True)], "lr": 0.1}],
    )
    assert isinstance(opt, cls)
    if name in ("sgd", "nag"):
        assert opt.param_groups[0]["nesterov"] is (name == "nag")


@pytest.mark.parametrize(
    "kind", ["crop", "crop_color", "crop_color_transform", "shift", "shift_flip"]
)
def test_augmentation_is_seeded_and_keeps_shape(kind: str) -> None:
    pre = Preprocess()
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    a = augment_batch(x, kind, pre, torch.Generator().manual_seed(1))
    b = augment_batch(x, kind, pre, torch.Generator().manual_seed(1))
    c = augment_batch(x, kind, pre, torch.Generator().manual_seed(2))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1.0 - 1e-5 and a.max() <= 1.0 + 1e-5  # stays in the Lite [-1, 1] range


def test_no_augmentation_is_plain_normalisation() -> None:
    pre = Preprocess()
    x = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    out = augment_batch(x, "none", pre, torch.Generator())
    assert torch.allclose(out, torch.from_numpy(pre.normalize(x.numpy())))
    assert torch.equal(out, to_input(x, pre))


def _fresh_state() -> dict:
    return {"best_acc": -1.0, "best_epoch": 0, "since_best": 0}


def test_patience_waits_while_the_validation_loss_still_falls() -> None:
    from lensflow.train.loop import should_stop_early, track_validation

    config = build_config(
        {"early_stopping_min_epochs": 1, "early_stopping_patience": 2, "dataset": "d", "out": "o"}
    )
    state = _fresh_state()
    # A lucky accuracy at epoch 1, then lower accuracies with a falling loss: not stopped.
    scores = [(0.99, 0.30), (0.97, 0.25), (0.98, 0.20), (0.985, 0.15)]
    for epoch, (acc, loss) in enumerate(scores, 1):
        track_validation(state, epoch, acc, loss, None, 0.0)
        assert not should_stop_early(config, state, epoch)
    assert state["best_epoch"] == 1 and state["since_best"] == 0
    # Neither improves for two epochs: stopped.
    for epoch in (5, 6):
        track_validation(state, epoch, 0.98, 0.16, None, 0.0)
    assert state["since_best"] == 2 and should_stop_early(config, state, 6)


def test_best_epoch_is_the_top_accuracy_and_ties_go_to_the_lower_loss() -> None:
    from lensflow.train.loop import track_validation

    state = _fresh_state()
    assert track_validation(state, 1, 0.90, 0.5, 0.99, 0.0)
    assert track_validation(state, 2, 0.95, 0.4, 0.99, 0.0)
    assert not track_validation(state, 3, 0.95, 0.45, 0.99, 0.0)  # same accuracy, worse loss
    assert track_validation(state, 4, 0.95, 0.3, 0.99, 0.0)  # same accuracy, better loss
    assert not track_validation(state, 5, 0.96, 0.2, 0.99, 0.05)  # under the tolerance
    assert state["best_epoch"] == 4 and state["best_loss"] == 0.3


@pytest.mark.parametrize("mixup", [False, True])
def test_micro_batches_give_the_whole_batchs_gradient(mixup: bool) -> None:
    from lensflow.train.loop import forward_backward

    config = build_config({"label_smoothing": 0.1, "dataset": "d", "out": "o"})
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 6, generator=g), torch.randint(0, 3, (10,), generator=g)
    partner = torch.randperm(10, generator=g) if mixup else None
    grads, losses = [], []
    for micro in (None, 3):  # 3 does not divide 10: pieces of 3, 3, 3 and 1
        torch.manual_seed(1)
        model = torch.nn.Linear(6, 3)
        logits, loss = forward_backward(
            model, x, y, config, None, 0.7, partner, micro, torch.device("cpu")
        )
        assert logits.shape == (10, 3) and not logits.requires_grad
        grads.append(torch.cat([p.grad.ravel() for p in model.parameters()]))
        losses.append(loss)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


def test_only_large_images_on_a_cpu_are_split() -> None:
    from lensflow.train.tasks import micro_batch_size

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert micro_batch_size(224, 64, cpu) == 16
    assert micro_batch_size(300, 64, cpu) == 8  # never fewer than 8 rows
    assert micro_batch_size(28, 64, cpu) is None  # MNIST-sized: one piece, as before
    assert micro_batch_size(224, 16, cpu) is None  # the batch is small already
    assert micro_batch_size(224, 64, cuda) is None
