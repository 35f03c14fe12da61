"""How each layer moved over training (``--checkpoints``), and layers that did not learn.

For checkpoints ``θ_0 … θ_n`` and a layer's parameters (weight and bias together), the relative
change at checkpoint k is ``‖θ_k − θ_0‖ / ‖θ_0‖`` (``‖θ_k‖`` in the denominator when the layer
started at zero). The weight's mean and std are reported per checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from landscape.diagnostics.findings import Finding
from landscape.diagnostics.weights import Layer

# A layer did not learn when its final relative change is below STILL_RATIO of the largest
# layer's: in healthy training every layer moves within an order of magnitude or so of the
# others, while frozen layers or vanishing gradients leave early layers 100× behind (or at
# exactly 0). When even the largest change is below NOTHING_MOVED (float noise), the
# checkpoints hold the same weights.
STILL_RATIO = 0.01
NOTHING_MOVED = 1e-6


@dataclass
class LayerMovement:
    name: str
    relative_change: list[float]  # per checkpoint; 0 at the first
    weight_mean: list[float]
    weight_std: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Movement:
    files: list[str]
    layers: list[LayerMovement]

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "layers": [m.to_dict() for m in self.layers]}


def checkpoint_movement(
    layers: Sequence[Layer], states: Sequence[Mapping[str, torch.Tensor]], files: Sequence[str]
) -> Movement:
    """Relative change of every layer from the first state, and its weight's mean and std."""
    moves = []
    for layer in layers:
        names = layer.full_names()
        flat = [torch.cat([s[n].detach().double().flatten().cpu() for n in names]) for s in states]
        start = float(flat[0].norm())
        rel = []
        for f in flat:
            change = float((f - flat[0]).norm())
            base = start if start > 0 else float(f.norm())
            rel.append(change / base if base > 0 else 0.0)
        weight_name = _weight_name(layer)
        w = [s[weight_name].detach().double() for s in states]
        means = [float(t.mean()) for t in w]
        stds = [float((t - t.mean()).square().mean().sqrt()) for t in w]  # population std
        moves.append(LayerMovement(layer.name, rel, means, stds))
    return Movement([str(f) for f in files], moves)


def _weight_name(layer: Layer) -> str:
    w = layer.weight
    local = next((k for k, t in layer.tensors.items() if t is w), next(iter(layer.tensors)))
    return f"{layer.prefix}.{local}" if layer.prefix else local


def not_learning_findings(movement: Movement) -> list[Finding]:
    """Layers that did not move between the first and the last checkpoint.

    Error when nothing moved or when only the last layer did (a classic failure: gradients do
    not reach the earlier layers, or they are frozen); a warning per still layer otherwise.
    """
    final = {m.name: m.relative_change[-1] for m in movement.layers}
    if not final:
        return []
    largest = max(final.values())
    if not math.isfinite(largest) or largest < NOTHING_MOVED:
        return [
            Finding(
                "not-learning",
                None,
                "error",
                f"no layer changed between the {len(movement.files)} checkpoints (largest "
                f"relative change {largest:.2g}): they hold the same weights; were they saved "
                "during training, and does the optimizer get the model's parameters?",
            )
        ]
    still = [name for name, rel in final.items() if rel < STILL_RATIO * largest]
    last = movement.layers[-1].name
    only_last = len(final) > 1 and set(final) - set(still) == {last}
    findings = []
    for name in still:
        message = (
            f"{name} moved {final[name]:.2g} (relative to the first checkpoint), under "
            f"{STILL_RATIO:g}× the largest layer's {largest:.2g}: "
        )
        message += (
            f"only the last layer ({last}) learns; gradients do not reach the earlier layers "
            "(vanishing gradients, a detach, or frozen parameters)"
            if only_last
            else "the layer is frozen or its gradients vanish"
        )
        findings.append(Finding("not-learning", name, "error" if only_last else "warning", message))
    return findings
