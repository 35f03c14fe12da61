"""Softmax saturation: the share of softmax outputs within ε of 0 or 1 on the first batch.

The model's output on the first batch is read as ``(batch, classes)`` logits (or, when its rows
already are probabilities, as those). An output p is saturated when ``p ≥ 1 − ε`` or
``p ≤ ε₀`` with ``ε₀ = min(ε, 0.01 / K)`` for K classes: an untrained network without a
preference outputs about 1/K everywhere, so "near 0" has to mean far below 1/K; with 10 classes
and ε = 1e-3, ε₀ = ε, while with 1000 classes ε₀ = 1e-5, a hundred times below uniform.

A saturated softmax has near-zero derivative ``∂p_i/∂z_j = p_i(δ_ij − p_j)``: before training it
means random but confident predictions, a huge initial loss and logits too large for their
layers (a too-wide weight distribution, e.g. a truncated normal with std 0.5, saturates nearly
every output; Glorot or Kaiming initializations almost none). After training, confident
predictions are expected where they are right; confidently wrong ones are a problem.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from landscape.diagnostics.findings import Finding

# "Most" outputs saturated: with healthy initializations the share is ~0, with a too-wide one
# ~1, so the thresholds are not delicate. Measured on MLPs on digits (2 and 3 hidden layers,
# widths 64 to 512, 500 samples): 0.0 for Glorot, Kaiming and PyTorch's default; 0.73 to 0.999
# for a truncated normal with std 0.5 (2 hidden layers of 512: 0.97, 91% of the confident
# predictions wrong). Before training a share of SATURATION_WARNING is a warning and one of
# SATURATION_ERROR an error: nine outputs in ten are then one-hot at random and the loss starts
# at many times log K, a network that cannot be trained as initialized.
SATURATION_WARNING = 0.5
SATURATION_ERROR = 0.9
WRONG_WARNING = 0.5  # after training: most confident predictions are wrong


@dataclass
class Saturation:
    epsilon: float
    near_zero: float  # the threshold ε₀ for "within ε of 0"
    classes: int
    samples: int  # the first batch's size
    share: float  # of all outputs, saturated
    share_near_zero: float
    share_near_one: float
    confident_samples: float  # share of samples whose top probability is ≥ 1 − ε
    confident_wrong: float | None  # of those, the share whose top class is not the label
    from_probabilities: bool  # the model's outputs already were probabilities

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def softmax_saturation(
    output: torch.Tensor | None, targets: torch.Tensor | None, epsilon: float
) -> Saturation | None:
    """Saturation of the first batch's softmax; None when the output is not (batch, classes)."""
    if output is None or output.ndim != 2 or output.shape[1] < 2 or output.shape[0] == 0:
        return None
    z = output.double()
    k = z.shape[1]
    is_prob = bool(
        ((z >= 0) & (z <= 1)).all()
        and torch.allclose(z.sum(1), torch.ones_like(z[:, 0]), atol=1e-4)
    )
    p = z if is_prob else torch.softmax(z, dim=1)
    near_zero = min(epsilon, 0.01 / k)
    low, high = p <= near_zero, p >= 1 - epsilon
    confident = p.max(dim=1).values >= 1 - epsilon
    return Saturation(
        epsilon=epsilon,
        near_zero=near_zero,
        classes=k,
        samples=z.shape[0],
        share=float((low | high).double().mean()),
        share_near_zero=float(low.double().mean()),
        share_near_one=float(high.double().mean()),
        confident_samples=float(confident.double().mean()),
        confident_wrong=_wrong_share(p, targets, confident),
        from_probabilities=is_prob,
    )


def _wrong_share(
    p: torch.Tensor, targets: torch.Tensor | None, confident: torch.Tensor
) -> float | None:
    """Among confident samples, the share whose top class differs from an integer label."""
    if (
        targets is None
        or targets.is_floating_point()
        or tuple(targets.shape) != (p.shape[0],)
        or not bool(confident.any())
    ):
        return None
    wrong = p.argmax(dim=1) != targets.to(p.device)
    return float(wrong[confident].double().mean())


def saturation_findings(sat: Saturation | None, trained: bool) -> list[Finding]:
    """Flag a mostly saturated softmax: before training a warning, or an error from
    SATURATION_ERROR; after training a warning, and only when most confident predictions are
    wrong (or cannot be checked against labels)."""
    if sat is None or sat.share < SATURATION_WARNING:
        return []
    wrong = sat.confident_wrong
    if trained and wrong is not None and wrong < WRONG_WARNING:
        return []  # a trained network that is confident and mostly right: expected
    message = (
        f"{sat.share:.0%} of the softmax outputs on the first batch ({sat.samples} samples, "
        f"{sat.classes} classes) are within ε={sat.epsilon:g} of 0 or 1"
    )
    if wrong is not None:
        message += f"; {wrong:.0%} of the confident predictions are wrong"
    message += (
        ": the logits are so large that the softmax is nearly one-hot and its Jacobian vanishes; "
        + (
            "the network is overconfident, check the learning rate and regularization"
            if trained
            else "use a smaller initialization scale (Glorot or Kaiming) for the layers"
        )
    )
    severity = "error" if not trained and sat.share >= SATURATION_ERROR else "warning"
    return [Finding("saturation", None, severity, message)]
