"""Exports of a surface for other tools: ParaView ``.vtp``, a self-contained interactive HTML view,
and plain arrays (``.npz``, long-format ``.csv``: ``landscape.plot.arrays``).

- **VTP**: VTK XML PolyData, ASCII. Points are the computed grid points ``(x, y, z)`` with ``z``
  the chosen quantity (``log10`` of it under ``log``; 1-D: ``(x, 0, z)``); cells are quads over the
  grid cells whose four corners are computed (2-D) or polylines over runs of computed points (1-D);
  PointData holds every stored quantity as stored (losses, accuracies as fractions) and
  ``log10_<loss>`` for every loss. A value that is not finite at a kept point (another quantity
  only partly computed) is written as ``nan``.
- **HTML**: one file with no network access: the values embedded as JSON (``null`` where not
  computed) and a small hand-written canvas renderer (drag to rotate, wheel to zoom, hover for
  values, double-click to reset), coloured with viridis. 1-D surfaces are drawn as a curve.

Each is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from landscape import quantities
from landscape._files import check_not_hdf5, check_output, os_error_text, write_bytes_atomically
from landscape.errors import ConfigError
from landscape.plot import arrays
from landscape.plot.figures import is_accuracy, prepare
from landscape.store.values import SurfaceValues

EXPORT_FORMATS = ("vtp", "html", "npz", "csv")
_EXTENSIONS = {".vtp": "vtp", ".html": "html", ".htm": "html", ".npz": "npz", ".csv": "csv"}
_MAX_CELLS = 40_000  # the HTML view draws at most about this many cells (a coarser stride beyond)


def export_format(out: str | Path, fmt: str | None = None) -> str:
    """The export format: given, or from the output's extension."""
    if fmt is not None:
        if fmt not in EXPORT_FORMATS:
            raise ConfigError(
                f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}"
            )
        return fmt
    found = _EXTENSIONS.get(Path(out).suffix.lower())
    if found is None:
        raise ConfigError(
            f"cannot tell the export format of {str(out)!r} from its extension; "
            "name it .vtp, .html, .npz or .csv, or give --format"
        )
    return found


def default_out(surface_path: str | Path, fmt: str | None) -> Path:
    """``<surface stem>.<format>`` beside the surface file (as ``curvature`` names its output)."""
    if fmt is None:
        raise ConfigError("give --out FILE (.vtp, .html, .npz or .csv) or --format to export")
    return Path(surface_path).with_suffix("." + export_format("", fmt))


def default_quantity(surface: SurfaceValues) -> str:
    """The first stored loss (``train_loss`` in our files), else the first quantity."""
    losses = surface.quantities("loss")
    return losses[0] if losses else next(iter(surface.values), "train_loss")


def export_surface(
    surface: SurfaceValues,
    out: str | Path | None = None,
    *,
    quantity: str | None = None,
    log: bool = False,
    fmt: str | None = None,
) -> Path:
    """Write ``surface`` as ``.vtp``, ``.html``, ``.npz`` or ``.csv`` (format from ``fmt`` or
    the extension; ``out`` by default ``default_out``). ``quantity`` and ``log`` choose the
    height of the 3-D views; the arrays hold every quantity as stored."""
    if surface.dims > 2:
        raise ConfigError(
            f"{surface.path} is {surface.dims}-D: export writes 1-D and 2-D surfaces; "
            "`landscape plot` draws its planes (slices and projections)"
        )
    out = check_output(default_out(surface.path, fmt) if out is None else out)
    kind = export_format(out, fmt)
    if out.exists() and out.resolve() == Path(surface.path).resolve():
        raise ConfigError(f"--out {str(out)!r} is the surface file itself; choose another name")
    check_not_hdf5(out, "--out")  # another surface
    quantity = quantity or default_quantity(surface)
    try:
        write_bytes_atomically(out, _export_bytes(surface, kind, quantity, log))
    except OSError as exc:
        raise ConfigError(
            f"cannot write {str(out)!r} ({os_error_text(exc)}); nothing was written: choose "
            "another --out"
        ) from None
    return out


def _export_bytes(surface: SurfaceValues, kind: str, quantity: str, log: bool) -> bytes:
    if kind == "npz":
        return arrays.npz_bytes(surface)
    if kind == "csv":
        return arrays.csv_text(surface).encode("utf-8")
    text = vtp_text(surface, quantity, log) if kind == "vtp" else html_text(surface, quantity, log)
    return text.encode("utf-8")


def _log10(values: np.ndarray) -> np.ndarray:
    """log10 with values <= 0 clipped to the smallest positive finite one, as the plots do."""
    positive = values[np.isfinite(values) & (values > 0)]
    floor = float(positive.min()) if positive.size else 1e-12
    with np.errstate(invalid="ignore"):
        return np.log10(np.maximum(values, floor))


def _plotted(surface: SurfaceValues, quantity: str, log: bool) -> tuple[np.ndarray, str]:
    """The quantity in plotted units (log10, percent for accuracies), NaN where not computed."""
    prep = prepare(surface, quantity, log=log)  # raises for an unknown or empty quantity
    label = f"log10({prep.label})" if log else prep.label
    return np.ma.filled(prep.z.astype(np.float64), np.nan), label


# --- VTK XML PolyData ---------------------------------------------------------------------------


def _numbers(values: np.ndarray, per_line: int = 6) -> str:
    """ASCII data: shortest round-trip reprs (``nan`` for NaN), a few to a line."""
    items = [repr(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()]
    return "\n".join(" ".join(items[k : k + per_line]) for k in range(0, len(items), per_line))


def _ints(values: np.ndarray, per_line: int = 12) -> str:
    items = [str(int(v)) for v in np.asarray(values).ravel()]
    return "\n".join(" ".join(items[k : k + per_line]) for k in range(0, len(items), per_line))


def _data_array(kind: str, name: str | None, body: str, components: int = 1) -> str:
    attrs = f'type="{kind}"'
    if name is not None:
        attrs += f" Name={quoteattr(name)}"
    if components > 1:
        attrs += f' NumberOfComponents="{components}"'
    return f'        <DataArray {attrs} format="ascii">\n{body}\n        </DataArray>'


def _cells(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connectivity and offsets over the grid: quads (2-D) or polylines (1-D) of kept points.

    ``index`` maps grid points to point numbers, -1 where a point is left out. A quad's corners
    go round the cell: (i, j), (i+1, j), (i+1, j+1), (i, j+1).
    """
    if index.ndim == 2:
        corners = np.stack(
            [index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]], axis=-1
        ).reshape(-1, 4)
        quads = corners[np.all(corners >= 0, axis=1)]
        return quads.ravel(), 4 * np.arange(1, len(quads) + 1)
    runs: list[np.ndarray] = []
    start = None
    for k in range(index.size + 1):
        kept = k < index.size and index[k] >= 0
        if kept and start is None:
            start = k
        elif not kept and start is not None:
            if k - start >= 2:  # a line needs two points
                runs.append(index[start:k])
            start = None
    if not runs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(runs), np.cumsum([len(r) for r in runs])


def vtp_text(surface: SurfaceValues, quantity: str, log: bool = False) -> str:
    """The surface as VTK XML PolyData (ASCII): points, quads or lines, every quantity as PointData."""
    z, _ = _plotted(surface, quantity, log)
    keep = np.isfinite(z)
    index = np.full(z.shape, -1, dtype=np.int64)
    index[keep] = np.arange(int(keep.sum()))
    if surface.y is None:
        xs, ys = np.asarray(surface.x, dtype=np.float64), np.zeros(z.shape)
    else:
        xs, ys = np.meshgrid(surface.x, surface.y, indexing="ij")
    points = np.stack([xs[keep], ys[keep], z[keep]], axis=1)
    connectivity, offsets = _cells(index)
    arrays = []
    for q, v in surface.values.items():
        v = np.asarray(v, dtype=np.float64)
        arrays.append(_data_array("Float64", q, _numbers(v[keep])))
        if quantities.kind_of(q) == "loss":
            arrays.append(_data_array("Float64", f"log10_{q}", _numbers(_log10(v)[keep])))
    scalars = f"log10_{quantity}" if log and not is_accuracy(quantity) else quantity
    cells = "Polys" if surface.y is not None else "Lines"
    counts = {"Verts": 0, "Lines": 0, "Strips": 0, "Polys": 0, cells: len(offsets)}
    piece = " ".join(f'NumberOf{k}="{n}"' for k, n in counts.items())
    return "\n".join(
        [
            '<?xml version="1.0"?>',
            '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian">',
            "  <PolyData>",
            f'    <Piece NumberOfPoints="{len(points)}" {piece}>',
            f"      <PointData Scalars={quoteattr(scalars)}>",
            *arrays,
            "      </PointData>",
            "      <Points>",
            _data_array("Float64", "Points", _numbers(points, 3), components=3),
            "      </Points>",
            f"      <{cells}>",
            _data_array("Int64", "connectivity", _ints(connectivity)),
            _data_array("Int64", "offsets", _ints(offsets)),
            f"      </{cells}>",
            "    </Piece>",
            "  </PolyData>",
            "</VTKFile>",
            "",
        ]
    )


# --- self-contained HTML ------------------------------------------------------------------------


def _nulls(values: np.ndarray) -> list:
    """Nested lists with None (JSON null) for values that are not finite."""
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(arr), arr, None).tolist()


def _viridis(stops: int = 33) -> list[list[int]]:
    import matplotlib

    rgba = matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, stops))
    return np.rint(rgba[:, :3] * 255).astype(int).tolist()


def view_data(surface: SurfaceValues, quantity: str, log: bool = False) -> dict:
    """What the HTML view embeds: axes, plotted values ``z``, stored values, range, colours."""
    z, label = _plotted(surface, quantity, log)
    finite = z[np.isfinite(z)]
    return {
        "file": Path(surface.path).name,
        "quantity": quantity,
        "label": label,  # the plotted values: log10(train_loss) under log
        "axis_label": f"{quantity} (log scale)" if log else label,  # ticks show the values
        "scale": "log" if log else "linear",
        "x": np.asarray(surface.x, dtype=np.float64).tolist(),
        "y": None if surface.y is None else np.asarray(surface.y, dtype=np.float64).tolist(),
        "z": _nulls(z),
        "values": _nulls(surface.values[quantity]),
        "vmin": float(finite.min()),
        "vmax": float(finite.max()),
        "colormap": _viridis(),
        "max_cells": _MAX_CELLS,
    }


def html_text(surface: SurfaceValues, quantity: str, log: bool = False) -> str:
    """One HTML file that draws the surface with no network: data as JSON, an inline renderer."""
    data = view_data(surface, quantity, log)
    # inside a <script> element "</script>" ends it and "<!--" changes how it is parsed: write
    # every <, > and & as a JSON escape (the same string to JSON.parse, no markup to the page)
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        payload = payload.replace(char, escape)
    title = html.escape(f"{data['file']}: {data['label']}")
    hint = "drag to rotate, wheel to zoom" if surface.y is not None else "hover for values"
    return _PAGE.format(title=title, hint=hint, payload=payload, script=_SCRIPT)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; color: #222; }}
h1 {{ font-size: 1.1em; margin: 0 0 0.3em 0; }}
p {{ margin: 0.2em 0; color: #555; font-size: 0.9em; }}
canvas {{ border: 1px solid #ccc; max-width: 100%; cursor: grab; }}
#readout {{ font-family: monospace; min-height: 1.3em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{hint}; double-click to reset the view. Made by landscape export.</p>
<canvas id="view" width="960" height="640"></canvas>
<div id="readout"></div>
<script type="application/json" id="surface-data">{payload}</script>
<script>
{script}
</script>
</body>
</html>
"""

# The renderer: orthographic projection of the grid's quads, painted far to near (painter's
# algorithm). Model space: x and y scaled to [-1, 1], z to [-0.6, 0.6]. The view turns the model
# by ``yaw`` about z, then tilts it by ``pitch`` (elevation): screen up = z·cos(pitch) +
# y'·sin(pitch), depth toward the eye = z·sin(pitch) − y'·cos(pitch).
_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("surface-data").textContent);
  var canvas = document.getElementById("view");
  var readout = document.getElementById("readout");
  var ctx = canvas.getContext("2d");
  var W = canvas.width, H = canvas.height;
  var lo = data.vmin, hi = data.vmax, span = hi > lo ? hi - lo : 1;
  var cmap = data.colormap;
  var pending = false;
  var draw = function () {};  // set by curve() or surface()

  function colour(v) {
    var t = Math.min(1, Math.max(0, (v - lo) / span)) * (cmap.length - 1);
    var k = Math.min(cmap.length - 2, Math.floor(t)), f = t - k;
    var a = cmap[k], b = cmap[k + 1], c = [];
    for (var n = 0; n < 3; n++) { c.push(Math.round(a[n] + f * (b[n] - a[n]))); }
    return "rgb(" + c.join(",") + ")";
  }
  function num(v) {
    return v === null ? "not computed" : String(Number(v.toPrecision(6)));
  }
  // ticks: about n round values (1, 2, 5 x 10^k steps) from a to b
  function nice(a, b, n) {
    var span = b - a;
    if (!(span > 0)) { return [a]; }
    var step = Math.pow(10, Math.floor(Math.log10(span / n))), r = span / n / step;
    step *= r >= 7.5 ? 10 : r >= 3.5 ? 5 : r >= 1.5 ? 2 : 1;
    var out = [];
    for (var v = Math.ceil(a / step - 1e-9) * step; v <= b + 1e-9 * step; v += step) {
      out.push(Math.abs(v) < 1e-9 * step ? 0 : v);
    }
    return out;
  }
  function tickText(v) { return String(Number(v.toPrecision(3))); }
  // a plotted value as the quantity's own: under log, 10^v (0.001, not -3)
  function valueText(v) {
    return data.scale === "log" ? String(Number(Math.pow(10, v).toPrecision(2))) : tickText(v);
  }
  function redraw() {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; draw(); });
  }
  function mouse(e) {
    var r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * W / r.width, (e.clientY - r.top) * H / r.height];
  }
  function text(s, x, y, align) {
    ctx.fillStyle = "#222";
    ctx.textAlign = align || "left";
    ctx.fillText(s, x, y);
  }
  function colourbar() {
    var x = W - 110, top = 70, h = H - 140, steps = 64;
    for (var s = 0; s < steps; s++) {
      ctx.fillStyle = colour(hi - (s + 0.5) / steps * span);
      ctx.fillRect(x, top + s * h / steps, 16, h / steps + 1);
    }
    ctx.font = "12px sans-serif";
    ctx.strokeStyle = "#222";
    ctx.lineWidth = 1;
    nice(lo, hi, 6).forEach(function (v) {
      var y = top + (hi - v) / span * h;
      ctx.beginPath();
      ctx.moveTo(x + 16, y);
      ctx.lineTo(x + 21, y);
      ctx.stroke();
      text(valueText(v), x + 24, y + 4, "left");
    });
    text(data.axis_label, x + 8, top - 14, "center");
  }

  if (data.y === null) { curve(); } else { surface(); }

  // --- 1-D: a curve with a hover readout --------------------------------------------------
  function curve() {
    var xs = data.x, zs = data.z, n = xs.length, hover = -1;
    var L = 80, R = W - 30, T = 40, B = H - 60;
    var x0 = xs[0], x1 = xs[n - 1], dx = x1 > x0 ? x1 - x0 : 1;
    function px(v) { return L + (v - x0) / dx * (R - L); }
    function py(v) { return B - (v - lo) / span * (B - T); }
    draw = function () {
      ctx.clearRect(0, 0, W, H);
      ctx.strokeStyle = "#888";
      ctx.lineWidth = 1;
      ctx.strokeRect(L, T, R - L, B - T);
      ctx.font = "12px sans-serif";
      nice(x0, x1, 8).forEach(function (v) {
        text(tickText(v), px(v), B + 18, "center");
        ctx.beginPath(); ctx.moveTo(px(v), B); ctx.lineTo(px(v), B + 5); ctx.stroke();
      });
      text("x (direction 1)", (L + R) / 2, B + 38, "center");
      nice(lo, hi, 6).forEach(function (v) {
        text(valueText(v), L - 8, py(v) + 4, "right");
        ctx.beginPath(); ctx.moveTo(L - 5, py(v)); ctx.lineTo(L, py(v)); ctx.stroke();
      });
      text(data.axis_label, L, T - 12, "left");
      ctx.strokeStyle = colour(lo + 0.35 * span);
      ctx.lineWidth = 2;
      ctx.beginPath();
      var open = false;
      for (var i = 0; i < n; i++) {
        if (zs[i] === null) { open = false; continue; }
        if (open) { ctx.lineTo(px(xs[i]), py(zs[i])); } else { ctx.moveTo(px(xs[i]), py(zs[i])); }
        open = true;
      }
      ctx.stroke();
      if (hover >= 0 && zs[hover] !== null) {
        ctx.fillStyle = "#d62728";
        ctx.beginPath();
        ctx.arc(px(xs[hover]), py(zs[hover]), 4, 0, 2 * Math.PI);
        ctx.fill();
      }
    };
    canvas.addEventListener("mousemove", function (e) {
      var m = mouse(e), best = -1, dist = Infinity;
      for (var i = 0; i < n; i++) {
        var d = Math.abs(px(xs[i]) - m[0]);
        if (d < dist) { dist = d; best = i; }
      }
      hover = best;
      readout.textContent = "x=" + num(xs[best]) + "  " + data.quantity + "=" + num(data.values[best]);
      redraw();
    });
    draw();
  }

  // --- 2-D: a rotatable surface --------------------------------------------------------------
  function surface() {
    var xs = data.x, ys = data.y, nx = xs.length, ny = ys.length;
    var view, drag = null, screen = [], order = [];
    function scaled(v, a, b) { return b > a ? 2 * (v - a) / (b - a) - 1 : 0; }
    var model = [];  // per grid point (row-major i * ny + j): [X, Y, Z] or null
    for (var i = 0; i < nx; i++) {
      for (var j = 0; j < ny; j++) {
        var z = data.z[i][j];
        model.push(z === null ? null : [scaled(xs[i], xs[0], xs[nx - 1]),
          scaled(ys[j], ys[0], ys[ny - 1]), 1.2 * (z - lo) / span - 0.6]);
      }
    }
    // cells over a stride that keeps the drawing fast on large grids
    var stride = Math.max(1, Math.ceil(Math.sqrt((nx - 1) * (ny - 1) / data.max_cells)));
    var quads = [];
    for (var a = 0; a < nx - 1; a += stride) {
      for (var b = 0; b < ny - 1; b += stride) {
        var a2 = Math.min(a + stride, nx - 1), b2 = Math.min(b + stride, ny - 1);
        var k = [a * ny + b, a2 * ny + b, a2 * ny + b2, a * ny + b2];
        if (model[k[0]] && model[k[1]] && model[k[2]] && model[k[3]]) {
          var v = (data.z[a][b] + data.z[a2][b] + data.z[a2][b2] + data.z[a][b2]) / 4;
          quads.push({k: k, v: v, depth: 0});
        }
      }
    }
    function reset() { view = {yaw: -0.7, pitch: 0.55, zoom: 1}; }
    function project(p) {
      var cy = Math.cos(view.yaw), sy = Math.sin(view.yaw);
      var cp = Math.cos(view.pitch), sp = Math.sin(view.pitch);
      var s = 0.3 * Math.min(W, H) * view.zoom;
      var xr = p[0] * cy - p[1] * sy, yr = p[0] * sy + p[1] * cy;
      return [W / 2 - 60 + s * xr, H / 2 - s * (p[2] * cp + yr * sp), p[2] * sp - yr * cp];
    }
    function line(a, b, style) {
      var p = project(a), q = project(b);
      ctx.strokeStyle = style;
      ctx.beginPath();
      ctx.moveTo(p[0], p[1]);
      ctx.lineTo(q[0], q[1]);
      ctx.stroke();
    }
    // an axis along the floor edge from a to b (model space), ticked at the data values vs,
    // placed at model position at(v); tick labels pushed outward (a model-space direction)
    function axis(vs, at, outward, label, format) {
      ctx.lineWidth = 1;
      line(at(vs[0]), at(vs[vs.length - 1]), "#444");
      vs.forEach(function (v) {
        var p = at(v), tip = [p[0] + 0.04 * outward[0], p[1] + 0.04 * outward[1], p[2]];
        var where = project([p[0] + 0.16 * outward[0], p[1] + 0.16 * outward[1], p[2]]);
        line(p, tip, "#444");
        text(format(v), where[0], where[1] + 4, "center");
      });
      var mid = at((vs[0] + vs[vs.length - 1]) / 2);
      var spot = project([mid[0] + 0.42 * outward[0], mid[1] + 0.42 * outward[1], mid[2]]);
      text(label, spot[0], spot[1] + 4, "center");
    }
    function nearest(candidates) {  // the candidate point nearest the eye (largest depth)
      return candidates.reduce(function (a, b) { return project(b)[2] > project(a)[2] ? b : a; });
    }
    function axes() {
      ctx.font = "12px sans-serif";
      var gx = nice(xs[0], xs[nx - 1], 5), gy = nice(ys[0], ys[ny - 1], 5);
      var ey = nearest([[0, -1, -0.6], [0, 1, -0.6]])[1];  // the x axis on the front edge
      var ex = nearest([[-1, 0, -0.6], [1, 0, -0.6]])[0];  // the y axis on its front edge
      axis(gx, function (v) { return [scaled(v, xs[0], xs[nx - 1]), ey, -0.6]; }, [0, ey, 0],
        "x (direction 1)", tickText);
      axis(gy, function (v) { return [ex, scaled(v, ys[0], ys[ny - 1]), -0.6]; }, [ex, 0, 0],
        "y (direction 2)", tickText);
      // z: on the floor corner drawn furthest left, labels left of it
      var corners = [[-1, -1], [-1, 1], [1, -1], [1, 1]];
      var c = corners.reduce(function (a, b) {
        return project([b[0], b[1], 0])[0] < project([a[0], a[1], 0])[0] ? b : a;
      });
      var zt = nice(lo, hi, 5);
      line([c[0], c[1], -0.6], [c[0], c[1], 0.6], "#444");
      zt.forEach(function (v) {
        var p = project([c[0], c[1], 1.2 * (v - lo) / span - 0.6]);
        ctx.beginPath(); ctx.moveTo(p[0] - 5, p[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
        text(valueText(v), p[0] - 8, p[1] + 4, "right");
      });
      var top = project([c[0], c[1], 0.6]);
      text(data.axis_label, top[0], top[1] - 12, "center");
    }
    function floor() {  // the box's floor, behind everything
      ctx.lineWidth = 1;
      var f = [[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]];
      for (var n = 0; n < 4; n++) {
        line([f[n][0], f[n][1], -0.6], [f[n + 1][0], f[n + 1][1], -0.6], "#ccc");
      }
    }
    draw = function () {
      ctx.clearRect(0, 0, W, H);
      screen = model.map(function (p) { return p ? project(p) : null; });
      for (var n = 0; n < quads.length; n++) {
        var q = quads[n];
        q.depth = (screen[q.k[0]][2] + screen[q.k[1]][2] + screen[q.k[2]][2] + screen[q.k[3]][2]) / 4;
      }
      order = quads.slice().sort(function (u, w) { return u.depth - w.depth; });
      floor();
      ctx.lineWidth = 0.6;
      for (var m = 0; m < order.length; m++) {
        var c = order[m].k, fill = colour(order[m].v);
        ctx.beginPath();
        ctx.moveTo(screen[c[0]][0], screen[c[0]][1]);
        for (var e = 1; e < 4; e++) { ctx.lineTo(screen[c[e]][0], screen[c[e]][1]); }
        ctx.closePath();
        ctx.fillStyle = fill;
        ctx.strokeStyle = fill;  // hides the seams between cells
        ctx.fill();
        ctx.stroke();
      }
      axes();  // after the surface, so that no part of it hides an axis, a tick or a label
      colourbar();
    };
    function inside(m, a, b, c) {  // is m in the triangle abc (either winding)?
      var d1 = (m[0] - b[0]) * (a[1] - b[1]) - (a[0] - b[0]) * (m[1] - b[1]);
      var d2 = (m[0] - c[0]) * (b[1] - c[1]) - (b[0] - c[0]) * (m[1] - c[1]);
      var d3 = (m[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (m[1] - a[1]);
      return !((d1 < 0 || d2 < 0 || d3 < 0) && (d1 > 0 || d2 > 0 || d3 > 0));
    }
    function pick(m) {  // the grid point nearest the mouse on the front-most cell under it
      for (var n = order.length - 1; n >= 0; n--) {
        var c = order[n].k, s = c.map(function (k) { return screen[k]; });
        if (inside(m, s[0], s[1], s[2]) || inside(m, s[0], s[2], s[3])) {
          var best = c[0], dist = Infinity;
          for (var e = 0; e < 4; e++) {
            var d = Math.pow(s[e][0] - m[0], 2) + Math.pow(s[e][1] - m[1], 2);
            if (d < dist) { dist = d; best = c[e]; }
          }
          return best;
        }
      }
      return -1;
    }
    canvas.addEventListener("mousedown", function (e) { drag = mouse(e); });
    canvas.addEventListener("mouseup", function () { drag = null; });
    canvas.addEventListener("mouseleave", function () { drag = null; });
    canvas.addEventListener("dblclick", function () { reset(); redraw(); });
    canvas.addEventListener("mousemove", function (e) {
      var m = mouse(e);
      if (drag) {
        view.yaw += (m[0] - drag[0]) * 0.01;
        view.pitch = Math.max(-1.55, Math.min(1.55, view.pitch + (m[1] - drag[1]) * 0.01));
        drag = m;
        redraw();
        return;
      }
      var k = pick(m);
      if (k >= 0) {
        var i = Math.floor(k / ny), j = k % ny;
        readout.textContent = "x=" + num(xs[i]) + "  y=" + num(ys[j]) + "  " +
          data.quantity + "=" + num(data.values[i][j]);
      } else {
        readout.textContent = "";
      }
    });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      view.zoom = Math.max(0.2, Math.min(20, view.zoom * Math.exp(-e.deltaY * 0.0015)));
      redraw();
    }, {passive: false});
    reset();
    draw();
  }
})();
"""
