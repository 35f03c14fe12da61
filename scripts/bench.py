"""Benchmark: landscape's engine against the plain per-point loop other tools use.

    python scripts/bench.py                       # mlp on digits and resnet20 on synthetic CIFAR
    python scripts/bench.py --model resnet20 --grid 21 --samples 2000 --device cuda
    python scripts/bench.py --model gpt2          # tokens/s on a GPT-2 (transformers), see below
    python scripts/bench.py --model whole --samples 1000 --pairs 3 [--grid 21] [--device cuda]
    python scripts/bench.py --ndgrid [--grid 21]  # a 21³ grid against a per-point clone loop
    python scripts/bench.py --ndgrid --hessian    # both of issue 26's comparisons, in one run
    python scripts/bench.py --model moving --pairs 3   # compute only what moves (issue 27)

For each model, in one run and on the same directions and grid:
1. ``landscape compute`` as a user runs it (``--engine auto``: engine choice, compile and all), timed
   as a whole, start-up included;
2. the plain loop of the reference implementations: weights copied into the model in place,
   ``eval()``, ``no_grad``, NCHW, batch 500, default threads, one point at a time, after one
   untimed warm-up point. It is timed on ``--baseline-points`` points spread over the grid, half
   before and half after the engine's run (a slow or fast spell of a shared machine then weighs on
   both sides), and its rate projected to the whole grid;
3. a check that both give the same losses (max |Δloss| ≤ 1e-5) on those points;
For ``--model gpt2`` (a 4-layer GPT-2 built from a config and saved as a Hugging Face folder, on
random token windows) both sides are whole processes, start-up and imports included: ``python -m
landscape compute --model hf:DIR --data tokens:FILE`` against a plain loop over the Hugging Face
forward in its own process (``--plain-hf``: transformers' ``from_pretrained``, weights copied in
place, ``no_grad``, ``model(input_ids, attention_mask, labels=...)``, the token-weighted mean of
its losses), at the same points along the directions the engine stored; tokens/s on both sides.

For ``--model whole`` every side is a whole process, start-up included, in ``--pairs`` interleaved
rounds (medians): ``landscape compute`` on a ResNet-20 checkpoint and a synthetic CIFAR-10 folder,
the plain loop above (``--plain-process``), and a reference-style loop as Li et al.'s code
evaluates (``--reference-process``: a DataLoader with two workers re-created at every point over
PIL images, batch 128), plus the bare forward of the model as written at its best layout, batch
and compile (the limit for an evaluator that calls it as it is), minor faults and system time
per side. On a GPU (``--device cuda``) the same comparison adds engine runs on the batched path,
in bf16 and compiled (``--variants``), each held to its own loss tolerance.

With ``--ndgrid`` (n-D grids): a 3-D grid of ``--grid``³ points (21³ = 9261) of the mlp on
digits, both sides whole processes, start-up included: ``landscape compute --axes`` against the
loop Landscaper's grids amount to (``--ndgrid-loop``): at every point every parameter is cloned
from θ, ``θ + a·d1 + b·d2 + c·d3`` formed in new tensors and loaded into the model
(``load_state_dict``), then a ``no_grad`` forward over the samples in batches of 500, along the
directions the engine stored; every point's loss of both sides compared. ``--hessian`` adds the
top eigenvalues and trace against PyHessian's algorithm (``scripts/bench_hessian.py``).

For ``--model moving`` (layer-by-layer studies, 5×5 grids): a 12-layer GPT-2 built from a config
with only its last block moving (``--params 'transformer.h.11.*'``) and a ResNet-56 with only its
last stage moving (``--params 'layer3.*'``), ``landscape compute --split-forward on`` against
``off``, each a whole process, in ``--pairs`` interleaved rounds (medians); beside them the
evaluation loop's seconds a point with and without the split in this process, the ideal
speed-up, total forward FLOPs over the moved part's (F / M), and the speed-up a run of n points
can attain, n·F / (S + n·M) with S the static pass's FLOPs (the frontier costs one static pass
per batch: 6.0× for the GPT-2's F / M = 7.6 on 25 points); the losses must agree to 1e-6
relative. ``--moving-sequences`` and ``--moving-samples`` size the data (start-up, about 4 s of
imports and loading, weighs less on more).

4. points/s, achieved GFLOP/s (FLOPs of one forward from ``torch.utils.flop_counter``), the ratio,
   and the share of this machine's matmul peak, measured here on a large float32 matmul (best of
   3). oneDNN's direct convolutions can beat that matmul, so the share can exceed 100%.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from landscape import _malloc
from landscape.config import ComputeConfig
from landscape.evaluation import Run
from landscape.grid import coordinates as grid_coordinates
from landscape.runs.surface import directions_for, run_compute
from landscape.store import read_surface

PLAIN_BATCH = 500


def matmul_peak_gflops(
    device: torch.device, n: int = 2048, reps: int = 5, trials: int = 3
) -> float:
    """The best of a few timings of a large float32 matmul: what this machine can do now."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = 0.0
    for _ in range(trials):
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_sample(model: torch.nn.Module, sample: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(sample[:1])
    return float(counter.get_total_flops())


def make_data(name: str, samples: int, folder: Path) -> tuple[str, dict]:
    """The data spec and model args: digits as shipped, or synthetic CIFAR-shaped arrays."""
    if name == "mlp":
        return "digits", {}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=samples).astype(np.int64)
    path = folder / "synthetic_cifar.npz"
    np.savez(path, x=x, y=y)
    return f"npz:{path}", {}


def plain_mean_loss(model, x, y) -> float:
    """The plain loops' loss at one point: cross-entropy summed batch by batch (``PLAIN_BATCH``),
    over the samples' count."""
    total = 0.0
    for s in range(0, len(y), PLAIN_BATCH):
        out = model(x[s : s + PLAIN_BATCH])
        total += torch.nn.functional.cross_entropy(
            out, y[s : s + PLAIN_BATCH], reduction="sum"
        ).item()
    return total / len(y)


def plain_loop(model, theta, d1, d2, x, y, points, device) -> tuple[list[float], float]:
    """What other tools do: copy each point's weights into the model, then a no_grad forward."""
    model.eval()
    params = dict(model.named_parameters())
    losses = []
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for a, b in points:
            for name, p in params.items():
                p.copy_(theta[name] + a * d1[name] + b * d2[name])
            losses.append(plain_mean_loss(model, x, y))
    _sync(device)
    elapsed = time.perf_counter() - start
    for name, p in params.items():  # leave the model as it was
        p.data.copy_(theta[name])
    return losses, elapsed


DEFAULT_GRID = {"mlp": 51, "resnet20": 21}  # runs long enough for start-up and compile to amortize


def bench_model(name: str, args: argparse.Namespace, work: Path, peak: float) -> dict:
    device = torch.device(args.device)
    side = args.grid or DEFAULT_GRID[name]
    data, model_args = make_data(name, args.samples, work)
    half = 1.0
    grid = f"{-half}:{half}:{side}"
    out = work / f"{name}.h5"
    config = ComputeConfig.from_dict(
        {
            "model": {"name": name, "args": model_args},
            "data": {
                "name": data,
                "max_samples": None if name == "mlp" else args.samples,
                "batch_size": PLAIN_BATCH,
            },
            "grid": {"x": grid, "y": grid},
            "eval": {"device": args.device, "engine": args.engine},
            "out": str(out),
        }
    )
    # the plain loop's model, data and directions: what `compute` builds from the same config
    torch.manual_seed(0)
    run = Run.of_config(config)
    prep = run.session
    d1, d2 = directions_for(run, resume_from=None).to(device).vectors
    model = prep.model.to(device)
    x, y = (torch.cat(t).to(device) for t in zip(*prep.data.batches(4096), strict=True))
    theta = OrderedDict((k, v.detach().clone()) for k, v in model.named_parameters())
    total = side**2
    pick = np.unique(np.linspace(0, total - 1, min(args.baseline_points, total)).astype(int))
    xs, ys = grid_coordinates(config.grid)
    coords = [(float(xs[i // side]), float(ys[i % side])) for i in pick]

    # the plain loop is timed in two halves, before and after the engine's run, so that a slow
    # or fast spell of this shared machine weighs on both sides of the ratio alike
    first = len(coords) // 2
    plain_loop(model, theta, d1, d2, x, y, coords[:1], device)  # warm-up, untimed
    losses_a, seconds_a = plain_loop(model, theta, d1, d2, x, y, coords[:first], device)
    torch.manual_seed(0)
    _malloc.tune()  # as the command does at its start (a run no longer tunes the allocator itself)
    start = time.perf_counter()
    result = run_compute(config, overwrite=True)
    engine_seconds = time.perf_counter() - start
    losses_b, seconds_b = plain_loop(model, theta, d1, d2, x, y, coords[first:], device)
    base_losses, base_seconds = losses_a + losses_b, seconds_a + seconds_b

    surface = read_surface(out)
    with h5py.File(out, "r") as f:  # both sides evaluated the same directions
        for tensor, d in d1.items():
            assert np.array_equal(f["directions/x"][tensor][()], d.cpu().numpy()), tensor
    ours = surface.values["train_loss"].reshape(-1)[pick]
    diff = np.abs(ours - np.array(base_losses))
    rel = np.max(diff / np.maximum(np.abs(base_losses), 1e-12))

    fps = flops_per_sample(model, x) * len(y)  # FLOPs of one grid point
    base_rate = len(pick) / base_seconds
    eng_rate = total / engine_seconds
    steady = total / result.extra["eval_seconds"]  # the evaluation loop alone, start-up excluded
    return {
        "model": name,
        "device": str(device),
        "samples": len(y),
        "grid": f"{side}x{side}",
        "engine": result.extra["engine"],
        "engine_points_per_s": eng_rate,
        "engine_gflops": eng_rate * fps / 1e9,
        "engine_seconds_whole_run": engine_seconds,
        "engine_steady_points_per_s": steady,
        "steady_ratio": steady / base_rate,
        "plain_points_per_s": base_rate,
        "plain_points_per_s_before_after": [first / seconds_a, (len(pick) - first) / seconds_b],
        "plain_gflops": base_rate * fps / 1e9,
        "plain_points_timed": len(pick),
        "ratio": eng_rate / base_rate,
        "matmul_peak_gflops": peak,
        "engine_share_of_peak": eng_rate * fps / 1e9 / peak,
        "engine_steady_share_of_peak": steady * fps / 1e9 / peak,
        "max_rel_loss_diff": float(rel),
        "max_abs_loss_diff": float(diff.max()),
    }


LLM_BATCH = 16


def _cifar_folder(folder: Path, samples: int) -> Path:
    """A CIFAR-10 folder of synthetic images (the python-pickle format): ``test_batch`` only."""
    import pickle

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    batch = {
        "data": rng.integers(0, 256, size=(samples, 3072), dtype=np.uint8),
        "labels": rng.integers(0, 10, samples).tolist(),
    }
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f)
    return folder


def _points_and_directions(
    surface: str, device: str | torch.device = "cpu"
) -> tuple[list, dict, dict]:
    """The surface's grid points and its two stored directions, on ``device``."""
    with h5py.File(surface, "r") as f:
        xs, ys = f["xcoordinates"][()], f["ycoordinates"][()]
        d1 = {k: torch.from_numpy(v[()]).to(device) for k, v in f["directions/x"].items()}
        d2 = {k: torch.from_numpy(v[()]).to(device) for k, v in f["directions/y"].items()}
    return [(float(a), float(b)) for a in xs for b in ys], d1, d2


def _model_at(model_name: str, checkpoint: str) -> torch.nn.Module:
    from landscape.models import build_model

    model = build_model(model_name)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
    return model.eval()


def plain_process(
    model_name: str, checkpoint: str, folder: str, surface: str, device_name: str = "cpu"
) -> None:
    """The plain per-point loop as its own process: the model at its checkpoint, the CIFAR
    folder's test images as tensors on the device, every grid point of ``surface`` along its
    stored directions, θ + a·d1 + b·d2 copied into the model in place, ``eval()``, ``no_grad``,
    NCHW, batch 500."""
    start = time.perf_counter()
    from landscape.config import DataSpec
    from landscape.data import load_data

    device = torch.device(device_name)
    model = _model_at(model_name, checkpoint).to(device)
    x, y = (t.to(device) for t in load_data(DataSpec(f"cifar10:{folder}", split="test")).tensors())
    points, d1, d2 = _points_and_directions(surface, device)
    theta = {k: p.detach().clone() for k, p in model.named_parameters()}
    losses, _ = plain_loop(model, theta, d1, d2, x, y, points, device)
    print(json.dumps({"losses": losses, "seconds": time.perf_counter() - start}))


class _PILSet(torch.utils.data.Dataset):
    """CIFAR images as PIL images with torchvision-style ToTensor and Normalize, as Li et al.'s
    plot_surface.py feeds them (written out here: torchvision does not install beside this torch)."""

    def __init__(self, folder: str) -> None:
        import pickle

        from landscape.data import CIFAR10_MEAN, CIFAR10_STD

        with open(Path(folder) / "test_batch", "rb") as f:
            raw = pickle.load(f)  # our own synthetic file
        self.images = raw["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # HWC uint8
        self.labels = raw["labels"]
        self.mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CIFAR10_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = Image.fromarray(self.images[i])
        t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        t = t.float().div(255)  # ToTensor
        return (t - self.mean) / self.std, self.labels[i]  # Normalize


def reference_process(
    model_name: str, checkpoint: str, folder: str, surface: str, device_name: str = "cpu"
) -> None:
    """A reference-style loop (Li et al.'s evaluation) as its own process: for every point,
    weights set in place, then a DataLoader with two worker processes over the PIL images,
    batch 128, NCHW, each batch moved to the device, ``eval()``, ``no_grad``, summed
    cross-entropy."""
    start = time.perf_counter()
    device = torch.device(device_name)
    model = _model_at(model_name, checkpoint).to(device)
    points, d1, d2 = _points_and_directions(surface, device)
    params = dict(model.named_parameters())
    theta = {k: p.detach().clone() for k, p in params.items()}
    dataset = _PILSet(folder)
    losses = []
    with torch.no_grad():
        for a, b in points:
            for name, p in params.items():
                p.copy_(theta[name] + a * d1[name] + b * d2[name])
            loader = torch.utils.data.DataLoader(dataset, batch_size=128, num_workers=2)
            total, n = 0.0, 0
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                total += torch.nn.functional.cross_entropy(model(x), y, reduction="sum").item()
                n += len(y)
            losses.append(total / n)
    print(json.dumps({"losses": losses, "seconds": time.perf_counter() - start}))


def bare_forward_limit(model_name: str, checkpoint: str, folder: str, device_name: str) -> dict:
    """The model's forward as written, alone over the same samples, at its best layout and
    batch, eager and compiled (compile time excluded): what an evaluator that calls the model as
    it is cannot beat (folding BatchNorm into the convolutions changes the model's arithmetic and
    can)."""
    from landscape.config import DataSpec
    from landscape.data import load_data

    device = torch.device(device_name)
    model = _model_at(model_name, checkpoint).to(device)
    x, _ = load_data(DataSpec(f"cifar10:{folder}", split="test")).tensors()
    x = x.to(device)

    def best_pass(fn, cl: bool, b: int) -> float:
        parts = [x[i : i + b] for i in range(0, len(x), b)]
        if cl:
            parts = [p.contiguous(memory_format=torch.channels_last) for p in parts]
        with torch.inference_mode():
            for p in parts:
                fn(p)
            best = float("inf")
            for _ in range(3):
                _sync(device)
                start = time.perf_counter()
                for p in parts:
                    fn(p)
                _sync(device)
                best = min(best, time.perf_counter() - start)
        return best

    eager = {}
    sizes = (64, 128, 256, 500) if device.type == "cpu" else (128, 500, 1000)
    for cl in (False, True):
        m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        for b in sizes:
            eager[f"{'channels-last' if cl else 'nchw'}@{b}"] = best_pass(m, cl, b)
    label = min(eager, key=eager.get)
    cl, b = label.startswith("channels"), int(label.split("@")[1])
    m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    compiled = best_pass(torch.compile(m, dynamic=False), cl, b)
    return {"eager_best": label, "eager_seconds": eager[label], "compiled_seconds": compiled,
            "limit_seconds": min(eager[label], compiled), "eager_all": eager}  # fmt: skip


def _timed(cmd: list[str]) -> dict:
    """Run one whole process; its wall time, CPU times and minor faults (from the children's
    resource usage), and its stdout."""
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, sys_ = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {
        "wall": wall,
        "user": user,
        "sys": sys_,
        "sys_share": sys_ / max(user + sys_, 1e-9),
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "stdout": done.stdout,
    }


# engine variants timed beside the default run (each its own whole process): on a GPU the
# batched path, bf16 autocast and a forced compile; the loss tolerance each is held to
VARIANTS = {
    "batched": (["--engine", "batched"], 1e-5),
    "bf16": (["--dtype", "bfloat16"], 5e-2),
    "compiled": (["--compile", "on"], 1e-5),
}


def bench_whole(args: argparse.Namespace, work: Path) -> dict:
    """``landscape compute`` against the plain loop and a reference-style loop, each a whole
    process (start-up included), on a ResNet-20 checkpoint and a synthetic CIFAR-10 folder, in
    ``--pairs`` interleaved rounds (a slow spell of a shared machine then weighs on every side);
    medians reported, with the bare forward's limit measured in this process. ``--variants``
    (default on a GPU: all of VARIANTS) adds engine runs with other settings."""
    from landscape.models import build_model

    folder = _cifar_folder(work / "cifar", args.samples)
    ckpt = work / "resnet20.pt"
    torch.manual_seed(0)
    torch.save({"state_dict": build_model("resnet20").state_dict()}, ckpt)
    side = args.grid or 6
    out = work / "whole.h5"

    def engine_cmd(target: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "landscape", "compute", "--model", "resnet20",
                "--checkpoint", str(ckpt), "--data", f"cifar10:{folder}", "--split", "test",
                f"--x=-1:1:{side}", f"--y=-1:1:{side}", "--out", str(target), "--overwrite",
                "--quiet", "--device", args.device, *extra]  # fmt: skip

    tail = ["resnet20", str(ckpt), str(folder), str(out), args.device]
    sides = {
        "engine": engine_cmd(out),
        "plain": [sys.executable, __file__, "--plain-process", *tail],
        "reference": [sys.executable, __file__, "--reference-process", *tail],
    }
    if args.no_reference:
        sides.pop("reference")
    variants = args.variants if args.variants is not None else (
        list(VARIANTS) if args.device.startswith("cuda") else []
    )  # fmt: skip
    for name in variants:
        sides[f"engine_{name}"] = engine_cmd(work / f"whole_{name}.h5", *VARIANTS[name][0])
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(args.pairs):
        for name, cmd in sides.items():
            runs[name].append(_timed(cmd))
    ours = read_surface(out).values["test_loss"].reshape(-1)
    diffs = {
        name: float(np.max(np.abs(ours - np.array(json.loads(r[-1]["stdout"])["losses"]))
                           / np.abs(ours)))
        for name, r in runs.items() if not name.startswith("engine")
    }  # fmt: skip
    for name in variants:  # against the plain loop's losses, like the default run
        theirs = read_surface(work / f"whole_{name}.h5").values["test_loss"].reshape(-1)
        plain = np.array(json.loads(runs["plain"][-1]["stdout"])["losses"])
        diffs[f"engine_{name}"] = float(np.max(np.abs(theirs - plain) / np.abs(plain)))
    limit = bare_forward_limit("resnet20", str(ckpt), str(folder), args.device)

    def median(name: str, key: str) -> float:
        return float(np.median([r[key] for r in runs[name]]))

    engine = json.loads(read_surface(out).attrs["engine"])
    row = {
        "model": "resnet20 (whole processes)",
        "device": args.device,
        "grid": f"{side}x{side}",
        "samples": args.samples,
        "pairs": args.pairs,
        "engine": engine,
        "bare_forward": limit,
        "max_rel_loss_diff": max(diffs[k] for k in ("plain", "reference") if k in diffs),
        "rel_loss_diff_by_side": diffs,
        "variant_tolerances": {f"engine_{n}": VARIANTS[n][1] for n in variants},
    }
    for name in runs:
        for key in ("wall", "user", "sys", "sys_share", "minor_faults"):
            row[f"{name}_{key}"] = median(name, key)
        row[f"{name}_walls"] = [round(r["wall"], 2) for r in runs[name]]  # every round's
    for name in runs:
        if name != "engine":
            row[f"ratio_{name}"] = row[f"{name}_wall"] / row["engine_wall"]
    for name in variants:  # each variant against the plain loop
        row[f"ratio_plain_over_engine_{name}"] = row["plain_wall"] / row[f"engine_{name}_wall"]
    row["ratio"] = row["ratio_plain"]
    # the engine's own timing of the path it ran, one whole point: the fastest point of the arm
    # that won the race on the first points, else auto's timing of its choice
    row["engine_per_point_timed"] = engine_point_seconds(engine)
    row["per_point_over_limit"] = row["engine_per_point_timed"] / limit["limit_seconds"]
    # what the goals can reach here: an evaluator at the limit, with no start-up at all
    row["ceiling_ratio_plain"] = row["plain_wall"] / (side * side * limit["limit_seconds"])
    return row


def engine_point_seconds(engine: dict) -> float:
    """Seconds a point of the path the engine ran, from the report the run stored."""
    race = engine.get("race") or {}
    if race.get("point_seconds", {}).get(race.get("kept")):
        return float(min(race["point_seconds"][race["kept"]]))
    return float(min(engine.get("timings", {}).values(), default=float("nan")))


def plain_hf(folder: str, tokens: str, surface: str) -> None:
    """The plain loop a user writes around a transformers model, run as its own process: every
    point of the surface's grid along its stored directions, one JSON line of losses and time."""
    start = time.perf_counter()
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    points, d1, d2 = _points_and_directions(surface)
    ids = torch.from_numpy(np.load(tokens))
    params = dict(model.named_parameters())
    theta = {k: p.detach().clone() for k, p in params.items()}
    losses = []
    with torch.no_grad():
        for a, b in points:
            for name, p in params.items():
                if name in d1:
                    p.copy_(theta[name] + a * d1[name] + b * d2[name])
            total, count = 0.0, 0
            for s in range(0, len(ids), LLM_BATCH):
                batch = ids[s : s + LLM_BATCH]
                n = int((batch[:, 1:] >= 0).sum())
                out = model(input_ids=batch.clamp_min(0), attention_mask=(batch >= 0).long(),
                            labels=batch)  # fmt: skip
                total, count = total + float(out.loss) * n, count + n
            losses.append(total / count)
    print(json.dumps({"losses": losses, "seconds": time.perf_counter() - start, "tokens": count}))


def bench_llm(args: argparse.Namespace, work: Path) -> dict:
    """``landscape compute`` on a GPT-2 folder against ``plain_hf``, each its own process."""
    import subprocess
    import sys

    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=4096, n_positions=128, n_embd=256, n_layer=4,
                                  n_head=4, bos_token_id=0, eos_token_id=0)  # fmt: skip
    transformers.GPT2LMHeadModel(cfg).save_pretrained(work / "gpt2")
    tokens = work / "tokens.npy"
    np.save(tokens, np.random.default_rng(0).integers(0, 4096, size=(args.llm_sequences, 128)))
    side = args.grid or 5
    out = work / "gpt2.h5"
    cmd = [sys.executable, "-m", "landscape", "compute", "--model", f"hf:{work / 'gpt2'}",
           "--data", f"tokens:{tokens}", f"--x=-1:1:{side}", f"--y=-1:1:{side}", "--out", str(out),
           "--quiet", "--device", args.device, "--batch-size", str(LLM_BATCH)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    engine_seconds = time.perf_counter() - start
    plain_cmd = [sys.executable, __file__, "--plain-hf", str(work / "gpt2"), str(tokens), str(out)]
    start = time.perf_counter()
    plain = json.loads(subprocess.run(plain_cmd, check=True, capture_output=True, text=True).stdout)
    plain_seconds = time.perf_counter() - start
    ours = read_surface(out).values["train_loss"].reshape(-1)
    diff = np.abs(ours - np.array(plain["losses"]))
    tokens_total = plain["tokens"] * side * side
    return {
        "model": "gpt2",
        "device": args.device,
        "grid": f"{side}x{side}",
        "predicted_tokens_per_point": plain["tokens"],
        "engine_seconds_whole_process": engine_seconds,
        "plain_seconds_whole_process": plain_seconds,
        "engine_tokens_per_s": tokens_total / engine_seconds,
        "plain_tokens_per_s": tokens_total / plain_seconds,
        "ratio": plain_seconds / engine_seconds,
        "max_abs_loss_diff": float(diff.max()),
        "max_rel_loss_diff": float(np.max(diff / np.abs(plain["losses"]))),
    }


def ndgrid_loop(surface: str, device_name: str) -> None:
    """Landscaper's grid as a loop of its own process: the surface's model and data loaded as
    ``compute`` loads them, then at every grid point (row-major) every parameter re-cloned from
    θ, moved along the stored directions, loaded into the model, and a no_grad forward."""
    start = time.perf_counter()
    with h5py.File(surface, "r") as f:
        config = ComputeConfig.from_yaml(f.attrs["config"])
        axes = [f[f"{n}coordinates"][()] for n in "xyz"]
        dirs = [
            {k: torch.from_numpy(v[()]) for k, v in f[f"directions/{n}"].items()} for n in "xyz"
        ]
    device = torch.device(device_name)
    prep = Run.of_config(config).session
    model = prep.model.to(device).eval()
    x, y = prep.data.tensors(device)
    theta = {k: p.detach().clone() for k, p in model.named_parameters()}
    dirs = [{k: v.to(device) for k, v in d.items()} for d in dirs]
    losses = []
    with torch.no_grad():
        for coeffs in itertools.product(*axes):
            state = {k: t.clone() for k, t in theta.items()}  # every parameter, every point
            for c, d in zip(coeffs, dirs, strict=True):
                for k, t in d.items():
                    state[k] = state[k] + float(c) * t
            model.load_state_dict(state, strict=False)
            losses.append(plain_mean_loss(model, x, y))
    print(json.dumps({"losses": losses, "seconds": time.perf_counter() - start}))


def bench_ndgrid(args: argparse.Namespace, work: Path) -> dict:
    """A ``--grid``³ grid (21³ by default) through ``landscape compute --axes`` as a whole
    process, against ``ndgrid_loop`` as a whole process on the directions it stored."""
    side = args.grid or 21
    out = work / "ndgrid.h5"
    engine = _timed(
        [sys.executable, "-m", "landscape", "compute", "--model", "mlp", "--data", "digits",
         "--axes", *[f"-1:1:{side}"] * 3, "--device", args.device, "--engine", args.engine,
         "--batch-size", str(PLAIN_BATCH), "--out", str(out), "--quiet"]
    )  # fmt: skip
    loop = _timed([sys.executable, str(Path(__file__).resolve()), "--ndgrid-loop", str(out),
                   args.device])  # fmt: skip
    theirs = np.array(json.loads(loop["stdout"])["losses"])
    surface = read_surface(out)
    ours = surface.loss.reshape(-1)  # row-major, as the loop walks the grid
    diff = np.abs(ours - theirs)
    with h5py.File(out, "r") as f:
        report = json.loads(f.attrs["engine"])
    return {
        "model": "ndgrid mlp",
        "device": args.device,
        "grid": f"{side}x{side}x{side}",
        "points": int(ours.size),
        "samples": int(json.loads(surface.attrs["data"])["n"]),
        "engine": report,
        "engine_wall": engine["wall"],
        "loop_wall": loop["wall"],
        "ratio": loop["wall"] / engine["wall"],
        "max_abs_loss_diff": float(diff.max()),
        "max_rel_loss_diff": float(np.max(diff / np.maximum(np.abs(theirs), 1e-12))),
    }


# --- compute only what moves (issue 27): split forward against full forward ------------------

MOVING_SEQUENCES, MOVING_SEQ_LEN = 960, 64  # the GPT-2 study's token windows
MOVING_SAMPLES = 2048  # the ResNet-56 study's synthetic CIFAR images


def _moving_cases(args: argparse.Namespace, work: Path) -> list[dict]:
    """The two layer-by-layer studies: a 12-layer GPT-2 built from a config with its last block
    moving, and a ResNet-56 with its last stage moving; each with its data and model objects."""
    import transformers

    from landscape import hf
    from landscape.models import build_model

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=1024, n_positions=MOVING_SEQ_LEN, n_embd=128,
                                  n_layer=12, n_head=4, bos_token_id=0, eos_token_id=0)  # fmt: skip
    gpt = transformers.GPT2LMHeadModel(cfg).eval()
    gpt.save_pretrained(work / "gpt2-12")
    ids = np.random.default_rng(0).integers(0, 1024, size=(args.moving_sequences, MOVING_SEQ_LEN))
    np.save(work / "moving_tokens.npy", ids)
    cifar = _cifar_folder(work / "moving_cifar", args.moving_samples)
    resnet = build_model("resnet56").eval()
    torch.save({"state_dict": resnet.state_dict()}, work / "resnet56.pt")
    return [
        {"name": "gpt2-12", "params": "transformer.h.11.*", "model": hf.prepare(gpt),
         "x": torch.from_numpy(ids[:2]), "task": "causal-lm", "batch": 32,
         "data": (torch.from_numpy(ids), torch.from_numpy(ids)),
         "cmd": ["--model", f"hf:{work / 'gpt2-12'}", "--data", f"tokens:{work / 'moving_tokens.npy'}",
                 "--batch-size", "32"]},
        {"name": "resnet56", "params": "layer3.*", "model": resnet, "x": torch.randn(2, 3, 32, 32),
         "batch": 128, "data": (torch.randn(args.moving_samples, 3, 32, 32),
                                torch.randint(0, 10, (args.moving_samples,))),
         "cmd": ["--model", "resnet56", "--checkpoint", str(work / "resnet56.pt"),
                 "--data", f"cifar10:{cifar}", "--split", "test"]},
    ]  # fmt: skip


def split_figures(case: dict) -> dict:
    """In this process, on the case's model: the ideal speed-up, total forward FLOPs over the
    moved part's (the dependent part of ``engine.split``, on ``case['x']``), how the split was
    found, and the per-point evaluator's seconds a point with and without the split on the
    case's data (``case['data']``: the best of LOOP_POINTS points each, frontiers computed
    beforehand): the evaluation loop's speed-up, start-up and engine choice left out."""
    import fnmatch

    from landscape.engine import split
    from landscape.engine.reference import ReferenceEvaluator
    from landscape.losses import get_loss

    model, (xs, ys) = case["model"], case["data"]
    centre = {k: v.detach() for k, v in [*model.named_parameters(), *model.named_buffers()]}
    moved = [k for k, _ in model.named_parameters() if fnmatch.fnmatchcase(k, case["params"])]
    made = split.split_forward(model, set(moved))
    assert isinstance(made, split.Split), made
    with torch.inference_mode():
        made.static(centre, case["x"])  # the module-tree split finds its replayed modules here
        with FlopCounterMode(display=False) as static:
            frontier = made.static(centre, case["x"])
        with FlopCounterMode(display=False) as whole:
            model(case["x"])
        with FlopCounterMode(display=False) as dependent:
            made.dynamic(centre, frontier)
    g = torch.Generator().manual_seed(0)
    dirs = [{n: torch.randn(centre[n].shape, generator=g) for n in moved} for _ in range(2)]
    b = case["batch"]
    batches = lambda: ((xs[i : i + b], ys[i : i + b]) for i in range(0, len(ys), b))  # noqa: E731
    loss = get_loss("cross-entropy", case.get("task"))
    seconds = {}
    for name, used in (("split", made), ("full", None)):
        evaluator = ReferenceEvaluator(model, centre, dirs, batches, loss, split=used)
        evaluator.evaluate((0.1, 0.1))  # warm-up; the split's frontiers computed here
        times = []
        for i in range(LOOP_POINTS):
            start = time.perf_counter()
            evaluator.evaluate((0.05 * i, -0.05 * i))
            times.append(time.perf_counter() - start)
        seconds[name] = min(times)
    f, s, m = (c.get_total_flops() for c in (whole, static, dependent))
    n = case["points"]
    return {
        # the issue's ideal: a point's forward over its moved part, F / M
        "ideal_speedup": f / max(1, m),
        # what a run of n points can reach: n full forwards against one static pass (S, the
        # frontier) and n dependent ones: n·F / (S + n·M); below F / M for any finite grid
        "attainable_speedup": n * f / max(1, s + n * m),
        "split_path": made.how,
        "loop_split_point_seconds": seconds["split"],
        "loop_full_point_seconds": seconds["full"],
        "loop_speedup": seconds["full"] / seconds["split"],
    }


LOOP_POINTS = 3


def bench_moving(args: argparse.Namespace, work: Path) -> list[dict]:
    """``landscape compute`` with the forward split (``--split-forward on``) against the full
    forward (``off``), each a whole process, in ``--pairs`` interleaved rounds (medians), on the
    two studies of :func:`_moving_cases`, 5×5 grids; the measured speed-ups (whole process, and
    a point's seconds from the engine records) against the ideal one, at equal results."""
    rows = []
    side = args.grid or 5
    for case in _moving_cases(args, work):
        figures = split_figures({**case, "points": side * side})
        walls: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(args.pairs):
            for mode in walls:
                out = work / f"{case['name']}-{mode}.h5"
                cmd = [sys.executable, "-m", "landscape", "compute", *case["cmd"],
                       "--params", case["params"], f"--x=-1:1:{side}", f"--y=-1:1:{side}",
                       "--split-forward", mode, "--device", args.device, "--out", str(out),
                       "--overwrite", "--quiet"]  # fmt: skip
                walls[mode].append(_timed(cmd)["wall"])
        on, off = (read_surface(work / f"{case['name']}-{m}.h5") for m in ("on", "off"))
        loss = next(q for q in off.values if q.endswith("_loss"))  # train_loss or test_loss
        a, b = on.values[loss], off.values[loss]
        records = {m: _record(s.attrs["engine"]) for m, s in (("on", on), ("off", off))}
        wall = {m: float(np.median(t)) for m, t in walls.items()}
        rows.append({
            "model": f"moving {case['name']}", "grid": f"{side}x{side}", "moved": case["params"],
            **figures, "split_wall": wall["on"],
            "full_wall": wall["off"], "whole_speedup": wall["off"] / wall["on"],
            "samples": len(case["data"][1]),
            "engine_on": records["on"], "engine_off": records["off"],
            "max_rel_loss_diff": float(np.max(np.abs(a - b) / np.abs(b))), "pairs": args.pairs,
        })  # fmt: skip
    return rows


def _record(value: object) -> dict:
    """An engine record as the file holds it (JSON text) or as read (a dict)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else dict(value)  # type: ignore[arg-type]


def _print_moving(row: dict) -> None:
    print(
        f"{row['model']:16s} {row['grid']} grid, {row['samples']} samples, {row['moved']} "
        f"moving (split by its "
        f"{row['split_path']}): split {row['split_wall']:.1f} s vs full forward "
        f"{row['full_wall']:.1f} s whole process (median of {row['pairs']}): "
        f"{row['whole_speedup']:.2f}x; evaluation loop {row['loop_full_point_seconds']:.3f} vs "
        f"{row['loop_split_point_seconds']:.3f} s a point: {row['loop_speedup']:.2f}x; ideal "
        f"(FLOPs) {row['ideal_speedup']:.2f}x: whole {row['whole_speedup'] / row['ideal_speedup']:.2f}"
        f", loop {row['loop_speedup'] / row['ideal_speedup']:.2f} of ideal; attainable with one "
        f"static pass {row['attainable_speedup']:.2f}x: whole "
        f"{row['whole_speedup'] / row['attainable_speedup']:.2f} of it | max rel |Δloss| "
        f"{row['max_rel_loss_diff']:.1e}"
    )


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--ndgrid-loop":  # Landscaper's loop, its own process
        ndgrid_loop(*sys.argv[2:])
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "--plain-hf":  # the plain loop's own process
        plain_hf(*sys.argv[2:])
        return 0
    if len(sys.argv) == 7 and sys.argv[1] == "--plain-process":
        plain_process(*sys.argv[2:])
        return 0
    if len(sys.argv) == 7 and sys.argv[1] == "--reference-process":
        reference_process(*sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        choices=["mlp", "resnet20", "gpt2", "whole", "moving"],
        help="repeatable [mlp, resnet20]; whole: resnet20, each side a whole process; moving: "
        "a 12-layer GPT-2 and a ResNet-56 with only their last block/stage moving, split vs "
        "full forward",
    )
    parser.add_argument("--pairs", type=int, default=3, help="whole: interleaved rounds [3]")
    parser.add_argument(
        "--no-reference", action="store_true", help="whole: skip the reference-style loop"
    )
    parser.add_argument(
        "--llm-sequences", type=int, default=64, help="gpt2: token windows of 128 [64]"
    )
    parser.add_argument(
        "--variants",
        type=lambda v: [p for p in v.split(",") if p],
        help=f"whole: engine runs with other settings, of {','.join(VARIANTS)} "
        "[all on cuda, none on cpu]",
    )
    parser.add_argument("--grid", type=int, help="points per axis [mlp 51, resnet20 21]")
    parser.add_argument(
        "--samples", type=int, default=2000, help="synthetic CIFAR samples for resnet20 [2000]"
    )
    parser.add_argument(
        "--moving-samples", type=int, default=MOVING_SAMPLES,
        help=f"moving: synthetic CIFAR samples for ResNet-56 [{MOVING_SAMPLES}]",
    )  # fmt: skip
    parser.add_argument(
        "--moving-sequences", type=int, default=MOVING_SEQUENCES,
        help=f"moving: token windows of {MOVING_SEQ_LEN} for GPT-2 [{MOVING_SEQUENCES}]",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-points", type=int, default=16, help="points the plain loop is timed on [16]"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--engine", default="auto", choices=["auto", "reference", "batched"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--ndgrid",
        action="store_true",
        help="a --grid^3 grid (21^3) against Landscaper's per-point clone loop, whole processes "
        "(alone unless --model is given too)",
    )
    parser.add_argument(
        "--hessian",
        action="store_true",
        help="the top eigenvalues and trace against PyHessian's algorithm on the same model, "
        "samples and tolerance (scripts/bench_hessian.py: the mlp on 1000 digits)",
    )
    args = parser.parse_args()
    peak = matmul_peak_gflops(torch.device(args.device))
    print(f"matmul peak on {args.device}: {peak:.1f} GFLOP/s (float32 2048x2048, measured now)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.ndgrid:
            row = bench_ndgrid(args, Path(tmp))
            rows.append(row)
            print(
                f"ndgrid    {row['grid']} grid ({row['points']} points), mlp on digits: "
                f"landscape compute {row['engine_wall']:.1f} s (whole process; "
                f"{row['engine'].get('engine')}, {row['engine'].get('k', 1)} points "
                f"per call) | per-point clone loop {row['loop_wall']:.1f} s (whole process) | "
                f"ratio {row['ratio']:.2f}x | max |Δloss| {row['max_abs_loss_diff']:.1e}"
            )
        if args.hessian:
            import bench_hessian  # scripts/, beside this file

            rows.append(bench_hessian.bench("mlp", 1000, torch.device(args.device), 600, 10, 200))
        alone = args.ndgrid or args.hessian
        for name in args.model or ([] if alone else ["mlp", "resnet20"]):
            if name == "moving":
                for row in bench_moving(args, Path(tmp)):
                    rows.append(row)
                    _print_moving(row)
                continue
            if name == "whole":
                row = bench_whole(args, Path(tmp))
                rows.append(row)
                e = row["engine"]
                print(
                    f"whole     {row['grid']} grid, {row['samples']} samples, median of "
                    f"{row['pairs']} pairs: landscape compute {row['engine_wall']:.1f} s (sys "
                    f"{100 * row['engine_sys_share']:.0f}% of CPU, {row['engine_minor_faults']:.0f} "
                    f"faults; {e.get('engine')} channels_last={e.get('channels_last')} batch "
                    f"{e.get('batch_size')}) | plain loop process {row['plain_wall']:.1f} s (sys "
                    f"{100 * row['plain_sys_share']:.0f}%, {row['plain_minor_faults']:.0f} faults) | "
                    f"ratio {row['ratio']:.2f}x | max rel |Δloss| {row['max_rel_loss_diff']:.1e}"
                )
                if "reference_wall" in row:
                    print(
                        f"          reference-style loop process (DataLoader, 2 workers per point, "
                        f"PIL) {row['reference_wall']:.1f} s: ratio {row['ratio_reference']:.2f}x"
                    )
                for key, tol in row["variant_tolerances"].items():
                    print(
                        f"          {key.replace('_', ' ')}: {row[f'{key}_wall']:.1f} s, "
                        f"{row[f'ratio_plain_over_{key}']:.2f}x the plain loop, max rel |Δloss| "
                        f"{row['rel_loss_diff_by_side'][key]:.1e} (tolerance {tol:g})"
                    )
                lim = row["bare_forward"]
                print(
                    f"          bare forward over the samples: eager {lim['eager_best']} "
                    f"{lim['eager_seconds']:.3f} s, compiled {lim['compiled_seconds']:.3f} s; the "
                    f"engine's timed point {row['engine_per_point_timed']:.3f} s = "
                    f"{row['per_point_over_limit']:.2f}x the limit; the plain loop process is "
                    f"{row['ceiling_ratio_plain']:.2f}x the limit's whole grid, with no start-up"
                )
                continue
            if name == "gpt2":
                row = bench_llm(args, Path(tmp))
                rows.append(row)
                print(
                    f"gpt2      {row['grid']} grid, {row['predicted_tokens_per_point']} tokens a "
                    f"point: engine {row['engine_tokens_per_s']:.0f} tokens/s (whole process "
                    f"{row['engine_seconds_whole_process']:.1f} s) | plain HF loop "
                    f"{row['plain_tokens_per_s']:.0f} tokens/s ({row['plain_seconds_whole_process']:.1f} s)"
                    f" | ratio {row['ratio']:.2f}x | max |Δloss| {row['max_abs_loss_diff']:.1e}"
                )
                continue
            row = bench_model(name, args, Path(tmp), peak)
            rows.append(row)
            e = row["engine"]
            print(
                f"{name:9s} {row['grid']} grid, {row['samples']} samples: engine "
                f"{row['engine_points_per_s']:.2f} pt/s ({row['engine_gflops']:.1f} GFLOP/s, "
                f"{100 * row['engine_share_of_peak']:.0f}% of peak, whole run {row['engine_seconds_whole_run']:.1f} s, "
                f"chose {e.get('engine')} channels_last={e.get('channels_last')} "
                f"compile={e.get('compile')}) | plain loop "
                f"{row['plain_points_per_s']:.2f} pt/s ({row['plain_gflops']:.1f} GFLOP/s, timed on "
                f"{row['plain_points_timed']} points) | ratio {row['ratio']:.2f}x whole run, "
                f"{row['steady_ratio']:.2f}x evaluation loop alone | max |Δloss| "
                f"{row['max_abs_loss_diff']:.1e} ({row['max_rel_loss_diff']:.1e} relative)"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    bad = [r["model"] for r in rows if r.get("max_abs_loss_diff", 0) > 1e-5]
    bad += [
        r["model"]
        for r in rows
        if ("whole" in r["model"] or "moving" in r["model"]) and r["max_rel_loss_diff"] > 1e-6
    ]
    bad += [
        f"{r['model']} {key}"
        for r in rows
        for key, tol in r.get("variant_tolerances", {}).items()
        if r["rel_loss_diff_by_side"][key] > tol
    ]
    if bad:
        print(f"DISAGREE: {bad} differ from the plain loop by more than 1e-5 in loss")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
