"""TrainConfig: SageMaker names, YAML + overrides, and errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.errors import ConfigError
from lensflow.train.config import build_config, parse_overrides, parse_seconds


def test_sagemaker_names_and_types_are_parsed() -> None:
    cfg = build_config(
        {
            "epochs": "5",
            "use_pretrained_model": "0",
            "learning_rate": "0.01",
            "image_shape": "1,28,28",
        },
        {"optimizer": "nag", "lr_scheduler": "step", "lr_scheduler_step": "2,4"},
    )
    assert cfg.epochs == 5 and cfg.use_pretrained_model is False and cfg.learning_rate == 0.01
    assert cfg.image_chw() == (1, 28, 28)
    assert cfg.milestones() == [2, 4]


def test_later_layers_win(tmp_path: Path) -> None:
    cfg = build_config({"epochs": 3, "seed": 1}, {"epochs": 7})
    assert (cfg.epochs, cfg.seed) == (7, 1)


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown hyperparameter 'mini_batch'.*'mini_batch_size'"
    ):
        build_config({"mini_batch": 32})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"optimizer": "adagrad"}, "optimizer must be one of sgd, nag, adam, adamw, rmsprop"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"epochs": "many"}, "epochs expects int, got 'many'"),
        ({"use_pretrained_model": "maybe"}, "use_pretrained_model expects bool"),
        ({"image_shape": "3,224"}, "image_shape must be C,H,W"),
        ({"label_smoothing": 1.5}, r"label_smoothing must be in \[0, 1\)"),
        ({"lr_scheduler_step": "a,b"}, "lr_scheduler_step must be comma-separated"),
        ({"time_budget": "soon"}, "time_budget expects float"),
        ({"mode": "fast"}, "mode must be one of quick, finetune, scratch, auto"),
    ],
)
def test_bad_values_are_rejected_with_the_fix(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_time_budget_units() -> None:
    assert parse_seconds("90") == 90 and parse_seconds("1.5m") == 90 and parse_seconds("1h") == 3600
    assert build_config({"time_budget": "10m"}).time_budget == 600


def test_param_pairs_need_an_equals_sign() -> None:
    assert parse_overrides(["epochs=5", "optimizer = sgd"]) == {"epochs": "5", "optimizer": "sgd"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["epochs"])
