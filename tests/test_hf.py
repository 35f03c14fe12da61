"""Hugging Face transformers: folders, token data, the next-token loss, --params, against an oracle.

Every model is built offline from a tiny config (random weights, no download) and saved with
``save_pretrained``; the oracle is the Hugging Face model's own loss (``labels=``) with its
parameters set to θ + a·d1 + b·d2 from the directions the surface file stores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape
from landscape.cli import main

transformers = pytest.importorskip("transformers")

VOCAB = 40
POINTS = [(0, 0), (1, 1), (2, 0), (0, 2)]


def gpt2(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg).eval()


def llama(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32, bos_token_id=0,
        eos_token_id=0, pad_token_id=None,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """7 sequences of 12 token ids, two of them right-padded with -100."""
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(7, 12))
    ids[1, 8:] = -100
    ids[4, 5:] = -100
    path = tmp_path / "tokens.npy"
    np.save(path, ids)
    return path


def saved(model: torch.nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


def compute(tmp_path: Path, *args: str, name: str = "s.h5") -> landscape.Surface:
    out = tmp_path / name
    result = CliRunner().invoke(main, [
        "compute", "--x=-1:1:3", "--y=-0.5:0.5:3", "--out", str(out), "--quiet", *args,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return landscape.load(out)


def hf_loss(model: torch.nn.Module, ids: torch.Tensor, d1: dict, d2: dict, a: float, b: float):
    """The oracle: transformers' own causal-LM loss at θ + a·d1 + b·d2, one batch (token-weighted
    over every non-padding target), and its next-token accuracy."""
    import copy

    moved = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in moved.named_parameters():
            if name in d1:
                p.add_(a * d1[name].double().to(p.dtype) + b * d2[name].double().to(p.dtype))
        out = moved(input_ids=ids.clamp_min(0), attention_mask=(ids >= 0).long(), labels=ids)
    pred, target = out.logits[:, :-1].argmax(-1), ids[:, 1:]
    counted = target >= 0
    return float(out.loss), float((pred == target)[counted].double().mean())


@pytest.mark.parametrize("build", [gpt2, llama], ids=["gpt2", "llama"])
def test_a_folder_surface_is_the_models_own_loss(tmp_path: Path, token_file: Path, build) -> None:
    model = build()
    folder = saved(model, tmp_path / "model")
    s = compute(tmp_path, "--model", f"hf:{folder}", "--data", f"tokens:{token_file}")
    ids = torch.from_numpy(np.load(token_file))
    d1, d2 = s.directions
    tied = model.config.tie_word_embeddings  # gpt2: lm_head is the embeddings, moved once
    assert ("lm_head.weight" in d1) != tied
    for i, j in POINTS:
        loss, acc = hf_loss(model, ids, d1, d2, float(s.x[i]), float(s.y[j]))
        assert s.loss[i, j] == pytest.approx(loss, rel=2e-6)
        assert s.acc[i, j] == pytest.approx(acc, abs=1e-12)
    assert s.attrs["predicted_tokens"] == int((ids[:, 1:] >= 0).sum())
    info = CliRunner().invoke(main, ["info", str(s.path)]).output
    assert "next-token cross-entropy" in info and "perplexity:" in info
    assert "weights of the Hugging Face folder" in info


def test_params_move_only_the_matching_tensors(tmp_path: Path, token_file: Path) -> None:
    model = llama()
    folder = saved(model, tmp_path / "model")
    s = compute(
        tmp_path, "--model", f"hf:{folder}", "--data", f"tokens:{token_file}",
        "--params", "model.layers.1.*", "--exclude", "*norm*", "--ignore", "none",
    )  # fmt: skip
    d1, d2 = s.directions
    names = [n for n, _ in model.named_parameters()]
    expected = [n for n in names if n.startswith("model.layers.1.") and "norm" not in n]
    assert sorted(d1) == sorted(expected)
    ids = torch.from_numpy(np.load(token_file))
    for i, j in POINTS[1:3]:
        loss, _ = hf_loss(model, ids, d1, d2, float(s.x[i]), float(s.y[j]))
        assert s.loss[i, j] == pytest.approx(loss, rel=2e-6)
    info = CliRunner().invoke(main, ["info", str(s.path)]).output
    assert "--params model.layers.1.*, --exclude *norm*: 7 tensors move" in info
    bad = CliRunner().invoke(main, [
        "compute", "--model", f"hf:{folder}", "--data", f"tokens:{token_file}", "--x=-1:1:3",
        "--params", "model.layerz.*", "--out", str(tmp_path / "bad.h5"),
    ])  # fmt: skip
    assert bad.exit_code != 0 and "--params 'model.layerz.*' matches none" in bad.output
    assert not (tmp_path / "bad.h5").exists()


def test_the_api_on_a_model_object_gives_the_folder_surface(
    tmp_path: Path, token_file: Path
) -> None:
    model = gpt2()
    folder = saved(model, tmp_path / "model")
    ref = compute(tmp_path, "--model", f"hf:{folder}", "--data", f"tokens:{token_file}")
    ids = torch.from_numpy(np.load(token_file))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = landscape.compute(model, (ids, ids), x=(-1, 1, 3), y=(-0.5, 0.5, 3), progress=False)
    np.testing.assert_allclose(s.loss, ref.loss, rtol=1e-6)
    np.testing.assert_allclose(s.acc, ref.acc, rtol=1e-6)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    out = model(input_ids=ids.clamp_min(0))  # the caller's model is still a transformers model
    assert hasattr(out, "logits")
    part = landscape.compute(
        model, (ids, ids), x=(-1, 1, 3), params="transformer.h.1.*", store_directions="seed",
        out=tmp_path / "part.h5", progress=False,
    )  # fmt: skip
    assert part.directions == []  # kept as their seed
    ref_part = compute(
        tmp_path, "--model", f"hf:{folder}", "--data", f"tokens:{token_file}",
        "--params", "transformer.h.1.*", name="part_cli.h5",
    )  # fmt: skip
    assert all(n.startswith("transformer.h.1.") for n in ref_part.directions[0])
    np.testing.assert_allclose(part.loss, ref_part.loss[:, 1], rtol=1e-6)  # y = 0 column


def test_a_lora_adapter_and_a_landscape_over_its_weights(tmp_path: Path, token_file: Path) -> None:
    peft = pytest.importorskip("peft")
    import copy

    base = llama()
    folder = saved(base, tmp_path / "model")
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    adapted = peft.get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():  # lora_B starts at zero: give the adapter an effect
        torch.manual_seed(1)
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    adapted.save_pretrained(tmp_path / "adapter")
    s = compute(
        tmp_path, "--model", f"hf:{folder}", "--adapter", str(tmp_path / "adapter"),
        "--data", f"tokens:{token_file}", "--params", "*lora_*", "--ignore", "none",
    )  # fmt: skip
    d1, d2 = s.directions
    assert len(d1) == 8 and all("lora_" in n for n in d1)  # A and B of q, v in 2 layers
    oracle = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "adapter").eval()
    ids = torch.from_numpy(np.load(token_file))
    plain, _ = hf_loss(base, ids, {}, {}, 0.0, 0.0)
    for i, j in POINTS:
        loss, _ = hf_loss(oracle, ids, d1, d2, float(s.x[i]), float(s.y[j]))
        assert s.loss[i, j] == pytest.approx(loss, rel=2e-6)
    assert s.loss[1, 1] != pytest.approx(plain, rel=1e-4)  # the adapter is applied


def test_a_flat_stream_is_cut_into_windows(tmp_path: Path) -> None:
    stream = np.random.default_rng(2).integers(0, VOCAB, size=53)
    np.save(tmp_path / "stream.npy", stream)
    folder = saved(gpt2(), tmp_path / "model")
    base = ["--model", f"hf:{folder}", "--data", f"tokens:{tmp_path / 'stream.npy'}"]
    result = CliRunner().invoke(
        main, ["compute", *base, "--x=-1:1:3", "--out", str(tmp_path / "a.h5")]
    )
    assert result.exit_code != 0 and "give --seq-len T" in result.output
    s = compute(tmp_path, *base, "--seq-len", "10")
    assert s.attrs["predicted_tokens"] == 5 * 9  # 5 windows of 10 (3 tokens left over)
    assert "the last 3 tokens" in str(s.attrs["data"])


def test_text_with_a_locally_trained_tokenizer(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    text = " ".join(["the cat sat on the mat and the dog ran to the cat"] * 30)
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.train_from_iterator([text], tokenizers.trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    folder = saved(gpt2(), tmp_path / "model")
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(folder)
    (tmp_path / "corpus.txt").write_text(text)
    s = compute(
        tmp_path, "--model", f"hf:{folder}", "--data", f"text:{tmp_path / 'corpus.txt'}",
        "--seq-len", "16",
    )  # fmt: skip
    words = len(text.split())
    assert s.attrs["predicted_tokens"] == (words // 16) * 15
    assert np.isfinite(s.loss).all()


def test_a_saved_dataset_with_padding(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(3)
    rows = [rng.integers(0, VOCAB, size=n).tolist() for n in (5, 9, 3, 12)]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"input_ids": rows}),
         "test": datasets.Dataset.from_dict({"input_ids": rows[:2]})}
    ).save_to_disk(str(tmp_path / "ds"))  # fmt: skip
    model = gpt2()
    folder = saved(model, tmp_path / "model")
    s = compute(tmp_path, "--model", f"hf:{folder}", "--data", f"hf-dataset:{tmp_path / 'ds'}")
    ids = torch.full((4, 12), -100)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    loss, _ = hf_loss(model, ids, *s.directions, float(s.x[2]), float(s.y[0]))
    assert s.loss[2, 0] == pytest.approx(loss, rel=2e-6)
    assert s.attrs["predicted_tokens"] == sum(len(r) - 1 for r in rows)


def classifier() -> torch.nn.Module:
    """A 1-layer GPT-2 with a 3-class sequence-classification head."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=1, n_head=2, num_labels=3,
        pad_token_id=0,
    )  # fmt: skip
    return transformers.GPT2ForSequenceClassification(cfg).eval()


def test_sequence_classification_keeps_the_class_loss(tmp_path: Path) -> None:
    model = classifier()
    x = torch.randint(1, VOCAB, (10, 8))
    y = torch.randint(0, 3, (10,))
    s = landscape.compute(model, (x, y), x=(-1, 1, 3), progress=False)
    with torch.no_grad():
        logits = model(input_ids=x).logits
    expected = torch.nn.functional.cross_entropy(logits, y).item()
    assert s.loss[1] == pytest.approx(expected, rel=1e-6)
    assert s.acc[1] == pytest.approx(float((logits.argmax(1) == y).float().mean()))


def test_a_sequence_classifier_folder_on_a_labelled_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    model = classifier()
    folder = saved(model, tmp_path / "model")
    x = torch.randint(1, VOCAB, (10, 8))
    y = torch.randint(0, 3, (10,))
    datasets.Dataset.from_dict({"input_ids": x.tolist(), "label": y.tolist()}).save_to_disk(
        str(tmp_path / "ds")
    )
    s = compute(
        tmp_path, "--model", f"hf:{folder}", "--data", f"hf-dataset:{tmp_path / 'ds'}",
        "--labels", "label",
    )  # fmt: skip
    with torch.no_grad():
        logits = model(input_ids=x).logits
    assert s.loss[1, 1] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    assert "predicted_tokens" not in s.attrs  # a per-sample loss: one label per sequence


def test_a_pickled_folder_is_refused(tmp_path: Path, token_file: Path) -> None:
    model = gpt2()
    folder = saved(model, tmp_path / "model")
    (folder / "model.safetensors").unlink()  # weights as older transformers pickled them
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    result = CliRunner().invoke(main, [
        "compute", "--model", f"hf:{folder}", "--data", f"tokens:{token_file}", "--x=-1:1:3",
        "--out", str(tmp_path / "s.h5"),
    ])  # fmt: skip
    assert result.exit_code != 0 and "--unsafe-pickle" in result.output


def test_bad_folders_are_named(tmp_path: Path, token_file: Path) -> None:
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "none"): "does not exist",
        str(tmp_path / "empty"): "has no config.json",
    }
    for folder, message in cases.items():
        result = CliRunner().invoke(main, [
            "compute", "--model", f"hf:{folder}", "--data", f"tokens:{token_file}", "--x=-1:1:3",
            "--out", str(tmp_path / "s.h5"),
        ])  # fmt: skip
        assert result.exit_code != 0 and message in result.output
        assert result.output.startswith("Error:") and "Traceback" not in result.output


@pytest.mark.slow
def test_workers_and_resume_on_a_folder(tmp_path: Path, token_file: Path) -> None:
    folder = saved(gpt2(), tmp_path / "model")
    args = ["--model", f"hf:{folder}", "--data", f"tokens:{token_file}"]
    serial = compute(tmp_path, *args, name="serial.h5")
    out = tmp_path / "w.h5"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "landscape", "compute", *args, "--x=-1:1:3", "--y=-0.5:0.5:3",
           "--out", str(out), "--quiet", "--workers", "2"]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=300)
    np.testing.assert_array_equal(landscape.load(out).loss, serial.loss)
    again = subprocess.run(cmd[:-2], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr


def test_the_memory_plan_is_printed_and_checked(
    tmp_path: Path, token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from landscape import memory

    model = llama()
    folder = saved(model, tmp_path / "model")
    args = ["compute", "--model", f"hf:{folder}", "--data", f"tokens:{token_file}", "--x=-1:1:3",
            "--y=-1:1:3"]  # fmt: skip
    ok = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "ok.h5")])
    assert ok.exit_code == 0, ok.output
    assert any(x.startswith("memory on cpu: weights") for x in ok.output.splitlines())
    from landscape.config import ComputeConfig
    from landscape.evaluation import Run
    from landscape.runs.surface import memory_plan

    config = ComputeConfig.from_dict({
        "model": {"name": f"hf:{folder}"}, "data": {"name": f"tokens:{token_file}"},
        "grid": {"x": "-1:1:3", "y": "-1:1:3"}, "direction": {"params": ["*.mlp.*"]},
        "out": str(tmp_path / "p.h5"),
    })  # fmt: skip
    plan = memory_plan(Run.of_config(config))
    moved = sum(p.numel() * 4 for n, p in model.named_parameters() if ".mlp." in n)
    assert plan.weights >= sum(p.numel() * 4 for p in model.parameters())
    assert (plan.directions, plan.working) == (2 * moved, moved)  # two directions, one copy
    assert plan.file == 2 * 2 * moved  # float32 tensors in the in-memory image, and its copy
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    out = tmp_path / "big.h5"
    refused = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert refused.exit_code != 0 and "but 0.0 MB are free" in refused.output
    assert "--params" in refused.output and "Traceback" not in refused.output
    assert not out.exists()


@pytest.mark.mpi
def test_mpi_ranks_write_the_serial_file_of_a_folder(tmp_path: Path, token_file: Path) -> None:
    import shutil

    mpiexec = shutil.which(
        "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if mpiexec is None:
        pytest.skip("mpiexec not found (pip install mpi4py mpich)")
    folder = saved(llama(), tmp_path / "model")
    args = ["--model", f"hf:{folder}", "--data", f"tokens:{token_file}", "--device", "cpu"]
    serial = compute(tmp_path, *args, name="serial.h5")
    out = tmp_path / "m.h5"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    cmd = [mpiexec, "-n", "2", sys.executable, "-m", "landscape", "compute", *args,
           "--x=-1:1:3", "--y=-0.5:0.5:3", "--out", str(out), "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    s = landscape.load(out)
    assert '"processes": 2' in s.attrs["engine"]
    np.testing.assert_array_equal(s.loss, serial.loss)


def test_a_sharded_folder_and_a_layer_by_layer_sweep(tmp_path: Path, token_file: Path) -> None:
    model = llama()
    folder = tmp_path / "model"
    model.save_pretrained(folder, max_shard_size="20KB")  # model.safetensors.index.json + shards
    assert (folder / "model.safetensors.index.json").is_file()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"model: {{name: 'hf:{folder}'}}\n"
        f"data: {{name: 'tokens:{token_file}'}}\n"
        "grid: {x: '-1:1:3'}\n"
        f"out: {tmp_path / 'layer.h5'}\n"
        "sweep:\n"
        "  direction.params: ['model.layers.0.*', 'model.layers.1.*']\n"
    )
    result = CliRunner().invoke(main, ["sweep", str(sweep), "--quiet"])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("layer_*.h5"))
    assert len(files) == 2
    ids = torch.from_numpy(np.load(token_file))
    for path, layer in zip(files, ("0", "1"), strict=True):
        s = landscape.load(path)
        (d1,) = s.directions
        assert d1 and all(n.startswith(f"model.layers.{layer}.") for n in d1)
        loss, _ = hf_loss(model, ids, d1, {k: 0 * v for k, v in d1.items()}, float(s.x[2]), 0.0)
        assert s.loss[2] == pytest.approx(loss, rel=2e-6)


def test_an_image_classifier_folder_takes_pixels(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, num_labels=3,
    )  # fmt: skip
    model = transformers.ViTForImageClassification(cfg).eval()
    folder = saved(model, tmp_path / "vit")
    x = torch.randn(12, 3, 8, 8)
    y = torch.randint(0, 3, (12,))
    np.savez(tmp_path / "img.npz", x=x.numpy(), y=y.numpy())
    s = compute(tmp_path, "--model", f"hf:{folder}", "--data", f"npz:{tmp_path / 'img.npz'}")
    with torch.no_grad():
        logits = model(pixel_values=x).logits
    assert s.loss[1, 1] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6
    )


def test_text_without_a_tokenizer_is_named(tmp_path: Path) -> None:
    folder = saved(gpt2(), tmp_path / "model")  # weights and config, no tokenizer files
    (tmp_path / "t.txt").write_text("some text to encode")
    result = CliRunner().invoke(main, [
        "compute", "--model", f"hf:{folder}", "--data", f"text:{tmp_path / 't.txt'}", "--x=-1:1:3",
        "--out", str(tmp_path / "s.h5"),
    ])  # fmt: skip
    assert result.exit_code != 0 and "holds no tokenizer" in result.output
    assert "--tokenizer DIR" in result.output and not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("unsafe", [[], ["--unsafe-pickle"]], ids=["safe", "unsafe-pickle"])
def test_a_shard_index_naming_pickles_is_one_error(
    tmp_path: Path, token_file: Path, unsafe: list[str]
) -> None:
    model = gpt2()
    folder = saved(model, tmp_path / "model")
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model-00001-of-00001.bin")
    index = {"metadata": {}, "weight_map": dict.fromkeys(model.state_dict(),
                                                         "pytorch_model-00001-of-00001.bin")}  # fmt: skip
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    result = CliRunner().invoke(main, [
        "compute", "--model", f"hf:{folder}", "--data", f"tokens:{token_file}", "--x=-1:1:3",
        "--out", str(tmp_path / "s.h5"), *unsafe,
    ])  # fmt: skip
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert (
        result.output.startswith("Error: ")
        and "names the shard 'pytorch_model-00001" in result.output
    )
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize(
    "architectures", [[5], "GPT2LMHeadModel", {"a": 1}, [None], [["GPT2LMHeadModel"]]]
)
def test_an_architecture_that_is_not_a_class_name_is_one_error(
    tmp_path: Path, token_file: Path, architectures
) -> None:
    folder = saved(gpt2(), tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = architectures
    (folder / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(main, [
        "compute", "--model", f"hf:{folder}", "--data", f"tokens:{token_file}", "--x=-1:1:3",
        "--out", str(tmp_path / "s.h5"),
    ])  # fmt: skip
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "architectures must be a list of class names such as" in result.output


def _deep_json(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    "craft, expected",
    [
        (lambda d: (d / "config.json").write_text(_deep_json(100_000)), "cannot read"),
        (lambda d: (d / "model.safetensors.index.json").write_text(_deep_json(100_000)),
         "as a shard index"),
        (lambda d: (d / "config.json").write_text(json.dumps(
            {**json.loads((d / "config.json").read_text()), "model_type": ["gpt2"]})),
         "model_type must be a name"),
    ],
    ids=["deep-config", "deep-index", "list-model-type"],
)  # fmt: skip
def test_a_crafted_folder_json_is_one_error(
    tmp_path: Path, token_file: Path, craft, expected: str
) -> None:
    folder = saved(gpt2(), tmp_path / "model")
    craft(folder)
    result = CliRunner().invoke(main, [
        "compute", "--model", f"hf:{folder}", "--data", f"tokens:{token_file}", "--x=-1:1:3",
        "--out", str(tmp_path / "s.h5"),
    ])  # fmt: skip
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: ") and expected in result.output
    assert not (tmp_path / "s.h5").exists()


class _Marker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_pickled_folder_of_python_objects_is_one_error_under_unsafe_pickle(
    tmp_path: Path, token_file: Path
) -> None:
    folder = saved(gpt2(), tmp_path / "model")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    torch.save({"x": _Marker(marker)}, folder / "pytorch_model.bin")
    result = CliRunner().invoke(main, [
        "compute", "--model", f"hf:{folder}", "--data", f"tokens:{token_file}", "--x=-1:1:3",
        "--out", str(tmp_path / "s.h5"), "--unsafe-pickle",
    ])  # fmt: skip
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "hold Python objects besides tensors" in result.output
    assert not marker.exists() and not (tmp_path / "s.h5").exists()
