"""Size of the core install (`pip install .` in a fresh venv) vs the install with the extras.

Target (issue 18): the core — numpy, Pillow, onnxruntime, OpenCV headless, paho-mqtt,
FastAPI/uvicorn, Typer/rich, PyYAML: enough for predict, serve, live and pairs — puts at most
350 MB into site-packages, and never pulls torch. Baseline in the same run: the same venv after
`pip install '.[eval,match]'`, i.e. what the core was before scikit-learn, SciPy, matplotlib and
networkx moved to extras. Sizes are the sum of file sizes under site-packages (pip included;
`empty_venv_mb` is a fresh venv's share).

    .venv/bin/python bench/install_size.py [--keep DIR]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 350.0
# Must never arrive with the core: the engines this project keeps in extras.
FORBIDDEN = ("torch", "sklearn", "scipy", "matplotlib", "networkx")


def tree_mb(path: Path) -> float:
    return (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6
    )


def site_packages(venv: Path) -> Path:
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / py / "site-packages"


def biggest(site: Path, n: int = 8) -> dict[str, float]:
    sizes = {p.name: tree_mb(p) for p in site.iterdir() if p.is_dir() and "dist-info" not in p.name}
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:n]
    return {name: round(mb, 1) for name, mb in top}


def pip(venv: Path, *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the venv here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lensflow-install-") as tmp:
        venv = args.keep or Path(tmp) / "venv"
        # From inside a venv, `-m venv` still builds on the base interpreter: a clean venv.
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        site = site_packages(venv)
        empty = tree_mb(site)
        core_s = pip(venv, str(ROOT))
        core = tree_mb(site)
        present = [m for m in FORBIDDEN if (site / m).exists()]
        core_top = biggest(site)
        extras_s = pip(venv, f"{ROOT}[eval,match]")
        with_extras = tree_mb(site)
    result = {
        "bench": "install_size",
        "core_mb": round(core, 1),
        "limit_mb": LIMIT_MB,
        "within_limit": core <= LIMIT_MB,
        "forbidden_in_core": present,
        "baseline_core_plus_eval_match_mb": round(with_extras, 1),
        "ratio_core_to_baseline": round(core / with_extras, 3),
        "empty_venv_mb": round(empty, 1),
        "core_over_empty_venv_mb": round(core - empty, 1),
        "core_biggest_mb": core_top,
        "install_seconds": {"core": round(core_s, 1), "extras": round(extras_s, 1)},
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))
    if present:  # torch (or another engine) came with the core: a broken dependency list
        sys.exit(1)


if __name__ == "__main__":
    main()
