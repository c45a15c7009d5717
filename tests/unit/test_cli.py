"""The CLI entry point: fast help without torch, and a clear message where an extra is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lensflow.extras import EXTRA_OF_MODULE, missing_extra_message

# Runs lensflow's main() with the modules in $BLOCK made unimportable, as on a core-only install.
BLOCKED_MAIN = """
import os, sys
BLOCK = os.environ["BLOCK"].split(",")
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from lensflow.cli import main
sys.argv = ["lensflow", *sys.argv[1:]]
main()
"""
# Everything the core install leaves out.
EXTRAS_ONLY = sorted(EXTRA_OF_MODULE)


def run_blocking(block: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BLOCK": ",".join(block)}
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_MAIN, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def run_without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    return run_blocking(["torch"], *args)


def test_help_does_not_import_torch():
    code = "import sys, lensflow.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_training_command_without_torch_names_the_extra(tiny_run, tmp_path):
    result = run_without_torch("export", str(tiny_run), "--out", str(tmp_path / "bundle"))
    assert result.returncode == 2
    assert "pip install 'lensflow[train]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "bundle").exists()


def test_inference_command_on_the_core_install_works(tiny_bundle, sample_folder):
    photo = sorted((sample_folder / "validation" / "hat").glob("*.jpg"))[0]
    result = run_blocking(EXTRAS_ONLY, "predict", str(tiny_bundle), str(photo), "--json")
    assert result.returncode == 0, result.stderr
    assert '"label"' in result.stdout


# What `serve`, `live` and `pairs` import when they run (their command functions import lazily).
CORE_COMMAND_MODULES = [
    "lensflow.predictor",
    "lensflow.serve.app",
    "lensflow.serve.config",
    "lensflow.live.loop",
    "lensflow.live.sources",
    "lensflow.live.view",
    "lensflow.messaging",
    "lensflow.stream.runner",
    "lensflow.stream.view",
    "lensflow.stream.ksql",
    "lensflow.data.importer",
]


def test_serve_live_and_pairs_import_nothing_from_the_extras(tiny_bundle):
    code = (
        BLOCKED_MAIN.split("from lensflow.cli")[0]
        + f"import importlib\nfor m in {CORE_COMMAND_MODULES!r}: importlib.import_module(m)\n"
        + "from lensflow.predictor import Predictor\n"
        + "from lensflow.serve.app import create_app\n"
        + "from lensflow.serve.config import ServeConfig\n"
        + f"p = Predictor.from_bundle({str(tiny_bundle)!r})\n"
        + f"create_app(ServeConfig(endpoints=(('m', {str(tiny_bundle)!r}),)), {{'m': p}})\n"
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in BLOCK))\n"
    )
    env = {**os.environ, "BLOCK": ",".join(EXTRAS_ONLY)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_evaluate_without_the_eval_extra_names_it(tiny_bundle, tiny_dataset, tmp_path):
    out = tmp_path / "eval"
    result = run_blocking(["sklearn", "scipy", "matplotlib"], "evaluate", tiny_bundle,
                          "--data", tiny_dataset, "--out", out)  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'lensflow[eval]'" in lines[0], result.stderr
    assert not out.exists()


def test_studio_without_torch_names_the_full_extra(tmp_path):
    result = run_blocking(["torch"], "studio", "--data-dir", tmp_path / "studio", "--port", "1")
    assert result.returncode == 2
    assert "pip install 'lensflow[full]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("module", "extra"),
    [("torch.nn", "train"), ("sklearn.manifold", "eval"), ("matplotlib", "eval"),
     ("networkx", "match"), ("numpy", None)],
)  # fmt: skip
def test_each_optional_module_maps_to_its_extra(module, extra):
    message = missing_extra_message(module)
    if extra is None:
        assert message is None  # a core module missing is a broken install: keep the traceback
    else:
        assert f"pip install 'lensflow[{extra}]'" in message and "\n" not in message
