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


def test_a_file_from_before_the_seed_derivation_resumes_with_its_own_directions(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """A seed-kept file written before the generator was derived from the seed (no
    ``seed_derivation`` attribute) drew from ``manual_seed(seed)`` itself: its resume regenerates
    those directions, whose surface is the one a Li et al. direction file of them gives."""
    import torch

    from landscape.checkpoint import load_state_dict
    from landscape.config import DirectionSpec
    from landscape.directions import build_directions
    from landscape.directions.base import LEGACY_SEED
    from landscape.directions.io import fingerprint

    theta = load_state_dict(str(tiny_mlp_ckpt))  # the MLP's parameters, in parameter order
    old = build_directions(theta, DirectionSpec(seed=0), 2, seed_derivation=LEGACY_SEED)
    first = next(iter(theta))  # the first draws of torch's own stream for seed 0, rescaled
    w, d = theta[first], old.vectors[0][first]
    raw = torch.randn(w.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(d, raw * (w.norm(dim=1) / raw.norm(dim=1)).unsqueeze(1))
    li = tmp_path / "old_directions.h5"  # Li et al.'s layout: tensors by parameter position
    with h5py.File(li, "w") as f:
        for axis, vec in zip("xy", old.vectors, strict=True):
            for i, t in enumerate(vec.values()):
                f.create_dataset(f"{axis}direction/{i}", data=t.numpy())
    ref, r1 = run(tmp_path, tiny_npz, tiny_mlp_ckpt, "ref.h5", "--directions", str(li))
    seed, r2 = run(tmp_path, tiny_npz, tiny_mlp_ckpt, "seed.h5", "--store-directions", "seed")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    reference = landscape.load(ref).loss
    with h5py.File(seed, "r+") as f:  # as an older landscape wrote it, killed half way
        f["directions"].attrs["fingerprint"] = json.dumps(fingerprint(old.vectors))
        done = f["done"][...]
        done.flat[::2] = False
        f["done"][...] = done
        f["train_loss"][...] = np.where(done, reference, np.nan)
    # recorded as derived, the file's fingerprint is not what its derivation gives: refused
    _, refused = run(tmp_path, tiny_npz, tiny_mlp_ckpt, "seed.h5", "--store-directions", "seed")
    assert refused.exit_code != 0 and "differ from the file's" in refused.output
    with h5py.File(seed, "r+") as f:
        del f["directions"].attrs["seed_derivation"]
    _, again = run(tmp_path, tiny_npz, tiny_mlp_ckpt, "seed.h5", "--store-directions", "seed")
    assert again.exit_code == 0, again.output
    np.testing.assert_allclose(landscape.load(seed).loss, reference, rtol=1e-12, atol=0)
