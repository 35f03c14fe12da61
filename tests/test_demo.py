from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
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
