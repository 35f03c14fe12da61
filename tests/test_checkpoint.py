"""Checkpoints: formats, wrappers, prefixes, the unsafe-pickle opt-in and errors that name names."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from landscape.checkpoint import apply_state_dict, check_finite, file_sha256, load_state_dict
from landscape.errors import CheckpointError
from landscape.models import build_model


class Net(nn.Module):
    """A tiny net with a BN layer (so a num_batches_tracked buffer) for round trips."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 5)
        self.bn = nn.BatchNorm1d(5)
        self.out = nn.Linear(5, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bn(self.fc(x))))


def trained_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return Net().state_dict()


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


# --- formats and wrappers ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".t7", ".ckpt"])
@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": s, "epoch": 3, "acc": 99.0},  # Li et al.'s layout
        lambda s: {"model": s, "optimizer": {"lr": 0.1}},
        lambda s: {"net": s},
        lambda s: {"model_state_dict": s, "epoch": 1},
        lambda s: {"checkpoint": 1, "model": {"state_dict": s}},  # nested wrappers
    ],
)
def test_wrappers_are_unwrapped(tmp_path: Path, suffix: str, wrap) -> None:
    state = trained_state()
    path = tmp_path / f"ckpt{suffix}"
    torch.save(wrap(state), path)
    assert_same_state(load_state_dict(str(path)), state)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "_orig_mod.module.", "module.module."])
def test_prefixes_are_stripped(tmp_path: Path, prefix: str) -> None:
    state = trained_state()
    path = tmp_path / "ckpt.pt"
    torch.save({f"{prefix}{k}": v for k, v in state.items()}, path)
    assert_same_state(load_state_dict(str(path)), state)


def test_compiled_submodule_prefix_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"fc._orig_mod.weight": torch.ones(2, 2)}, path)
    assert list(load_state_dict(str(path))) == ["fc.weight"]


def test_safetensors_round_trip(tmp_path: Path) -> None:
    state = trained_state()
    path = tmp_path / "ckpt.safetensors"
    save_file({f"module.{k}": v for k, v in state.items()}, str(path))
    loaded = load_state_dict(str(path))
    assert_same_state(dict(sorted(loaded.items())), dict(sorted(state.items())))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated in torch 2.x
def test_torchscript_file_as_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Net().eval()
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    assert_same_state(load_state_dict(str(path)), net.state_dict())


def test_lightning_prefix_fits_when_unambiguous(tmp_path: Path) -> None:
    state = trained_state()
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 2}, path)
    loaded = load_state_dict(str(path))
    assert next(iter(loaded)).startswith("model.")  # left as it is by the reader ...
    net = Net()
    apply_state_dict(net, loaded)  # ... and fitted by apply_state_dict
    assert_same_state(net.state_dict(), state)


def test_li_checkpoint_applies_to_resnet20(li_fixture: Path) -> None:
    state = load_state_dict(str(li_fixture / "model_20.t7"))
    check_finite(state)
    model = build_model("resnet20")
    apply_state_dict(model, state)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])


# --- the unsafe-pickle opt-in --------------------------------------------------------------------


def test_whole_model_needs_unsafe_pickle(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Net()
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    with pytest.raises(CheckpointError, match="--unsafe-pickle only if you trust") as info:
        load_state_dict(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert_same_state(load_state_dict(str(path), unsafe_pickle=True), net.state_dict())


# --- fitting errors ------------------------------------------------------------------------------


def test_missing_and_unexpected_keys_are_named() -> None:
    state = trained_state()
    state["extra.weight"] = torch.zeros(2, 3)
    del state["out.bias"]
    with pytest.raises(CheckpointError) as info:
        apply_state_dict(Net(), state)
    message = str(info.value)
    assert "1 missing" in message and "out.bias (3)" in message
    assert "1 unexpected" in message and "extra.weight (2, 3)" in message
    assert "is --model right" in message and "\n" not in message


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(CheckpointError, match=r"out\.weight checkpoint \(3, 5\) vs model \(7, 5\)"):
        apply_state_dict(Net(classes=7), trained_state())


def test_at_most_five_names_are_listed() -> None:
    model = build_model("resnet20")
    with pytest.raises(CheckpointError) as info:
        apply_state_dict(model, {"x": torch.zeros(1)})
    message = str(info.value)
    assert message.count("layer") <= 5 and "more)" in message
    assert "1 unexpected (not in model): x (1)" in message


def test_wrong_model_for_li_checkpoint() -> None:
    short = build_model("resnet20").state_dict()
    with pytest.raises(CheckpointError, match=r"unexpected.*layer2\.0\.shortcut\.0\.weight"):
        apply_state_dict(build_model("resnet20-noshort"), short)


def test_num_batches_tracked_may_be_missing() -> None:
    state = {k: v for k, v in trained_state().items() if not k.endswith("num_batches_tracked")}
    net = Net()
    apply_state_dict(net, state)
    torch.testing.assert_close(net.out.weight, state["out.weight"])


def test_apply_leaves_model_untouched_on_error() -> None:
    net = Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = trained_state()
    state["out.weight"] = torch.zeros(9, 5)
    with pytest.raises(CheckpointError):
        apply_state_dict(net, state)
    assert_same_state(net.state_dict(), before)


# --- reading errors ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match=r"nope\.pt' does not exist; check --checkpoint"):
        load_state_dict(str(path))
    with pytest.raises(CheckpointError, match="cannot be read"):
        file_sha256(str(path))


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.pt", b"hello, not a checkpoint"), ("empty.pth", b""), ("bad.safetensors", b"xx")],
)
def test_unreadable_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_state_dict(str(path))
    message = str(info.value)
    assert name in message and "\n" not in message


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"epoch": 3, "lr": 0.1}, "no state dict: found keys epoch, lr"),
        ([torch.zeros(2)], "holds a list, not a state dict"),
        ({}, "holds no tensors"),
    ],
)
def test_not_a_state_dict(tmp_path: Path, obj: object, match: str) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=match):
        load_state_dict(str(path))


# --- checks and provenance -----------------------------------------------------------------------


def test_check_finite_names_the_first_bad_tensor() -> None:
    state = trained_state()
    check_finite(state)  # clean state passes
    state["fc.bias"] = torch.tensor([0.0, float("nan"), 1.0, float("inf"), 2.0])
    state["out.weight"] = torch.full((3, 5), float("nan"))
    with pytest.raises(CheckpointError, match=r"fc\.bias \(5\) has 2 NaN/inf value\(s\) of 5"):
        check_finite(state)


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"landscape" * 1000)
    assert file_sha256(str(path)) == hashlib.sha256(b"landscape" * 1000).hexdigest()
