"""`_repr_html_` of datasets, runs, evaluations and predictions, parsed and checked for what each
promises (lensflow.display)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from lensflow.api import Evaluation, Predictions, Run, ShownPrediction
from lensflow.data import load_dataset
from lensflow.display import thumbnail_uri
from lensflow.io import write_card
from lensflow.predictor import Prediction


class Page(HTMLParser):
    """Tags with their attributes and the text, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.cells: list[list[str]] = []  # table rows as cell texts
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "tr":
            self.cells.append([])
        if tag in ("td", "th") and self.cells:
            self.cells[-1].append("")
        if tag != "img":
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.cells and self.cells[-1] and ("td" in self.stack or "th" in self.stack):
            self.cells[-1][-1] += data

    def all(self, tag: str, **match: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.tags if t == tag and all(m in a.get(k, "") for k, m in match.items())
        ]

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def decode_image(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def png(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def test_dataset_shows_counts_and_one_thumbnail_per_class(tiny_dataset: Path) -> None:
    ds = load_dataset(tiny_dataset)
    page = Page(ds._repr_html_())
    counts = ds.counts()
    rows = {r[0]: r[1:] for r in page.cells if r}
    assert rows["class"] == [*counts, "total"]
    for c in ds.classes:
        per_split = [counts[s].get(c, 0) for s in counts]
        assert rows[c] == [str(n) for n in (*per_split, sum(per_split))]
    assert rows["total"][-1] == str(len(ds))
    thumbs = page.all("img", src="data:image/jpeg;base64,")
    assert [t["alt"] for t in thumbs] == ds.classes  # 5 classes: one each
    assert max(decode_image(thumbs[0]["src"]).size) <= 96
    assert f"images {len(ds)}" in page.plain and ds.hash in page.plain


def test_run_shows_mode_model_accuracy_interval_and_curves(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    png(run_dir / "curves.png")
    best = {"val_accuracy": 0.9, "epoch": 3, "val_accuracy_ci95": [0.8, 0.95]}
    write_card(run_dir, "lensflow-run", model="resnet", classes=["a", "b"], mode="finetune",
               best=best, val_images=40, seconds=12.3)  # fmt: skip
    page = Page(Run(run_dir)._repr_html_())
    text = page.plain
    assert "mode finetune" in text and "model resnet" in text
    assert "validation accuracy 90.0% (95 % CI 80.0%–95.0%)" in text
    (curve,) = page.all("img", alt="training curves")
    assert decode_image(curve["src"]).size == (40, 30)
    # Without an interval (older runs) the accuracy alone is shown.
    del best["val_accuracy_ci95"]
    write_card(run_dir, "lensflow-run", model="resnet", classes=["a", "b"], mode="quick", best=best)
    assert "CI" not in Page(Run(run_dir)._repr_html_()).plain


def summary(ci: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "accuracy": 0.75, "top_k": 2, "top_k_accuracy": 1.0, "n": 4, "loss": 0.5, "ece": 0.1,
        "macro_avg": {"precision": 0.83, "recall": 0.75, "f1": 0.73, "support": 4},
        "per_class": {"cat": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2},
                      "dog": {"precision": 0.667, "recall": 1.0, "f1": 0.8, "support": 2}},
        "classes": ["cat", "dog"], "confusion_matrix": [[1, 1], [0, 2]],
        "source": {"kind": "run", "path": "/x/run"}, "split": "validation",
    }  # fmt: skip
    if ci:
        out["accuracy_ci95"] = [0.3, 0.95]
    return out


@pytest.mark.parametrize("ci", [True, False])
def test_evaluation_shows_summary_table_matrix_and_report_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: bool
) -> None:
    png(tmp_path / "confusion_matrix.png", (50, 50))
    (tmp_path / "report.html").write_text("<html></html>")
    monkeypatch.chdir(tmp_path.parent)
    page = Page(Evaluation(tmp_path, summary(ci))._repr_html_())
    text = page.plain
    assert "accuracy 75.0%" in text and "top-2 100.0%" in text and "run on validation" in text
    assert ("(95 % CI 30.0%–95.0%)" in text) is ci
    rows = {r[0]: r[1:] for r in page.cells if r}
    assert rows["cat"] == ["1.0", "0.5", "0.667", "2"] and rows["dog"][-1] == "2"
    (matrix,) = page.all("img", alt="confusion matrix")
    assert decode_image(matrix["src"]).size == (50, 50)
    (link,) = page.all("a")
    assert link["href"] == f"{tmp_path.name}/report.html"  # relative: Jupyter serves it


@dataclass(frozen=True)
class OpenSetPrediction(Prediction):
    """A Prediction with issue 14's open-set fields (what Prediction itself will carry)."""

    unknown: bool = False
    ood_score: float | None = None


def bars(page: Page) -> list[tuple[str, float]]:
    return [
        (row[0], float(bar["data-probability"]))
        for row, bar in zip(
            [r for r in page.cells if len(r) == 3], page.all("div", **{"class": "bar"})
        )
    ]


def test_prediction_shows_label_and_top_k_bars() -> None:
    top = [("shirt", 0.7), ("dress", 0.2), ("hat", 0.1)]
    page = Page(Prediction("shirt", 0.7, 0, top)._repr_html_())
    assert page.plain.startswith("shirt 70.0%") and "unknown" not in page.plain
    assert bars(page) == [(label, pytest.approx(p)) for label, p in top]
    widths = [a["style"] for a in page.all("div", **{"class": "bar"})]
    assert "width:70.0%" in widths[0] and "width:10.0%" in widths[2]
    assert not page.all("img")  # a plain Prediction has no image


def test_open_set_prediction_says_unknown_with_its_score() -> None:
    top = [("shirt", 0.4), ("dress", 0.35)]
    unknown = Page(
        OpenSetPrediction("shirt", 0.4, 0, top, unknown=True, ood_score=0.93)._repr_html_()
    )
    assert unknown.plain.startswith("unknown (closest: shirt 40.0%)")
    assert "open-set score 0.930" in unknown.plain
    known = Page(
        OpenSetPrediction("shirt", 0.4, 0, top, unknown=False, ood_score=0.1)._repr_html_()
    )
    assert "unknown" not in known.plain and "open-set score 0.100" in known.plain


def test_prediction_list_shows_a_row_with_thumbnail_per_image() -> None:
    image = Image.new("RGB", (300, 150), (10, 200, 10))
    preds = Predictions(
        [
            ShownPrediction("shirt", 0.9, 0, [("shirt", 0.9), ("hat", 0.1)],
                            thumbnail=thumbnail_uri(image), source="a.jpg"),
            ShownPrediction("hat", 0.6, 1, [("hat", 0.6), ("shirt", 0.4)],
                            thumbnail=thumbnail_uri(image), source="b.jpg"),
        ]
    )  # fmt: skip
    page = Page(preds._repr_html_())
    assert len(page.all("tr", **{"class": "prediction"})) == 2
    thumbs = page.all("img")
    assert [t["alt"] for t in thumbs] == ["shirt", "hat"]
    assert decode_image(thumbs[0]["src"]).size == (96, 48)  # longer side 96, aspect kept
    assert "a.jpg" in page.plain and "b.jpg" in page.plain
    assert len(page.all("div", **{"class": "bar"})) == 4
    assert len(Page(preds[1:]._repr_html_()).all("tr", **{"class": "prediction"})) == 1
    single = Page(preds[0]._repr_html_())
    assert len(single.all("img")) == 1 and single.plain.startswith("shirt 90.0%")


def test_text_is_escaped() -> None:
    page = Page(Prediction("<b>x</b>", 1.0, 0, [("<b>x</b>", 1.0)])._repr_html_())
    assert len(page.all("b")) == 1  # only the verdict's own <b>, the label is text
    assert "<b>x</b> 100.0%" in page.plain
