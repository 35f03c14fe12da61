"""Human-readable summary of a surface file (``landscape info``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from landscape.store import stored_config
from landscape.surface import Surface


def format_info(surface: Surface) -> str:
    """Grid, completion, extremes of every quantity, directions and provenance, one fact a line."""
    lines = [f"file:        {surface.path}", f"format:      {_format_name(surface)}"]
    lines.append(f"grid:        {_grid_text(surface)}")
    done, total = int(surface.done.sum()), surface.done.size
    lines.append(f"done:        {done} of {total} points ({100.0 * done / total:.1f}%)")
    nonfinite = sum(
        int(np.sum(surface.done & ~np.isfinite(v)))
        for q, v in surface.values.items()
        if q.endswith("_loss")
    )
    if nonfinite:
        lines.append(f"non-finite:  {nonfinite} points have a NaN or infinite loss")
    for q, v in surface.values.items():
        lines.append(f"{q + ':':<12} {_extremes(surface, v)}")
    lines.extend(_direction_lines(surface))
    lines.extend(_provenance_lines(surface))
    lines.extend(f"note:        {n}" for n in surface.notes)
    return "\n".join(lines)


def _format_name(s: Surface) -> str:
    if s.source_format == "li2018":
        return "Li et al. (2018) reference surface file"
    return f"landscape surface, schema version {s.attrs.get('schema_version')}"


def _grid_text(s: Surface) -> str:
    x = f"x in [{s.x[0]:g}, {s.x[-1]:g}] ({len(s.x)} points)"
    if s.y is None:
        return f"1-D, {x}"
    return f"2-D {len(s.x)} x {len(s.y)}, {x}, y in [{s.y[0]:g}, {s.y[-1]:g}] ({len(s.y)} points)"


def _where(s: Surface, flat: int) -> str:
    if s.y is None:
        return f"x={s.x[flat]:g}"
    i, j = np.unravel_index(flat, s.shape)
    return f"(x={s.x[i]:g}, y={s.y[j]:g})"


def _extremes(s: Surface, v: np.ndarray) -> str:
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


def _centre_index(s: Surface) -> int | None:
    """The flat index of the grid point at the origin (the trained weights), if on the grid."""
    ix = np.flatnonzero(np.isclose(s.x, 0.0, atol=1e-12))
    if ix.size == 0:
        return None
    if s.y is None:
        return int(ix[0])
    iy = np.flatnonzero(np.isclose(s.y, 0.0, atol=1e-12))
    return None if iy.size == 0 else int(np.ravel_multi_index((ix[0], iy[0]), s.shape))


def _direction_lines(s: Surface) -> list[str]:
    a = s.direction_attrs
    if not a or s.source_format == "li2018":
        return []
    parts = [str(a.get("method", "?"))]
    for key in ("seed", "ignore", "norm"):
        if key in a:
            parts.append(f"{key}={a[key]}")
    line = [f"directions:  {', '.join(parts)}"]
    norms = f"|d1|={a['norm_x']:.6g}" if "norm_x" in a else ""
    if "norm_y" in a:
        norms += f", |d2|={a['norm_y']:.6g}, cos(d1,d2)={a['cosine']:.3g}"
    if norms:
        line.append(f"             {norms}")
    if "source" in a:
        line.append(f"             read from {a['source']}")
    return line


def _provenance_lines(s: Surface) -> list[str]:
    if s.source_format == "li2018":
        return [f"dir_file:    {s.attrs['dir_file']}"] if "dir_file" in s.attrs else []
    a = s.attrs
    cfg = stored_config(s) or {}
    out = [
        f"created:     {a.get('created')} with landscape {a.get('landscape_version')}, torch {a.get('torch_version')}",
        f"model:       {_get(cfg, 'model', 'name')}, checkpoint {_get(cfg, 'model', 'checkpoint')}",
        f"checkpoint:  sha256 {str(a.get('checkpoint_sha256') or '-')[:16]}",
        f"data:        {_data_text(a.get('data'), cfg)}",
        f"loss:        {_get(cfg, 'eval', 'loss')}, bn={_get(cfg, 'eval', 'bn')}",
    ]
    return out


def _get(cfg: dict[str, Any], group: str, key: str) -> Any:
    return (cfg.get(group) or {}).get(key)


def _data_text(described: Any, cfg: dict[str, Any]) -> str:
    if isinstance(described, str):
        try:
            d = json.loads(described)
        except json.JSONDecodeError:
            return described
        n = d.get("n")
        return f"{_get(cfg, 'data', 'name')} ({_get(cfg, 'data', 'split')} split, {n} samples)"
    return str(_get(cfg, "data", "name"))
