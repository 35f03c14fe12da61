from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from click.testing import CliRunner

from landscape.cli import main
from landscape.store import read_surface


@pytest.mark.slow
def test_demo_trains_computes_and_plots(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    s = read_surface(tmp_path / "surface.h5")
    assert s.done.all() and s.shape == (51, 51)
    loss = s.values["train_loss"]
    assert loss[25, 25] == loss.min()  # the trained network sits at the minimum of its surface
    assert s.values["train_acc"][25, 25] > 0.95  # and it learned the digits
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) >= 10
    assert mpimg.imread(pngs[0]).std() > 0.05
    view = (tmp_path / "surface.html").read_text()
    assert "<canvas" in view and "http" not in view  # the 3-D view is self-contained
    assert (
        s.stored_analysis["train_loss"]["minimum"]["distance"] == 0
    )  # analysis stored in the file


@pytest.mark.slow
def test_the_llm_demo_trains_a_gpt_and_draws_its_surface(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from landscape.demo_llm import run_llm_demo

    # a step count, not wall time: the same training however loaded the machine is
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = run_llm_demo(tmp_path, log=lambda _: None, seconds=0.0, min_steps=50, grid="-1:1:5")
    # its held-out tokens file is a test set by construction: no one-set warning for a demo
    assert not [w for w in caught if "holds one set" in str(w.message)]
    s = read_surface(tmp_path / "surface.h5")
    assert s.done.all() and s.shape == (5, 5)
    loss = s.values["test_loss"]
    assert loss[2, 2] == loss.min()  # even 50 steps of training put θ at the bottom of the plane
    assert loss[2, 2] < np.log(1024)  # and below the uniform guess over the vocabulary
    assert (tmp_path / "gpt" / "model.safetensors").is_file()
    assert (tmp_path / "gpt" / "tokenizer.json").is_file()
    assert any(p.endswith("surface.html") for p in paths)
    info = CliRunner().invoke(main, ["info", str(tmp_path / "surface.h5")]).output
    assert "perplexity:" in info and "predicted tokens" in info
