"""A library call changes nothing outside itself: the caller's process is as the caller left it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# The caller sets its own state, records it, then imports landscape, computes (the API, and a run
# from a config as scripts and sweeps start one), plots and inspects, and records it again.
# mallopt leaves no trace to read back, so ``landscape._malloc`` (the only code that calls it) is
# asked whether it tuned this process; the collector's freeze at exit is seen from an exit handler
# registered first (handlers run last-in first-out, so it runs after any registered later).
CALLER = """
import atexit, gc, hashlib, json, logging, os, sys, warnings
import matplotlib, numpy as np, torch
atexit.register(lambda: print("frozen at exit", gc.get_freeze_count()))
matplotlib.use("svg")
gc.set_threshold(1234, 5, 6)
os.environ["CALLER_SENTINEL"] = "mine"
torch.set_num_threads(1)
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
torch.manual_seed(7)
np.random.seed(7)
warnings.filterwarnings("ignore", message="the caller's own filter")


def state():
    return {
        "backend": matplotlib.get_backend(), "gc": [*gc.get_threshold(), gc.isenabled()],
        "frozen": gc.get_freeze_count(), "environ": dict(os.environ),
        "threads": torch.get_num_threads(), "grad": torch.is_grad_enabled(),
        "tf32": [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32],
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "dtype": str(torch.get_default_dtype()),
        "torch_rng": hashlib.sha256(torch.get_rng_state().numpy()).hexdigest(),
        "numpy_rng": hashlib.sha256(np.random.get_state()[1]).hexdigest(),
        "numpy_errors": np.geterr(), "recursion": sys.getrecursionlimit(),
        "warnings": repr(warnings.filters), "logging": [logging.root.level, repr(logging.root.handlers)],
        "malloc_tuned": getattr(sys.modules.get("landscape._malloc"), "_done", False),
    }


before = state()
import landscape
from landscape.runs.surface import run_compute
from landscape.config import ComputeConfig
from landscape.models import build_model
with torch.random.fork_rng():  # the caller's model: its initialization draws nothing of ours
    model = build_model("mlp", MLP)
model.load_state_dict(torch.load(CKPT, weights_only=True)["state_dict"])
data = np.load(NPZ)
s = landscape.compute(model, (data["x"], data["y"]), x=(-1, 1, 3), y=(-1, 1, 3), progress=False)
s.plot(kinds=["contour"], scales=["linear"])
s.plot(PLOTS, kinds=["contour"], scales=["linear"])
landscape.inspect(model, (data["x"], data["y"]))
run_compute(ComputeConfig.from_dict({  # a run from a config, as sweeps and scripts start one
    "model": {"name": "mlp", "args": MLP, "checkpoint": CKPT}, "data": {"name": "npz:" + NPZ},
    "grid": {"x": "-1:1:3"}, "out": PLOTS + ".h5",
}))
print(json.dumps([before, state()]))
"""


def test_compute_plot_and_inspect_leave_the_callers_process_as_it_was(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """Backend, collector thresholds and freeze (now and at exit), environment, torch's threads,
    flags and RNG, numpy's RNG and error handling, warning filters, logging and glibc's
    allocator: all the caller's after ``import landscape``, ``compute``, ``plot`` (figures and
    files), ``inspect`` and ``run_compute``. On main before issue 24 the run tuned the allocator
    (``landscape._malloc.tune`` from ``run_compute``)."""
    paths = tiny_mlp_ckpt, tiny_npz, tmp_path / "plots"
    code = "CKPT, NPZ, PLOTS = {!r}, {!r}, {!r}\n".format(*map(str, paths)) + CALLER
    code = f"MLP = {{'in_features': 6, 'hidden': 8, 'num_classes': 3}}\n{code}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    *_, printed, at_exit = done.stdout.splitlines()
    before, after = json.loads(printed)
    assert before["backend"] == "svg" and before["gc"] == [1234, 5, 6, True]
    assert not before["malloc_tuned"] and before["environ"]["CALLER_SENTINEL"] == "mine"
    assert {k: v for k, v in after.items() if v != before[k]} == {}
    assert at_exit == "frozen at exit 0"  # the interpreter's last collection is the caller's
    assert (tmp_path / "plots" / "surface_train_loss_contour_linear.png").is_file()


def test_tune_process_is_the_explicit_opt_in() -> None:
    """``landscape.tune_process()`` tunes the caller's process as a command tunes its own (the
    collector's thresholds, glibc's allocator where there is one), and nothing else does."""
    code = (
        "import gc, platform, sys, landscape\n"
        "from landscape import _collector, _malloc\n"
        "print(gc.get_threshold() != _collector.THRESHOLDS, _malloc._done)\n"
        "landscape.tune_process()\n"
        "print(gc.get_threshold() == _collector.THRESHOLDS,"
        " _malloc._done == (platform.libc_ver()[0] == 'glibc'))\n"
    )
    off = ("LANDSCAPE_NO_GC_TUNING", "LANDSCAPE_NO_MALLOPT")  # the opt-outs, not set here
    env = {k: v for k, v in os.environ.items() if k not in off}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "True", "True"]
