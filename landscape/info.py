"""Human-readable summary of a surface file (``landscape info``)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np

from landscape import families, quantities
from landscape.analysis import (
    AnalysisOptions,
    SurfaceAnalysis,
    analyse,
    find_centre,
    format_analysis,
    stored_or_computed,
)
from landscape.config import AXIS_NAMES
from landscape.directions.base import alignment_warning
from landscape.memory import FRONTIER_PLACES
from landscape.store import stored_config
from landscape.store.codec import parsed as _parsed
from landscape.store.curvature import CurvatureMap
from landscape.store.values import SurfaceValues


def format_info(surface: SurfaceValues, options: AnalysisOptions | None = None) -> str:
    """Grid, completion, extremes of every quantity, the analysis of every loss, directions and
    provenance, one fact a line. ``options`` sets the analysis' ε, threshold and fit radius."""
    lines = [f"file:        {surface.path}", f"format:      {_format_name(surface)}"]
    lines.append(f"grid:        {_grid_text(surface)}")
    lines.append(f"done:        {_done_text(surface)}")
    view = surface.computed_view()
    if view is not surface:  # computed coarse to fine: the picture so far
        lines.append(f"{_PAD}{view.notes[-1].removeprefix('partial: ')}: `landscape plot` draws it")
    nonfinite = sum(
        int(np.sum(surface.done & ~np.isfinite(v)))
        for q, v in surface.values.items()
        if quantities.kind_of(q) == "loss"
    )
    if nonfinite:
        lines.append(f"non-finite:  {nonfinite} points have a NaN or infinite loss")
    lines.extend(_value_lines(surface))
    lines.extend(_perplexity_lines(surface))
    lines.extend(_noise_lines(surface))
    analyses = stored_or_computed(surface, options)
    for result, stored in analyses.values():
        lines.extend(format_analysis(result, stored=stored))
    first = {q: result for q, (result, _) in analyses.items()}
    lines.extend(_repeat_lines(surface, first, options))
    lines.extend(_direction_lines(surface))
    lines.extend(_provenance_lines(surface))
    lines.extend(f"note:        {n}" for n in surface.notes)
    return "\n".join(lines)


def summary_lines(surface: SurfaceValues) -> list[str]:
    """``info``'s facts in a few lines (a Surface's repr in Python and Jupyter): grid, points
    done, each quantity's extremes, the directions' method and the model and data."""
    lines = [f"grid:        {_grid_text(surface)}", f"done:        {_done_text(surface)}"]
    lines.extend(_value_lines(surface))
    lines.extend(_direction_lines(surface)[:1])
    if surface.source_format != "li2018":
        cfg = stored_config(surface) or {}
        data = _data_text(surface.attrs.get("data"), cfg)
        lines.append(f"model:       {_get(cfg, 'model', 'name')} on {data}")
    return lines


def _value_lines(surface: SurfaceValues) -> list[str]:
    return [f"{q + ':':<12} {_extremes(surface, v)}" for q, v in surface.values.items()]


def _format_name(s: SurfaceValues) -> str:
    if s.source_format == "li2018":
        return "Li et al. (2018) reference surface file"
    return f"landscape surface, schema version {s.attrs.get('schema_version')}"


def _grid_text(s: SurfaceValues) -> str:
    """``1-D, x in [..]``, ``2-D nx x ny, x in [..], y in [..]`` or ``3-D nx x ny x nz, ...``."""
    ranges = ", ".join(
        f"{n} in [{a[0]:g}, {a[-1]:g}] ({len(a)} points)"
        for n, a in zip(AXIS_NAMES, s.axes, strict=False)
    )
    if s.dims == 1:
        return f"1-D, {ranges}"
    return f"{s.dims}-D {' x '.join(str(len(a)) for a in s.axes)}, {ranges}"


def _where(s: SurfaceValues, flat: int) -> str:
    if s.y is None:
        return f"x={s.x[flat]:g}"
    index = np.unravel_index(flat, s.shape)
    at = ", ".join(f"{n}={a[i]:g}" for n, a, i in zip(AXIS_NAMES, s.axes, index, strict=False))
    return f"({at})"


def _extremes(s: SurfaceValues, v: np.ndarray) -> str:
    finite = np.isfinite(v)
    if not finite.any():
        return "no computed values"
    masked_min = np.where(finite, v, np.inf)
    masked_max = np.where(finite, v, -np.inf)
    lo, hi = int(np.argmin(masked_min)), int(np.argmax(masked_max))
    text = f"min {v.flat[lo]:.6g} at {_where(s, lo)}, max {v.flat[hi]:.6g} at {_where(s, hi)}"
    centre = _centre_index(s)
    if centre is not None and np.isfinite(v.flat[centre]):
        text += f", centre {v.flat[centre]:.6g}"
    return text


def _centre_index(s: SurfaceValues) -> int | None:
    """The flat index of the grid point at the origin (the trained weights), if on the grid."""
    zeros = [np.flatnonzero(np.isclose(a, 0.0, atol=1e-12)) for a in s.axes]
    if any(z.size == 0 for z in zeros):
        return None
    return int(np.ravel_multi_index(tuple(int(z[0]) for z in zeros), s.shape))


# --- repeats (--repeat R): does a feature survive another random direction? ----------------------


def _repeat_lines(
    s: SurfaceValues, first: dict[str, SurfaceAnalysis], options: AnalysisOptions | None = None
) -> list[str]:
    """Seeds and completion of the repeats; per loss, the mean surface's extremes, the spread
    over seeds (std, ~0 at the centre, which every repeat shares), how much each seed's overall
    range and rise around the centre vary, and each seed's analysis as mean ± std over seeds."""
    if not s.repeats:
        return []
    seeds = [s.attrs.get("seed", "?"), *(r.seed for r in s.repeats)]
    done = [int(s.done.sum()), *(int(r.done.sum()) for r in s.repeats)]
    out = [
        f"{'repeats:':<12} {s.repeat_count} surfaces, direction seeds "
        f"{', '.join(map(str, seeds))} (done {', '.join(map(str, done))} of {s.done.size} points)"
    ]
    for q in s.quantities("loss"):
        stack = s.stacked(q)  # (R, *grid)
        mean, std = s.repeat_mean_std(q)
        common = np.isfinite(mean)  # done, and finite, in every repeat
        if not common.any():
            out.append(f"{_PAD}{q}: no point is done in every repeat yet")
            continue
        out.append(f"{_PAD}{q} mean over seeds: {_extremes(s, mean)}")
        out.append(f"{_PAD}{q} spread (std over seeds): {_spread_text(s, std)}")
        out.append(f"{_PAD}{q} per seed: {_per_seed_text(s, stack, common)}")
        numbers = _per_seed_analysis(s, q, first[q], options)
        if numbers:
            out.append(f"{_PAD}{q} per seed: {numbers}")
    return out


def _per_seed_analysis(
    s: SurfaceValues, q: str, first: SurfaceAnalysis, options: AnalysisOptions | None
) -> str | None:
    """ε-sharpness, the fitted curvature's eigenvalues and the basin's size of every seed's
    surface, as mean ± std over seeds: the numbers a user quotes, and how much they owe to the
    directions drawn. ``first`` is repeat 0's analysis, already made for the block above."""
    others = (replace(s, values=r.values, done=r.done, repeats=[]) for r in s.repeats)
    results = [first, *(analyse(one, q, options) for one in others)]
    parts = []
    sharp = [r.sharpness.value for r in results if r.sharpness]
    if len(sharp) == len(results):
        parts.append(f"ε-sharpness {_mean_std(np.array(sharp))}")
    curv = [r.curvature.eigenvalues for r in results if r.curvature]
    if len(curv) == len(results):
        eig = np.array(curv)
        names = ["curvature"] if eig.shape[1] == 1 else ["largest curvature", "smallest"]
        parts += [f"{n} {_mean_std(eig[:, k])}" for k, n in enumerate(names)]
    size = [r.basin.diameter or r.basin.width_x for r in results if r.basin]
    if len(size) == len(results):
        label = "basin width" if s.dims == 1 else "basin diameter"
        parts.append(f"{label} {_mean_std(np.array(size))}")
    return ", ".join(parts) or None


def _spread_text(s: SurfaceValues, std: np.ndarray) -> str:
    """The std over seeds at the centre and its largest value, with where."""
    masked = np.where(np.isfinite(std), std, -np.inf)
    hi = int(np.argmax(masked))
    centre = _centre_index(s)
    known = centre is not None and np.isfinite(std.flat[centre])
    at_centre = f"{std.flat[centre]:.3g} at the centre, " if known else ""
    return f"{at_centre}max {std.flat[hi]:.3g} at {_where(s, hi)}"


def _per_seed_text(s: SurfaceValues, stack: np.ndarray, common: np.ndarray) -> str:
    """Mean ± std over seeds of each seed's range (max - min over the points every repeat has)
    and of its rise around the centre (max over the 3-point or 3 x 3 box minus the centre)."""
    ranges = np.array([v[common].max() - v[common].min() for v in stack])
    text = f"range (max-min) {_mean_std(ranges)}"
    centre = _centre_index(s)
    if centre is not None and common.flat[centre]:
        box = _centre_box(s, centre) & common
        rises = np.array([v[box].max() - v.flat[centre] for v in stack])
        text += f", rise around the centre {_mean_std(rises)}"
    return text


def _centre_box(s: SurfaceValues, centre: int) -> np.ndarray:
    """The centre's grid neighbourhood: itself and the points one step away (diagonals too)."""
    box = np.zeros(s.shape, dtype=bool)
    index = np.unravel_index(centre, s.shape)
    box[tuple(slice(max(0, i - 1), i + 2) for i in index)] = True
    return box


def _mean_std(values: np.ndarray) -> str:
    return f"{values.mean():.3g} ± {values.std(ddof=1):.2g}"


# Direction attributes every method has; the rest are the method's own figures.
_COMMON_ATTRS = {
    "moving_tensors",
    "moving_weights",
    "stored",
    "fingerprint",
    "method",
    "count",
    "seed",
    "ignore",
    "norm",
    "norm_x",
    "norm_y",
    "cosine",
    "cos_theta_x",
    "cos_theta_y",
    "orthogonal_to_weights",
    "source",
}
_SOURCE_KEYS = ("files", "sources", "targets", "checkpoint_files")
_RAW_WIDTH = 90  # unknown attributes are shown raw, cut to this many characters
_PAD = " " * 13


def _option_parts(s: SurfaceValues) -> list[str]:
    """The family's own options the run set (``families``: each option's declaration), as
    ``field=value``; checkpoint lists are the sources lines' (below)."""
    direction = (stored_config(s) or {}).get("direction")
    if not isinstance(direction, dict) or direction.get("file"):
        return []
    parts = []
    for opt, names in families.options():
        value = direction.get(opt.field, opt.initial)
        if direction.get("name") in names and opt.kind != "files" and opt.given(value):
            parts.append(f"{opt.field}={'on' if value is True else value}")
    return parts


def _direction_lines(s: SurfaceValues) -> list[str]:
    a = s.direction_attrs
    if not a or s.source_format == "li2018":
        return []
    parts = [str(a.get("method", "?"))]
    for key in ("seed", "ignore", "norm"):
        if key in a:
            parts.append(f"{key}={a[key]}")
    parts += _option_parts(s)
    line = [f"directions:  {', '.join(parts)}"]
    # d1, d2 and on an n-D grid d3.. (norm_z, cos_theta_z, ...), by the axes' names
    numbered = [(axis, f"d{k}") for k, axis in enumerate(AXIS_NAMES, start=1)]
    norms = [
        f"|{name}|={_num(a[f'norm_{axis}'])}" for axis, name in numbered if f"norm_{axis}" in a
    ]
    if "cosine" in a:
        norms.append(f"cos(d1,d2)={_num(a['cosine'], 3)}")
    norms += [
        f"cos({name},θ)={_num(a[f'cos_theta_{axis}'], 3)}"
        for axis, name in numbered
        if f"cos_theta_{axis}" in a
    ]
    if norms:
        line.append(f"{_PAD}{', '.join(norms)}")
    warning = alignment_warning(a)
    if warning:
        line.append(f"{_PAD}warning: {warning}")
    if "source" in a:
        line.append(f"{_PAD}read from {a['source']}")
    if _parsed(a.get("stored")) == "seed":
        line.append(
            f"{_PAD}kept as their seed (--store-directions seed): `landscape compute` regenerates "
            "them on resume"
        )
    used = set(_COMMON_ATTRS) | {f"{k}_{n}" for k in ("norm", "cos_theta") for n in AXIS_NAMES}
    for section in (_eigen_lines, _explained_lines, _source_lines, _alignment_lines):
        line.extend(section(a, used))
    line.extend(_landmark_lines(s, used))
    line.extend(_trajectory_lines(s, used))
    line.extend(_other_lines(a, used))
    return line


# --- the methods' own figures -------------------------------------------------------------------
# Attributes come back from HDF5 as scalars, float arrays, or JSON text (dicts, lists of names);
# every reader below accepts any of these and leaves what it cannot read to _other_lines.


def _numbers(value: Any) -> np.ndarray | None:
    """A flat float array of a number or a list of numbers; None for anything else."""
    value = _parsed(value)
    if isinstance(value, (dict, str, bytes, bool)) or value is None:
        return None
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    except (TypeError, ValueError):
        return None
    return arr if arr.size else None


def _num(value: Any, digits: int = 6) -> str:
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return str(value)


def _fraction(v: float) -> str:
    """A share of variance: in percent when it is a fraction, as a number otherwise."""
    return f"{100.0 * v:.1f}%" if 0.0 <= v <= 1.0 else f"{v:.4g}"


def _eigen_lines(a: dict[str, Any], used: set[str]) -> list[str]:
    out = []
    for key in [k for k in a if "eigen" in k.lower()]:
        values = _numbers(a[key])
        if values is None:
            continue
        used.add(key)
        text = ", ".join(f"λ{i + 1}={v:.6g}" for i, v in enumerate(values))
        if values.size > 1 and values[1] != 0:
            text += f" (λ1/λ2={values[0] / values[1]:.3g})"
        out.append(f"{'eigenvalues:':<12} {text}" + ("" if key == "eigenvalues" else f" [{key}]"))
    return out


def _explained_lines(a: dict[str, Any], used: set[str]) -> list[str]:
    out = []
    for key in [k for k in a if "explained" in k.lower()]:
        value = _parsed(a[key])
        text = _per_tensor(value) if isinstance(value, dict) else _components(_numbers(value))
        if text is None:
            continue
        used.add(key)
        out.append(f"{'explained:':<12} {text} [{key}]")
    return out


def _components(values: np.ndarray | None) -> str | None:
    """``d1 62.3%, d2 21.0% (together 83.3%)`` for the explained variance of each direction."""
    if values is None or not np.all(np.isfinite(values)):
        return None
    text = ", ".join(f"d{i + 1} {_fraction(v)}" for i, v in enumerate(values))
    if values.size > 1 and np.all((values >= 0) & (values <= 1)) and values.sum() <= 1 + 1e-9:
        text += f" (together {_fraction(float(values.sum()))})"
    return text


def _per_tensor(table: dict[str, Any]) -> str | None:
    """A per-tensor table ``{name: [ev1, ev2]}`` summarized as the mean and min over tensors."""
    rows = [_numbers(v) for v in table.values()]
    rows = [r for r in rows if r is not None and np.all(np.isfinite(r))]
    if not rows:
        return None
    width = max(r.size for r in rows)
    parts = []
    for j in range(width):
        col = np.array([r[j] for r in rows if r.size > j])
        parts.append(f"d{j + 1} mean {_fraction(col.mean())} (min {_fraction(col.min())})")
    return f"per tensor over {len(rows)} tensors: {', '.join(parts)}"


def _names(value: Any) -> list[str] | None:
    value = _parsed(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, np.ndarray)) and all(
        isinstance(v, (str, bytes, np.str_)) for v in value
    ):
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    return None


def _few(names: list[str], keep: int = 3) -> str:
    """The first few and the last of a list of names, e.g. ``a.pt, b.pt, c.pt, …, z.pt``."""
    if len(names) <= keep + 1:
        return ", ".join(names)
    return ", ".join(names[:keep]) + f", … ({len(names) - keep - 1} more), {names[-1]}"


def _source_lines(a: dict[str, Any], used: set[str]) -> list[str]:
    out = []
    for key in [k for k in _SOURCE_KEYS if k in a]:
        names = _names(a[key])
        if not names:
            continue
        used.add(key)
        if key == "targets":  # interpolate: the checkpoints B (and C) reached from A
            text = ", ".join(f"{p}={n}" for p, n in zip("BCDEFG", names, strict=False))
        else:
            text = f"{len(names)} file{'s' * (len(names) != 1)}: {_few(names)}"
        out.append(f"{'sources:':<12} {text}" + ("" if key == "files" else f" [{key}]"))
    return out


def _alignment_lines(a: dict[str, Any], used: set[str]) -> list[str]:
    """interpolate --align: per target, the method, the groups reordered and the matched
    measure before → after (``landscape.alignment.paths.summary_record``)."""
    records = _parsed(a.get("alignment"))
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return []
    used.add("alignment")
    out = []
    for point, r in zip("BCDEFG", records, strict=False):
        text = (
            f"{point} by {r.get('method')}: {r.get('reordered')} of {r.get('groups')} groups "
            f"reordered ({r.get('units')} units), {r.get('measure')} "
            f"{_num(r.get('total_before'))} -> {_num(r.get('total_after'))}"
        )
        out.append(f"{'aligned:' if not out else '':<12} {text}")
    return out


def _landmark_points(s: SurfaceValues, a: dict[str, Any]) -> list[str]:
    """``A (x=0, y=0)`` for each named point: from the landmarks group, or the JSON attribute."""
    marks = s.landmarks if isinstance(s.landmarks, dict) else _parsed(a.get("landmarks"))
    if not isinstance(marks, dict):
        return []
    xs, ys = _numbers(marks.get("x")), _numbers(marks.get("y"))
    if xs is None:
        return []
    names = _names(marks.get("names")) or []
    points = []
    for k, x in enumerate(xs):
        name = names[k] if k < len(names) else f"P{k + 1}"
        where = f"x={x:.4g}" + (f", y={ys[k]:.4g}" if ys is not None and k < ys.size else "")
        points.append(f"{name} ({where})")
    return points


def _landmark_lines(s: SurfaceValues, used: set[str]) -> list[str]:
    if isinstance(_parsed(s.direction_attrs.get("landmarks")), dict):
        used.add("landmarks")  # the JSON copy of the landmarks group
    points = _landmark_points(s, s.direction_attrs)
    return [f"{'landmarks:':<12} {', '.join(points)}"] if points else []


def _trajectory_lines(s: SurfaceValues, used: set[str]) -> list[str]:
    """How many checkpoints, the path's extent, and whether the grid covers it."""
    a = s.direction_attrs
    traj = s.trajectory if isinstance(s.trajectory, dict) else {}
    tx, ty = _numbers(traj.get("x")), _numbers(traj.get("y"))
    ranges = {axis: _numbers(a.get(f"path_{axis}_range")) for axis in "xy"}
    ranges = {k: r for k, r in ranges.items() if r is not None and r.size == 2}
    used.update(f"path_{axis}_range" for axis in ranges)
    for axis, coords in (("x", tx), ("y", ty)):
        finite = coords[np.isfinite(coords)] if coords is not None else np.empty(0)
        if finite.size:
            ranges[axis] = np.array([finite.min(), finite.max()])
    count = _count(tx, a.get("checkpoints"))
    if count is None and not ranges:
        return []
    if _numbers(a.get("checkpoints")) is not None:
        used.add("checkpoints")
    head = f"{count} checkpoint{'s' * (count != 1)}" if count is not None else "path"
    labels = _names(traj.get("labels"))
    if labels:
        head += f" ({labels[0]} … {labels[-1]})" if len(labels) > 1 else f" ({labels[0]})"
    extent = [f"{axis} in [{r[0]:.4g}, {r[1]:.4g}]" for axis, r in sorted(ranges.items())]
    out = [f"{'trajectory:':<12} {', '.join([head, *extent])}"]
    coverage = _coverage(s, ranges)
    if coverage:
        out.append(f"{_PAD}{coverage}")
    suggested = [f"--{axis}={a[f'suggested_{axis}']}" for axis in "xy" if f"suggested_{axis}" in a]
    used.update(f"suggested_{axis}" for axis in "xy")
    if suggested:
        out.append(f"{_PAD}a grid covering it: {' '.join(suggested)}")
    losses = _numbers(traj.get("loss"))
    if losses is not None and losses.size and np.all(np.isfinite(losses[[0, -1]])):
        out.append(f"{_PAD}loss along the path: first {losses[0]:.6g}, last {losses[-1]:.6g}")
    return out


def _count(tx: np.ndarray | None, stored: Any) -> int | None:
    """Checkpoints on the path: the stored coordinates, or the ``checkpoints`` attribute."""
    if tx is not None:
        return int(tx.size)
    n = _numbers(stored)
    return int(n[0]) if n is not None and n.size == 1 and np.isfinite(n[0]) else None


def _coverage(s: SurfaceValues, ranges: dict[str, np.ndarray]) -> str:
    """Whether the grid holds the whole path, the check before reading a trajectory plot."""
    axes = {"x": s.x, "y": s.y}
    outside = []
    for axis, r in sorted(ranges.items()):
        grid = axes.get(axis)
        if grid is None or len(grid) == 0 or not np.all(np.isfinite(r)):
            continue
        lo, hi = float(np.min(grid)), float(np.max(grid))
        if r[0] < lo or r[1] > hi:
            outside.append(f"--{axis} [{lo:.4g}, {hi:.4g}]")
    if outside:
        return f"the path leaves the grid ({', '.join(outside)}): widen the grid to see all of it"
    return "the grid covers the whole path" if ranges else ""


def _other_lines(a: dict[str, Any], used: set[str]) -> list[str]:
    """Attributes no reader above knows, raw (cut short), so nothing stored is hidden."""
    out = []
    for key, value in a.items():
        if key in used:
            continue
        parsed = _parsed(value)
        if isinstance(parsed, dict):
            text = f"{{{len(parsed)} entries}}"
        elif isinstance(value, (float, np.floating)):
            text = f"{value:.6g}"
        elif isinstance(value, np.ndarray):
            text = np.array2string(value, precision=4, threshold=8, separator=", ")
        else:
            text = str(value)
        text = " ".join(text.split())
        if len(text) > _RAW_WIDTH:
            text = text[: _RAW_WIDTH - 1] + "…"
        out.append(f"{_PAD}{key}={text}")
    return out


def _provenance_lines(s: SurfaceValues) -> list[str]:
    if s.source_format == "li2018":
        return [f"dir_file:    {s.attrs['dir_file']}"] if "dir_file" in s.attrs else []
    a = s.attrs
    cfg = stored_config(s) or {}
    out = [
        f"created:     {a.get('created')} with landscape {a.get('landscape_version')}, torch {a.get('torch_version')}",
        f"model:       {_get(cfg, 'model', 'name')}, {_weights_text(cfg)}",
        f"checkpoint:  sha256 {str(a.get('checkpoint_sha256') or '-')[:16]}",
        f"data:        {_data_text(a.get('data'), cfg)}",
        f"loss:        {_parsed(a.get('loss_name')) or _get(cfg, 'eval', 'loss')}, "
        f"bn={_get(cfg, 'eval', 'bn')}",
    ]
    if "predicted_tokens" in a:
        out[-2] += f", {int(a['predicted_tokens'])} predicted tokens"
    engine = _engine_text(_parsed(a.get("engine")))
    if engine:
        out.append(f"engine:      {engine}")
    moved = [f"--params {' '.join(g)}" for g in [_get(cfg, "direction", "params")] if g]
    moved += [f"--exclude {' '.join(g)}" for g in [_get(cfg, "direction", "exclude")] if g]
    if moved:
        out.append(f"moved:       {', '.join(moved)}: {_moved_text(s)}")
    return out


def _engine_text(e: Any) -> str:
    """How the points were evaluated (the engine report the run stored): path, layout, batch,
    the BatchNorm fold, compile (or one dropped), the race on the first points, and how far
    another path's values may be."""
    if not isinstance(e, dict) or "engine" not in e:
        return ""
    parts = [str(e["engine"]), "channels-last" if e.get("channels_last") else "contiguous"]
    if e.get("batch_size"):
        parts.append(f"batch {e['batch_size']}")
    if e.get("k") and e["engine"] == "batched":
        parts.append(f"{e['k']} points per call")
    if e.get("fused"):
        parts.append(f"BatchNorm folded into {e['fused']} convolutions")
    parts.append("compiled" if e.get("compile") else "eager")
    split = _split_text(e)
    if split:
        parts.append(split)
    if e.get("autocast"):
        parts.append(f"autocast {e['autocast']}")
    if e.get("device"):
        parts.append(f"on {e['device']}")
    if e.get("processes", 1) > 1:
        parts.append(f"{e['processes']} processes")
    text = ", ".join(parts)
    race = e.get("race")
    if isinstance(race, dict) and race.get("point_seconds"):
        times = ", ".join(
            f"{label} {min(ts):.3g} s" for label, ts in race["point_seconds"].items() if ts
        )
        text += f" (kept {race.get('kept')} of those raced on the first points: {times})"
    recheck = e.get("recheck")  # files from before the race: a check on the first points
    if isinstance(recheck, dict) and recheck.get("switched_to"):
        was = f" from {recheck['chosen']}" if recheck.get("chosen") else ""  # older files lack it
        text += f" (switched{was} after the first points)"
    if e.get("compile_abandoned"):  # compiled, then slower than eager on the first points
        text += f" (compile dropped: {e['compile_abandoned']})"
    rtol = e.get("paths_rtol")  # resumes pin these settings (compute._engine_request)
    if isinstance(rtol, (int, float)) and not isinstance(rtol, bool):
        where = str(e.get("device", "this device")).split(":")[0]
        text += f"; a resume on {where} repeats it bit for bit, other paths agree within {rtol:g}"
    return text


def _split_text(e: dict[str, Any]) -> str:
    """Which forward ran at each point: split (how, the static part's share and its kept
    frontier) or full, and why (files from before the split say nothing)."""
    if e.get("split") is True:
        share, kept = e.get("split_static_share"), e.get("split_frontier_bytes")
        figures = [f"static part {share:.0%} of its FLOPs" if isinstance(share, float) else ""]
        if isinstance(kept, int):
            where = FRONTIER_PLACES.get(e.get("split_frontier_store", "memory"), "kept")
            figures.append(f"frontier {kept / 2**20:.1f} MiB {where}")
        if e.get("split_fused"):
            figures.append(f"BatchNorm folded into {e['split_fused']} moved convolutions")
        how = f" by its {e.get('split_path', 'graph')}"
        return (
            f"forward split{how}, static part once per batch ({', '.join(filter(None, figures))})"
        )
    if e.get("split_reason"):
        return f"full forward at each point ({e['split_reason']})"
    return ""


def _moved_text(s: SurfaceValues) -> str:
    """How many parameter tensors the directions move (of those they name): from the counts the
    file stores with its directions, else (files written before them) from the tensors."""
    a = s.direction_attrs
    if "moving_tensors" in a:
        return f"{int(a['moving_tensors'])} tensors move ({int(a['moving_weights']):,} weights)"
    if not s.directions:
        return "directions not stored"
    first = {k: np.asarray(t) for k, t in s.directions[0].items()}
    nonzero = [k for k, t in first.items() if np.any(t != 0)]
    return f"{len(nonzero)} tensors move ({sum(first[k].size for k in nonzero):,} weights)"


def _weights_text(cfg: dict[str, Any]) -> str:
    """Where the centre's weights came from: the checkpoint, or a seeded random initialization."""
    checkpoint = _get(cfg, "model", "checkpoint")
    trajectory = _get(cfg, "direction", "trajectory")
    if checkpoint or (_get(cfg, "direction", "name") == "trajectory" and trajectory):
        return f"checkpoint {checkpoint or trajectory[-1]}"
    from landscape.models.sources import own_weights

    own = own_weights(str(_get(cfg, "model", "name")))  # a saved program's, a Hugging Face folder's
    if own:
        return own
    return f"random initialization (seed {_get(cfg, 'direction', 'seed')}), no checkpoint"


def _perplexity_lines(surface: SurfaceValues) -> list[str]:
    """A language model's perplexity, exp of its mean next-token loss, where the loss is one."""
    if "predicted_tokens" not in surface.attrs:
        return []
    out = []
    for q, v in surface.values.items():
        if quantities.kind_of(q) == "loss":
            split = quantities.parse(q)[0]
            with np.errstate(over="ignore"):
                text = _extremes(surface, np.exp(v))
            out.append(f"{'perplexity:':<12} {text} (exp of {split}_loss)")
    return out


def _noise_lines(surface: SurfaceValues) -> list[str]:
    """Each loss's standard error at the centre, where the file holds it (``<split>_loss_se``)."""
    out = []
    for q in surface.quantities("loss"):
        bar = quantities.error_of(q)
        if bar not in surface.values:
            continue
        axes = [np.asarray(a) for a in surface.axes]
        at = find_centre(axes, np.asarray(surface.values[q])).index
        value, se = float(surface.values[q][at]), float(surface.values[bar][at])
        if not (np.isfinite(value) and np.isfinite(se)):
            continue
        # a language model's units are its predicted tokens, which are not independent within a
        # sequence: the figure is then a lower bound on the sampling noise
        units = (
            "the predicted tokens, a lower bound: tokens of a sequence are not independent"
            if "predicted_tokens" in surface.attrs
            else "the samples"
        )
        out.append(
            f"noise:       {q} at the centre {value:.6g} ± {se:.2g} (standard error of the mean "
            f"over {units}); losses closer than about 2 s.e. differ within sampling noise"
        )
    return out


def _done_text(surface: SurfaceValues) -> str:
    """Points done over every repeat of a ``--repeat`` file, and each repeat's count."""
    dones = [surface.done] + [r.done for r in surface.repeats]
    done, total = sum(int(d.sum()) for d in dones), sum(d.size for d in dones)
    text = f"{done} of {total} points ({100.0 * done / total:.1f}%)"
    if len(dones) > 1:
        each = ", ".join(str(int(d.sum())) for d in dones)
        text += f" over {len(dones)} repeats ({each} of {surface.done.size} each)"
    return text


def _get(cfg: dict[str, Any], group: str, key: str) -> Any:
    return (cfg.get(group) or {}).get(key)


def _data_text(described: Any, cfg: dict[str, Any]) -> str:
    if isinstance(described, str):
        try:
            d = json.loads(described)
        except json.JSONDecodeError:
            return described
        n = d.get("n")
        # the data's own record says split null for data of one set (npz:, pt:), whatever --split
        split = d["split"] if "split" in d else _get(cfg, "data", "split")
        where = f"{split} split" if split else "one set, no splits"
        return f"{_get(cfg, 'data', 'name')} ({where}, {n} samples)"
    return str(_get(cfg, "data", "name"))


# --- curvature files ----------------------------------------------------------------------------


def format_curvature_info(curv: CurvatureMap) -> str:
    """A curvature file (``landscape curvature``): grid, completion, each map's extremes, settings."""
    a = curv.attrs
    done, total = int(curv.done.sum()), curv.done.size
    lines = [
        f"file:        {curv.path}",
        f"format:      landscape curvature map, schema version {a.get('schema_version')}",
        f"grid:        {_grid_text(curv)}",
        f"done:        {done} of {total} points ({100.0 * done / total:.1f}%)",
    ]
    if curv.failed:
        lines.append(
            f"failed:      {curv.failed} points have NaN eigenvalues (non-finite loss or no "
            "convergence)"
        )
    for q, v in curv.maps.items():
        lines.append(f"{q + ':':<12} {_extremes(curv, v)}")
    data = _parsed(a.get("data"))
    where = f"{data.get('name')}" if isinstance(data, dict) else "?"
    lines += [
        f"hessian:     over {a.get('samples')} samples of {where}, {a.get('moved_parameters')} "
        f"parameters (--ignore {a.get('ignore')}), tol {_num(a.get('tol'), 3)}, "
        f"{int(curv.hvps.sum())} Hessian-vector products",
        f"source:      {a.get('source')} (created {a.get('source_created')})",
        f"checkpoint:  sha256 {str(a.get('checkpoint_sha256') or '-')[:16]}",
        f"created:     {a.get('created')} with landscape {a.get('landscape_version')}, "
        f"torch {a.get('torch_version')}, on {a.get('device')}",
    ]
    return "\n".join(lines)
