"""Alignment (issue 25 item 1): permutation groups, weight and activation matching, the aligned
file and the command.

Oracles: the aligned B computes what B computes (the outputs of two forwards); a B made from A
by known permutations is mapped back onto A exactly; for a one-hidden-layer MLP the matched
inner product is the best over all n! permutations (brute force), and a permutation applied by
hand (rows of one layer, columns of the next), not by the code under test, is recovered.
"""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import landscape
from landscape.alignment.exported import export_spec
from landscape.alignment.files import read_alignment
from landscape.alignment.graph import trace_spec
from landscape.alignment.matching import permutation_spec
from landscape.alignment.spec import permute_state
from landscape.checkpoint import apply_state_dict, file_sha256, load_state_dict
from landscape.cli import main
from landscape.errors import AlignError
from landscape.models import build_model

TOL = 1e-5
INPUTS = {
    "mlp": (5, 64),
    "lenet": (5, 1, 28, 28),
    "vgg9": (3, 3, 32, 32),
    "resnet20": (3, 3, 32, 32),
    "resnet20-noshort": (3, 3, 32, 32),
    "resnet56": (2, 3, 32, 32),
    "resnet56-noshort": (2, 3, 32, 32),
    "resnet110": (2, 3, 32, 32),
    "resnet110-noshort": (2, 3, 32, 32),
}


def randomized(model: nn.Module, seed: int) -> nn.Module:
    """Every weight and BatchNorm statistic random (BatchNorm's defaults, ones and zeros, are
    the same in every unit and would hide a unit put in the wrong place); eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                fresh = torch.randn(t.shape, generator=g) / max(1, t[0].numel()) ** 0.5
                t.copy_(fresh.abs() + 0.5 if name.endswith("running_var") else fresh)
    return model.eval()


def permuted_copy(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with a random permutation applied to every group of its units."""
    spec = permutation_spec(model)
    g = torch.Generator().manual_seed(seed)
    perms = {k: torch.randperm(n, generator=g) for k, n in sorted(spec.sizes.items())}
    twin = copy.deepcopy(model)
    twin.load_state_dict(permute_state(model.state_dict(), spec, perms))
    return twin


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(t, sb[k]) for k, t in a.state_dict().items())


def max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """max |Δlogit| of two models on ``x``, evaluated in float64 (deep ResNets with random
    BatchNorm statistics reach logits of 10³, where float32 rounds by 10⁻⁵ itself)."""
    a, b = (copy.deepcopy(m).double() for m in (a, b))
    x = x.double() if x.is_floating_point() else x
    with torch.no_grad():
        return float((logits(a(x)) - logits(b(x))).abs().max())


def logits(out: object) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out  # type: ignore[return-value]


# --- transformers -------------------------------------------------------------------------------


def gpt2(seed: int) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=4, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg).eval()


def llama(seed: int) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16, bos_token_id=0,
        eos_token_id=0, pad_token_id=None,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg).eval()


# --- a user model: residual sums, LayerNorm, GELU, a depthwise conv, a view as flatten ----------


class UserNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 6, 3, padding=1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.norm = nn.GroupNorm(1, 6)
        self.fc = nn.Linear(6 * 4 * 4, 12)
        self.ln = nn.LayerNorm(12)
        self.inner = nn.Linear(12, 20)
        self.back = nn.Linear(20, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        h = F.avg_pool2d(self.norm(h + self.dw(h)), 2)  # (B, 6, 4, 4)
        h = self.ln(self.fc(h.view(h.size(0), -1)))  # channels -> blocks of 16 inputs
        h = h + self.back(F.gelu(self.inner(h)))  # residual: ties fc, ln and back
        return self.head(h)


class ConvNextBlock(nn.Module):
    """Depthwise conv, channels moved last, LayerNorm, an MLP, a layer scale γ read directly,
    channels moved back, a residual sum."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.ln = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.ones(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(self.dw(x).permute(0, 2, 3, 1))  # (B, H, W, C)
        h = self.gamma * self.pw2(F.gelu(self.pw1(h)))
        return x + h.permute(0, 3, 1, 2)


class ConvNext(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.blocks = nn.Sequential(ConvNextBlock(8), ConvNextBlock(8))
        self.up, self.act = nn.Upsample(scale_factor=2), nn.PReLU(8)
        self.shift = nn.Parameter(torch.zeros(8, 1, 1))  # broadcast over positions
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(F.pad(self.up(self.blocks(self.stem(x))), (1, 1, 1, 1))) + self.shift
        return self.head(h.mean((2, 3)))


class Mixer(nn.Module):
    """Hidden units reshaped and transposed between two layers: not a permutation of units."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        h = h.view(-1, 2, 4).transpose(1, 2).reshape(-1, 8)
        return self.b(h)


def user_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return randomized(UserNet(), seed)


def zoo(name: str, seed: int) -> nn.Module:
    return randomized(build_model(name, {}), seed)


CASES = [*INPUTS, "user", "convnext", "gpt2", "llama"]


def case(name: str, seed: int) -> tuple[nn.Module, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + seed)
    if name == "user":
        return user_net(seed), torch.randn(4, 2, 8, 8, generator=g)
    if name == "convnext":
        torch.manual_seed(seed)
        return randomized(ConvNext(), seed), torch.randn(2, 3, 16, 16, generator=g)
    if name in ("gpt2", "llama"):
        model = gpt2(seed) if name == "gpt2" else llama(seed)
        return model, torch.randint(0, 40, (3, 9), generator=g)
    return zoo(name, seed), torch.randn(INPUTS[name], generator=g)


@pytest.mark.parametrize("name", CASES)
def test_aligned_b_computes_what_b_computes(name: str) -> None:
    a, x = case(name, 0)
    b, _ = case(name, 1)
    aligned = landscape.align(a, b)
    assert max_diff(aligned, b, x) <= TOL
    found = aligned.alignment
    assert any(p != sorted(p) for p in found.permutations.values())  # it did reorder units
    assert found.total_after > found.total_before


@pytest.mark.parametrize("name", CASES)
def test_weight_matching_recovers_a_known_permutation(name: str) -> None:
    a, x = case(name, 0)
    b = permuted_copy(a, seed=7)
    assert not same_weights(a, b) and max_diff(a, b, x) <= TOL  # the groups are true symmetries
    assert same_weights(landscape.align(a, b), a)


@pytest.mark.parametrize("name", ["mlp", "gpt2"])
def test_activation_matching_recovers_a_known_permutation(name: str) -> None:
    torch.manual_seed(0)  # PyTorch's initialization: no unit dead on every sample
    a = build_model("mlp", {}).eval() if name == "mlp" else gpt2(0)
    b = permuted_copy(a, seed=3)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(400, 64, generator=g) if name == "mlp" else torch.randint(0, 40, (40, 9))
    aligned = landscape.align(a, b, (x, torch.zeros(len(x), dtype=torch.long)), "activations")
    assert same_weights(aligned, a)
    assert aligned.alignment.total_after == pytest.approx(1.0)


def test_a_permutation_applied_by_hand_is_undone() -> None:
    """Independent of permute_state: rows of layer 0 and columns of layer 2 shuffled by hand."""
    a = zoo("mlp", 0)
    b = copy.deepcopy(a)
    p = torch.randperm(64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        b.layers[0].weight.copy_(a.layers[0].weight[p])
        b.layers[0].bias.copy_(a.layers[0].bias[p])
        b.layers[2].weight.copy_(a.layers[2].weight[:, p])
    aligned = landscape.align(a, b)
    assert same_weights(aligned, a)
    assert aligned.alignment.permutations["layers.0"] == torch.argsort(p).tolist()


def test_weight_matching_finds_the_best_of_all_permutations() -> None:
    """One hidden layer of 5 units: the inner product of the weights touching it, as matched,
    equals the brute-force maximum over all 120 orders of B's units."""
    a, b = (
        randomized(build_model("mlp", {"in_features": 3, "hidden": 5, "depth": 1}), s)
        for s in (0, 1)
    )
    # a unit's weights: its row of layer 0, its bias, its column of layer 2 (float64)
    wa, wb = (
        [m.layers[0].weight.double(), m.layers[0].bias.double(), m.layers[2].weight.T.double()]
        for m in (a, b)
    )
    with torch.no_grad():
        best = max(
            sum(float((x * y[list(p)]).sum()) for x, y in zip(wa, wb, strict=True))
            for p in itertools.permutations(range(5))
        )
    assert landscape.align(a, b).alignment.total_after == pytest.approx(best, rel=1e-12)


def test_arguments_are_left_unchanged() -> None:
    a, b = zoo("resnet20", 0), zoo("resnet20", 1)
    before = [copy.deepcopy(m.state_dict()) for m in (a, b)]
    x = torch.randn(8, 3, 32, 32)
    for method in ("weights", "activations"):
        landscape.align(a, b, (x, torch.zeros(8, dtype=torch.long)), method)
    for m, state in zip((a, b), before, strict=True):
        assert all(torch.equal(t, state[k]) for k, t in m.state_dict().items())
        assert not m._forward_pre_hooks and not hasattr(m, "alignment")
        assert all(not sub._forward_pre_hooks for sub in m.modules())


def test_a_model_in_training_mode_stays_in_it() -> None:
    """The output check runs B in eval mode and gives it back in training mode, unchanged."""
    a, b = gpt2(0), gpt2(1).train()
    before = copy.deepcopy(b.state_dict())
    aligned = landscape.align(a, b)
    assert b.training and all(m.training for m in b.modules())
    assert all(torch.equal(t, before[k]) for k, t in b.state_dict().items())
    assert aligned.alignment.summary().startswith("4 permutation groups (4 reordered)")


def test_user_model_groups_follow_the_graph() -> None:
    spec = permutation_spec(UserNet())
    # stem, the depthwise conv and the GroupNorm share the stem's channels; fc, ln, back share
    # the residual stream; inner is the MLP's hidden layer
    assert spec.sizes == {"stem": 6, "fc": 12, "inner": 20}
    assert spec.axes["fc.weight"][1].block == 16 and spec.axes["dw.weight"][0].group == "stem"
    assert spec.axes["ln.weight"][0].group == "fc" and spec.axes["back.weight"][0].group == "fc"


def test_convnext_blocks_are_one_stream_with_their_layer_scales() -> None:
    spec = permutation_spec(ConvNext())
    assert spec.sizes == {"stem": 8, "blocks.0.pw1": 32, "blocks.1.pw1": 32}
    for tensor in ("blocks.0.gamma", "blocks.1.ln.weight", "act.weight", "shift"):
        assert spec.axes[tensor][0].group == "stem", tensor
    assert spec.axes["head.weight"][1].group == "stem" and not spec.not_followed


def test_a_model_that_mixes_units_is_refused_naming_the_operation() -> None:
    with pytest.raises(AlignError, match=r"could not follow Tensor\.view"):
        landscape.align(Mixer(), Mixer())


def test_an_operation_not_followed_leaves_only_its_units_in_place() -> None:
    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(4, 6)
            self.c, self.d = nn.Linear(12, 5), nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
            return self.d(torch.relu(self.c(h)))

    a, b = randomized(Cat(), 0), randomized(Cat(), 1)
    aligned = landscape.align(a, b)
    assert set(aligned.alignment.permutations) == {"c"}
    assert aligned.alignment.not_followed[0].startswith("torch.cat")
    assert max_diff(aligned, b, torch.randn(3, 4)) <= TOL


def test_other_architectures_are_refused_naming_the_tensor() -> None:
    with pytest.raises(
        AlignError, match=r"tensor layers\.0\.weight has shape \(64, 64\) in model A"
    ):
        landscape.align(build_model("mlp", {}), build_model("mlp", {"hidden": 32}))
    with pytest.raises(AlignError, match="MLP, model B a LeNet"):
        landscape.align(build_model("mlp", {}), build_model("lenet", {}))
    with pytest.raises(AlignError, match="needs data"):
        landscape.align(build_model("mlp", {}), build_model("mlp", {}), method="activations")
    with pytest.raises(AlignError, match="no hidden units"):
        landscape.align(build_model("mlp", {"depth": 0}), build_model("mlp", {"depth": 0}))


# --- the command --------------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["align", *args])
    return result.exit_code, result.stderr


def checkpoints(tmp_path: Path) -> tuple[Path, Path, nn.Module]:
    a, b = zoo("lenet", 0), zoo("lenet", 1)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    torch.save(b.state_dict(), tmp_path / "b.pt")
    return tmp_path / "a.pt", tmp_path / "b.pt", b


def test_command_writes_an_aligned_safetensors_checkpoint(tmp_path: Path) -> None:
    ckpt_a, ckpt_b, b = checkpoints(tmp_path)
    out = tmp_path / "b_aligned.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "landscape", "align", "--model", "lenet", "--checkpoint",
         str(ckpt_a), "--target", str(ckpt_b), "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "4 permutation groups" in proc.stdout and "inner product" in proc.stdout
    model = build_model("lenet", {})  # what --checkpoint does with the file
    apply_state_dict(model, load_state_dict(str(out)))
    assert max_diff(model.eval(), b, torch.randn(4, 1, 28, 28)) <= TOL
    header = read_alignment(out)
    assert set(header["permutations"]) == {"conv1", "conv2", "fc1", "fc2"}
    assert sorted(header["permutations"]["fc1"]) == list(range(120))
    assert header["method"] == "weights" and header["target_sha256"] == file_sha256(str(ckpt_b))
    assert header["checkpoint_sha256"] == file_sha256(str(ckpt_a))


def test_command_aligns_on_activations_of_data(tmp_path: Path) -> None:
    """B is A permuted: every unit that fires on the digits finds its twin (correlation 1; a
    unit dead on all of them correlates with nothing and may land anywhere)."""
    torch.manual_seed(0)
    a = build_model("mlp", {}).eval()
    b = permuted_copy(a, 1)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    torch.save(b.state_dict(), tmp_path / "b.pt")
    out = tmp_path / "b.safetensors"
    code, err = run(
        "--model", "mlp", "--checkpoint", str(tmp_path / "a.pt"), "--target",
        str(tmp_path / "b.pt"), "--data", "digits", "--method", "activations", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    model = build_model("mlp", {})
    apply_state_dict(model, load_state_dict(str(out)))
    assert max_diff(model.eval(), b, torch.rand(16, 64)) <= TOL
    header = read_alignment(out)
    live = (torch.relu(a.layers[0](torch.rand(4000, 64))).std(0) > 0).float().mean()
    assert header["method"] == "activations"
    assert header["alignment"]["after"]["layers.0"] >= float(live) - 0.02


def test_command_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    ckpt_a, ckpt_b, _ = checkpoints(tmp_path)
    torch.save(build_model("mlp", {}).state_dict(), tmp_path / "mlp.pt")
    torch.save(build_model("lenet", {"num_classes": 4}).state_dict(), tmp_path / "l4.pt")
    torch.save(build_model("resnet56", {}).state_dict(), tmp_path / "r56.pt")
    torch.save(build_model("resnet20", {}).state_dict(), tmp_path / "r20.pt")
    out = tmp_path / "o.safetensors"
    base = ["--model", "lenet", "--checkpoint", str(ckpt_a)]
    cases = [
        ([*base, "--target", str(ckpt_a), "--out", str(out)], "same file as --checkpoint"),
        ([*base, "--target", str(tmp_path / "mlp.pt"), "--out", str(out)], "has no tensor conv1"),
        ([*base, "--target", str(tmp_path / "l4.pt"), "--out", str(out)], "tensor fc3.weight has"),
        ([*base, "--target", str(tmp_path / "no.pt"), "--out", str(out)], "does not exist"),
        (  # resnet56 holds every tensor of resnet20, and more
            [
                "--model",
                "resnet20",
                "--checkpoint",
                str(tmp_path / "r20.pt"),
                "--target",
                str(tmp_path / "r56.pt"),
                "--out",
                str(out),
            ],
            "holds tensor layer1.3.conv1.weight, which model A has not",
        ),
        ([*base, "--target", str(ckpt_b), "--out", str(ckpt_b), "--overwrite"], "is the --target"),
        ([*base, "--target", str(ckpt_b), "--out", str(out), "--method", "activations"], "--data"),
        (
            ["--model", "lenet", "--target", str(ckpt_b), "--out", str(out)],
            "--checkpoint is missing",
        ),
    ]
    for args, fragment in cases:
        code, err = run(*args)
        lines = [line for line in err.splitlines() if line.startswith("Error:")]
        assert code == 1 and len(lines) == 1 and fragment in lines[0], (args, err)
    out.write_bytes(b"old")
    code, err = run(*base, "--target", str(ckpt_b), "--out", str(out))
    assert code == 1 and "exists; pass --overwrite" in err and out.read_bytes() == b"old"


def test_command_refuses_a_model_it_cannot_permute(tmp_path: Path) -> None:
    (tmp_path / "nets.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Mixer(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 3)\n\n"
        "    def forward(self, x):\n        h = torch.relu(self.a(x))\n"
        "        return self.b(h.view(-1, 2, 4).transpose(1, 2).reshape(-1, 8))\n\n\n"
        "def mixer():\n    return Mixer()\n"
    )
    torch.save(Mixer().state_dict(), tmp_path / "a.pt")
    torch.save(Mixer().state_dict(), tmp_path / "b.pt")
    code, err = run(
        "--model", f"{tmp_path / 'nets.py'}:mixer", "--checkpoint", str(tmp_path / "a.pt"),
        "--target", str(tmp_path / "b.pt"), "--out", str(tmp_path / "o.safetensors"),
    )  # fmt: skip
    assert code == 1 and "Error: cannot permute the hidden units of Mixer" in err
    assert "Tensor.view" in err and "Traceback" not in err


def test_command_aligns_an_hf_folder(tmp_path: Path) -> None:
    """``--model hf:DIR`` without --checkpoint: A is the folder's own weights; B a safetensors
    state dict of a Llama-shaped model; the aligned file loads into the folder's model."""
    from safetensors.torch import save_file

    a, b = llama(0), llama(1)
    a.save_pretrained(tmp_path / "a")
    save_file({k: v.contiguous() for k, v in b.state_dict().items()}, tmp_path / "b.safetensors")
    out = tmp_path / "b_aligned.safetensors"
    code, err = run(
        "--model", f"hf:{tmp_path / 'a'}", "--target", str(tmp_path / "b.safetensors"),
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    model = llama(2)
    apply_state_dict(model, load_state_dict(str(out)))
    assert max_diff(model, b, torch.randint(0, 40, (2, 7))) <= TOL
    assert "model.layers.0.mlp" in read_alignment(out)["permutations"]


def test_sizes_read_off_a_tensor_are_numbers_and_a_transpose_is_not_followed() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c, self.bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
            self.f, self.g = nn.Linear(8 * 6 * 6, 10), nn.Linear(10, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.max_pool2d(torch.relu(self.bn(self.c(x))), 1).view(x.shape[0], -1)
            h = self.f(h) * 2.0 / h.size(1) ** 0.5  # arithmetic on sizes keeps the units
            return self.g(h.T.T)  # .T: not followed, so f's units stay in place

    spec = permutation_spec(Net())
    assert spec.sizes == {"c": 8} and spec.axes["f.weight"][1].block == 36
    assert spec.not_followed == ["builtins.getattr (node getattr_2)"]


def test_a_model_fx_cannot_trace_is_refused_in_one_line() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return self.b(h if h.sum() > 0 else -h)  # depends on the data

    with pytest.raises(AlignError, match=r"cannot trace Branchy with torch\.fx"):
        landscape.align(Branchy(), Branchy())
    x = (torch.randn(4, 4), torch.zeros(4))  # with data: torch.export, which cannot either
    with pytest.raises(AlignError, match=r"torch\.export on the data fails too"):
        landscape.align(Branchy(), Branchy(), x)


@pytest.mark.parametrize("name", ["mlp", "lenet", "vgg9", "resnet20", "user", "convnext"])
def test_torch_export_reads_the_groups_torch_fx_reads(name: str) -> None:
    """Two walks over two graphs (modules and functions; ATen operators): one answer."""
    model, x = case(name, 0)
    by_fx, by_export = trace_spec(model), export_spec(model, x, "")
    assert by_export.sizes == by_fx.sizes and by_export.axes == by_fx.axes
    assert {g: set(p) for g, p in by_export.probes.items()} == {
        g: set(p) for g, p in by_fx.probes.items()
    }


class ShapeBranch(nn.Module):
    """A branch on the input's shape: torch.fx cannot trace it, torch.export can."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.bn = nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6)
        self.f, self.ln, self.g = nn.Linear(6 * 6 * 6, 12), nn.LayerNorm(12), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h = F.relu(self.bn(self.c(x)))
        return self.g(self.ln(F.gelu(self.f(h.view(h.shape[0], -1)))))


def test_a_model_fx_cannot_trace_is_aligned_on_its_exported_graph() -> None:
    a, b = (randomized(ShapeBranch(), s) for s in (0, 1))
    x = torch.randn(6, 3, 8, 8)
    with pytest.raises(AlignError, match=r"give data to trace it with torch\.export"):
        landscape.align(a, b)
    for method in ("weights", "activations"):
        aligned = landscape.align(a, b, (x, torch.zeros(6)), method)
        assert max_diff(aligned, b, x) <= TOL
        assert set(aligned.alignment.permutations) == {"c", "f"}
    twin = copy.deepcopy(a)
    spec = permutation_spec(a, x)
    g = torch.Generator().manual_seed(4)
    perms = {"c": torch.randperm(6, generator=g), "f": torch.randperm(12, generator=g)}
    twin.load_state_dict(permute_state(a.state_dict(), spec, perms))
    assert same_weights(landscape.align(a, twin, (x, torch.zeros(6))), a)


def test_a_wrong_group_is_caught_by_the_output_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group that is no symmetry (GPT-2's MLP hidden units without c_proj's rows) makes the
    aligned model compute something else: refused before anything is returned."""
    from landscape.alignment import matching

    a, b = gpt2(0), gpt2(1)
    spec = permutation_spec(a)
    del spec.axes["transformer.h.0.mlp.c_proj.weight"]
    monkeypatch.setattr(matching, "permutation_spec", lambda model, example=None: spec)
    with pytest.raises(AlignError, match="computes other outputs than B"):
        landscape.align(a, b)


def test_activation_data_of_the_wrong_shape_is_one_error() -> None:
    x = torch.randn(8, 5).double()  # float64 inputs are cast; 5 features are not 64
    for method in ("activations", "weights"):  # weights: the data checks the aligned model
        with pytest.raises(AlignError, match=r"cannot run on the data \(inputs of shape \(5,\)"):
            landscape.align(zoo("mlp", 0), zoo("mlp", 1), (x, torch.zeros(8)), method)
