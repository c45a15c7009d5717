"""The CLI entry point: fast help without torch, and a clear message where torch is missing."""

from __future__ import annotations

import subprocess
import sys

# Runs lensflow's main() with torch made unimportable, as on an inference-only install.
NO_TORCH = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
sys.meta_path.insert(0, BlockTorch())
from lensflow.cli import main
sys.argv = ["lensflow", *sys.argv[1:]]
main()
"""


def run_without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120
    )


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


def test_inference_command_without_torch_works(tiny_bundle, sample_folder):
    photo = sorted((sample_folder / "validation" / "hat").glob("*.jpg"))[0]
    result = run_without_torch("predict", str(tiny_bundle), str(photo), "--json")
    assert result.returncode == 0, result.stderr
    assert '"label"' in result.stdout
