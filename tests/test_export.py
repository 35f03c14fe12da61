"""Exports: VTK XML PolyData read back with ElementTree, and the self-contained HTML view."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from landscape.cli import main
from landscape.errors import ConfigError, SurfaceFileError
from landscape.plot.export import export_surface
from landscape.store import read_surface
from landscape.surface import Surface

X = np.linspace(-1.0, 1.0, 5)
Y = np.linspace(-0.5, 0.5, 4)


def surface(tmp_path: Path, *, holes: bool = True) -> Surface:
    """A 5 x 4 surface, loss 1 + 10·i + j at (x[i], y[j]); two points not computed."""
    i, j = np.meshgrid(np.arange(5), np.arange(4), indexing="ij")
    loss = 1.0 + 10.0 * i + j
    acc = 1.0 / loss
    if holes:
        loss[1, 2] = acc[1, 2] = np.nan
        loss[4, 0] = acc[4, 0] = np.nan
    done = np.isfinite(loss)
    return Surface(str(tmp_path / "s.h5"), X, Y, {"train_loss": loss, "train_acc": acc}, done)


def floats(element: ET.Element) -> np.ndarray:
    return np.array([float(v) for v in (element.text or "").split()])


def arrays(piece: ET.Element, section: str) -> dict[str, np.ndarray]:
    return {a.get("Name"): floats(a) for a in piece.find(section).findall("DataArray")}


def read_vtp(path: Path) -> tuple[ET.Element, np.ndarray, dict[str, np.ndarray]]:
    root = ET.parse(path).getroot()
    assert root.tag == "VTKFile" and root.get("type") == "PolyData"
    assert root.get("version") == "1.0" and root.get("byte_order") == "LittleEndian"
    piece = root.find("PolyData/Piece")
    points = floats(piece.find("Points/DataArray")).reshape(-1, 3)
    assert int(piece.get("NumberOfPoints")) == len(points)
    return piece, points, arrays(piece, "PointData")


# --- VTP ---------------------------------------------------------------------------------------


def test_vtp_2d_points_quads_and_point_data(tmp_path: Path) -> None:
    s = surface(tmp_path)
    out = export_surface(s, tmp_path / "s.vtp")
    piece, points, data = read_vtp(out)
    loss = s.values["train_loss"]
    kept = [(i, j) for i in range(5) for j in range(4) if np.isfinite(loss[i, j])]
    assert len(points) == 18
    expected = np.array([(X[i], Y[j], loss[i, j]) for i, j in kept])
    np.testing.assert_array_equal(points, expected)
    np.testing.assert_array_equal(data["train_loss"], [loss[k] for k in kept])
    np.testing.assert_array_equal(data["train_acc"], [s.values["train_acc"][k] for k in kept])
    np.testing.assert_allclose(data["log10_train_loss"], np.log10([loss[k] for k in kept]))
    assert piece.find("PointData").get("Scalars") == "train_loss"

    # cells: the 4 x 3 grid cells less those with a corner not computed ((1, 2) has 4, (4, 0) 1)
    cells = arrays(piece, "Polys")
    conn, offsets = cells["connectivity"].astype(int), cells["offsets"].astype(int)
    assert int(piece.get("NumberOfPolys")) == len(offsets) == 12 - 4 - 1
    np.testing.assert_array_equal(offsets, 4 * np.arange(1, 8))
    assert conn.size == offsets[-1] and conn.min() >= 0 and conn.max() < len(points)
    for quad in conn.reshape(-1, 4):  # corners go round one grid cell
        (i0, j0), (i1, j1), (i2, j2), (i3, j3) = (kept[k] for k in quad)
        assert (
            (i1, j1) == (i0 + 1, j0) and (i2, j2) == (i0 + 1, j0 + 1) and (i3, j3) == (i0, j0 + 1)
        )
    for name in ("NumberOfVerts", "NumberOfLines", "NumberOfStrips"):
        assert piece.get(name) == "0"


def test_vtp_log_height(tmp_path: Path) -> None:
    s = surface(tmp_path, holes=False)
    s.values["train_loss"][0, 0] = 0.0  # a zero loss is clipped to the smallest positive one
    piece, points, data = read_vtp(export_surface(s, tmp_path / "log.vtp", log=True))
    loss = s.values["train_loss"].ravel()
    expected = np.log10(np.maximum(loss, loss[loss > 0].min()))
    np.testing.assert_allclose(points[:, 2], expected)
    np.testing.assert_allclose(data["log10_train_loss"], expected)
    assert piece.find("PointData").get("Scalars") == "log10_train_loss"


def test_vtp_1d_polylines_split_at_gaps(tmp_path: Path) -> None:
    loss = np.array([3.0, 2.0, np.nan, 1.0, 2.0, 4.0, np.nan, 5.0])  # the last point is alone
    x = np.linspace(-1, 1, 8)
    s = Surface(str(tmp_path / "l.h5"), x, None, {"train_loss": loss}, np.isfinite(loss))
    piece, points, _ = read_vtp(export_surface(s, tmp_path / "l.vtp"))
    finite = np.isfinite(loss)
    np.testing.assert_array_equal(points, np.stack([x[finite], 0 * x[finite], loss[finite]], 1))
    lines = arrays(piece, "Lines")
    np.testing.assert_array_equal(lines["connectivity"], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(lines["offsets"], [2, 5])
    assert piece.get("NumberOfLines") == "2" and piece.get("NumberOfPolys") == "0"


def test_vtp_reads_in_vtk_when_installed(tmp_path: Path) -> None:
    vtk = pytest.importorskip("vtk")
    out = export_surface(surface(tmp_path), tmp_path / "s.vtp")
    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(out))
    reader.Update()
    poly = reader.GetOutput()
    assert poly.GetNumberOfPoints() == 18 and poly.GetNumberOfPolys() == 7
    assert poly.GetPointData().GetArray("train_loss").GetNumberOfTuples() == 18


# --- HTML --------------------------------------------------------------------------------------


class Page(HTMLParser):
    """The page's title, scripts (with their attributes) and every attribute value."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.scripts: list[tuple[dict, str]] = []
        self.attributes: list[tuple[str, str | None]] = []
        self._in: str | None = None
        self._attrs: dict = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.attributes.extend(attrs)
        if tag in ("title", "script"):
            self._in, self._attrs = tag, dict(attrs)
            if tag == "script":
                self.scripts.append((self._attrs, ""))

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def parse_page(path: Path) -> tuple[Page, dict, str]:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    data = [t for a, t in page.scripts if a.get("type") == "application/json"]
    code = [t for a, t in page.scripts if not a.get("type")]
    assert len(data) == 1 and len(code) == 1
    return page, json.loads(data[0]), code[0]


def nulls(values: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in values]


def assert_offline(path: Path, page: Page) -> None:
    text = path.read_text(encoding="utf-8").lower()
    for marker in ("http://", "https://", "src=", "href=", "url(", "@import", "//cdn"):
        assert marker not in text, marker
    assert all(name not in ("src", "href") for name, _ in page.attributes)


def test_html_embeds_the_values_and_needs_no_network(tmp_path: Path) -> None:
    s = surface(tmp_path)
    out = export_surface(s, tmp_path / "view.html")
    page, data, code = parse_page(out)
    assert_offline(out, page)
    assert "s.h5" in page.title and "train_loss" in page.title
    assert data["x"] == X.tolist() and data["y"] == Y.tolist()
    assert data["values"] == nulls(s.values["train_loss"])
    assert data["z"] == nulls(s.values["train_loss"]) and data["scale"] == "linear"
    assert data["vmin"] == 1.0 and data["vmax"] == np.nanmax(s.values["train_loss"])
    assert len(data["colormap"]) > 8 and "canvas" in code and "getContext" in code


def test_html_log_and_accuracy(tmp_path: Path) -> None:
    s = surface(tmp_path)
    _, data, _ = parse_page(export_surface(s, tmp_path / "log.html", log=True))
    assert data["z"] == nulls(np.log10(s.values["train_loss"])) and data["scale"] == "log"
    assert data["label"] == "log10(train_loss)"
    _, data, _ = parse_page(export_surface(s, tmp_path / "acc.htm", quantity="train_acc"))
    assert data["z"] == nulls(100 * s.values["train_acc"])  # plotted in percent, as the plots do
    assert data["values"] == nulls(s.values["train_acc"])


def test_html_markup_in_names_stays_text(tmp_path: Path) -> None:
    s = surface(tmp_path)
    s.path = str(tmp_path / "a<b>&'\".h5")
    odd = "train</script><b>_loss"  # no HDF5 name holds "/", but nothing here relies on that
    s.values = {odd: s.values["train_loss"]}
    page, data, _ = parse_page(export_surface(s, tmp_path / "odd.html", quantity=odd))
    assert data["file"] == "a<b>&'\".h5" and data["quantity"] == odd
    assert page.title == f"a<b>&'\".h5: {odd}"


NODE_STUB = """
const data = process.argv[2], code = require("fs").readFileSync(process.argv[3], "utf8");
const calls = {}, handlers = {}, readout = {textContent: ""}, log = [];
const ctx = new Proxy({}, {
  get(t, k) {
    return k in t ? t[k] : (...args) => { calls[k] = (calls[k] || 0) + 1; log.push([k, args]); };
  },
  set(t, k, v) { t[k] = v; return true; },
});
const canvas = {width: 960, height: 640, getContext: () => ctx,
  addEventListener: (name, f) => { handlers[name] = f; },
  getBoundingClientRect: () => ({left: 0, top: 0, width: 960, height: 640})};
global.document = {getElementById: (id) =>
  id === "surface-data" ? {textContent: data} : id === "view" ? canvas : readout};
global.window = {requestAnimationFrame: (f) => f()};
new Function(code)();
const first = Object.assign({}, calls);
const texts = log.filter((c) => c[0] === "fillText").map((c) => String(c[1][0]));
let strokes = [], path = [];  // lineTo calls of each beginPath ... stroke
for (const [name] of log) {
  if (name === "beginPath") { path = []; }
  if (name === "lineTo") { path.push(1); }
  if (name === "stroke") { strokes.push(path.length); }
}
const seen = [];
for (let x = 0; x < 960; x += 40) {
  for (let y = 0; y < 640; y += 40) {
    handlers.mousemove({clientX: x, clientY: y});
    if (readout.textContent) { seen.push(readout.textContent); }
  }
}
for (const name of ["mousedown", "mouseup", "dblclick"]) {
  if (handlers[name]) { handlers[name]({clientX: 100, clientY: 100}); }
}
if (handlers.wheel) { handlers.wheel({deltaY: -120, preventDefault() {}}); }
console.log(JSON.stringify({first: first, seen: seen, handlers: Object.keys(handlers), texts: texts,
  strokes: strokes}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("dims", [1, 2])
def test_html_script_runs_in_node(tmp_path: Path, dims: int) -> None:
    """Syntax-check the script, then run it against a stub canvas: one fill per drawn cell."""
    s = surface(tmp_path)
    if dims == 1:
        s = Surface(s.path, X, None, {"train_loss": s.values["train_loss"][:, 0]}, s.done[:, 0])
    _, data, code = parse_page(export_surface(s, tmp_path / "v.html"))
    script = tmp_path / "view.js"
    script.write_text(code)
    subprocess.run(["node", "--check", str(script)], check=True, timeout=30)
    (tmp_path / "stub.js").write_text(NODE_STUB)
    run = subprocess.run(
        ["node", str(tmp_path / "stub.js"), json.dumps(data), str(script)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["seen"], "hovering over the view never showed a value"
    if dims == 2:
        assert report["first"]["fill"] == 7  # the cells with four computed corners
        assert set(report["handlers"]) >= {"mousedown", "mousemove", "wheel", "dblclick"}
        for text in report["seen"]:  # every readout names a grid point and its value
            fields = dict(part.split("=") for part in text.split())
            i = int(np.argmin(np.abs(X - float(fields["x"]))))
            j = int(np.argmin(np.abs(Y - float(fields["y"]))))
            assert float(fields["train_loss"]) == s.values["train_loss"][i, j], text
        # axes with their names and ticked values, drawn after (over) the surface
        assert {"x (direction 1)", "y (direction 2)", "train_loss"} <= set(report["texts"])
        assert {"-1", "0", "1"} <= set(report["texts"]) or {"-2", "0", "2"} <= set(report["texts"])
    else:
        assert max(report["strokes"]) == 3  # x[0..3] drawn in one stroke, x[4] not computed
        assert "x=0  train_loss=21" in report["seen"]
        assert "x (direction 1)" in report["texts"] and "0" in report["texts"]
    numbers = [t for t in report["texts"] if t.replace(".", "").replace("-", "").isdigit()]
    assert len(numbers) >= 8  # tick values on the axes and the colour bar


# --- files and the command line ----------------------------------------------------------------


def export(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["export", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cli_exports_li_reference_files(tmp_path: Path, li_fixture: Path) -> None:
    s2 = read_surface(li_fixture / "surface_2d_11x11.h5")
    code, out, err = export(
        str(li_fixture / "surface_2d_11x11.h5"), "--out", str(tmp_path / "r.vtp")
    )
    assert code == 0 and out.strip() == str(tmp_path / "r.vtp"), err
    piece, points, data = read_vtp(tmp_path / "r.vtp")
    assert len(points) == 121 and piece.get("NumberOfPolys") == "100"
    # points in our (x, y) order: the file's meshgrid order was transposed on read
    np.testing.assert_array_equal(data["train_loss"], s2.values["train_loss"].ravel())
    np.testing.assert_array_equal(points[:, 2], s2.values["train_loss"].ravel())
    np.testing.assert_array_equal(data["train_acc"], s2.values["train_acc"].ravel())

    code, _, err = export(
        str(li_fixture / "surface_1d_11.h5"), "--out", str(tmp_path / "r1"), "--format", "html"
    )
    assert code == 0, err
    page, data, _ = parse_page(tmp_path / "r1")
    assert_offline(tmp_path / "r1", page)
    s1 = read_surface(li_fixture / "surface_1d_11.h5")
    assert data["y"] is None and data["values"] == s1.values["train_loss"].tolist()
    assert not list(tmp_path.glob(".*"))  # written under a temporary name, renamed


def test_cli_export_of_a_stored_file(tmp_path: Path) -> None:
    from test_analysis import write_bowl_file

    path = write_bowl_file(tmp_path / "bowl.h5", np.diag([2.0, 1.0]), complete=False)
    code, _, err = export(str(path), "--out", str(tmp_path / "b.html"), "--log")
    assert code == 0, err
    _, data, _ = parse_page(tmp_path / "b.html")
    s = read_surface(path)
    assert data["values"] == nulls(s.values["train_loss"]) and data["scale"] == "log"
    code, _, err = export(str(path), "--out", str(tmp_path / "b.vtp"))
    _, points, _ = read_vtp(tmp_path / "b.vtp")
    assert code == 0 and len(points) == 100  # only the done points


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--out", "{tmp}/x.png"], "cannot tell the export format"),
        (["--out", "{tmp}/x.vtp", "--quantity", "test_loss"], "no quantity 'test_loss'"),
        (["--out", "{tmp}/no/such/x.vtp"], "does not exist"),
        (["--out", "{tmp}/s.h5", "--format", "vtp"], "is the surface file itself"),
    ],
)
def test_cli_export_errors(tmp_path: Path, args: list[str], fragment: str) -> None:
    from test_analysis import write_bowl_file

    path = write_bowl_file(tmp_path / "s.h5", np.eye(2))
    before = path.read_bytes()
    code, _, err = export(str(path), *[a.format(tmp=tmp_path) for a in args])
    assert code == 1 and err.startswith("Error: ") and fragment in err, err
    assert len(err.strip().splitlines()) == 1 and path.read_bytes() == before


def test_nothing_computed_is_refused(tmp_path: Path) -> None:
    s = surface(tmp_path)
    s.values["train_loss"][:] = np.nan
    s.done[:] = False
    with pytest.raises(SurfaceFileError, match="no computed points"):
        export_surface(s, tmp_path / "e.vtp")
    with pytest.raises(ConfigError, match="unknown export format"):
        export_surface(s, tmp_path / "e.vtp", fmt="obj")


# --- plain arrays: npz and csv -----------------------------------------------------------------

MLP = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
       "--model-arg", "num_classes=3"]  # fmt: skip


def made_by_cli(tmp_path: Path, npz: Path, ckpt: Path, *grid: str) -> Path:
    """A surface computed by the CLI, with its point (0[, 0]) then marked not computed (NaN)."""
    out = tmp_path / "s.h5"
    result = CliRunner().invoke(
        main,
        ["compute", *MLP, "--checkpoint", str(ckpt), "--data", f"npz:{npz}", *grid,
         "--engine", "reference", "--out", str(out), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    with h5py.File(out, "r+") as f:
        for name in ("train_loss", "train_acc", "train_loss_se"):
            f[name][(0,) * f[name].ndim] = np.nan
        f["done"][(0,) * f["done"].ndim] = False
    return out


def read_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return {name: np.array([float(r[k]) for r in rows[1:]]) for k, name in enumerate(rows[0])}


@pytest.mark.parametrize(
    "grid", [("--x=-1:1:5", "--repeat", "2"), ("--x=-1:1:4", "--y=-0.5:0.5:3")], ids=["1d", "2d"]
)
def test_npz_and_csv_hold_the_files_values(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, grid: tuple[str, ...]
) -> None:
    path = made_by_cli(tmp_path, tiny_npz, tiny_mlp_ckpt, *grid)
    code, out, err = export(str(path), "--format", "npz")  # named after the surface, beside it
    assert code == 0 and out.strip() == str(tmp_path / "s.npz"), err
    code, _, err = export(str(path), "--out", str(tmp_path / "table.csv"))
    assert code == 0, err
    arrays, table = np.load(tmp_path / "s.npz"), read_csv(tmp_path / "table.csv")
    with h5py.File(path, "r") as f:
        stored = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        for r in f.get("repeats", {}):
            stored |= {
                f"repeats/{r}/{k}": f[f"repeats/{r}/{k}"][()] for k in ("train_loss", "done")
            }
    x = stored["xcoordinates"]
    y = stored.get("ycoordinates")
    shape = stored["done"].shape
    assert np.isnan(arrays["train_loss"].flat[0]) and not arrays["done"].flat[0]
    for name, values in stored.items():
        np.testing.assert_array_equal(arrays[name], values, err_msg=name)
        assert arrays[name].dtype == (bool if name.endswith("done") else np.float64)
        if not name.endswith("coordinates"):  # long format: row k is point k, row-major
            np.testing.assert_array_equal(table[name], values.ravel().astype(float), name)
    assert ("repeats/1/train_loss" in arrays) == ("--repeat" in grid)
    coords = np.meshgrid(x, y, indexing="ij") if y is not None else [x]
    for axis, c in zip("xy", coords, strict=False):
        np.testing.assert_array_equal(table[axis], c.ravel())
    assert len(table["x"]) == int(np.prod(shape)) and ("y" in table) == (y is not None)
    assert not list(tmp_path.glob(".*"))  # written under a temporary name, renamed


def test_npz_of_a_li_reference_file(tmp_path: Path, li_fixture: Path) -> None:
    source = li_fixture / "surface_2d_11x11.h5"
    code, _, err = export(str(source), "--out", str(tmp_path / "r.npz"))
    assert code == 0, err
    arrays = np.load(tmp_path / "r.npz")
    with h5py.File(source, "r") as f:
        loss, acc = f["train_loss"][()], f["train_acc"][()]
        np.testing.assert_array_equal(arrays["xcoordinates"], f["xcoordinates"][()])
    # theirs: meshgrid(x, y) order (element (i, j) at (x[j], y[i])), accuracy in percent
    np.testing.assert_array_equal(arrays["train_loss"], loss.T)
    np.testing.assert_allclose(arrays["train_acc"], acc.T / 100, rtol=1e-15)
    assert arrays["done"].all()


def test_export_without_out_or_format_is_one_error(tmp_path: Path) -> None:
    from test_analysis import write_bowl_file

    path = write_bowl_file(tmp_path / "s.h5", np.eye(2))
    code, _, err = export(str(path))
    assert code == 1 and err.startswith("Error: give --out FILE"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]
