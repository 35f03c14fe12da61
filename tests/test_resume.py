"""A run killed at any moment resumes to values identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from landscape.store import read_surface
from tests.test_cli import run, tiny_args

# auto: timed and raced afresh by each process (one point per call: a 1 KB budget leaves the
# batched path one point of this model's 880 bytes a batch), resumed with the file's settings
ENGINES = {"reference": ["--engine", "reference"], "auto": ["--memory-budget", "1KB"]}


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(ENGINES))
def test_killed_run_resumes_to_identical_values(
    tmp_path: Path, tiny_npz: Path, slow_model: Path, engine: str
) -> None:
    model = slow_model

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "landscape.cli", "compute", "--model", f"{model}:make",
                "--data", f"npz:{tiny_npz}", "--batch-size", "20", *ENGINES[engine],
                "--x=-1:1:10", "--y=-1:1:12",
                "--out", str(out), "--quiet"]  # fmt: skip

    reference = tmp_path / "ref.h5"
    subprocess.run(command(reference), check=True)
    out = tmp_path / "killed.h5"
    rng = np.random.default_rng(1)
    kills, done_counts = 0, []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for attempt in range(15):
        since = time.time()
        proc = subprocess.Popen(command(out), env=env)
        if attempt:  # a kill while it evaluates: a moment after it first writes to the file
            _wait_for_a_write(proc, out, since)  # (a start-up takes 2-10 s on a busy machine)
            time.sleep(float(rng.uniform(0.0, 1.5)))
        else:  # the first in its start-up
            time.sleep(float(rng.uniform(0.2, 1.0)))
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
    for name, values in ref.values.items():  # bit for bit
        np.testing.assert_array_equal(ours.values[name], values, err_msg=name)


def _wait_for_a_write(proc: subprocess.Popen, out: Path, since: float) -> None:
    """Until ``proc`` has written to ``out`` (made it, or flushed points into it), or ended."""
    while proc.poll() is None and time.time() - since < 120:
        if out.exists() and out.stat().st_mtime >= since:
            return
        time.sleep(0.02)


def _forget(path: Path, engine: str | None = None) -> None:
    """Some points not done, as a killed run leaves them; ``engine``: a new engine record."""
    with h5py.File(path, "r+") as f:
        done = f["done"][()]
        done[1:, 1] = False
        f["done"][...] = done
        if engine is not None:
            f.attrs["engine"] = engine


def test_a_resumed_run_evaluates_with_the_engine_settings_its_file_records(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23 item 10: nothing is timed or raced again on resume; the file's settings are
    pinned (here other ones than auto would choose, written into the record)."""
    from landscape import evaluation

    out = tmp_path / "s.h5"
    args = tiny_args(tiny_npz, tiny_mlp_ckpt, out, "--x=-1:1:4", "--y=-1:1:3", "--engine", "auto")
    assert run("compute", *args)[0] == 0
    full = read_surface(out).values
    recorded = read_surface(out).attrs["engine"]
    _forget(out)  # resumed with the run's own settings: the uninterrupted run's bits
    assert run("compute", *args)[0] == 0
    for name, values in full.items():
        np.testing.assert_array_equal(read_surface(out).values[name], values, err_msg=name)
    report = json.loads(recorded)
    report.update(engine="batched", k=3, batch_size=7, channels_last=False, compile=False, fused=0)
    _forget(out, json.dumps(report))
    asked = []
    choose = evaluation.choose_engine
    monkeypatch.setattr(evaluation, "choose_engine", lambda *a: asked.append(a[5]) or choose(*a))
    assert run("compute", *args)[0] == 0
    got = asked[-1]
    assert (got.engine, got.k, got.batch_size, got.compile) == ("batched", 3, 7, "off")
    assert (got.memory_format, got.fuse) == ("contiguous", "off")
    # another path's points agree to float32 rounding (vmap's batched products: 1.6e-7 here)
    np.testing.assert_allclose(read_surface(out).values["train_loss"], full["train_loss"], 1e-6)
    # a record that is not JSON, or of another device type: the engine is chosen afresh
    for record in ("{not json", json.dumps({**report, "device": "cuda:0"})):
        _forget(out, record)
        assert run("compute", *args)[0] == 0
        assert asked[-1].engine == "auto" and asked[-1].k is None
