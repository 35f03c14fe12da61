"""info, plot --compare and `landscape study pair` on paths between two networks (issue 25)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.models import build_model
from landscape.plot.paths import path_label
from landscape.store import read_surface
from tests.test_cli import TINY, assert_one_line_error, run


def _trained(path: Path, x: torch.Tensor, y: torch.Tensor, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.save({"state_dict": model.state_dict()}, path)
    return path


@pytest.fixture
def pair(tmp_path: Path, tiny_npz: Path) -> tuple[Path, Path, Path]:
    """(data, A, B): two tiny MLPs trained from different seeds on tiny_npz."""
    d = np.load(tiny_npz)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    return tiny_npz, _trained(tmp_path / "a.pt", x, y, 0), _trained(tmp_path / "b.pt", x, y, 1)


def _path(pair: tuple[Path, Path, Path], out: Path, *extra: str) -> Path:
    data, a, b = pair
    code, _, err = run(
        "compute", *TINY, "--checkpoint", str(a), "--target", str(b), "--direction",
        "interpolate", "--data", f"npz:{data}", "--x=-0.5:1.5:9", "--out", str(out), "--quiet",
        *extra,
    )  # fmt: skip
    assert code == 0, err
    return out


def test_info_prints_the_barrier_and_the_alignment(pair, tmp_path: Path) -> None:
    path = _path(pair, tmp_path / "w.h5", "--align", "weights")
    code, out, _ = run("info", str(path))
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("barrier:"))
    b = read_surface(path).stored_analysis["train_loss"]["barrier"]  # stored in /analysis
    assert f"{b['value']:.4g} ± {b['se']:.2g} at t={b['t']:.4g}" in line
    assert "error barrier" in out
    assert any(x.startswith("aligned:") and "B by weights" in x for x in out.splitlines())
    assert "align=weights" in out


def test_align_with_another_family_is_refused_in_one_line(pair, tmp_path: Path) -> None:
    data, a, _ = pair
    code, _, err = run(
        "compute", *TINY, "--checkpoint", str(a), "--data", f"npz:{data}", "--x=-1:1:3",
        "--out", str(tmp_path / "s.h5"), "--align", "weights", "--quiet",
    )  # fmt: skip
    assert_one_line_error(code, err, 1, "(--align) is for the path between two checkpoints")
    assert not (tmp_path / "s.h5").exists()


def test_compare_draws_the_paths_with_their_labels(pair, tmp_path: Path) -> None:
    files = [_path(pair, tmp_path / f"{m}.h5", "--align", m) for m in ("none", "weights")]
    assert [path_label(read_surface(f)) for f in files] == ["straight", "aligned (weights)"]
    code, out, err = run("plot", "--compare", *map(str, files), "--out", str(tmp_path / "fig"),
                         "--kind", "1d", "--linear")  # fmt: skip
    assert code == 0, err
    assert str(tmp_path / "fig" / "compare_paths_train.png") in out.splitlines()
    assert (tmp_path / "fig" / "compare_paths_train.png").stat().st_size > 10_000


def test_compare_of_other_1d_surfaces_draws_no_paths(pair, tmp_path: Path) -> None:
    data, a, _ = pair
    files = []
    for seed in (1, 2):
        f = tmp_path / f"fn{seed}.h5"
        code, _, err = run("compute", *TINY, "--checkpoint", str(a), "--data", f"npz:{data}",
                           "--x=-1:1:5", "--seed", str(seed), "--out", str(f), "--quiet")  # fmt: skip
        assert code == 0, err
        files.append(str(f))
    code, out, _ = run("plot", "--compare", *files, "--out", str(tmp_path / "fig"), "--kind", "1d")
    assert code == 0 and "compare_paths" not in out


def test_study_pair_end_to_end_and_resumed(pair, tmp_path: Path) -> None:
    """The CLI as a subprocess: the paths, the figures, the summary; a rerun skips them."""
    data, a, b = pair
    out = tmp_path / "study"
    argv = [sys.executable, "-m", "landscape", "study", "pair", *TINY, "--checkpoint", str(a),
            "--target", str(b), "--data", f"npz:{data}", "--x=0:1:5", "--out", str(out),
            "--path", "straight", "--path", "aligned-weights", "--path", "aligned-activations"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    names = ("straight", "aligned-weights", "aligned-activations")
    for name in names:
        assert read_surface(out / f"{name}.h5").done.all()
    assert (out / "compare_paths_train.png").exists()
    summary = (out / "summary.txt").read_text()
    assert all(f"{name} " in summary and "loss barrier" in summary for name in names)
    code, again, err = run(*argv[3:])  # in-process: the same command, its files complete
    assert code == 0, err
    assert again.count("complete, skipped") == 3
    assert (out / "summary.txt").read_text() == summary


def test_study_pair_refuses_a_file_as_its_folder(pair, tmp_path: Path) -> None:
    data, a, b = pair
    (tmp_path / "f").write_text("x")
    code, _, err = run("study", "pair", *TINY, "--checkpoint", str(a), "--target", str(b),
                       "--data", f"npz:{data}", "--out", str(tmp_path / "f"))  # fmt: skip
    assert_one_line_error(code, err, 2, "is a file")


def test_study_pair_refuses_the_checkpoint_as_its_target(pair, tmp_path: Path) -> None:
    data, a, _ = pair
    code, _, err = run("study", "pair", *TINY, "--checkpoint", str(a), "--target", str(a),
                       "--data", f"npz:{data}", "--out", str(tmp_path / "s"))  # fmt: skip
    assert_one_line_error(code, err, 1, "is the same file as --checkpoint")
    assert not list((tmp_path / "s").glob("*.h5"))
