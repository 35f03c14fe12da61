"""Figures of loss surfaces (DESIGN.md §7). Functions return matplotlib Figures; ``render_all``
writes them to files."""

from __future__ import annotations

from landscape.plot.figures import contour, curve_1d, heatmap, surface_3d
from landscape.plot.render import FORMATS, KINDS, SCALES, check_format, render_all

__all__ = [
    "FORMATS",
    "KINDS",
    "SCALES",
    "check_format",
    "contour",
    "curve_1d",
    "heatmap",
    "render_all",
    "surface_3d",
]
