"""The library's run: model formats, progress reporting, provenance, devices."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.config import ComputeConfig
from landscape.runs.surface import run_compute
from landscape.store import read_surface


def config(tmp_path: Path, npz: Path, **groups) -> ComputeConfig:
    base = {
        "model": {"name": "mlp", "args": {"in_features": 6, "hidden": 8, "num_classes": 3}},
        "data": {"name": f"npz:{npz}"},
        "grid": {"x": "-1:1:3", "y": "-1:1:3"},
        "eval": {"device": "cpu"},
        "out": str(tmp_path / "s.h5"),
    }
    for key, value in groups.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return ComputeConfig.from_dict(base)


def values(path: str | Path) -> np.ndarray:
    return read_surface(path).values["train_loss"]


def test_torchscript_export_and_safetensors_give_the_same_surface(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """One network in four containers: the eager model, TorchScript, torch.export, safetensors."""
    from safetensors.torch import save_file

    from landscape.models import build_model

    eager = run_compute(config(tmp_path, tiny_npz, model={"checkpoint": str(tiny_mlp_ckpt)}))
    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    model.load_state_dict(torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"])
    model.eval()

    st = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(st))
    r = run_compute(
        config(tmp_path, tiny_npz, model={"checkpoint": str(st)}, out=str(tmp_path / "st.h5"))
    )
    np.testing.assert_array_equal(values(r.path), values(eager.path))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = tmp_path / "m.ts"
        torch.jit.save(torch.jit.script(model), str(scripted))
        r = run_compute(
            config(
                tmp_path,
                tiny_npz,
                model={"name": str(scripted), "args": {}},
                out=str(tmp_path / "ts.h5"),
            )
        )
    np.testing.assert_allclose(values(r.path), values(eager.path), rtol=1e-6)

    exported = tmp_path / "m.pt2"
    batch = ({0: torch.export.Dim("batch")},)  # any batch size, as users export for inference
    torch.export.save(
        torch.export.export(model, (torch.zeros(2, 6),), dynamic_shapes=batch), str(exported)
    )
    r = run_compute(
        config(
            tmp_path,
            tiny_npz,
            model={"name": str(exported), "args": {}},
            out=str(tmp_path / "e.h5"),
        )
    )
    np.testing.assert_allclose(values(r.path), values(eager.path), rtol=1e-6)


def test_torchscript_model_is_not_mutated(tmp_path: Path, tiny_npz: Path) -> None:
    from landscape.engine import ReferenceEvaluator
    from landscape.params import parameters_of

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.script(torch.nn.Linear(6, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    theta = parameters_of(model)
    d = {k: torch.ones_like(v) for k, v in theta.items()}
    x = torch.randn(5, 6)
    y = torch.tensor([0, 1, 2, 0, 1])
    ev = ReferenceEvaluator(
        model,
        theta,
        [d],
        lambda: iter([(x, y)]),
        lambda o, t: torch.nn.functional.cross_entropy(o, t, reduction="none"),
    )
    r = ev.evaluate((2.0,))
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(
            x @ (theta["weight"] + 2).T + theta["bias"] + 2, y
        )
    assert r.loss == pytest.approx(float(expected), rel=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_progress_reports_every_point(tmp_path: Path, tiny_npz: Path) -> None:
    calls: list[tuple] = []

    class Recorder:
        def __init__(self, total: int, initial: int) -> None:
            calls.append(("open", total, initial))

        def update(self, n: int) -> None:
            calls.append(("update", n))

        def close(self) -> None:
            calls.append(("close",))

    run_compute(config(tmp_path, tiny_npz), progress=Recorder)
    assert calls[0] == ("open", 9, 0) and calls[-1] == ("close",)
    assert sum(c[1] for c in calls if c[0] == "update") == 9


def test_cli_progress_bar_shows_rate_and_time_left() -> None:
    from landscape.cli import _progress_bar

    stream = io.StringIO()
    bar = _progress_bar(100, 10, file=stream, force=True)
    bar.update(5)
    bar.close()
    text = stream.getvalue()
    assert "15/100" in text and "pt/s" in text and "<" in text  # elapsed<remaining


def test_progress_in_a_log_is_a_line_every_30_seconds() -> None:
    """stderr that is not a terminal (a Slurm log, nohup): lines, not a bar, every ~30 s."""
    from landscape.cli import PROGRESS_SECONDS, LineProgress, _progress_bar

    assert isinstance(_progress_bar(10, 0, file=io.StringIO()), LineProgress)
    now = [0.0]
    stream = io.StringIO()
    bar = LineProgress(441, 21, stream, clock=lambda: now[0])
    for _ in range(20):  # 20 points in 40 s: one line, at 30 s (the next would be at 60 s)
        now[0] += 2.0
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert PROGRESS_SECONDS == 30.0 and len(lines) == 1
    assert lines[0] == "points 36/441 (8%), 0.5 points/s, 13m30s left"


def test_max_samples_subset_is_recorded(tmp_path: Path, tiny_npz: Path) -> None:
    r = run_compute(config(tmp_path, tiny_npz, data={"max_samples": 10, "seed": 4}))
    s = read_surface(r.path)
    import json

    described = json.loads(s.attrs["data"])
    assert described["n"] == 10 and described["max_samples"] == 10 and described["seed"] == 4
    assert "max_samples: 10" in s.attrs["config"]


@pytest.mark.cuda
def test_cuda_matches_cpu(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = run_compute(config(tmp_path, tiny_npz, model={"checkpoint": str(tiny_mlp_ckpt)}))
    gpu = run_compute(
        config(tmp_path, tiny_npz, model={"checkpoint": str(tiny_mlp_ckpt)}, eval={"device": "cuda"},
               out=str(tmp_path / "g.h5"))
    )  # fmt: skip
    assert gpu.device.startswith("cuda")
    np.testing.assert_allclose(values(gpu.path), values(cpu.path), rtol=1e-4)


def test_a_rerun_on_a_complete_file_loads_no_model(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """A complete file's rerun is checked (config, grid, checkpoint's sha256) and reported
    before anything is loaded: the model file's factory is never called. Another checkpoint is
    still refused; a file with points missing still loads the model and computes them."""
    import h5py
    from click.testing import CliRunner

    from landscape.cli import main

    marker = tmp_path / "factory_called"
    factory = tmp_path / "net.py"
    factory.write_text(
        "from pathlib import Path\n"
        "from landscape.models import build_model\n"
        "def make():\n"
        f"    Path({str(marker)!r}).write_text('called')\n"
        "    return build_model('mlp', {'in_features': 6, 'hidden': 8, 'num_classes': 3})\n"
    )
    other = tmp_path / "other.pt"
    state = torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"]
    torch.save({k: v + 1 for k, v in state.items()}, other)
    out = tmp_path / "s.h5"

    def compute(ckpt: Path) -> tuple[int, str]:
        result = CliRunner().invoke(main, [
            "compute", "--model", f"{factory}:make", "--checkpoint", str(ckpt), "--data",
            f"npz:{tiny_npz}", "--x=-1:1:3", "--y=-1:1:3", "--out", str(out),
        ])  # fmt: skip
        return result.exit_code, result.output

    assert compute(tiny_mlp_ckpt)[0] == 0 and marker.exists()
    marker.unlink()
    before = out.read_bytes()
    code, text = compute(tiny_mlp_ckpt)
    assert code == 0, text
    assert not marker.exists() and out.read_bytes() == before
    assert "is complete: all 9 points were computed before" in text
    code, text = compute(other)
    assert code != 0 and "other weights" in text and not marker.exists()
    with h5py.File(out, "r+") as f:
        f["done"][0, 0] = False
    code, text = compute(tiny_mlp_ckpt)
    assert code == 0 and "1 of 9 points computed" in text and marker.exists()
