"""Numbers from a surface, checked on quadratic bowls whose answers follow from a formula."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from landscape.analysis import (
    AnalysisOptions,
    SurfaceAnalysis,
    analyse,
    format_analysis,
    store_analysis,
)
from landscape.cli import main
from landscape.errors import ConfigError
from landscape.store import read_surface
from landscape.surface import Surface

C = 0.5  # the bowl's floor


def rotation(degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def bowl_values(
    x: np.ndarray, y: np.ndarray, hessian: np.ndarray, shift=(0.0, 0.0), c: float = C
) -> np.ndarray:
    """f(p) = c + ½ (p − m)ᵀ H (p − m) at every grid point, values[i, j] at (x[i], y[j])."""
    a, b = np.meshgrid(x - shift[0], y - shift[1], indexing="ij")
    h = hessian
    return c + 0.5 * (h[0, 0] * a * a + 2 * h[0, 1] * a * b + h[1, 1] * b * b)


def as_surface(x, y, f, path: str = "bowl.h5") -> Surface:
    f = np.asarray(f, dtype=float)
    return Surface(path, x, y, {"train_loss": f}, np.isfinite(f))


def bowl(hessian, shift=(0.0, 0.0), n: int = 81, half: float = 1.0) -> Surface:
    x = y = np.linspace(-half, half, n)  # step 0.025 for n = 81: 0.2 and 0.3 are on the grid
    return as_surface(x, y, bowl_values(x, y, np.asarray(hessian, dtype=float), shift))


def corner_max(hessian: np.ndarray, eps: float, shift=(0.0, 0.0)) -> float:
    """max of the convex quadratic over the box |p_i| ≤ ε: at one of its four corners."""
    m = np.asarray(shift)
    values = [C + 0.5 * (p - m) @ hessian @ (p - m) for p in eps * np.array(list(_signs()))]
    return max(values)


def _signs():
    return [(1, 1), (1, -1), (-1, 1), (-1, -1)]


def keskar(box_max: float, f0: float) -> float:
    return 100.0 * (box_max - f0) / (1.0 + f0)


# --- 2-D bowls ---------------------------------------------------------------------------------


def test_axis_aligned_bowl() -> None:
    h = np.diag([8.0, 3.0])
    r = analyse(bowl(h), "train_loss")
    assert r.centre.exact and r.centre.at == (0.0, 0.0) and r.centre.value == pytest.approx(C)
    np.testing.assert_allclose(r.curvature.hessian, h, atol=1e-9)
    np.testing.assert_allclose(r.curvature.eigenvalues, [8.0, 3.0], atol=1e-9)
    np.testing.assert_allclose(r.curvature.gradient, [0.0, 0.0], atol=1e-9)
    assert r.curvature.r2 == pytest.approx(1.0) and r.curvature.rms < 1e-9
    assert r.curvature.radius == (0.25, 0.25) and r.curvature.points == 21 * 21
    # ε-sharpness: 100 · ½(h1 + h2)ε² / (1 + c), the rise at the box's corner
    assert r.sharpness.value == pytest.approx(100 * 0.5 * (8 + 3) * 0.04 / (1 + C))
    assert r.sharpness.points == 17 * 17 and not r.sharpness.clipped
    assert abs(r.sharpness.box_max_at[0]) == pytest.approx(0.2)
    # basin at c + 1: the ellipse ½ h_k p_k² ≤ 1, widths 2·sqrt(2/h_k), area π·2/sqrt(h1·h2)
    b = r.basin
    assert b.threshold == pytest.approx(C + 1.0) and b.rule == "centre + 1"
    assert b.width_x == pytest.approx(2 * math.sqrt(2 / 8), abs=1e-3)
    assert b.width_y == pytest.approx(2 * math.sqrt(2 / 3), abs=1e-3)
    assert b.extent_x[0] == pytest.approx(-b.extent_x[1])
    assert b.diameter == pytest.approx(2 * math.sqrt(2 / math.sqrt(24)), rel=0.02)
    assert not (b.width_x_lower_bound or b.width_y_lower_bound or b.area_lower_bound)
    assert r.minimum.value == pytest.approx(C) and r.minimum.at == (0.0, 0.0)
    assert r.minimum.distance == 0.0 and r.unavailable == {} and r.notes == []


def test_rotated_bowl() -> None:
    h = rotation(30) @ np.diag([8.0, 2.0]) @ rotation(30).T
    r = analyse(bowl(h), "train_loss", AnalysisOptions(epsilon=0.1, rise=0.5))
    np.testing.assert_allclose(r.curvature.hessian, h, atol=1e-9)
    np.testing.assert_allclose(r.curvature.eigenvalues, [8.0, 2.0], atol=1e-9)
    assert r.sharpness.value == pytest.approx(keskar(corner_max(h, 0.1), C))
    # along the axis lines through the centre f = c + ½ H_kk p², so the widths are 2·sqrt(2Δ/H_kk);
    # the ellipse's area is π·2Δ/sqrt(det H)
    b = r.basin
    assert b.width_x == pytest.approx(2 * math.sqrt(2 * 0.5 / h[0, 0]), abs=1e-3)
    assert b.width_y == pytest.approx(2 * math.sqrt(2 * 0.5 / h[1, 1]), abs=1e-3)
    assert b.diameter == pytest.approx(2 * math.sqrt(2 * 0.5 / math.sqrt(16.0)), rel=0.03)


def test_shifted_minimum() -> None:
    h = np.array([[4.0, 1.0], [1.0, 2.0]])
    m = np.array([0.3, -0.2])
    r = analyse(bowl(h, shift=m), "train_loss")
    f0 = C + 0.5 * m @ h @ m
    assert r.centre.value == pytest.approx(f0)
    assert r.minimum.at == pytest.approx((0.3, -0.2)) and r.minimum.value == pytest.approx(C)
    assert r.minimum.distance == pytest.approx(math.hypot(0.3, 0.2))
    assert r.minimum.below_centre == pytest.approx(f0 - C)
    # the fit about the centre: the same H, gradient H(0 − m)
    np.testing.assert_allclose(r.curvature.hessian, h, atol=1e-9)
    np.testing.assert_allclose(r.curvature.gradient, -h @ m, atol=1e-9)
    assert r.curvature.intercept == pytest.approx(f0)
    assert r.sharpness.value == pytest.approx(keskar(corner_max(h, 0.2, m), f0))


def test_basin_reaching_the_edge_is_a_lower_bound() -> None:
    r = analyse(bowl(np.diag([8.0, 1.0])), "train_loss")  # along y the basin is 2·sqrt(2) wide
    b = r.basin
    assert b.width_y == pytest.approx(2.0) and b.width_y_lower_bound and b.area_lower_bound
    assert b.width_x == pytest.approx(1.0, abs=1e-3) and not b.width_x_lower_bound
    text = "\n".join(format_analysis(r))
    assert "≥ 2 along y" in text and "lower bounds" in text


def test_basin_is_the_connected_region_only() -> None:
    """A second valley below the threshold, cut off by a ridge, is not part of the basin."""
    x = y = np.linspace(-1, 1, 41)
    f = bowl_values(x, y, np.diag([8.0, 8.0]))
    f[30:, :] = C  # a low plateau at x ≥ 0.5, beyond a ridge (f > c + 1 near x = 0.5)
    f[28:30, :] = 100.0
    r = analyse(as_surface(x, y, f), "train_loss")
    assert r.basin.extent_x[1] < 0.5 and not r.basin.area_lower_bound
    assert r.minimum.value == pytest.approx(C)


def test_threshold_given_and_below_the_centre() -> None:
    s = bowl(np.diag([8.0, 3.0]))
    r = analyse(s, "train_loss", AnalysisOptions(threshold=C + 0.25))
    assert r.basin.rule == "given"
    assert r.basin.width_x == pytest.approx(2 * math.sqrt(2 * 0.25 / 8), abs=1e-3)
    r = analyse(s, "train_loss", AnalysisOptions(threshold=C - 0.1))
    assert r.basin is None and "above the threshold" in r.unavailable["basin"]


# --- 1-D ---------------------------------------------------------------------------------------


def test_one_dimensional_parabola() -> None:
    x = np.linspace(-1, 1, 101)  # step 0.02
    f = C + 0.5 * 6.0 * x**2
    r = analyse(Surface("line.h5", x, None, {"train_loss": f}, np.ones(101, bool)), "train_loss")
    assert r.dims == 1 and r.centre.index == (50,)
    assert r.curvature.hessian[0][0] == pytest.approx(6.0)
    assert r.curvature.eigenvalues[0] == pytest.approx(6.0)
    assert r.sharpness.value == pytest.approx(keskar(C + 3.0 * 0.04, C))
    assert r.basin.width_x == pytest.approx(2 * math.sqrt(2 / 6), abs=1e-3)
    assert r.basin.width_y is None and r.basin.area is None
    text = "\n".join(format_analysis(r))
    assert "f'' = 6" in text and "y" not in text.split("basin:")[1].split("\n")[0]


def test_one_dimensional_three_points_interpolate() -> None:
    x = np.linspace(-1, 1, 3)
    r = analyse(as_surface(x, None, C + x**2), "train_loss")
    assert r.curvature.eigenvalues[0] == pytest.approx(2.0) and r.curvature.r2 is None
    assert "interpolates" in "\n".join(format_analysis(r))


# --- partial surfaces, missing centre, no zero -------------------------------------------------


def test_partial_surface_uses_only_computed_points() -> None:
    s = bowl(np.diag([8.0, 3.0]))
    f = s.values["train_loss"]
    f[64:, :] = np.nan  # not computed: x ≥ 0.6
    f[42, 42] = np.nan  # one point in the ε-box and the fit box
    s.done = np.isfinite(f)
    r = analyse(s, "train_loss")
    assert r.computed == int(np.isfinite(f).sum()) and r.total == 81 * 81
    np.testing.assert_allclose(r.curvature.hessian, np.diag([8.0, 3.0]), atol=1e-9)
    assert r.curvature.points == 21 * 21 - 1
    assert r.sharpness.missing == 1 and r.sharpness.points == 17 * 17 - 1
    assert r.basin.width_x == pytest.approx(1.0, abs=1e-3)  # the basin ends at x = 0.5
    f[45:, :] = np.nan  # now the basin runs into points not computed at x = 0.125
    r = analyse(s, "train_loss")
    assert r.basin.width_x_lower_bound and r.basin.area_lower_bound
    assert r.basin.extent_x[1] == pytest.approx(0.1)


def test_centre_not_computed() -> None:
    s = bowl(np.diag([8.0, 3.0]))
    s.values["train_loss"][40, 40] = np.nan
    r = analyse(s, "train_loss")
    assert r.sharpness is None and r.basin is None and r.centre.value is None
    assert "not computed" in r.unavailable["sharpness"] and "not computed" in r.unavailable["basin"]
    np.testing.assert_allclose(r.curvature.hessian, np.diag([8.0, 3.0]), atol=1e-9)
    assert r.minimum.below_centre is None
    text = "\n".join(format_analysis(r))
    assert "sharpness:   not available (the centre (x=0, y=0) is not computed)" in text


def test_grid_without_a_zero_uses_the_nearest_point() -> None:
    x = np.linspace(-1, 1, 40)
    y = np.linspace(-0.5, 1.5, 41)  # 0 is on this axis
    s = as_surface(x, y, bowl_values(x, y, np.diag([2.0, 2.0]), shift=(x[24], 0.5)))
    r = analyse(s, "train_loss")
    assert not r.centre.exact and r.centre.index == (20, 10) and r.centre.at[1] == 0.0
    assert abs(r.centre.at[0]) == pytest.approx(1 / 39)  # half a step from 0
    assert "no point at the origin" in r.notes[0]
    assert r.minimum.at == pytest.approx((x[24], 0.5))
    assert r.minimum.distance == pytest.approx(math.hypot(x[24] - x[20], 0.5))


def test_nothing_computed_and_too_few_points() -> None:
    x = y = np.linspace(-1, 1, 5)
    r = analyse(as_surface(x, y, np.full((5, 5), np.nan)), "train_loss")
    assert set(r.unavailable) == {"sharpness", "curvature", "basin", "minimum", "topology"}
    f = np.full((5, 5), np.nan)
    f[2, :] = C  # one row only: no curvature across it
    r = analyse(as_surface(x, y, f), "train_loss")
    assert r.curvature is None and "do not determine a quadratic" in r.unavailable["curvature"]


def test_options_are_checked_and_round_trip() -> None:
    for bad in ({"epsilon": 0.0}, {"epsilon": -1.0}, {"fit_radius": float("nan")}):
        with pytest.raises(ConfigError, match="positive"):
            AnalysisOptions(**bad)
    r = analyse(bowl(rotation(20) @ np.diag([5.0, 1.0]) @ rotation(20).T), "train_loss")
    back = SurfaceAnalysis.from_dict(json.loads(r.to_json()))
    assert back == r
    with pytest.raises(ValueError):
        SurfaceAnalysis.from_dict({"analysis_version": 99})


# --- files: stored analysis, info, compute -----------------------------------------------------


def write_bowl_file(path: Path, hessian: np.ndarray, *, complete: bool = True) -> Path:
    """A real surface file of the bowl, written through the store as a run would (the run
    has the store analyse the file when it completes it)."""
    from landscape.config import ComputeConfig
    from landscape.directions import DirectionSet, summarize
    from landscape.grid import coordinates
    from landscape.store import RunHeader, SurfaceStore

    cfg = ComputeConfig.from_dict(
        {
            "model": {"name": "mlp"},
            "data": {"name": "digits"},
            "out": str(path),
            "grid": {"x": "-1:1:41", "y": "-1:1:41"},
        }
    )
    x, y = coordinates(cfg.grid)
    d = [OrderedDict(w=torch.ones(2, 3)), OrderedDict(w=-torch.ones(2, 3))]
    ds = DirectionSet("filter-norm", d, {"seed": 0})
    header = RunHeader(cfg, x, y, ds, summarize(ds), "abc", {"weights_sha256": "w"})
    f = bowl_values(x, y, hessian).ravel()
    with SurfaceStore.open_for_run(path, header, on_complete=store_analysis) as store:
        # partial: the first 100 points in row order (not the run's coarse-to-fine order, which
        # would compute the centre among its first 9)
        todo = sorted(int(k) for k in store.pending())[: None if complete else 100]
        store.write_block(todo, f[todo].tolist(), [0.5] * len(todo))
    return path


def info(*args: str) -> str:
    result = CliRunner().invoke(main, ["info", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_analysis_stored_in_the_file_and_shown_by_info(tmp_path: Path) -> None:
    h = np.diag([8.0, 3.0])
    path = write_bowl_file(tmp_path / "bowl.h5", h)
    with h5py.File(path, "r+") as f:
        before = f["train_loss"][()]
        # the complete store had it written when it closed, into the space reserved at creation
        stored = json.loads(bytes(f["analysis/train_loss"][()]).rstrip(b"\0"))
        f["analysis/train_loss"][...] = 0  # as if it had not been written yet
    assert store_analysis(path) is True
    assert store_analysis(path) is False  # the same analysis: nothing rewritten
    s = read_surface(path)
    np.testing.assert_array_equal(s.values["train_loss"], before)
    assert s.done.all() and s.attrs["schema_version"] == 1
    with h5py.File(path) as f:
        assert json.loads(bytes(f["analysis/train_loss"][()]).rstrip(b"\0")) == stored
    assert (
        stored == s.stored_analysis["train_loss"] == json.loads(analyse(s, "train_loss").to_json())
    )
    np.testing.assert_allclose(stored["curvature"]["hessian"], h, atol=1e-9)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind

    text = info(str(path))
    assert "analysis:    train_loss, centre (x=0, y=0) = 0.5 (stored in the file)" in text
    assert "sharpness:   " in text and "basin:       at 1.5 (centre + 1)" in text
    assert "curvature:   eigenvalues 8, 3" in text
    text = info(str(path), "--epsilon", "0.1", "--threshold=+0.25")
    assert "(computed from the values)" in text and "ε=0.1" in text and "centre + 0.25" in text
    report = json.loads(info(str(path), "--json", "--threshold", "0.75"))
    basin = report["analysis"]["train_loss"]["basin"]
    assert basin["threshold"] == 0.75 and basin["rule"] == "given"
    assert report["stored"] == {"train_loss": False}


def test_partial_file_gets_no_stored_analysis_but_info_computes_it(tmp_path: Path) -> None:
    path = write_bowl_file(tmp_path / "part.h5", np.diag([8.0, 3.0]), complete=False)
    assert store_analysis(path) is False
    with h5py.File(path) as f:
        assert not f["analysis/train_loss"][()].any()  # reserved, not written
    assert read_surface(path).stored_analysis == {}
    text = info(str(path))
    assert "100 of 1681 points" in text and "(computed from the values)" in text
    assert "sharpness:   not available (the centre (x=0, y=0) is not computed)" in text


def test_analysis_of_earlier_files_is_read_from_attributes(tmp_path: Path) -> None:
    """Files written before the analysis had reserved space hold it as JSON attributes; storing
    it into such a file still works (by a copy renamed into place)."""
    path = write_bowl_file(tmp_path / "old.h5", np.diag([8.0, 3.0]))
    with h5py.File(path, "r+") as f:
        text = bytes(f["analysis/train_loss"][()]).rstrip(b"\0").decode()
        del f["analysis"]
        f.create_group("analysis").attrs["train_loss"] = text
    assert read_surface(path).stored_analysis["train_loss"] == json.loads(text)
    with h5py.File(path, "r+") as f:
        del f["analysis"]
    assert store_analysis(path) is True
    assert read_surface(path).stored_analysis["train_loss"] == json.loads(text)
    assert not list(tmp_path.glob(".*"))


def test_info_bad_threshold_is_a_usage_error(tmp_path: Path) -> None:
    path = write_bowl_file(tmp_path / "bowl.h5", np.eye(2))
    result = CliRunner().invoke(main, ["info", str(path), "--threshold", "low"])
    assert result.exit_code == 2 and "neither a loss value nor +DELTA" in result.stderr


def test_info_on_li_reference_files(li_fixture: Path) -> None:
    text = info(str(li_fixture / "surface_2d_11x11.h5"))
    assert "analysis:    train_loss, centre (x=0, y=0)" in text
    assert "over 9 computed points in the box" in text  # ε = 0.2 on a 0.2 grid: 3 × 3
    assert "curvature:   eigenvalues" in text and "minimum:     " in text
    text = info(str(li_fixture / "surface_1d_11.h5"))
    assert "curvature:   f'' = " in text


def test_compute_run_stores_its_analysis(tmp_path: Path, tiny_npz: Path) -> None:
    from landscape.config import ComputeConfig
    from landscape.runs.surface import run_compute

    cfg = ComputeConfig.from_dict(
        {
            "model": {
                "name": "mlp",  # seeded initial weights: no checkpoint to train first
                "args": {"in_features": 6, "hidden": 8, "num_classes": 3},
            },
            "data": {"name": f"npz:{tiny_npz}"},
            "grid": {"x": "-1:1:5", "y": "-1:1:5"},
            "eval": {"device": "cpu", "engine": "reference"},
            "out": str(tmp_path / "s.h5"),
        }
    )
    result = run_compute(cfg)
    s = read_surface(result.path)
    assert s.done.all() and set(s.stored_analysis) == {"train_loss"}
    assert s.stored_analysis["train_loss"] == json.loads(analyse(s, "train_loss").to_json())
    assert s.stored_analysis["train_loss"]["centre"]["value"] == pytest.approx(
        float(s.values["train_loss"][2, 2])
    )
    assert "(stored in the file)" in info(result.path)


def test_a_basin_narrower_than_a_cell_gets_a_diameter_as_fine_as_its_widths() -> None:
    """Only the centre of an 11 × 11 grid (spacing 0.2) is below the threshold: counting whole
    cells gave a diameter of one cell (0.2257), coarser than the interpolated widths. The area
    comes from the same linear interpolation as the widths, so the diameter lies between them."""
    x = y = np.linspace(-1.0, 1.0, 11)
    f = bowl_values(x, y, np.diag([400.0, 8000.0]))  # half-widths by interpolation ≪ 0.2
    b = analyse(as_surface(x, y, f), "train_loss").basin
    assert b.points == 1 and b.width_x < 0.2 and b.width_y < b.width_x
    assert b.width_y <= b.diameter <= b.width_x
    # on a fine grid the same bowl's diameter is the ellipse's, 2·sqrt(2/sqrt(h1·h2))
    fine = np.linspace(-0.2, 0.2, 201)
    b = analyse(
        as_surface(fine, fine, bowl_values(fine, fine, np.diag([400.0, 8000.0]))), "train_loss"
    ).basin
    assert b.diameter == pytest.approx(2 * math.sqrt(2 / math.sqrt(400.0 * 8000.0)), rel=0.02)


def test_the_bilinear_interpolant_is_scipys() -> None:
    from scipy.interpolate import RegularGridInterpolator

    from landscape.analysis import bilinear

    rng = np.random.default_rng(3)
    x, y = np.sort(rng.uniform(-1, 1, 7)), np.sort(rng.uniform(-2, 2, 5))
    f = rng.normal(size=(7, 5))
    px, py = rng.uniform(x[0], x[-1], 40), np.concatenate([y, rng.uniform(y[0], y[-1], 9)])
    want = RegularGridInterpolator((x, y), f)(np.stack(np.meshgrid(px, py, indexing="ij"), -1))
    np.testing.assert_allclose(bilinear(x, y, f, px, py), want, rtol=1e-12, atol=1e-12)


def _serpentine(n: int) -> np.ndarray:
    """A one-cell-wide corridor that zig-zags down the array: a region ``n`` turns deep."""
    m = np.zeros((n, n), dtype=bool)
    m[::2, :] = True  # the even rows, joined at alternate ends
    m[1::4, -1] = True
    m[3::4, 0] = True
    return m


def test_the_basin_region_is_scipys_connected_component() -> None:
    """The region around the centre and its rim against scipy.ndimage (4-neighbour labels and a
    cross-shaped dilation) on random masks of every density, 1-D and 2-D, and a serpentine."""
    from scipy import ndimage

    from landscape.analysis import _neighbours, component

    rng = np.random.default_rng(0)
    masks = [rng.random((31, 17)) < p for p in (0.3, 0.5, 0.6, 0.8, 1.0)]
    masks += [rng.random(40) < 0.7, _serpentine(23), np.zeros((4, 5), dtype=bool)]
    for mask in masks:
        labels, _ = ndimage.label(mask)
        for seed in [tuple(int(rng.integers(0, s)) for s in mask.shape) for _ in range(6)]:
            want = (labels == labels[seed]) & mask
            np.testing.assert_array_equal(component(mask, seed), want)
        region = labels == (labels.max() if labels.max() else 0)
        rim = ndimage.binary_dilation(region) & ~region
        np.testing.assert_array_equal(_neighbours(region), rim)
    corridor = _serpentine(23)
    assert component(corridor, (0, 0)).sum() == corridor.sum()  # reached to its far end
