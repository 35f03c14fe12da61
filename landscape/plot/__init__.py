"""Figures of loss surfaces (DESIGN.md §7). Functions return matplotlib Figures; ``render_all``
and ``render_compare`` write them to files, ``draw_all`` returns them by name."""

from __future__ import annotations

from landscape.plot.compare import compare_1d, compare_2d, render_compare
from landscape.plot.figures import (
    contour,
    curve_1d,
    draw_contour,
    draw_curve,
    draw_heatmap,
    draw_landmarks,
    draw_surface3d,
    draw_trajectory,
    heatmap,
    prepare,
    surface_3d,
)
from landscape.plot.render import (
    FORMATS,
    KINDS,
    SCALES,
    Figures,
    check_format,
    draw_all,
    render_all,
)
from landscape.plot.repeats import mean_surface, repeat_curves, spread_map

__all__ = [
    "FORMATS",
    "KINDS",
    "SCALES",
    "Figures",
    "check_format",
    "compare_1d",
    "compare_2d",
    "contour",
    "curve_1d",
    "draw_all",
    "draw_contour",
    "draw_curve",
    "draw_heatmap",
    "draw_landmarks",
    "draw_surface3d",
    "draw_trajectory",
    "heatmap",
    "mean_surface",
    "prepare",
    "render_all",
    "render_compare",
    "repeat_curves",
    "spread_map",
    "surface_3d",
]
