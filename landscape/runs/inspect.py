"""One ``landscape inspect`` run: load the model and data as ``compute`` does, then diagnose."""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape import checkpoint_paths as paths
from landscape.config import InspectConfig, ModelSpec
from landscape.diagnostics.activations import (
    ForwardResult,
    dead_unit_findings,
    depth_scale,
    growth_findings,
    run_forward,
)
from landscape.diagnostics.report import Report
from landscape.diagnostics.saturation import saturation_findings, softmax_saturation
from landscape.diagnostics.training import checkpoint_movement, not_learning_findings
from landscape.diagnostics.weights import LayerReport, layer_report, layers_of, symmetry_findings
from landscape.engine import policies
from landscape.engine.reference import is_jitted
from landscape.errors import ConfigError, first_line
from landscape.session import Session
from landscape.version import __version__

SKIPPED_ACTIVATIONS = (
    "dead-units and activation-growth: the model's layers cannot be hooked (a TorchScript or "
    "torch.export program runs its own code), so only weight statistics, symmetry and "
    "saturation were checked; pass the model as a factory to check its activations"
)
SKIPPED_SATURATION = (
    "saturation: the model's output on the first batch is not (batch, classes) logits"
)


def run_inspect(config: InspectConfig) -> Report:
    """Load the model, the data and the checkpoints; run every check; return the report."""
    files = expand_checkpoints(config.checkpoints)
    if len(files) == 1:
        raise ConfigError(
            "--checkpoints needs at least two checkpoints to compare (the first is the start)"
        )
    model_spec = config.model
    if files and not model_spec.checkpoint:
        model_spec = dataclasses.replace(model_spec, checkpoint=str(files[-1]))
    session = Session.from_specs(model_spec, config.data, device=config.device, seed=config.seed)
    batches = session.data.batches(config.data.batch_size, session.device)
    report = inspect_model(
        session.model, batches, epsilon=config.epsilon, trained=bool(model_spec.checkpoint)
    )
    states = []
    if files:
        states = [session.load_state(str(f)) for f in files]
        report.checkpoints = checkpoint_movement(layers_of(session.model), states, files)
        report.findings += not_learning_findings(report.checkpoints)
    report.provenance = _provenance(config, model_spec, session)
    if config.tensorboard:
        from landscape.diagnostics.tensorboard import write_events

        steps = list(zip([str(f) for f in files], states, strict=True)) or [
            (model_spec.checkpoint or f"initialization (seed {config.seed})", session.centre)
        ]
        write_events(config.tensorboard, layers_of(session.model), steps, report.activations)
    return report


def inspect_model(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    epsilon: float = InspectConfig.epsilon,
    trained: bool = False,
) -> Report:
    """Weight statistics, symmetry, and one forward pass over ``batches`` for the activation
    checks. The model is left as it was (weights, buffers, training flags, no hooks)."""
    layers = layers_of(model)
    reports = [layer_report(layer) for layer in layers]
    findings = symmetry_findings(layers)
    batchnorm = None
    forward_model = model
    if policies.bn_modules(model) and not is_jitted(model):
        if trained:
            batchnorm = "running statistics of the checkpoint (eval mode)"
        else:
            # an initialization's running statistics are the defaults (mean 0, variance 1), not
            # what its layers produce: training normalizes with each batch's statistics, so the
            # activation checks do too, on a private copy that tracks nothing
            batchnorm = "each batch's statistics (an initialization: as during training)"
            forward_model = policies.batch_stats_model(model)
    fwd = _forward(forward_model, batches)
    skipped = [] if fwd.hooked else [SKIPPED_ACTIVATIONS]
    filter_layers = {r.name for r in reports if r.has_filters}
    scale = depth_scale(fwd.records, filter_layers, fwd.input_rms) if fwd.hooked else []
    if fwd.hooked:
        _attach_activations(reports, fwd)
        findings += dead_unit_findings(fwd.records, fwd.samples)
        findings += growth_findings(scale, fwd.records, trained)
    sat = softmax_saturation(fwd.first_output, fwd.first_targets, epsilon)
    if sat is None:
        skipped.append(SKIPPED_SATURATION)
    findings += saturation_findings(sat, trained)
    report = Report(reports, fwd.records, scale, sat, findings, fwd.samples, skipped)
    report.batchnorm = batchnorm
    return report


def _forward(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> ForwardResult:
    try:
        return run_forward(model, batches)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as exc:
        first = first_line(exc)
        raise ConfigError(
            f"the model cannot run on the data: {first}; check --model, --model-arg and --data "
            "(a torch.export program may need the --batch-size it was exported with)"
        ) from None


def _attach_activations(reports: list[LayerReport], fwd: ForwardResult) -> None:
    """Each layer's output RMS and the dead share of the first ReLU that follows it."""
    by_layer = {r.name: r for r in reports}
    for rec in fwd.records:
        target = by_layer.get(rec.layer or "")
        if target is None:
            continue
        if rec.role == "layer" and rec.name == target.name:
            target.output_rms = rec.rms
        if rec.role == "relu" and target.dead_fraction is None:
            target.dead_fraction = rec.dead_fraction


def expand_checkpoints(items: Iterable[str]) -> list[Path]:
    """``--checkpoints`` items: files as given, a folder's checkpoints and a glob's matches in
    natural order."""
    return paths.expand_checkpoints(list(items), "--checkpoints", ConfigError)


def _provenance(config: InspectConfig, model_spec: ModelSpec, session: Session) -> dict[str, Any]:
    return {
        "model": {
            "name": model_spec.name,
            "args": dict(model_spec.args),
            "checkpoint": model_spec.checkpoint,
            "checkpoint_sha256": session.checkpoint_sha256 or None,
            "seed": None if model_spec.checkpoint else config.seed,
        },
        "data": session.data.describe(),
        "device": str(session.device),
        "epsilon": config.epsilon,
        "landscape_version": __version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


__all__ = ["InspectConfig", "expand_checkpoints", "inspect_model", "run_inspect"]
