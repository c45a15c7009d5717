"""The Python façade: the whole pipeline in a few lines, for notebooks and scripts.

    import lensflow as lf
    ds = lf.import_dataset("photos/", out="ds")              # -> Dataset
    run = lf.train(ds, out="run", mode="quick")               # -> Run
    ev = run.evaluate(split="validation")                     # -> Evaluation
    predictor = run.export("bundle")                          # -> NotebookPredictor (a Predictor)
    predictor.predict(["photo.jpg"])[0]                       # -> Prediction
    lf.load("run")                                            # a dataset, run, bundle or evaluation

The same engine and the same validation as the CLI: keyword arguments are the fields of each
command's config dataclass (`ImportConfig`, `TrainConfig`, `EvaluateConfig`, `ExportConfig`),
built by the same functions the commands use; an unknown keyword is a ConfigError naming the
closest field. Wherever the CLI takes a directory, a path or a lensflow object with a `.path`
(Dataset, Run, Evaluation, Predictor) is accepted. Every object shows itself in Jupyter
(`_repr_html_`, see lensflow.display); progress bars use rich's Jupyter support and
`quiet=True` silences them. Heavy modules (torch, matplotlib) are imported inside the functions:
`import lensflow` stays fast and torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lensflow.config import reject_unknown
from lensflow.errors import ConfigError, LensflowError
from lensflow.extras import EXTRA_OF_MODULE, MissingExtraError
from lensflow.predictor import Prediction, Predictor

if TYPE_CHECKING:
    import numpy as np

    from lensflow.data.dataset import Dataset
    from lensflow.preprocess import ImageInput
    from lensflow.train.checkpoint import LoadedRun

PathOrObject = str | os.PathLike[str] | Any  # a path, or a Dataset / Run / Evaluation / Predictor


def as_path(obj: PathOrObject) -> Path:
    """A directory given as a path or as a lensflow object that has a `.path`."""
    path = getattr(obj, "path", obj)
    if isinstance(path, str | os.PathLike):
        return Path(path)
    raise ConfigError(
        f"expected a directory (a path, or a lensflow Dataset, Run, Evaluation or Predictor), "
        f"got {type(obj).__name__}"
    )


def config_from_kwargs(cls: type, fixed: Mapping[str, Any], options: Mapping[str, Any], what: str):
    """`cls(**fixed, **options)` for a command's config dataclass, rejecting unknown options.

    Path-typed fields take a path or a lensflow object (its `.path`).
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in fixed}
    reject_unknown(options, fields, what)
    values = {
        name: as_path(value) if value is not None and "Path" in str(fields[name].type) else value
        for name, value in options.items()
    }
    return cls(**fixed, **values)


@contextmanager
def needs_train_extra(what: str) -> Iterator[None]:
    """Turn a missing optional module (torch, scikit-learn, ...) into one line naming its extra."""
    try:
        yield
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        extra = EXTRA_OF_MODULE.get(top)
        if extra is None:
            raise
        raise MissingExtraError(
            f"{what} needs {top}, which comes with the {extra} extra; install it with: "
            f"pip install 'lensflow[{extra}]'"
        ) from None


# -- data ----------------------------------------------------------------------------------------
def import_dataset(
    src: PathOrObject, out: PathOrObject, *, quiet: bool = False, **options: Any
) -> Dataset:
    """`lensflow data import SRC --out OUT`: options are ImportConfig's fields
    (format, labels, class_names, root, min_per_class, workers, overwrite)."""
    from lensflow.data import ImportConfig, load_dataset
    from lensflow.data import import_dataset as run_import
    from lensflow.data.commands import parse_class_names

    names = options.get("class_names")
    if isinstance(names, str):
        options = {**options, "class_names": parse_class_names(names)}
    elif names is not None:
        options = {**options, "class_names": tuple(names)}
    fixed = {"src": as_path(src), "out": as_path(out)}
    config = config_from_kwargs(ImportConfig, fixed, options, "lf.import_dataset keyword")
    return load_dataset(run_import(config, quiet=quiet).path)


# -- train ---------------------------------------------------------------------------------------
TRAIN_KEYWORDS = ("config", "resume", "overwrite", "quiet")


def train(
    dataset: PathOrObject,
    out: PathOrObject,
    *,
    config: PathOrObject | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    **hyperparameters: Any,
) -> Run:
    """`lensflow train DATASET --out OUT`: hyperparameters are TrainConfig's fields (SageMaker
    names: mode, model, epochs, mini_batch_size, learning_rate, time_budget, seed, ...);
    `config` is a YAML file of them, overridden by the keywords."""
    from lensflow.train.config import HYPERPARAMETERS, command_config

    reject_unknown(hyperparameters, [*HYPERPARAMETERS, *TRAIN_KEYWORDS], "lf.train keyword")
    cfg = command_config(
        as_path(dataset),
        as_path(out),
        hyperparameters,
        as_path(config) if config is not None else None,
        quiet,
        resume,
    )
    with needs_train_extra("lf.train"):
        from lensflow.train.run import train as run_train

        run_train(cfg, resume=resume, overwrite=overwrite)
    return Run(cfg.out)


class Run:
    """A training run directory: its card, config and metrics history; evaluate and export it."""

    def __init__(self, path: PathOrObject) -> None:
        from lensflow.io import read_card

        self.path = as_path(path).resolve()
        self.card: dict[str, Any] = read_card(self.path, "lensflow-run")

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def mode(self) -> str:
        return str(self.card["mode"])

    @property
    def model(self) -> str:
        return str(self.card["model"])

    @property
    def accuracy(self) -> float:
        """Best validation accuracy (the card's `best.val_accuracy`)."""
        return float(self.card["best"]["val_accuracy"])

    @cached_property
    def config(self) -> dict[str, Any]:
        """The resolved TrainConfig as saved in config.yaml."""
        from lensflow.config import load_yaml

        return dict(load_yaml(self.path / "config.yaml"))

    @cached_property
    def metrics(self) -> list[dict[str, float]]:
        """metrics.csv: one dict per epoch (epoch, train_loss, val_acc, lr, ...)."""
        from lensflow.evaluate.evaluator import read_metrics_csv

        return read_metrics_csv(self.path)

    def evaluate(
        self,
        data: PathOrObject | None = None,
        split: str | None = None,
        out: PathOrObject | None = None,
        *,
        quiet: bool = False,
        **options: Any,
    ) -> Evaluation:
        """`lensflow evaluate RUN`: options are EvaluateConfig's fields (top_k, batch_size,
        n_top_losses, tsne_max_points, projector_max_points, overwrite, ...)."""
        from lensflow.evaluate.evaluator import EvaluateConfig
        from lensflow.evaluate.evaluator import evaluate as run_evaluate

        given = {"data": data, "split": split, "out": out, **options}
        config = config_from_kwargs(
            EvaluateConfig, {"source": self.path}, given, "Run.evaluate keyword"
        )
        with needs_train_extra("Run.evaluate"):
            result = run_evaluate(config, quiet=quiet)
        return Evaluation(result.out, result.summary)

    def export(
        self,
        out: PathOrObject,
        *,
        triton: PathOrObject | None = None,
        triton_name: str | None = None,
        threads: int | None = None,
        quiet: bool = False,
        **options: Any,
    ) -> NotebookPredictor:
        """`lensflow export RUN --out OUT`, then load the bundle: options are ExportConfig's
        fields (int8, calibration, calibration_images, parity_images, archive, overwrite)."""
        from lensflow.export.commands import export_bundle
        from lensflow.export.exporter import ExportConfig

        fixed = {"run": self.path, "out": as_path(out)}
        config = config_from_kwargs(ExportConfig, fixed, options, "Run.export keyword")
        repo = as_path(triton) if triton is not None else None
        with needs_train_extra("Run.export"):
            path, _ = export_bundle(config, repo, triton_name, quiet)
        return NotebookPredictor.from_bundle(path, threads=threads)

    def load_model(self, which: str = "best") -> LoadedRun:
        """The trained torch model (`lensflow.train.load_run`); needs the [train] extra."""
        with needs_train_extra("Run.load_model"):
            from lensflow.train import load_run

            return load_run(self.path, which)

    def _repr_html_(self) -> str:
        from lensflow.display import run_html

        return run_html(self.path, self.card)

    def __repr__(self) -> str:
        return (
            f"Run({str(self.path)!r}, mode={self.mode!r}, model={self.model!r}, "
            f"accuracy={self.accuracy:.4f})"
        )


# -- evaluate ------------------------------------------------------------------------------------
class Evaluation:
    """An evaluation folder: metrics.json as attributes, the pictures and report.html."""

    def __init__(self, path: PathOrObject, summary: Mapping[str, Any] | None = None) -> None:
        self.path = as_path(path).resolve()
        if summary is None:
            metrics = self.path / "metrics.json"
            if not metrics.is_file():
                raise LensflowError(
                    f"{self.path} is not a lensflow evaluation: no metrics.json "
                    "(create one with: lensflow evaluate RUN --out DIR)"
                )
            summary = json.loads(metrics.read_text())
        self.metrics: dict[str, Any] = dict(summary)

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    @property
    def accuracy_ci95(self) -> tuple[float, float] | None:
        """The 95 % interval of the accuracy, when the evaluation recorded one."""
        ci = self.metrics.get("accuracy_ci95")
        return (float(ci[0]), float(ci[1])) if ci is not None else None

    @property
    def top_k_accuracy(self) -> float:
        return float(self.metrics["top_k_accuracy"])

    @property
    def classes(self) -> list[str]:
        return list(self.metrics["classes"])

    @property
    def split(self) -> str:
        return str(self.metrics["split"])

    @property
    def per_class(self) -> list[dict[str, Any]]:
        """One dict per class: class, precision, recall, f1, support."""
        return [{"class": name, **m} for name, m in self.metrics["per_class"].items()]

    @property
    def confusion_matrix(self) -> np.ndarray:
        """Counts, rows = true class, columns = predicted class, in `classes` order."""
        import numpy as np

        return np.asarray(self.metrics["confusion_matrix"], dtype=np.int64)

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    def _repr_html_(self) -> str:
        from lensflow.display import evaluation_html

        return evaluation_html(self.path, self.metrics)

    def __repr__(self) -> str:
        return f"Evaluation({str(self.path)!r}, split={self.split!r}, accuracy={self.accuracy:.4f})"


# -- predict -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShownPrediction(Prediction):
    """A Prediction that remembers a thumbnail of its image (a data: URI) for Jupyter."""

    thumbnail: str | None = field(default=None, repr=False, compare=False)
    source: str | None = field(default=None, compare=False)  # the file name, when given a path


class Predictions(list):  # type: ignore[type-arg]
    """The predictions of one `predict` call: a plain list that shows itself as a table."""

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return Predictions(item) if isinstance(index, slice) else item  # slices still display

    def _repr_html_(self) -> str:
        from lensflow.display import predictions_html

        return predictions_html(self)


class NotebookPredictor(Predictor):
    """The bundle's Predictor whose `predict` results carry thumbnails for Jupyter display."""

    def predict(  # type: ignore[override]
        self, images: Sequence[ImageInput] | ImageInput, top_k: int = 5, **kwargs: Any
    ) -> Predictions:
        from lensflow.display import thumbnail_uri
        from lensflow.predictor import _as_list
        from lensflow.preprocess import to_pil

        items = _as_list(images)
        out = Predictions()
        # Decode once per chunk: the same pixels feed the model and the thumbnail.
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            decoded = [to_pil(item) for item in chunk]
            for item, image, pred in zip(
                chunk, decoded, super().predict(decoded, top_k, **kwargs), strict=True
            ):
                values = {f.name: getattr(pred, f.name) for f in dataclasses.fields(pred)}
                source = Path(item).name if isinstance(item, str | os.PathLike) else None
                out.append(ShownPrediction(**values, thumbnail=thumbnail_uri(image), source=source))
        return out


# -- load ----------------------------------------------------------------------------------------
def load(
    path: PathOrObject, threads: int | None = None
) -> Dataset | Run | NotebookPredictor | Evaluation:
    """Open a dataset, run, bundle (directory or .tar.gz) or evaluation folder by its card."""
    p = as_path(path)
    if p.is_file() and p.name.endswith((".tar.gz", ".tgz")):
        return NotebookPredictor.from_bundle(p, threads=threads)
    if not p.is_dir():
        raise LensflowError(f"{p} does not exist or is not a directory")
    card = p / "card.json"
    if not card.is_file():
        if (p / "metrics.json").is_file():
            return Evaluation(p)
        raise LensflowError(
            f"{p} is not a lensflow dataset, run, bundle or evaluation (no card.json or metrics.json)"
        )
    try:
        kind = json.loads(card.read_text()).get("kind")
    except (OSError, json.JSONDecodeError) as e:
        raise LensflowError(f"{card} is unreadable: {e}") from None
    if kind == "lensflow-dataset":
        from lensflow.data import load_dataset

        return load_dataset(p)
    if kind == "lensflow-run":
        return Run(p)
    if kind == "lensflow-bundle":
        return NotebookPredictor.from_bundle(p, threads=threads)
    raise LensflowError(f"{card} is of kind {kind!r}, not a lensflow dataset, run or bundle")


__all__ = [
    "Evaluation",
    "NotebookPredictor",
    "Predictions",
    "Run",
    "ShownPrediction",
    "as_path",
    "config_from_kwargs",
    "import_dataset",
    "load",
    "train",
]
