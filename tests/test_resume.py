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

# a model whose forward takes 2 ms on the batches the environment favours (LANDSCAPE_TEST_FAVOUR
# "small": at most 64 samples; "large": more) and 20 ms (x the batch's size over 64, squared) on
# others, so that under auto the race
# keeps batch 500 in one process and batch 64 in another, as a shared machine's spells make it
# do; vmap cannot run it (``.item()``), so auto races the per-point path's batch sizes
RACED = """
import os, time, torch
class Raced(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(6, 8)
        self.fc2 = torch.nn.Linear(8, 3)
    def forward(self, x):
        self.fc1.bias.sum().item()  # what vmap cannot run
        small = os.environ.get("LANDSCAPE_TEST_FAVOUR") == "small"
        time.sleep(0.002 if (x.shape[0] <= 64) == small else 0.02 * max(1, x.shape[0] / 64) ** 2)
        return self.fc2(torch.relu(self.fc1(x)))
def make():
    return Raced()
"""


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["reference", "auto"])
def test_killed_run_resumes_to_identical_values(
    tmp_path: Path, tiny_npz: Path, slow_model: Path, engine: str
) -> None:
    """Issue 23 item 10 under auto: the uninterrupted run keeps batch 500, the killed ones
    batch 64; the resumed file still holds the uninterrupted run's bits."""
    model, data, args = slow_model, tiny_npz, ["--batch-size", "20", "--engine", "reference"]
    if engine == "auto":
        model, data = tmp_path / "raced.py", tmp_path / "many.npz"
        model.write_text(RACED)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(600, 6)).astype(np.float32)
        np.savez(data, x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5))
        args = ["--engine", "auto", "--checkpoint", str(_trained(data, tmp_path / "raced.pt"))]

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "landscape.cli", "compute", "--model", f"{model}:make",
                "--data", f"npz:{data}", *args, "--x=-1:1:10", "--y=-1:1:12",
                "--out", str(out), "--quiet"]  # fmt: skip

    reference = tmp_path / "ref.h5"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LANDSCAPE_TEST_FAVOUR": "large"}
    subprocess.run(command(reference), check=True, env=env)
    out = tmp_path / "killed.h5"
    rng = np.random.default_rng(1)
    kills, done_counts = 0, []
    env["LANDSCAPE_TEST_FAVOUR"] = "small"
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
    subprocess.run(command(out), check=True, env=env)  # the same command finishes the job
    ours, ref = read_surface(out), read_surface(reference)
    assert ours.done.all()
    for name, values in ref.values.items():  # bit for bit
        np.testing.assert_array_equal(ours.values[name], values, err_msg=name)


def _trained(data: Path, out: Path) -> Path:
    """Weights for RACED trained on ``data``: losses from 1e-7 to 10 near the centre, whose
    float64 sums change with the order they are added in (those of an untrained net do not)."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    arrays = np.load(data)
    x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    names = {"0": "fc1", "2": "fc2"}
    state = {f"{names[k[0]]}{k[1:]}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state}, out)
    return out


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
