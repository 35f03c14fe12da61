"""Directions kept as their seed (--store-directions seed): a small file, regenerated on resume."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from click.testing import CliRunner

import landscape
from landscape.cli import main

MLP = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
       "--model-arg", "num_classes=3"]  # fmt: skip


def run(tmp_path: Path, npz: Path, ckpt: Path, name: str, *extra: str):
    out = tmp_path / name
    return out, CliRunner().invoke(main, [
        "compute", *MLP, "--checkpoint", str(ckpt), "--data", f"npz:{npz}", "--x=-1:1:5",
        "--y=-1:1:4", "--out", str(out), "--quiet", *extra,
    ])  # fmt: skip


def test_a_seed_file_resumes_to_the_full_files_values(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    full, r1 = run(tmp_path, tiny_npz, tiny_mlp_ckpt, "full.h5", "--store-directions", "full")
    seed, r2 = run(tmp_path, tiny_npz, tiny_mlp_ckpt, "seed.h5", "--store-directions", "seed")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    with h5py.File(seed, "r") as f:
        assert "x" not in f["directions"] and f["directions"].attrs["stored"] == "seed"
    assert landscape.load(seed).directions == []
    with h5py.File(seed, "r+") as f:  # as if killed half way: half the points never computed
        done = f["done"][...]
        done.flat[::2] = False
        f["done"][...] = done
        f["train_loss"][...] = np.where(done, f["train_loss"][...], np.nan)
    _, again = run(tmp_path, tiny_npz, tiny_mlp_ckpt, "seed.h5", "--store-directions", "seed")
    assert again.exit_code == 0, again.output
    ours, ref = landscape.load(seed), landscape.load(full)
    np.testing.assert_array_equal(ours.loss, ref.loss)
    info = CliRunner().invoke(main, ["info", str(seed)]).output
    assert "kept as their seed" in info


def test_regenerated_directions_that_differ_are_refused(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    seed, first = run(tmp_path, tiny_npz, tiny_mlp_ckpt, "seed.h5", "--store-directions", "seed")
    assert first.exit_code == 0, first.output
    with h5py.File(seed, "r+") as f:  # another machine's random numbers, in effect
        f["done"][0, 0] = False
        printed = json.loads(f["directions"].attrs["fingerprint"])
        printed[0][1] *= 1.01
        f["directions"].attrs["fingerprint"] = json.dumps(printed)
    before = seed.read_bytes()
    _, again = run(tmp_path, tiny_npz, tiny_mlp_ckpt, "seed.h5")
    assert again.exit_code != 0 and "differ from the file's" in again.output
    assert seed.read_bytes() == before  # the file is left as it was


def test_seed_storage_is_for_seeded_families(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path):
    _, result = run(
        tmp_path,
        tiny_npz,
        tiny_mlp_ckpt,
        "p.h5",
        "--direction",
        "pca",
        "--store-directions",
        "seed",
    )
    assert result.exit_code != 0 and "only the random families" in result.output
