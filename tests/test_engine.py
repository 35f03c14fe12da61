"""The reference evaluator against a plain loop written independently on tiny models."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from landscape.engine import ReferenceEvaluator
from landscape.params import buffers_of, parameters_of


class TinyConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def make_case(seed: int = 0):
    torch.manual_seed(seed)
    model = TinyConvBN()
    # non-trivial running statistics, as a trained checkpoint has
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(23, 2, 4, 4)
    y = torch.randint(0, 4, (23,))
    d1 = {k: torch.randn_like(v) * 0.1 for k, v in parameters_of(model).items()}
    d2 = {k: torch.randn_like(v) * 0.1 for k, v in parameters_of(model).items()}
    return model, x, y, d1, d2


def plain_loop(model: nn.Module, x, y, d1, d2, a: float, b: float) -> tuple[float, float]:
    """What other tools do: copy the weights in place into a clone, eval mode, sample by sample."""
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in clone.named_parameters():
            p.add_(a * d1[name] + b * d2[name])
    clone.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for i in range(len(y)):
            logits = clone(x[i : i + 1])[0].double()
            total += float(torch.logsumexp(logits, 0) - logits[y[i]])  # -log softmax
            correct += int(int(logits.argmax()) == int(y[i]))
    return total / len(y), correct / len(y)


def evaluator_for(model, x, y, d1, d2, batch: int = 5) -> ReferenceEvaluator:
    centre = {**parameters_of(model), **buffers_of(model)}

    def batches():
        for s in range(0, len(y), batch):
            yield x[s : s + batch], y[s : s + batch]

    def ce(logits, t):
        return nn.functional.cross_entropy(logits, t, reduction="none")

    return ReferenceEvaluator(model, centre, [d1, d2], batches, ce)


def test_matches_plain_loop_on_a_grid() -> None:
    model, x, y, d1, d2 = make_case()
    ev = evaluator_for(model, x, y, d1, d2)
    for a, b in [(0.0, 0.0), (0.5, -1.0), (-2.0, 0.25), (1.0, 1.0)]:
        got = ev.evaluate((a, b))
        want_loss, want_acc = plain_loop(model, x, y, d1, d2, a, b)
        assert math.isclose(got.loss, want_loss, rel_tol=1e-5), (a, b)
        assert got.acc == want_acc


def test_batch_size_does_not_change_the_mean() -> None:
    model, x, y, d1, d2 = make_case(1)
    # 23 samples in batches of 5 (last one short) vs one batch: exact mean, not mean of means
    r5 = evaluator_for(model, x, y, d1, d2, batch=5).evaluate((0.3, 0.1))
    r23 = evaluator_for(model, x, y, d1, d2, batch=23).evaluate((0.3, 0.1))
    assert math.isclose(r5.loss, r23.loss, rel_tol=1e-6)


def test_model_is_never_mutated() -> None:
    model, x, y, d1, d2 = make_case(2)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ev = evaluator_for(model, x, y, d1, d2)
    ev.evaluate((1.5, -0.5))
    assert model.training and model.bn.training  # mode restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # bit-identical: weights and BN running statistics


def test_nan_loss_is_returned_not_raised() -> None:
    model, x, y, d1, d2 = make_case(3)
    d1 = {k: torch.full_like(v, float("nan")) for k, v in d1.items()}
    r = evaluator_for(model, x, y, d1, d2).evaluate((1.0, 0.0))
    assert math.isnan(r.loss)


def test_the_engine_choices_are_the_registry() -> None:
    from landscape.config import ENGINE_CHOICES
    from landscape.engine.select import ENGINES

    assert ("auto", *ENGINES) == ENGINE_CHOICES
    for cls in ENGINES.values():
        assert cls.name in ENGINES and isinstance(cls.points_per_call, bool)
