"""Topology of a surface: counts, positions and persistences on surfaces whose topology is known,
gudhi's persistence pairs against our merge tree, the noise test, and the analysis/info/plot
integration on a real surface."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.analysis import SurfaceAnalysis, analyse
from landscape.errors import ConfigError
from landscape.surface import Surface
from landscape.topology import (
    MissingExtraError,
    grid_topology,
    merge_tree,
    persistence_pairs,
)

pytest.importorskip("gudhi")


def grid(n: int = 41, half: float = 1.0) -> np.ndarray:
    return np.linspace(-half, half, n)


def gaussian_wells(wells: list[tuple[tuple[float, float], float]], w: float = 0.1) -> np.ndarray:
    """f(p) = −Σ d_i exp(−|p − c_i|² / 2w²) on the 41 × 41 grid over [−1, 1]²."""
    a, b = np.meshgrid(grid(), grid(), indexing="ij")
    f = np.zeros_like(a)
    for (cx, cy), depth in wells:
        f -= depth * np.exp(-((a - cx) ** 2 + (b - cy) ** 2) / (2 * w * w))
    return f


def double_well(x: np.ndarray) -> np.ndarray:
    """(x² − 1)² + 0.3x³: f'(x) = x(4x² + 0.9x − 4), so a local maximum at exactly x = 0 (f = 1)
    between a deep well near x = −1.1 and a shallower one near x = 0.9."""
    return (x * x - 1) ** 2 + 0.3 * x**3


def h0_pairs_of_tree(f: np.ndarray) -> list[tuple[float, float]]:
    tree = merge_tree(f)
    return sorted((m.value, m.saddle_value or math.inf) for m in tree.minima)


def h0_pairs_of_gudhi(f: np.ndarray) -> list[tuple[float, float]]:
    return sorted((b, d) for k, b, d in persistence_pairs(f) if k == 0)


# --- known topology -----------------------------------------------------------------------------


def test_a_bowl_has_one_minimum_and_it_is_significant() -> None:
    a, b = np.meshgrid(grid(), grid(), indexing="ij")
    f = 0.5 + 2 * a * a + b * b
    t = grid_topology(f, [grid(), grid()], np.full(f.shape, 0.01))
    assert (t.total_minima, t.significant_minima) == (1, 1)
    (m,) = t.minima
    assert m.at == (0.0, 0.0) and m.value == 0.5 and m.persistence == math.inf
    assert m.basin_points == f.size and m.saddle_value is None and m.merges_into is None
    assert t.smad == 0.0 and t.largest_persistence is None  # Landscaper: no branching, SMAD 0
    assert t.diagram == ((0, 0.5, math.inf),)


def test_sums_of_gaussian_wells_give_their_count_positions_and_depths() -> None:
    wells = [((-0.5, -0.5), 1.0), ((0.5, 0.5), 0.6), ((-0.5, 0.5), 0.3)]
    f = gaussian_wells(wells)
    t = grid_topology(f, [grid(), grid()])
    assert t.total_minima == 3 == t.significant_minima
    got = sorted(t.minima, key=lambda m: m.id)  # id: rank by depth, as the wells are listed
    for m, ((cx, cy), depth) in zip(got, wells, strict=True):
        assert m.at == pytest.approx((cx, cy), abs=1e-12)
        assert m.value == pytest.approx(-depth, abs=1e-6)
    # the wells barely overlap: each shallower one merges at the background level, ~0
    assert got[0].persistence == math.inf
    assert got[1].persistence == pytest.approx(0.6, abs=1e-3)
    assert got[2].persistence == pytest.approx(0.3, abs=1e-3)
    assert got[1].merges_into == 0 and got[2].merges_into == 0
    assert t.largest_persistence == pytest.approx(0.6, abs=1e-3)


def test_double_well_persistence_is_the_saddle_minus_the_shallow_minimum_exactly() -> None:
    x = grid(81, 2.0)  # step 0.05: x = 0, the saddle, is on the grid
    f = double_well(x)
    t = grid_topology(f, [x])
    assert t.total_minima == 2
    deep, shallow = sorted(t.minima, key=lambda m: m.id)
    right = x > 0
    assert shallow.value == f[right].min() and shallow.at == (float(x[right][f[right].argmin()]),)
    assert shallow.saddle_at == (0.0,) and shallow.saddle_value == f[40] == 1.0
    assert shallow.persistence == 1.0 - f[right].min()  # exactly, on the grid's values
    assert deep.value == f.min() and deep.at[0] < 0
    # its basin just before the saddle: the points right of x = 0 below the saddle's value
    assert shallow.basin_points == int((right & (f < 1.0)).sum()) == 25
    # SMAD (Landscaper): both leaves end at the one saddle
    assert t.smad == pytest.approx(((1.0 - f.min()) + (1.0 - f[right].min())) / 2, abs=1e-15)
    assert t.smad_normalized == pytest.approx(t.smad / (f.max() - f.min()))


def test_double_well_in_two_and_three_dimensions() -> None:
    x = grid(41, 2.0)
    for dims in (2, 3):
        p = np.meshgrid(*[x] * dims, indexing="ij")
        f = double_well(p[0]) + sum(q * q for q in p[1:])
        t = grid_topology(f, [x] * dims)
        assert t.total_minima == 2 and t.dims == dims
        shallow = max(t.minima, key=lambda m: m.id)
        assert shallow.saddle_at == (0.0,) * dims and shallow.saddle_value == 1.0
        right = f[x > 0].min()
        assert shallow.persistence == 1.0 - right
        assert shallow.at[1:] == (0.0,) * (dims - 1)
        assert h0_pairs_of_tree(f) == h0_pairs_of_gudhi(f)


def test_a_ring_valley_has_one_loop_in_gudhis_diagram() -> None:
    a, b = np.meshgrid(grid(), grid(), indexing="ij")
    f = (np.hypot(a, b) - 0.6) ** 2 + 0.01 * a  # a circular valley, tilted: one minimum, one loop
    t = grid_topology(f, [grid(), grid()])
    loops = [p for p in t.diagram if p[0] == 1]
    assert t.diagram_counts[1] == len(loops) >= 1
    longest = max(loops, key=lambda p: p[2] - p[1])
    assert longest[2] == pytest.approx(f[20, 20])  # the loop fills in at the hump's top
    assert longest[2] - longest[1] > 0.3


# --- noise ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("se", "expected"), [(0.3, 1), (0.02, 2)])
def test_a_well_shallower_than_its_noise_is_not_counted(se: float, expected: int) -> None:
    x = grid(81, 2.0)
    f = double_well(x)
    shallow = 1.0 - f[x > 0].min()  # 0.7452
    t = grid_topology(f, [x], np.full(f.shape, se))
    noise = 2 * math.sqrt(se**2 + se**2)  # 2·sqrt(se_min² + se_saddle²)
    assert (noise > shallow) == (expected == 1)
    assert (t.total_minima, t.significant_minima, t.se_known) == (2, expected, True)
    m = max(t.minima, key=lambda m: m.id)
    assert m.noise == pytest.approx(noise) and m.significant == (expected == 2)
    assert min(t.minima, key=lambda m: m.id).significant  # the global minimum always counts


def test_the_noise_uses_the_standard_errors_at_the_minimum_and_at_the_saddle() -> None:
    x = grid(81, 2.0)
    f = double_well(x)
    se = np.zeros_like(f)
    shallow = max(grid_topology(f, [x]).minima, key=lambda m: m.id)
    se[40] = 0.35  # at the saddle only: 2·0.35 = 0.70 < 0.7452
    assert grid_topology(f, [x], se).significant_minima == 2
    se[list(x).index(shallow.at[0])] = 0.2  # and at the minimum: 2·sqrt(0.35² + 0.2²) = 0.806
    assert grid_topology(f, [x], se).significant_minima == 1


# --- gudhi against the merge tree --------------------------------------------------------------


@pytest.mark.parametrize("shape", [(60,), (13, 11), (7, 6, 5), (4, 4, 3, 3), (3, 3, 3, 3, 3)])
def test_gudhis_pairs_agree_with_the_merge_tree(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    for f in (rng.normal(size=shape), rng.integers(0, 4, size=shape).astype(float)):  # ties too
        assert h0_pairs_of_tree(f) == h0_pairs_of_gudhi(f)


def test_points_not_finite_never_join_a_sublevel_set() -> None:
    x = np.arange(7.0)
    f = np.array([0.0, 1.0, 2.0, np.nan, 2.0, 0.5, 3.0])  # the NaN cuts the line in two
    tree = merge_tree(f, [x])
    assert sorted(m.persistence for m in tree.minima) == [math.inf, math.inf]
    assert h0_pairs_of_tree(f) == h0_pairs_of_gudhi(f) == [(0.0, math.inf), (0.5, math.inf)]


def test_smad_is_landscapers_mean_gap_from_each_minimum_to_its_first_saddle() -> None:
    """1-D oracle: a minimum's leaf edge ends at the lower of the two maxima beside it (the
    grid's ends are no saddles), where its basin first meets another one."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        f = rng.normal(size=30)
        inner = [i for i in range(30) if all(f[i] < f[j] for j in (i - 1, i + 1) if 0 <= j < 30)]
        peaks = [i for i in range(1, 29) if f[i] > f[i - 1] and f[i] > f[i + 1]]
        gaps = []
        for i in inner:
            left = [f[p] for p in peaks if p < i]
            right = [f[p] for p in peaks if p > i]
            sides = ([left[-1]] if left else []) + ([right[0]] if right else [])
            gaps.append(min(sides) - f[i])
        tree = merge_tree(f)
        assert len(tree.minima) == len(inner)
        assert tree.smad == pytest.approx(np.mean(gaps) if len(inner) > 1 else 0.0)


def test_smad_by_hand_on_a_small_grid() -> None:
    f = np.array([[0.0, 2.0, 1.0], [3.0, 3.0, 3.0], [0.5, 3.0, 0.2]])
    # leaves: 1.0 meets 0.0 at 2 (gaps 2 and 1); 0.5 first meets at 3 (2.5), 0.2 at 3 (2.8);
    # 0.0 already met a basin at 2, so it adds no second gap
    assert merge_tree(f).smad == pytest.approx((2 + 1 + 2.5 + 2.8) / 4)


def test_bad_grids_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="1 to 5 dimensions"):
        grid_topology(np.zeros((2,) * 6))
    with pytest.raises(ConfigError, match="standard errors"):
        grid_topology(np.zeros((3, 3)), se=np.zeros(3))
    with pytest.raises(ConfigError, match="axes"):
        grid_topology(np.zeros((3, 3)), [np.arange(3), np.arange(4)])


def test_without_gudhi_a_named_error_and_the_analysis_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gudhi", None)  # import gudhi now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'landscape\[topology\]'"):
        grid_topology(np.zeros(5))
    f = double_well(grid(21, 2.0))
    r = analyse(
        Surface("w.h5", grid(21, 2.0), None, {"train_loss": f}, np.isfinite(f)), "train_loss"
    )
    assert r.topology is None and r.minimum is not None
    assert r.unavailable["topology"] == "needs gudhi: pip install 'landscape[topology]'"
    assert any("needs gudhi" in line for line in _format(r))


def _format(r: SurfaceAnalysis) -> list[str]:
    from landscape.analysis import format_analysis

    return format_analysis(r)


def test_the_topology_survives_the_json_round_trip() -> None:
    f = gaussian_wells([((-0.5, -0.5), 1.0), ((0.5, 0.5), 0.6)])
    s = Surface("g.h5", grid(), grid(), {"train_loss": f, "train_loss_se": 0 * f + 0.01}, f == f)
    r = analyse(s, "train_loss")
    back = SurfaceAnalysis.from_dict(json.loads(r.to_json()))
    assert back == r and back.topology.minima[0].persistence == math.inf


# --- a real surface: analysis, info, plot -------------------------------------------------------


@pytest.fixture
def real_surface(tmp_path: Path, tiny_npz: Path) -> Path:
    import landscape

    data = np.load(tiny_npz)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    xy = (torch.from_numpy(data["x"]), torch.from_numpy(data["y"]))
    out = tmp_path / "s.h5"
    landscape.compute(model, xy, x=(-1, 1, 9), y=(-1, 1, 9), out=out, progress=False)
    return out


def test_a_computed_surface_stores_its_topology_and_the_api_returns_it(real_surface: Path) -> None:
    import landscape

    s = landscape.load(str(real_surface))
    stored = s.stored_analysis["train_loss"]["topology"]
    topo = s.analysis()["train_loss"]["topology"]
    assert topo == stored  # read from /analysis, as written when the run completed
    assert isinstance(topo["significant_minima"], int)
    assert 1 <= topo["significant_minima"] <= topo["total_minima"] and topo["se_known"] is True
    direct = grid_topology(s.values["train_loss"], [s.x, s.y], s.values["train_loss_se"])
    assert topo["total_minima"] == direct.total_minima and topo["smad"] == direct.smad


def test_info_and_plot_show_the_topology(real_surface: Path, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "landscape"]
    info = subprocess.run([*cli, "info", str(real_surface)], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    line = next(ln for ln in info.stdout.splitlines() if ln.startswith("topology:"))
    assert "significant" in line and "minima" in line and "SMAD" in info.stdout
    out = tmp_path / "plots"
    done = subprocess.run(
        [*cli, "plot", str(real_surface), "--out", str(out), "--kind", "contour", "--kind",
         "barcode", "--kind", "mergetree", "--linear", "--dpi", "40"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["s_train_loss_barcode.png", "s_train_loss_contour_linear.png",
                     "s_train_loss_mergetree.png"]  # fmt: skip


def test_contours_mark_the_significant_minima(real_surface: Path) -> None:
    import landscape

    s = landscape.load(str(real_surface))
    figs = s.plot(kinds=["contour", "heatmap"], scales=["linear"])
    marks = [
        ln for ln in figs["train_loss_contour_linear"].axes[0].lines if ln.get_gid() == "minima"
    ]
    (mark,) = marks
    expected = [m.at for m in analyse(s, "train_loss").topology.significant()]
    assert list(zip(mark.get_xdata(), mark.get_ydata(), strict=True)) == expected
    heat = figs["train_loss_heatmap_linear"].axes[0].lines
    assert not [ln for ln in heat if ln.get_gid() == "minima"]


def test_plot_kind_barcode_without_gudhi_is_one_line_error(
    real_surface: Path, tmp_path: Path
) -> None:
    code = (
        "import sys; sys.modules['gudhi'] = None\n"
        "from landscape.cli import main\n"
        f"main(['plot', {str(real_surface)!r}, '--out', {str(tmp_path / 'p')!r}, '--kind', 'barcode'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: the topology of a surface needs gudhi: pip install 'landscape[topology]'"
    ]


def test_a_noisy_surface_lists_the_most_persistent_minima_and_fits_the_files_space() -> None:
    from landscape.store.surface import ANALYSIS_BYTES
    from landscape.topology import MAX_LISTED

    x = grid(51)
    f = np.random.default_rng(0).normal(size=(51, 51))  # hundreds of minima
    s = Surface("n.h5", x, x, {"train_loss": f, "train_loss_se": 0 * f + 0.01}, f == f)
    r = analyse(s, "train_loss")
    t = r.topology
    assert t.total_minima > 300 and len(t.minima) == MAX_LISTED
    every = merge_tree(f, [x, x], 0 * f + 0.01).minima
    assert t.significant_minima == sum(m.significant for m in every)
    cut = sorted((m.persistence for m in every), reverse=True)[MAX_LISTED - 1]
    assert all(m.persistence >= cut for m in t.minima)  # the most persistent are listed
    listed = {m.id for m in t.minima}
    assert all(m.merges_into is None or m.merges_into in listed for m in t.minima)
    assert len(r.to_json().encode()) < ANALYSIS_BYTES // 2  # stored whole, with room to spare


def test_info_says_when_no_standard_errors_were_stored() -> None:
    from landscape.analysis import format_analysis

    x = grid(41, 2.0)
    f = double_well(x)
    lines = format_analysis(
        analyse(Surface("w.h5", x, None, {"train_loss": f}, f == f), "train_loss")
    )
    i = next(k for k, line in enumerate(lines) if line.startswith("topology:"))
    assert lines[i] == (
        "topology:    basins: 2 minima (no standard errors stored: none tested for noise)"
    )
    assert lines[i + 1].strip().startswith("SMAD ")


# Landscaper's own numbers: LossLandscape.smad() (normalize=False, weighted=False) of Landscaper
# 1.3.1 run with topopy 1.0.4 and nglpy 1.1.7 on these grids, the loss passed as Landscaper lays it
# out ([y, x]: it pairs loss.flatten() with np.meshgrid's default "xy" order). topopy computes in
# float32, hence the tolerance. Both counted one saddle–minimum pair per minimum (45 and 4).
LANDSCAPER_SMAD = {"noise 15 x 12": (0.7911948342057359, 45), "four wells": (0.6441160812973976, 4)}


def test_smad_equals_landscapers_on_shared_grids() -> None:
    f = np.random.default_rng(7).normal(size=(15, 12))
    noise = grid_topology(f, [np.linspace(-1, 1, 15), np.linspace(-0.5, 0.5, 12)])
    x, y = grid(41), grid(31)
    a, b = np.meshgrid(x, y, indexing="ij")
    f = 2 + 0.2 * (a**2 + b**2)
    for (cx, cy), depth in [
        ((0, 0), 1.5),
        ((0.6, 0.5), 0.8),
        ((-0.6, 0.4), 0.5),
        ((0.6, -0.5), 0.3),
    ]:
        f -= depth * np.exp(-((a - cx) ** 2 + (b - cy) ** 2) / (2 * 0.15**2))
    wells = grid_topology(f, [x, y])
    for t, name in ((noise, "noise 15 x 12"), (wells, "four wells")):
        smad, pairs = LANDSCAPER_SMAD[name]
        assert t.smad == pytest.approx(smad, rel=1e-6) and t.total_minima == pairs, name


def test_an_analysis_stored_without_gudhi_is_made_anew_once_gudhi_is_there(
    real_surface: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from landscape.analysis import stored_or_computed
    from landscape.store import read_surface, write_analysis

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "gudhi", None)
        without = analyse(read_surface(real_surface), "train_loss")
    assert without.topology is None
    write_analysis(real_surface, {"train_loss": without.to_json()})
    s = read_surface(real_surface)
    assert s.stored_analysis["train_loss"]["topology"] is None
    result, stored = stored_or_computed(s)["train_loss"]
    assert not stored and result.topology is not None


def test_barcode_of_a_grid_not_computed_is_one_error(tmp_path: Path) -> None:
    from landscape.errors import SurfaceFileError
    from landscape.plot.render import render_all

    x = grid(9)
    f = np.full((9, 9), np.nan)
    f[4, 4] = 1.0
    done = np.isfinite(f)
    with pytest.raises(SurfaceFileError, match="need every point of the grid computed"):
        render_all(Surface("p.h5", x, x, {"train_loss": f}, done), tmp_path, kinds=["barcode"])
    assert (
        analyse(Surface("p.h5", x, x, {"train_loss": f}, done), "train_loss").unavailable[
            "topology"
        ]
        == "1 of 81 points computed: it needs the whole grid"
    )
