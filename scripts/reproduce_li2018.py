"""Reproduce Li et al.'s reference surfaces from their own files and report the largest error.

    python scripts/reproduce_li2018.py [--fixture ../shared/fixtures/li2018-resnet20] [--only-1d]

Runs ``landscape compute`` with their ResNet-20 checkpoint, CIFAR-format data and direction files,
then compares with their surface files (read in our orientation, accuracy as a fraction).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from landscape.store import read_surface


def reproduce(fixture: Path, directions: str, surface: str, grid: list[str], work: Path) -> float:
    out = work / f"{Path(surface).stem}.ours.h5"
    cmd = [
        sys.executable, "-m", "landscape.cli", "compute", "--model", "resnet20",
        "--checkpoint", str(fixture / "model_20.t7"), "--data", f"cifar10:{fixture / 'cifar-10-batches-py'}",
        "--batch-size", "128", "--directions", str(fixture / directions), *grid, "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    ours, ref = read_surface(out), read_surface(fixture / surface)
    worst = 0.0
    for q in ref.values:
        rel = np.abs(ours.values[q] - ref.values[q]) / np.maximum(np.abs(ref.values[q]), 1e-12)
        print(f"{surface} {q}: max relative difference {rel.max():.2e}")
        worst = max(worst, float(rel.max()))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", type=Path, default=Path("../shared/fixtures/li2018-resnet20"))
    parser.add_argument("--only-1d", action="store_true", help="skip the 121-point 2-D surface")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        worst = reproduce(
            args.fixture, "directions_1d.h5", "surface_1d_11.h5", ["--x=-1:1:11"], Path(tmp)
        )
        if not args.only_1d:
            grid = ["--x=-1:1:11", "--y=-1:1:11"]
            worst = max(
                worst,
                reproduce(args.fixture, "directions_2d.h5", "surface_2d_11x11.h5", grid, Path(tmp)),
            )
    print(
        f"worst relative difference: {worst:.2e} ({'within' if worst <= 1e-5 else 'OUTSIDE'} 1e-5)"
    )
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
