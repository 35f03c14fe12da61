"""Per-sample losses against values computed by hand from their formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from landscape.errors import ConfigError
from landscape.losses import correct_count, correct_mask, get_loss

LOGITS = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2.0, 0.0, -1.0]])
TARGETS = torch.tensor([2, 0, 1])


def test_cross_entropy_per_sample():
    loss = get_loss("cross-entropy")(LOGITS, TARGETS)
    lse0 = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    lse2 = math.log(math.exp(2) + math.exp(0) + math.exp(-1))
    expected = torch.tensor([lse0 - 3.0, math.log(3.0), lse2 - 0.0])
    assert loss.shape == (3,)
    assert_close(loss, expected)


def test_mse_one_hot_for_class_indices():
    logits = torch.tensor([[1.0, 0.0], [0.5, 0.5], [2.0, -1.0]])
    loss = get_loss("mse")(logits, torch.tensor([0, 1, 1]))
    # one-hot targets [1,0], [0,1], [0,1]; mean over the 2 outputs of the squared error
    expected = torch.tensor([0.0, (0.25 + 0.25) / 2, (4.0 + 4.0) / 2])
    assert_close(loss, expected)


def test_mse_float_targets_as_they_are():
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    targets = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    assert_close(get_loss("mse")(logits, targets), torch.tensor([0.5, (4.0 + 9.0) / 2]))
    # (B,) regression targets for (B, 1) outputs
    out = get_loss("mse")(torch.tensor([[1.0], [2.0]]), torch.tensor([0.0, 4.0]))
    assert_close(out, torch.tensor([1.0, 4.0]))
    with pytest.raises(ConfigError, match="do not fit"):
        get_loss("mse")(logits, torch.zeros(3))


def test_correct_count_top1():
    assert correct_count(LOGITS, TARGETS) == 2  # argmax 2, 0 (first of ties), 0
    assert correct_mask(LOGITS, TARGETS).tolist() == [True, True, False]
    assert correct_count(LOGITS, torch.rand(3, 3)) is None


LOSS_SOURCE = """
import torch


def abs_err(logits, targets):
    return (logits.sum(dim=1) - targets).abs()


def reduced(logits, targets):
    return (logits.sum(dim=1) - targets).abs().mean()
"""


def test_custom_loss_from_file(tmp_path):
    path = tmp_path / "myloss.py"
    path.write_text(LOSS_SOURCE)
    loss = get_loss(f"{path}:abs_err")(LOGITS, torch.tensor([6.0, 1.0, 0.0]))
    assert_close(loss, torch.tensor([0.0, 1.0, 1.0]))


def test_custom_loss_that_reduces_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "myloss2.py").write_text(LOSS_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = get_loss("myloss2:reduced")
    with pytest.raises(ConfigError, match=r"returned \(\) for a batch of 3.*shape \(B,\)"):
        fn(LOGITS, torch.zeros(3))


def test_unknown_loss_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown loss 'hinge'.*cross-entropy, mse"):
        get_loss("hinge")
