"""The surface file: round trip, refusal, atomic creation, and survival of SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape.config import ComputeConfig
from landscape.directions import DirectionSet, summarize
from landscape.errors import ConfigError, SurfaceFileError
from landscape.store import RunHeader, SurfaceStore, read_surface


def header(
    out: Path, *, seed: int = 0, x: str = "-1:1:5", y: str | None = "-1:1:3", weights: str = "w0"
) -> RunHeader:
    cfg = ComputeConfig.from_dict(
        {
            "model": {"name": "mlp"},
            "data": {"name": "digits"},
            "out": str(out),
            "direction": {"seed": seed},
            "grid": {"x": x, "y": y},
        }
    )
    from landscape.grid import coordinates

    xs, ys = coordinates(cfg.grid)
    d = [OrderedDict(w=torch.ones(2, 3), b=torch.zeros(2))]
    if y is not None:
        d.append(OrderedDict(w=-torch.ones(2, 3), b=torch.zeros(2)))
    ds = DirectionSet("filter-norm", d, {"seed": seed})
    return RunHeader(
        cfg, xs, ys, ds, summarize(ds), "abc", {"weights_sha256": weights, "data": {"n": 3}}
    )


def test_round_trip_orientation_and_schema(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    h = header(out)
    with SurfaceStore.open_for_run(out, h) as store:
        assert store.shape == (5, 3) and len(store.pending()) == 15
        # value at flat k = 10*i + j, so orientation errors show
        idx = [int(k) for k in store.pending()]
        store.write_block(idx, [10 * (k // 3) + k % 3 for k in idx], [0.5] * 15)
    s = read_surface(out)
    assert s.shape == (5, 3) and s.done.all()
    i, j = 3, 2
    assert s.values["train_loss"][i, j] == 10 * i + j
    assert s.attrs["schema"] == "landscape.surface" and s.attrs["schema_version"] == 1
    for key in (
        "config",
        "landscape_version",
        "torch_version",
        "created",
        "checkpoint_sha256",
        "direction",
        "seed",
        "dims",
    ):
        assert key in s.attrs, key
    assert s.direction_attrs["method"] == "filter-norm"
    assert s.direction_attrs["cosine"] == pytest.approx(-1.0)
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["directions/x/w"][()], np.ones((2, 3)))
        assert f["train_loss"].dtype == np.float64 and f["done"].dtype == bool


def test_resume_keeps_done_points(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    with SurfaceStore.open_for_run(out, header(out)) as store:
        store.write_block([0, 4], [1.0, 2.0], [1.0, 1.0])
    with SurfaceStore.open_for_run(out, header(out)) as store:
        assert store.resumed
        assert 0 not in store.pending() and 4 not in store.pending() and len(store.pending()) == 13


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": 1}, "direction.seed: 0 there, 1 now"),
        ({"x": "-2:2:5"}, "grid.x"),
        ({"weights": "w1"}, "other weights"),
    ],
)
def test_other_config_is_refused_and_file_kept(tmp_path: Path, change: dict, message: str) -> None:
    out = tmp_path / "s.h5"
    with SurfaceStore.open_for_run(out, header(out)) as store:
        store.write_block([0], [1.0], [1.0])
    before = out.read_bytes()
    with pytest.raises(SurfaceFileError, match=message):
        SurfaceStore.open_for_run(out, header(out, **change))
    assert out.read_bytes() == before


def test_overwrite_replaces_only_once_complete(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    with SurfaceStore.open_for_run(out, header(out)) as store:
        store.write_block([0], [1.0], [1.0])
    old = out.read_bytes()
    with SurfaceStore.open_for_run(out, header(out, seed=2), overwrite=True) as store:
        assert not store.resumed and len(store.pending()) == 15
        store.write_block([0, 1], [2.0, 2.0], [1.0, 1.0])  # then the run is stopped
    assert out.read_bytes() == old  # the old file is untouched until the new one is complete
    partial = tmp_path / ".s.h5.partial"
    assert read_surface(partial).attrs["seed"] == 2
    with SurfaceStore.open_for_run(out, header(out, seed=2), overwrite=True) as store:
        assert store.resumed and len(store.pending()) == 13  # the same --overwrite run resumes
        rest = [int(k) for k in store.pending()]
        store.write_block(rest, [3.0] * 13, [1.0] * 13)
    s = read_surface(out)
    assert s.attrs["seed"] == 2 and s.done.all() and s.values["train_loss"][0, 0] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]  # no partial, lock or temp


def test_foreign_files_refused(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    out.write_text("not hdf5")
    with pytest.raises(SurfaceFileError, match="not a readable HDF5 file"):
        SurfaceStore.open_for_run(out, header(out))
    assert out.read_text() == "not hdf5"
    other = tmp_path / "o.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1]
    with pytest.raises(SurfaceFileError, match="not a landscape surface file"):
        SurfaceStore.open_for_run(other, header(other))
    with pytest.raises(SurfaceFileError, match="neither a landscape surface file nor"):
        read_surface(other)
    with pytest.raises(ConfigError, match=r"output folder .* does not exist"):
        SurfaceStore.open_for_run(tmp_path / "nope" / "s.h5", header(tmp_path / "nope" / "s.h5"))


def test_reads_li_reference_files(li_fixture: Path) -> None:
    s2 = read_surface(li_fixture / "surface_2d_11x11.h5")
    with h5py.File(li_fixture / "surface_2d_11x11.h5") as f:
        raw_loss, raw_acc = f["train_loss"][()], f["train_acc"][()]
    assert s2.source_format == "li2018" and s2.shape == (11, 11) and s2.done.all()
    # theirs: element (i, j) at (x[j], y[i]); ours: (i, j) at (x[i], y[j])
    assert s2.values["train_loss"][2, 7] == raw_loss[7, 2]
    assert s2.values["train_acc"][2, 7] == pytest.approx(raw_acc[7, 2] / 100)
    assert any("transposed" in n for n in s2.notes)
    s1 = read_surface(li_fixture / "surface_1d_11.h5")
    assert s1.dims == 1 and s1.values["train_loss"].shape == (11,)


def test_reads_li_files_of_non_square_grids(tmp_path: Path) -> None:
    """As their code fills one: ``losses.ravel()[k]`` is the point ``meshgrid(x, y)`` gives
    at k, i.e. ``(x[k % nx], y[k // nx])``, in an array declared ``(nx, ny)``."""
    x, y = np.linspace(-1, 1, 4), np.linspace(-0.5, 0.5, 3)
    losses = -np.ones((4, 3))
    xs, ys = np.meshgrid(x, y)
    for k, (a, b) in enumerate(zip(xs.ravel(), ys.ravel(), strict=True)):
        losses.ravel()[k] = 10 * a + b  # the loss at (a, b)
    path = tmp_path / "li.h5"
    with h5py.File(path, "w") as f:
        f["xcoordinates"], f["ycoordinates"], f["train_loss"] = x, y, losses
    s = read_surface(path)
    expected = 10 * x[:, None] + y[None, :]  # ours: [i, j] at (x[i], y[j])
    np.testing.assert_allclose(s.values["train_loss"], expected, rtol=0, atol=1e-15)


WRITER = r"""
import sys, numpy as np
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_store import header
from landscape.store import SurfaceStore
out = Path(sys.argv[1])
with SurfaceStore.open_for_run(out, header(out, x="-1:1:60", y="-1:1:50")) as store:
    pending = store.pending()
    for s in range(0, len(pending), 7):
        idx = [int(k) for k in pending[s:s + 7]]
        store.write_block(idx, [float(k) for k in idx], [k / 3000 for k in idx])
        print(len(idx), flush=True)
"""


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_a_consistent_file(tmp_path: Path) -> None:
    """Kill the writer at random moments; the file always opens and done points hold their value."""
    out = tmp_path / "k.h5"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(out), str(Path(__file__).parent)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        if proc.stdout.readline():  # wait until it writes, then kill mid-stream
            time.sleep(float(rng.uniform(0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        s = read_surface(out)
        flat = s.values["train_loss"].reshape(-1)
        done = np.flatnonzero(s.done.reshape(-1))
        np.testing.assert_array_equal(flat[done], done.astype(float))
        if s.done.all():
            break
    assert kills >= 3


def test_blocks_in_any_order_land_at_their_points(tmp_path: Path) -> None:
    """Runs of consecutive points are written as slices; gaps, row ends and shuffles too."""
    out = tmp_path / "s.h5"
    rng = np.random.default_rng(0)
    with SurfaceStore.open_for_run(out, header(out, x="-1:1:6", y="-1:1:7")) as store:
        order = rng.permutation(42)
        for block in (sorted(order[:17]), list(order[17:30]), sorted(order[30:])):
            store.write_block(
                [int(k) for k in block], [float(k) for k in block], [k / 42 for k in block]
            )
    s = read_surface(out)
    assert s.done.all()
    np.testing.assert_array_equal(s.values["train_loss"].reshape(-1), np.arange(42.0))
    np.testing.assert_allclose(s.values["train_acc"].reshape(-1), np.arange(42) / 42)
