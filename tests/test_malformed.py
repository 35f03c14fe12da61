"""Malformed surface files: every reader refuses each one with one ``Error:`` line.

A real 3 x 3 surface is made by the CLI once; each case copies it and damages one thing with
h5py, as a careless tool or an attacker would. Then info, plot, export, ``landscape.load``, a
resuming compute and curvature each must fail with one line naming what is wrong, exit 1, print
no traceback and leave the file as it was.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import landscape
from landscape.errors import SurfaceFileError
from landscape.models import build_model
from tests.test_security import MLP, one_error_line, run


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Data (as conftest's tiny_npz), a checkpoint, the compute command and two real surfaces:
    one keeping its directions in full, one keeping them by seed. Made once for every case."""
    folder = tmp_path_factory.mktemp("made")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    np.savez(folder / "tiny.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    torch.manual_seed(0)
    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    torch.save(model.state_dict(), folder / "mlp.pt")
    command = [
        "compute", *MLP, "--checkpoint", str(folder / "mlp.pt"), "--data",
        f"npz:{folder / 'tiny.npz'}", "--x=-1:1:3", "--y=-1:1:3", "--engine", "reference", "--quiet",
    ]  # fmt: skip
    surfaces = {}
    for store in ("full", "seed"):
        out = folder / f"{store}.h5"
        code, _, err = run(*command, "--store-directions", store, "--out", str(out))
        assert code == 0, err
        surfaces[store] = out
    return {"command": command, **surfaces}


def _replace(name: str, data: object, **kwargs: object) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, data=data, **kwargs)

    return damage


def _attr(name: str, value: object) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        f.attrs[name] = value

    return damage


def _dir_attr(name: str, value: object) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        f["directions"].attrs[name] = value

    return damage


def _del_attr(name: str) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        del f.attrs[name]

    return damage


def _deep_analysis(f: h5py.File) -> None:
    text = ("[" * 100_000 + "]" * 100_000).encode()
    del f["analysis/train_loss"]
    f["analysis/train_loss"] = np.frombuffer(text, dtype=np.uint8)


def _directions_tensor_text(f: h5py.File) -> None:
    name = next(iter(f["directions/x"]))
    shape = f[f"directions/x/{name}"].shape
    del f[f"directions/x/{name}"]
    f[f"directions/x/{name}"] = np.full(shape, "a", dtype=object).astype(h5py.string_dtype())


def _fingerprint(value: str) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        f["directions"].attrs["fingerprint"] = value

    return damage


STRINGS = np.array([["a"] * 3] * 3, dtype=h5py.string_dtype())
# (case, which surface, damage, what the one line says)
CASES = [
    ("no-done", "full", lambda f: f.__delitem__("done"), "done is missing"),
    ("done-shape", "full", _replace("done", np.ones((3, 2), bool)), "done must be bools"),
    ("done-floats", "full", _replace("done", np.ones((3, 3))), "done must be bools"),
    ("loss-shape", "full", _replace("train_loss", np.ones(9)), "train_loss must be numbers"),
    ("loss-text", "full", _replace("train_loss", STRINGS), "train_loss must be numbers"),
    ("acc-complex", "full", _replace("train_acc", np.ones((3, 3), complex)), "train_acc must be"),
    ("se-shape", "full", _replace("train_loss_se", np.ones((2, 2))), "train_loss_se must be"),
    ("x-text", "full", _replace("xcoordinates", np.array(["a", "b", "c"], dtype="S")), "1-D"),
    ("x-2d", "full", _replace("xcoordinates", np.zeros((3, 1))), "xcoordinates must be a 1-D"),
    ("x-nan", "full", _replace("xcoordinates", [np.nan, 0.0, 1.0]), "xcoordinates holds NaN"),
    ("x-huge", "full", _replace("xcoordinates", [-1e308, 0.0, 1e308]), "xcoordinates holds"),
    ("y-inf", "full", _replace("ycoordinates", [-np.inf, 0.0, 1.0]), "ycoordinates holds"),
    ("y-backwards", "full", _replace("ycoordinates", [1.0, 0.0, -1.0]), "not strictly increasing"),
    # 10^12 coordinates declared in a few KB (chunks never written): refused from the header,
    # not read whole (8 TB; 10^9 of them took 16 GB before the refusal)
    (
        "x-declared-huge",
        "full",
        _replace("xcoordinates", None, shape=(10**12,), dtype="f8", chunks=(10**6,)),
        "declare a grid of 3,000,000,000,000",
    ),
    ("config-list", "full", _attr("config", "- model\n- data\n"), "config is not a YAML mapping"),
    ("config-bad-yaml", "full", _attr("config", "model: [\n"), "config is not a YAML mapping"),
    ("config-number", "full", _attr("config", 5), "config is missing or not YAML text"),
    ("schema-unknown", "full", _attr("schema", "someone.else"), "which landscape does not know"),
    ("schema-stripped", "full", _del_attr("schema"), "neither a landscape surface file nor"),
    ("version-text", "full", _attr("schema_version", "one"), "schema_version is missing"),
    ("dims", "full", _attr("dims", 3), "attribute dims"),
    ("repeats-missing", "full", _attr("repeats", 3), "repeats/1 is missing"),
    ("analysis-deep", "full", _deep_analysis, "nested more than"),
    ("attr-deep", "full", _attr("data", "[" * 100_000 + "]" * 100_000), "attribute data is"),
    ("direction-text", "full", _directions_tensor_text, "must be an array of numbers"),
    ("schema-array", "full", _attr("schema", [1.0, 2.0]), "which landscape does not know"),
    ("data-list", "full", _attr("data", "[1, 2]"), "attribute data must be JSON text of a"),
    ("seed-text", "full", _attr("seed", "zero"), "attribute seed must be an integer"),
    ("cos-text", "full", _dir_attr("cos_theta_x", "abc"), "cos_theta_x must be a number"),
    ("method-array", "full", _dir_attr("method", [1.0, 2.0]), "attribute method must be text"),
    ("fingerprint-text", "seed", _fingerprint("not json"), "fingerprint must be 2 pair(s)"),
    ("fingerprint-short", "seed", _fingerprint("[[1.0, 2.0]]"), "fingerprint must be"),
    ("fingerprint-nan", "seed", _fingerprint("[[NaN, 1], [1, 2]]"), "fingerprint must be"),
]


def damaged_copy(folder: Path, source: Path, damage: Callable[[h5py.File], None]) -> Path:
    """A copy of a real surface as ``folder/s.h5``, damaged by ``damage`` through h5py."""
    path = folder / "s.h5"
    shutil.copy(source, path)
    with h5py.File(path, "r+") as f:
        damage(f)
    return path


@pytest.mark.parametrize(
    ("store", "damage", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_every_reader_refuses_a_malformed_file_in_one_line(
    tmp_path: Path,
    made: dict[str, object],
    store: str,
    damage: Callable[[h5py.File], None],
    says: str,
) -> None:
    path = damaged_copy(tmp_path, made[store], damage)
    before = path.read_bytes()
    commands = {
        "info": ["info", str(path)],
        "plot": ["plot", str(path), "--out", str(tmp_path / "plots")],
        "export": ["export", str(path), "--out", str(tmp_path / "s.npz")],
        "resume": [*made["command"], "--store-directions", store, "--out", str(path)],
        "curvature": ["curvature", str(path), "--samples", "8", "--quiet"],
    }
    for name, command in commands.items():
        line = one_error_line(*run(*command)[::2])
        # resuming a file of another schema says so, as for any file that is not ours
        assert says in line or (name == "resume" and "not a landscape surface" in line), line
    with pytest.raises(SurfaceFileError) as refused:
        landscape.load(path)
    assert says in str(refused.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]  # nothing written beside it


@pytest.mark.parametrize(
    ("store", "damage", "says"),
    [
        ("full", _directions_tensor_text, "holds object, not numbers"),
        ("seed", _fingerprint("not json"), "keeps its directions as their seed"),
    ],
    ids=["tensor-text", "fingerprint-text"],
)
def test_malformed_directions_given_to_compute_are_one_error(
    tmp_path: Path,
    made: dict[str, object],
    store: str,
    damage: Callable[[h5py.File], None],
    says: str,
) -> None:
    path = damaged_copy(tmp_path, made[store], damage)
    out = tmp_path / "new.h5"
    line = one_error_line(*run(*made["command"], "--directions", str(path), "--out", str(out))[::2])
    assert says in line and not out.exists()


def _directions_tensor_nan(f: h5py.File) -> None:
    name = next(iter(f["directions/x"]))
    f[f"directions/x/{name}"][0] = np.nan  # one NaN moves every point, the centre too, to NaN


def test_a_non_finite_direction_is_refused_by_compute_and_curvature(
    tmp_path: Path, made: dict[str, object]
) -> None:
    path = tmp_path / "s.h5"
    shutil.copy(made["full"], path)
    with h5py.File(path, "r+") as f:
        _directions_tensor_nan(f)
    out = tmp_path / "new.h5"
    for command in (
        [*made["command"], "--directions", str(path), "--out", str(out)],
        ["curvature", str(path), "--samples", "8", "--out", str(out), "--quiet"],
    ):
        line = one_error_line(*run(*command)[::2])
        assert "holds NaN or infinite values" in line, line
        assert not out.exists()


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "null"])
def test_a_stored_analysis_that_is_not_an_object_is_computed_anew(
    tmp_path: Path, made: dict[str, object], text: str
) -> None:
    path = tmp_path / "s.h5"
    shutil.copy(made["full"], path)
    with h5py.File(path, "r+") as f:
        ds = f["analysis/train_loss"]
        raw = np.zeros(ds.shape, dtype=np.uint8)
        raw[: len(text)] = np.frombuffer(text.encode(), dtype=np.uint8)
        ds[...] = raw
    code, out, err = run("info", str(path))
    assert code == 0 and "(computed from the values)" in out, err


def test_a_grid_its_readers_would_refuse_is_not_computed(
    tmp_path: Path, made: dict[str, object]
) -> None:
    out = tmp_path / "big.h5"
    command = [a for a in made["command"] if not a.startswith("--x=")]
    code, _, err = run(*command, "--x=-1e13:1e13:3", "--out", str(out))
    assert code == 2 and "coordinates are at most 1e+12 in size" in err and not out.exists()
