"""scripts/bench.py --model whole, end to end on a tiny grid: every side its own process, the
figures it reports read from the files the runs made, and the variants a GPU run adds (batched,
bf16, compiled) on this CPU, so that ``--device cuda`` meets no untried code on a lent GPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


@pytest.mark.slow
def test_the_whole_process_bench_reports_every_side_and_checks_their_losses(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--model", "whole", "--device", "cpu", "--samples", "300",
         "--grid", "3", "--pairs", "1", "--variants", "batched,bf16,compiled", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = json.loads(out.read_text())
    sides = ("engine", "plain", "reference", "engine_batched", "engine_bf16", "engine_compiled")
    for side in sides:
        assert row[f"{side}_wall"] > 0 and len(row[f"{side}_walls"]) == 1, side
        assert 0 <= row[f"{side}_sys_share"] <= 1 and row[f"{side}_minor_faults"] > 0, side
    # every side computed the same surface: the plain and reference loops to float rounding, each
    # variant within its own tolerance (bf16 far looser)
    assert row["max_rel_loss_diff"] <= 1e-6
    for key, tol in row["variant_tolerances"].items():
        assert row["rel_loss_diff_by_side"][key] <= tol, key
    assert row["ratio_plain"] == pytest.approx(row["plain_wall"] / row["engine_wall"])
    # the engine's point is the path it ran: the race's winner on the first points
    race = row["engine"]["race"]
    assert row["engine_per_point_timed"] == min(race["point_seconds"][race["kept"]])
    limit = row["bare_forward"]["limit_seconds"]
    assert math.isfinite(limit) and limit > 0
    assert row["ceiling_ratio_plain"] == pytest.approx(row["plain_wall"] / (9 * limit))
    assert "ratio" in done.stdout and "bare forward" in done.stdout
