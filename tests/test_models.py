"""Model zoo and resolver: built-ins run, Li et al.'s checkpoint fits, factories load."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.models import BUILTIN_MODELS, build_model, parse_model_args

INPUT_SHAPES = {"mlp": (2, 64), "lenet": (2, 1, 28, 28)}  # everything else: (2, 3, 32, 32)


def input_for(name: str) -> torch.Tensor:
    return torch.randn(
        INPUT_SHAPES.get(name, (2, 3, 32, 32)), generator=torch.Generator().manual_seed(0)
    )


def params_and_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


# --- built-ins --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_builtin_forward_and_functional_call(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = input_for(name)
    with torch.inference_mode():
        y = model(x)
        y_func = torch.func.functional_call(model, params_and_buffers(model), (x,))
    assert y.shape == (2, 10)
    torch.testing.assert_close(y_func, y)


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_noshort_has_no_shortcut_keys(depth: int) -> None:
    short = build_model(f"resnet{depth}").state_dict()
    noshort = build_model(f"resnet{depth}-noshort").state_dict()
    assert any("shortcut" in k for k in short)
    assert not any("shortcut" in k for k in noshort)
    assert set(noshort) < set(short)
    # depth = 6n + 2: n blocks per stage, two 3x3 convs per block, plus conv1 and the linear layer.
    convs = [k for k in short if k.endswith("conv1.weight") or k.endswith("conv2.weight")]
    assert len(convs) + 1 == depth


def test_lenet_sizes_and_args() -> None:
    x32 = torch.randn(2, 3, 32, 32)
    model = build_model("lenet", {"in_channels": 3, "image_size": 32, "num_classes": 7})
    assert model(x32).shape == (2, 7)
    assert model.fc1.in_features == 16 * 5 * 5  # 32 -> 28 -> 14 -> 10 -> 5
    assert build_model("lenet").fc1.in_features == 16 * 4 * 4  # 28 -> 24 -> 12 -> 8 -> 4


def test_mlp_args_and_names() -> None:
    model = build_model("mlp", {"in_features": 5, "hidden": 3, "depth": 1, "num_classes": 2})
    assert [n for n, _ in model.named_parameters()] == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]
    assert model(torch.randn(4, 5)).shape == (4, 2)


def test_builtin_names_are_forgiving() -> None:
    assert isinstance(build_model("ResNet20_noshort"), nn.Module)


# --- Li et al.'s reference checkpoint ------------------------------------------------------------


def test_li_checkpoint_loads_strictly_in_direction_order(li_fixture: Path) -> None:
    import h5py

    state = torch.load(li_fixture / "model_20.t7", map_location="cpu", weights_only=True)[
        "state_dict"
    ]
    model = build_model("resnet20")
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert list(model.state_dict()) == list(state)
    # The reference stores directions by position in model.parameters(): 0..64 for ResNet-20.
    shapes = [tuple(p.shape) for p in model.parameters()]
    with h5py.File(li_fixture / "directions_2d.h5", "r") as f:
        assert len(f["xdirection"]) == len(shapes) == 65
        for i, shape in enumerate(shapes):
            assert f["xdirection"][str(i)].shape == shape
            assert f["ydirection"][str(i)].shape == shape


def test_li_resnet20_fits_its_training_set(li_fixture: Path) -> None:
    """The checkpoint records acc=100 on its 1,000 training images; our resnet20 must agree."""
    ckpt = torch.load(li_fixture / "model_20.t7", map_location="cpu", weights_only=True)
    model = build_model("resnet20")
    model.load_state_dict(ckpt["state_dict"])
    x, y = _li_training_set(li_fixture / "cifar-10-batches-py")
    with torch.inference_mode():
        correct = (model.eval()(x).argmax(1) == y).sum().item()
    assert 100.0 * correct / len(y) == ckpt["acc"] == 100.0


def _li_training_set(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 batches 1..5, scaled to [0, 1] and normalized with Li et al.'s constants."""
    xs, ys = [], []
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        xs.append(np.asarray(batch["data"], dtype=np.uint8))
        ys.extend(batch["labels"])
    x = torch.from_numpy(np.concatenate(xs)).float().reshape(-1, 3, 32, 32) / 255
    mean = torch.tensor([125.3, 123.0, 113.9]).view(1, 3, 1, 1) / 255
    std = torch.tensor([63.0, 62.1, 66.7]).view(1, 3, 1, 1) / 255
    return (x - mean) / std, torch.tensor(ys)


# --- factories -----------------------------------------------------------------------------------


def _write_factory_file(folder: Path) -> Path:
    path = folder / "mynet.py"
    path.write_text(
        textwrap.dedent(
            """
            from torch import nn

            def make(width=4, classes=3):
                return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, classes))

            def not_a_model():
                return 42

            def strict(width):
                return nn.Linear(6, width)
            """
        )
    )
    return path


def test_factory_from_file_with_args(tmp_path: Path) -> None:
    path = _write_factory_file(tmp_path)
    model = build_model(f"{path}:make", {"width": 5, "classes": 2})
    assert model(torch.randn(3, 6)).shape == (3, 2)
    assert model[0].out_features == 5


def test_factory_from_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_factory_file(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mynet", raising=False)
    model = build_model("mynet:make", {"width": 7})
    assert model[0].out_features == 7


def test_factory_must_return_module(tmp_path: Path) -> None:
    path = _write_factory_file(tmp_path)
    with pytest.raises(ConfigError, match=r"returned a int, not a torch\.nn\.Module"):
        build_model(f"{path}:not_a_model")


def test_bad_args_name_the_argument(tmp_path: Path) -> None:
    path = _write_factory_file(tmp_path)
    with pytest.raises(ConfigError, match=r"no argument 'depthh'.*in_features, hidden, depth"):
        build_model("mlp", {"depthh": 3})
    with pytest.raises(ConfigError, match=r"no argument 'colour'.*width, classes"):
        build_model(f"{path}:make", {"colour": 1})
    with pytest.raises(ConfigError, match=r"missing a required argument: 'width'"):
        build_model(f"{path}:strict")
    with pytest.raises(ConfigError, match=r"hidden must be a positive integer, got 'wide'"):
        build_model("mlp", {"hidden": "wide"})
    with pytest.raises(ConfigError, match=r"rejected its arguments \(width='x'\)"):
        build_model(f"{path}:make", {"width": "x"})


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        build_model("resnet21")
    message = str(info.value)
    assert "unknown model 'resnet21'" in message
    for name in BUILTIN_MODELS:
        assert name in message
    assert "pkg.module:factory" in message and "TorchScript" in message and ".pt2" in message
    with pytest.raises(ConfigError, match=r"model file 'nope/net\.pt' does not exist"):
        build_model("nope/net.pt")


# --- saved programs ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated in torch 2.x
def test_torchscript_round_trip(tmp_path: Path) -> None:
    """A TorchScript model loads as is; torch.func.functional_call refuses jitted modules."""
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    loaded = build_model(str(path))
    x = input_for("resnet20")
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))
    assert list(loaded.state_dict()) == list(model.state_dict())
    # Documented limitation (torch 2.x): the stateless API rejects ScriptModules.
    with pytest.raises(RuntimeError, match="Jitted modules"):
        torch.func.functional_call(loaded, params_and_buffers(loaded), (x,))
    with pytest.raises(ConfigError, match="takes no arguments"):
        build_model(str(path), {"num_classes": 3})


def test_export_program_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("lenet").eval()
    x = input_for("lenet")
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    loaded = build_model(str(path))
    assert list(loaded.state_dict()) == list(model.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))
        shifted = {k: v + 0.01 for k, v in params_and_buffers(loaded).items()}
        expected = torch.func.functional_call(model, shifted, (x,))
        torch.testing.assert_close(torch.func.functional_call(loaded, shifted, (x,)), expected)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_state_dict_file_as_model_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(build_model("mlp").state_dict(), path)
    with pytest.raises(ConfigError, match=r"not a TorchScript file.*--checkpoint"):
        build_model(str(path))


# --- --model-arg parsing -------------------------------------------------------------------------


def test_parse_model_args_types() -> None:
    args = parse_model_args(["hidden=32", "name=foo", "rate=0.5", "flag=true", "sizes=[1, 2]"])
    assert args == {"hidden": 32, "name": "foo", "rate": 0.5, "flag": True, "sizes": [1, 2]}
    assert parse_model_args([]) == {}


@pytest.mark.parametrize(
    ("pairs", "match"),
    [
        (["hidden"], "must be KEY=VALUE"),
        (["=3"], "must be KEY=VALUE"),
        (["2x=3"], "must be KEY=VALUE"),
        (["a=[1, 2"], "not valid YAML"),
        (["a=1", "a=2"], "given twice"),
    ],
)
def test_parse_model_args_rejects_malformed(pairs: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_model_args(pairs)


# --- a source of one's own: one registry entry, no other file -----------------------------------


def toy_net(
    spec: str, args: dict, *, unsafe_pickle: bool = False, dtype: object = None
) -> nn.Module:
    """``toy:W``: a 6 → W → 3 MLP at fixed weights of its own (so no checkpoint is needed)."""
    width = int(spec.removeprefix("toy:"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))


@pytest.fixture
def toy_source():
    """A ``toy:`` model source registered for one test (and gone after it)."""
    from landscape.models import sources

    sources.register(
        sources.ModelSource(
            "toy",
            "toy:WIDTH (a test's MLP)",
            lambda spec: spec.startswith("toy:"),
            toy_net,
            weights="weights of the toy net",
            data_defaults=lambda spec: {"max_samples": 24},  # what this model implies
        )
    )
    yield
    sources.unregister("toy")


def test_a_registered_source_runs_compute_and_info(
    tmp_path: Path, tiny_npz: Path, toy_source: None
) -> None:
    """Registering a source is all it takes: the CLI's compute and info run through it."""
    from landscape.config import DataSpec
    from landscape.data import load_data
    from landscape.store import read_surface
    from tests.test_cli import run

    out = tmp_path / "toy.h5"
    args = ["--model", "toy:5", "--data", f"npz:{tiny_npz}", "--out", str(out), "--quiet"]
    code, _, err = run("compute", *args, "--x=-1:1:3")
    assert code == 0, err
    # the centre is the toy net's own loss (no checkpoint) on the 24 samples its source implies
    x, y = load_data(DataSpec(f"npz:{tiny_npz}", max_samples=24)).tensors()
    with torch.inference_mode():
        expected = torch.nn.functional.cross_entropy(toy_net("toy:5", {})(x), y).item()
    assert read_surface(out).values["train_loss"][1] == pytest.approx(expected, rel=1e-5)
    code, text, _ = run("info", str(out))
    assert code == 0, text
    assert "toy:5, weights of the toy net" in text and "24 samples" in text, text


def test_an_unregistered_source_is_unknown_again() -> None:
    """The fixture's registration is undone: ``toy:`` names nothing outside its test."""
    with pytest.raises(ConfigError, match=r"unknown model 'toy:5'.*hf:DIR"):
        build_model("toy:5")


def test_the_registries_are_read_without_torch() -> None:
    """The CLI and the config layer read the model sources and the engines without torch (or
    transformers): each entry's loader is imported when it runs."""
    import subprocess

    code = (
        "import sys, landscape.cli, landscape.config\n"
        "from landscape.models import sources\n"
        "from landscape.engine.registry import ENGINES\n"
        "print(sources.source_for('hf:x').name, sources.runs_code('m.py:f'), list(ENGINES))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["hf True ['reference', 'batched']", "[]"], done.stdout
