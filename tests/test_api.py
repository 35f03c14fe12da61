"""The Python API on objects: an in-memory model gives the CLI's surface on its checkpoint."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader, TensorDataset

import landscape
from landscape.cli import main
from landscape.errors import CheckpointError, ConfigError, SurfaceFileError
from landscape.models import build_model

ARGS = {"in_features": 6, "hidden": 8, "num_classes": 3}
MLP = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
       "--model-arg", "num_classes=3"]  # fmt: skip


def trained(tiny_mlp_ckpt: Path) -> torch.nn.Module:
    model = build_model("mlp", ARGS)
    model.load_state_dict(torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"])
    return model


def tensors(tiny_npz: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.load(tiny_npz)
    return torch.from_numpy(data["x"]), torch.from_numpy(data["y"])


def cli_surface(tmp_path: Path, npz: Path, ckpt: Path, *extra: str) -> landscape.Surface:
    out = tmp_path / "cli.h5"
    result = CliRunner().invoke(main, [
        "compute", *MLP, "--checkpoint", str(ckpt), "--data", f"npz:{npz}", "--x=-1:1:5",
        "--y=-1:1:4", "--engine", "reference", "--out", str(out), "--quiet", *extra,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return landscape.load(out)


@pytest.mark.parametrize("direction", ["filter-norm", "pca"])
def test_an_in_memory_model_gives_the_cli_surface(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, direction: str
) -> None:
    model = trained(tiny_mlp_ckpt)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = landscape.compute(
        model, tensors(tiny_npz), x=(-1, 1, 5), y="-1:1:4", direction=direction, seed=0,
        engine="reference", progress=False,
    )  # fmt: skip
    ref = cli_surface(tmp_path, tiny_npz, tiny_mlp_ckpt, "--direction", direction)
    np.testing.assert_array_equal(s.x, ref.x)
    np.testing.assert_array_equal(s.y, ref.y)
    assert s.loss.shape == (5, 4) and s.acc.shape == (5, 4)
    np.testing.assert_allclose(s.loss, ref.loss, rtol=1e-6)
    np.testing.assert_allclose(s.acc, ref.acc, rtol=1e-6)
    for mine, theirs in zip(s.directions, ref.directions, strict=True):
        assert mine.keys() == theirs.keys()
        for name in mine:
            torch.testing.assert_close(mine[name], theirs[name])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # unchanged
    assert s.analysis()["train_loss"]["minimum"]["value"] == pytest.approx(float(np.min(s.loss)))


def test_save_plot_and_the_cli_reads_the_file(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    s = landscape.compute(trained(tiny_mlp_ckpt), tensors(tiny_npz), x=(-1, 1, 3), y=(-1, 1, 3),
                          progress=False)  # fmt: skip
    saved = s.save(str(tmp_path / "s.h5"))
    result = CliRunner().invoke(main, ["info", saved])
    assert result.exit_code == 0, result.output
    assert "model:       in-memory:MLP" in result.stdout and "in-memory:tensors" in result.stdout
    figures = s.plot(str(tmp_path / "plots"), kinds=["contour"], scales=["log"])
    assert [Path(f).name for f in figures] == ["surface_train_loss_contour_log.png"]
    np.testing.assert_array_equal(landscape.load(saved).loss, s.loss)


def test_plot_without_a_folder_returns_the_figures_and_switches_no_backend(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """``s.plot()`` in a notebook: the figures the folder would get, as Figure objects by name;
    neither call touches the process's matplotlib backend (a notebook's stays inline)."""
    ckpt, npz = str(tiny_mlp_ckpt), str(tiny_npz)
    code = f"""
import sys, matplotlib, numpy as np, torch
matplotlib.use("svg")  # the caller's own choice, e.g. a notebook's inline backend
import landscape
from landscape.diagnostics.plots import render_plots
from landscape.models import build_model
model = build_model("mlp", {ARGS!r})
model.load_state_dict(torch.load({ckpt!r}, weights_only=True)["state_dict"])
data = np.load({npz!r})
s = landscape.compute(model, (data["x"], data["y"]), x=(-1, 1, 3), y=(-1, 1, 3), progress=False)
files = s.plot({str(tmp_path / "plots")!r}, kinds=["contour", "heatmap"], scales=["linear"])
print(sorted(p.split("surface_")[-1].removesuffix(".png") for p in files), matplotlib.get_backend())
figs = s.plot(kinds=["contour", "heatmap"], scales=["linear"])
print(type(figs["train_loss_contour_linear"]).__name__, sorted(figs), matplotlib.get_backend())
report = landscape.inspect(model, (data["x"], data["y"]))
render_plots(report, {str(tmp_path / "inspect")!r})
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    files, figures, last = done.stdout.splitlines()[-3:]
    names = ["train_acc_heatmap_linear", "train_loss_contour_linear", "train_loss_heatmap_linear"]
    assert files == f"{names} svg"
    assert figures == f"Figure {names} svg"
    assert last == "svg False"  # pyplot, which keeps figures and a backend, never imported
    assert (tmp_path / "inspect" / "weights.png").is_file()


def test_reprs_are_short_summaries(tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    """A surface and an inspection report print a few lines, not their arrays; Jupyter gets
    the summary with a small contour, and the findings as a table."""
    model, data = trained(tiny_mlp_ckpt), tensors(tiny_npz)
    s = landscape.compute(model, data, x=(-1, 1, 5), y=(-1, 1, 5), progress=False)
    text = repr(s)
    assert len(text.splitlines()) <= 10 and "array(" not in text
    assert "grid:        2-D 5 x 5" in text and "done:        25 of 25 points" in text
    assert "train_loss:  min" in text and "directions:  filter-norm" in text
    assert "model:       in-memory:MLP on in-memory:tensors" in text
    html = s._repr_html_()
    assert "grid:        2-D 5 x 5" in html and 'src="data:image/png;base64,' in html
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.1)  # one constant: every layer's units are identical, a symmetry error each
    report = landscape.inspect(model, data)
    text = repr(report)
    assert len(text.splitlines()) <= 10 and "Histogram(" not in text, text
    assert text.startswith("<landscape inspect report: 3 layers, 40 samples>\nfindings: 3 error")
    assert max(len(line) for line in text.splitlines()) <= 120
    html = report._repr_html_()
    assert html.count("<tr>") == 1 + len(report.findings)
    for f in report.findings:
        assert f.check in html


def test_data_as_a_dataset_a_loader_or_batches_give_one_surface(
    tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    x, y = tensors(tiny_npz)
    model = trained(tiny_mlp_ckpt)
    kinds = [(x, y), (x.numpy(), y.numpy()), TensorDataset(x, y),
             DataLoader(TensorDataset(x, y), batch_size=7), [(x[:20], y[:20]), (x[20:], y[20:])]]  # fmt: skip
    losses = [
        landscape.compute(model, data, x=(-1, 1, 3), engine="reference", progress=False).loss
        for data in kinds
    ]
    for other in losses[1:]:
        np.testing.assert_allclose(other, losses[0], rtol=1e-6)


def test_out_writes_while_computing_and_resumes(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    out = tmp_path / "run.h5"
    model, data = trained(tiny_mlp_ckpt), tensors(tiny_npz)
    first = landscape.compute(model, data, x=(-1, 1, 3), out=out, progress=False)
    assert Path(first.path) == out and first.done.all()
    again = landscape.compute(model, data, x=(-1, 1, 3), out=out, progress=False)
    np.testing.assert_array_equal(again.loss, first.loss)
    other = trained(tiny_mlp_ckpt)
    with torch.no_grad():
        other.layers[0].bias.add_(1.0)
    with pytest.raises(SurfaceFileError, match="other weights"):
        landscape.compute(other, data, x=(-1, 1, 3), out=out, progress=False)
    with pytest.raises(SurfaceFileError, match="other data"):  # the same shapes, other samples
        landscape.compute(model, (data[0] + 1, data[1]), x=(-1, 1, 3), out=out, progress=False)


def test_given_directions_a_callable_loss_and_a_trajectory_of_state_dicts(
    tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    model, data = trained(tiny_mlp_ckpt), tensors(tiny_npz)
    d1 = {"layers.0.weight": torch.ones(8, 6)}
    s = landscape.compute(model, data, x=(0, 1, 2), directions=[d1], progress=False)
    moved = trained(tiny_mlp_ckpt)
    with torch.no_grad():
        moved.layers[0].weight.add_(1.0)
    xs, ys = data
    expected = float(torch.nn.functional.cross_entropy(moved(xs), ys))
    assert s.loss[1] == pytest.approx(expected, rel=1e-5)
    assert s.directions[0]["layers.0.weight"].sum() == 48

    def per_sample_mse(outputs, targets):
        return (outputs - torch.nn.functional.one_hot(targets, 3)).square().mean(dim=1)

    s = landscape.compute(model, data, x=(-1, 1, 3), loss=per_sample_mse, progress=False)
    assert np.isfinite(s.loss).all()

    torch.manual_seed(1)
    path = []
    for _ in range(4):  # a made-up training run ending at the model
        state = {k: v + 0.1 * torch.randn_like(v) for k, v in model.state_dict().items()}
        path.append(state)
    s = landscape.compute(model, data, x=(-1, 1, 3), y=(-1, 1, 3), direction="trajectory",
                          trajectory=path, progress=False)  # fmt: skip
    assert len(s.trajectory["x"]) == 5  # the four states and the model, its end
    assert s.trajectory["x"][-1] == pytest.approx(0.0, abs=1e-6)


def test_interpolation_from_the_model_to_another(tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    model, data = trained(tiny_mlp_ckpt), tensors(tiny_npz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = build_model("mlp", ARGS)  # B: another network of the same architecture
    s = landscape.compute(model, data, x=(0, 1, 2), direction="interpolate", target=other,
                          progress=False)  # fmt: skip
    xs, ys = data
    with torch.no_grad():
        at_b = float(torch.nn.functional.cross_entropy(other(xs), ys))
    assert s.loss[1] == pytest.approx(at_b, rel=1e-5)  # a = 1 is B itself
    assert "in-memory:weights" in s.attrs["config"]


def test_inspect_and_curvature_on_objects(tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    model, data = trained(tiny_mlp_ckpt), tensors(tiny_npz)
    report = landscape.inspect(model, data, trained=True)
    assert not report.has_errors and report.layers[0].name == "layers.0"
    s = landscape.compute(model, data, x=(-1, 1, 3), y=(-1, 1, 3), progress=False)
    curv = landscape.curvature(
        model, data, s, x=(-1, 1, 2), y=(-1, 1, 2), samples=20, progress=False
    )
    assert curv.done.all() and np.isfinite(curv.maps["ratio"]).all()
    text = repr(curv)  # a few lines, not every array
    assert len(text.splitlines()) == 3 and "4 of 4 points computed" in text and "array" not in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = build_model("mlp", ARGS)  # another initialization: not the surface's weights
    with pytest.raises(CheckpointError, match="other weights"):
        landscape.curvature(other, data, s, samples=20, progress=False)


def test_a_surface_in_memory_and_its_saved_file_give_the_same_provenance(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """The same surface kept in memory and saved to disk is read alike, and a curvature map
    over either records the same provenance; only the names differ: the file's path (the
    in-memory one is named ``surface``), and the map's ``source`` (``<in-memory surface>``, the
    saved file's resolved path). A map over the in-memory surface can still be written."""
    model, data = trained(tiny_mlp_ckpt), tensors(tiny_npz)
    s = landscape.compute(model, data, x=(-1, 1, 3), y=(-1, 1, 3), progress=False)
    saved = landscape.load(s.save(str(tmp_path / "s.h5")))
    assert (s.path, saved.path) == ("surface", str(tmp_path / "s.h5"))
    assert s.image is not None and saved.image is None
    assert s.attrs == saved.attrs and s.direction_attrs == saved.direction_attrs
    kw = {"x": (-1, 1, 2), "y": (-1, 1, 2), "samples": 20, "progress": False}
    from_memory = landscape.curvature(model, data, s, out=tmp_path / "mem_c.h5", **kw)
    from_disk = landscape.curvature(model, data, saved, **kw)
    assert (from_memory.path, from_disk.path) == (str(tmp_path / "mem_c.h5"), "curvature")
    assert from_memory.attrs.pop("source") == "<in-memory surface>"
    assert from_disk.attrs.pop("source") == str((tmp_path / "s.h5").resolve())
    del from_memory.attrs["created"], from_disk.attrs["created"]  # when each map was made
    assert from_memory.attrs == from_disk.attrs
    np.testing.assert_array_equal(from_memory.maps["ratio"], from_disk.maps["ratio"])


def test_bad_objects_are_named(tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    model, data = trained(tiny_mlp_ckpt), tensors(tiny_npz)
    with pytest.raises(ConfigError, match=r"must be a torch\.nn\.Module"):
        landscape.compute("mlp", data)
    with pytest.raises(ConfigError, match=r"\(min, max, num\)"):
        landscape.compute(model, data, x=(1, 2))
    with pytest.raises(ConfigError, match="which the model does not have"):
        landscape.compute(model, data, directions=[{"nope": torch.ones(1)}], progress=False)


def test_the_cli_refuses_to_rebuild_an_in_memory_run(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    s = landscape.compute(trained(tiny_mlp_ckpt), tensors(tiny_npz), x=(-1, 1, 3), y=(-1, 1, 3),
                          out=tmp_path / "s.h5", progress=False)  # fmt: skip
    result = CliRunner().invoke(main, ["curvature", s.path])
    assert result.exit_code == 1
    assert "computed on an in-memory model handed to the Python API" in result.stderr


NO_FILES = """
import os, sys, numpy as np, torch
import landscape

written = []  # every file or folder this process opens for writing, creates or renames


def audit(event, args):
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            written.append(str(args[0]))
    elif event in ("os.mkdir", "os.rename", "os.replace", "shutil.copyfile"):
        written.append(str(args[0]))


sys.addaudithook(audit)
from landscape.models import build_model

torch.manual_seed(0)
model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
later = {k: v + 0.1 for k, v in model.state_dict().items()}  # a checkpoint held as a state dict
s = landscape.compute(model, (x, y), x=(-1, 1, 3), y=(-1, 1, 3), progress=False)
t = landscape.compute(model, (x, y), x=(-1, 1, 3), direction="trajectory",
                      trajectory=[later, model.state_dict()], progress=False)
b = landscape.compute(model, (x, y), x=(0, 1, 3), direction="interpolate", target=later,
                      progress=False)
c = landscape.curvature(model, (x, y), s, x=(-1, 1, 2), y=(-1, 1, 2), samples=20, progress=False)
assert s.done.all() and t.done.all() and b.done.all() and np.isfinite(c.maps["ratio"]).any()
assert len(s.directions) == 2 and s.analysis()
print("labels", list(t.trajectory["labels"]), b.direction_attrs["targets"])
print("written", [w for w in written if not w.startswith(("/dev/", "/proc/"))])
s.save(sys.argv[1])
"""


def test_compute_without_out_writes_no_file_anywhere(tmp_path: Path) -> None:
    """No temporary surface, no checkpoint written for a state dict, no cache: the working
    folder, TMPDIR, HOME and the cache folder stay empty (until the user saves the surface)."""
    folders = {name: tmp_path / name for name in ("cwd", "tmp", "home", "cache", "mpl")}
    for folder in folders.values():
        folder.mkdir()
    saved = tmp_path / "saved.h5"
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(folders["tmp"]), "HOME": str(folders["home"]),
           "XDG_CACHE_HOME": str(folders["cache"]), "MPLCONFIGDIR": str(folders["mpl"]),
           "PYTHONPATH": str(Path(landscape.__file__).parents[1]),
           "PYTHONDONTWRITEBYTECODE": "1"}  # Python's own bytecode cache is not ours  # fmt: skip
    done = subprocess.run([sys.executable, "-c", NO_FILES, str(saved)], cwd=folders["cwd"],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "labels ['trajectory 0', 'trajectory 1'] [\"target B\"]" in done.stdout
    assert "written []" in done.stdout, done.stdout
    for name, folder in folders.items():
        assert not any(folder.rglob("*")), f"{name}: {sorted(folder.rglob('*'))}"
    assert landscape.load(saved).done.all()  # what save() wrote is a complete surface file
