"""A run killed at any moment resumes to values identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from landscape.store import read_surface


@pytest.mark.slow
def test_killed_run_resumes_to_identical_values(
    tmp_path: Path, tiny_npz: Path, slow_model: Path
) -> None:
    model = slow_model

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "landscape.cli", "compute", "--model", f"{model}:make",
                "--data", f"npz:{tiny_npz}", "--batch-size", "20", "--engine", "reference",
                "--x=-1:1:10", "--y=-1:1:12",
                "--out", str(out), "--quiet"]  # fmt: skip

    reference = tmp_path / "ref.h5"
    subprocess.run(command(reference), check=True)
    out = tmp_path / "killed.h5"
    rng = np.random.default_rng(1)
    kills, done_counts = 0, []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(15):
        proc = subprocess.Popen(command(out), env=env)
        time.sleep(float(rng.uniform(1.5, 3.5)))
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not out.exists():  # killed in its start-up, before it made the file: nothing to lose
            continue  # and not a kill mid-run, which the test needs two of
        kills += killed
        s = read_surface(out)  # readable after every kill
        done_counts.append(int(s.done.sum()))
        if s.done.all():
            break
    assert kills >= 2, "the run finished before it could be killed twice"
    assert done_counts == sorted(done_counts)  # nothing computed is ever lost
    subprocess.run(command(out), check=True)  # the same command finishes the job
    ours, ref = read_surface(out), read_surface(reference)
    assert ours.done.all()
    np.testing.assert_array_equal(ours.values["train_loss"], ref.values["train_loss"])
    np.testing.assert_array_equal(ours.values["train_acc"], ref.values["train_acc"])
