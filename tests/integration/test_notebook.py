"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel (nbclient + ipykernel),
in a temp copy beside a copy of the bundled sample, and shows what it promises."""

from __future__ import annotations

import json
import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
KERNEL = "lensflow-test-python"


class Tags(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text += data


def kernel_spec(root: Path) -> Path:
    """A kernelspec running this interpreter, so the notebook sees this checkout's packages."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    return root


def outputs(cell: Any, mime: str, kind: str = "execute_result") -> list[str]:
    """The cell's outputs of one MIME type: printed text ("stream") or displayed data of `kind`."""
    found = []
    for out in cell.get("outputs", []):
        if kind == "stream" and out.get("output_type") == "stream":
            found.append(out["text"])
        elif out.get("output_type") == kind and mime in out.get("data", {}):
            found.append(out["data"][mime])
    return found


def cell_with(nb: Any, source: str) -> Any:
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and source in c.source]
    return cell


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


def test_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow
def test_quickstart_runs_from_import_to_a_served_prediction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_folder: Path
) -> None:
    work = tmp_path / "examples"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    shutil.copytree(sample_folder, work / "clothing-sample")
    before = snapshot(ROOT / "examples")
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_spec(tmp_path / "jupyter")))
    monkeypatch.setenv("LENSFLOW_CACHE", str(tmp_path / "cache"))
    # Kernel connection files and IPython's profile go to the temp dir too, not to $HOME.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    )
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    # Raises CellExecutionError (with the cell and its traceback) if any cell fails.
    NotebookClient(
        nb, timeout=900, kernel_name=KERNEL, resources={"metadata": {"path": str(work)}}
    ).execute()

    (served_text,) = outputs(cell_with(nb, "BackgroundServer"), "text/plain", "stream")
    served = json.loads(served_text.strip().splitlines()[-1])
    assert served["served"] == served["in_notebook"] == served["photo"]
    assert 0.2 < served["probability"] <= 1.0

    (ds_html,) = outputs(cell_with(nb, "lf.import_dataset("), "text/html")
    ds_page = Tags(ds_html)
    assert "images 80" in ds_page.text
    assert sum(t == "img" for t, _ in ds_page.tags) == 5

    (run_html,) = outputs(cell_with(nb, "lf.train("), "text/html")
    assert "mode quick" in Tags(run_html).text and "validation accuracy" in Tags(run_html).text

    (ev_html,) = outputs(cell_with(nb, "run.evaluate("), "text/html")
    ev_tags = Tags(ev_html).tags
    assert any(t == "img" and a.get("alt") == "confusion matrix" for t, a in ev_tags)
    assert any(t == "a" and a["href"].endswith("report.html") for t, a in ev_tags)
    (accuracy_line,) = outputs(cell_with(nb, "ev.confusion_matrix"), "text/plain", "stream")
    assert accuracy_line.startswith("accuracy ") and "on 20 images" in accuracy_line

    (preds_html,) = outputs(cell_with(nb, "predictor.predict("), "text/html")
    pred_tags = Tags(preds_html).tags
    thumbs = [a for t, a in pred_tags if t == "img" and a["src"].startswith("data:image/jpeg")]
    assert len(thumbs) == 5

    (reloaded,) = outputs(cell_with(nb, 'lf.load("clothing-run")'), "text/plain")
    assert reloaded.startswith("Run(") and "mode='quick'" in reloaded

    # Progress bars were drawn in the notebook (rich's Jupyter support: ipywidgets Output).
    train_cell = cell_with(nb, "lf.train(")
    assert outputs(train_cell, "application/vnd.jupyter.widget-view+json", "display_data")

    assert (work / "clothing-run" / "card.json").is_file()
    assert snapshot(ROOT / "examples") == before  # nothing written into the repository
