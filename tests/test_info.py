"""``landscape info``: the methods' own figures, landmarks and trajectory extent, never a crash."""

from __future__ import annotations

import json

import numpy as np
import pytest

from landscape.info import format_info
from landscape.surface import Surface

X = np.linspace(-1.0, 1.0, 5)
Y = np.linspace(-0.5, 0.5, 3)


def surface(direction_attrs: dict, **extra) -> Surface:
    """A computed 5 x 3 surface with the given direction attributes (as the store reads them)."""
    loss = np.add.outer(X**2, Y**2)
    return Surface(
        path="/tmp/s.h5",
        x=X,
        y=Y,
        values={"train_loss": loss, "train_acc": 1.0 / (1.0 + loss)},
        done=np.ones(loss.shape, dtype=bool),
        attrs={"schema_version": 1},
        direction_attrs=direction_attrs,
        **extra,
    )


def line(text: str, head: str) -> str:
    """The one line of ``text`` that starts with ``head``."""
    found = [ln for ln in text.splitlines() if ln.startswith(head)]
    assert len(found) == 1, text
    return found[0]


def test_hessian_eigenvalues() -> None:
    attrs = {"method": "hessian", "eigenvalues": np.array([12.5, 2.5]), "hvps": 40}
    text = format_info(surface(attrs))
    assert line(text, "eigenvalues:") == "eigenvalues: λ1=12.5, λ2=2.5 (λ1/λ2=5)"
    assert "hvps=40" in text  # other figures are shown as stored


def test_pca_per_tensor_json_is_summarized() -> None:
    per_tensor = {"a.weight": [0.6, 0.3], "b.weight": [0.9, 0.05], "c.weight": [0.75, 0.1]}
    attrs = {
        "method": "pca",
        "pca_explained_variance": json.dumps(per_tensor),  # dicts are stored as JSON text
        "pca_explained_variance_total": np.array([0.7, 0.2]),
    }
    text = format_info(surface(attrs))
    lines = [ln for ln in text.splitlines() if ln.startswith("explained:")]
    assert lines == [
        "explained:   per tensor over 3 tensors: d1 mean 75.0% (min 60.0%), "
        "d2 mean 15.0% (min 5.0%) [pca_explained_variance]",
        "explained:   d1 70.0%, d2 20.0% (together 90.0%) [pca_explained_variance_total]",
    ]
    assert "a.weight" not in text


def test_trajectory_explained_variance_extent_and_sources() -> None:
    t = np.linspace(0.0, 1.0, 4)
    traj = {
        "x": np.array([1.5, 0.6, 0.2, 0.0]),
        "y": np.array([0.2, -0.1, 0.05, 0.0]),
        "labels": np.array([f"ep{i}.pt" for i in range(4)], dtype=object),
        "loss": 2.0 * (1 - t) + 0.1,
    }
    attrs = {
        "method": "trajectory",
        "explained_variance_ratio": np.array([0.8, 0.15]),
        "checkpoints": 4,
        "files": json.dumps([f"runs/ep{i}.pt" for i in range(4)]),
        "path_x_range": np.array([0.0, 1.5]),
        "path_y_range": np.array([-0.1, 0.2]),
        "suggested_x": "-0.375:1.88:31",
        "suggested_y": "-0.175:0.275:31",
    }
    text = format_info(surface(attrs, trajectory=traj))
    assert line(text, "explained:") == (
        "explained:   d1 80.0%, d2 15.0% (together 95.0%) [explained_variance_ratio]"
    )
    assert line(text, "trajectory:") == (
        "trajectory:  4 checkpoints (ep0.pt … ep3.pt), x in [0, 1.5], y in [-0.1, 0.2]"
    )
    assert "the path leaves the grid (--x [-1, 1]): widen" in text
    assert "a grid covering it: --x=-0.375:1.88:31 --y=-0.175:0.275:31" in text
    assert "loss along the path: first 2.1, last 0.1" in text
    assert line(text, "sources:") == (
        "sources:     4 files: runs/ep0.pt, runs/ep1.pt, runs/ep2.pt, runs/ep3.pt"
    )
    for key in ("path_x_range", "suggested_x", "checkpoints=", "files="):
        assert key not in text  # shown in words above, not again raw


def test_trajectory_inside_the_grid_and_from_attributes_only() -> None:
    traj = {"x": np.array([0.5, 0.0]), "y": np.array([0.2, 0.0])}
    text = format_info(surface({"method": "trajectory"}, trajectory=traj))
    assert line(text, "trajectory:") == "trajectory:  2 checkpoints, x in [0, 0.5], y in [0, 0.2]"
    assert "the grid covers the whole path" in text
    attrs = {"method": "trajectory", "checkpoints": 7, "path_x_range": np.array([-0.2, 0.1])}
    text = format_info(surface(attrs))
    assert line(text, "trajectory:") == "trajectory:  7 checkpoints, x in [-0.2, 0.1]"


def test_interpolation_landmarks_and_targets() -> None:
    marks = {"names": ["A", "B", "C"], "x": [0.0, 1.0, 0.42], "y": [0.0, 0.0, 0.91]}
    attrs = {
        "method": "interpolate",
        "targets": json.dumps(["b.pt", "c.pt"]),
        "landmarks": json.dumps(marks),
        "distance_ab": 3.25,
    }
    stored = {
        "names": np.array(marks["names"], dtype=object),
        "x": np.array(marks["x"]),
        "y": np.array(marks["y"]),
    }
    text = format_info(surface(attrs, landmarks=stored))
    assert line(text, "landmarks:") == (
        "landmarks:   A (x=0, y=0), B (x=1, y=0), C (x=0.42, y=0.91)"
    )
    assert line(text, "sources:") == "sources:     B=b.pt, C=c.pt [targets]"
    assert "distance_ab=3.25" in text and '"names"' not in text
    # 1-D: x only; from the JSON attribute when the landmarks group is missing
    one = {"method": "interpolate", "landmarks": json.dumps({"names": ["A", "B"], "x": [0, 1]})}
    assert line(format_info(surface(one)), "landmarks:") == "landmarks:   A (x=0), B (x=1)"


@pytest.mark.parametrize(
    "attrs, extra",
    [
        ({"method": "x", "eigenvalues": "not numbers", "norm_x": "abc", "cosine": None}, {}),
        ({"method": "x", "explained_variance": "{broken json", "landmarks": "[1, 2"}, {}),
        ({"method": "x", "pca_explained_variance": json.dumps({"a": "?", "b": [None]})}, {}),
        ({"method": "x", "files": json.dumps([1, 2]), "checkpoints": "many"}, {}),
        (
            {"method": "x", "zca_eps": json.dumps({"a": [1e-5, 2e-5]}), "blob": np.arange(99.0)},
            {"trajectory": {"x": np.array([np.nan]), "y": "zz"}, "landmarks": {"x": "bad"}},
        ),
        ({}, {"trajectory": {"x": [1.0, 2.0]}, "landmarks": {"names": ["A"]}}),
    ],
)
def test_malformed_attributes_never_crash(attrs: dict, extra: dict) -> None:
    text = format_info(surface(attrs, **extra))
    assert text.startswith("file:        /tmp/s.h5")
    assert all(len(ln) < 200 for ln in text.splitlines())


def test_unknown_attributes_are_shown_raw_and_short() -> None:
    attrs = {"method": "custom", "my_figure": 0.25, "table": json.dumps({"a": 1, "b": 2})}
    attrs["blob"] = np.arange(1000.0)
    text = format_info(surface(attrs))
    assert "my_figure=0.25" in text
    assert "table={2 entries}" in text
    blob = line(text.replace(" " * 13, ""), "blob=")
    assert "..." in blob and "999." in blob and len(blob) < 60


def test_data_of_one_set_is_not_called_the_split_asked_for(
    tmp_path, tiny_npz, tiny_mlp_ckpt
) -> None:
    from click.testing import CliRunner

    from landscape.cli import main

    out = tmp_path / "s.h5"
    result = CliRunner().invoke(main, [
        "compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
        "--model-arg", "num_classes=3", "--checkpoint", str(tiny_mlp_ckpt), "--data",
        f"npz:{tiny_npz}", "--split", "test", "--x=-1:1:3", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    info = CliRunner().invoke(main, ["info", str(out)])
    assert info.exit_code == 0, info.output
    # the npz file holds one set: the whole of it was evaluated, not a test split
    assert line(info.stdout, "data:").endswith("(one set, no splits, 40 samples)"), info.stdout
