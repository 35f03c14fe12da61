"""The surface users hold (``landscape.load``, ``landscape.compute``, ``landscape.Surface``): a
surface's values (``landscape.store.values``) with the readers' views of them: ``plot``,
``analysis`` and the summaries Python and Jupyter show.

Layers (DESIGN §1): the values sit low, so that the store builds them and every reader (plot,
analysis, info) takes them; this class sits above those readers and calls them, so no reader
imports it and the store never imports a reader.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from landscape.store.values import OnGrid, Repeat, SurfaceValues

__all__ = ["OnGrid", "Repeat", "Surface"]


class Surface(SurfaceValues):
    """A loss surface over a 1-D or 2-D grid (every field of :class:`SurfaceValues`), with
    ``plot()``, ``analysis()`` and a summary as its repr."""

    @classmethod
    def read(cls, path: str | Path) -> Surface:
        """Any surface file, ours or one of Li et al.'s reference files."""
        from landscape.store import read_surface

        return cls.of(read_surface(path))

    @classmethod
    def of(cls, values: SurfaceValues) -> Surface:
        """The same values, with the views (the arrays are shared, not copied)."""
        if isinstance(values, cls):
            return values
        return cls(**{f.name: getattr(values, f.name) for f in dataclasses.fields(values)})

    def plot(self, out_dir: str | None = None, **options: Any) -> Any:
        """The CLI's figures (``landscape plot``). With ``out_dir``: written there, their paths
        returned. Without: returned as ``{name: Figure}`` (a notebook shows each one inline).
        ``options`` as ``render_all`` takes them (``kinds``, ``scales``, ``vmin``, ``vmax``,
        ``levels``; with a folder also ``fmt`` and ``dpi``). Changes no matplotlib setting."""
        from landscape.plot.render import draw_all, render_all

        if out_dir is None:
            return draw_all(self, **options)
        return [str(p) for p in render_all(self, out_dir, **options)]

    def __repr__(self) -> str:
        from landscape.info import summary_lines

        where = "in memory: .save(path) writes it" if self.image is not None else self.path
        return "\n".join([f"<landscape.Surface {where}>", *summary_lines(self)])

    def _repr_html_(self) -> str:
        """Jupyter's view: the summary and a small filled contour of the loss."""
        import base64
        import html

        from landscape.info import summary_lines
        from landscape.plot.render import PREVIEW_DPI, png_bytes, preview

        text = html.escape("\n".join(summary_lines(self)))
        parts = [f"<b>landscape.Surface</b> <code>{html.escape(self.path)}</code>"]
        parts.append(f"<pre>{text}</pre>")
        fig = preview(self)
        if fig is not None:
            data = base64.b64encode(png_bytes(fig, PREVIEW_DPI)).decode("ascii")
            parts.append(f'<img src="data:image/png;base64,{data}" alt="loss contour">')
        return "\n".join(parts)

    def analysis(self, **options: Any) -> dict[str, Any]:
        """The numbers ``landscape info`` prints for every loss, ``{quantity: {"sharpness": ...,
        "curvature": ..., "basin": ..., "minimum": ..., "topology": ..., ...}}``: stored in the
        file when the run completed, computed anew for other ``options`` (``epsilon``,
        ``threshold``, ``rise``, ``fit_radius``, as ``AnalysisOptions`` takes them)."""
        from landscape.analysis import AnalysisOptions, analysis_report

        return analysis_report(self, AnalysisOptions(**options) if options else None)["analysis"]
