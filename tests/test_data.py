"""Data specs → deterministic evaluation sets, on real files written in temporary folders."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from landscape.config import DataSpec
from landscape.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DIGITS_TRAIN_SIZE,
    load_data,
    load_train_data,
    select_indices,
)
from landscape.errors import DataError

_FIXTURE_NAME = Path("li2018-resnet20") / "cifar-10-batches-py"
_FIXTURE_CANDIDATES = [
    Path(__file__).parent / "fixtures" / _FIXTURE_NAME,
    Path(__file__).resolve().parents[1] / "shared" / "fixtures" / _FIXTURE_NAME,
    Path("/work/shared/fixtures") / _FIXTURE_NAME,
]
CIFAR_FIXTURE = next((p for p in _FIXTURE_CANDIDATES if p.is_dir()), None)


def all_batches(data, batch_size=64):
    xs, ys = zip(*data.batches(batch_size), strict=True)
    return torch.cat(xs), torch.cat(ys)


# --- digits -----------------------------------------------------------------------------------


def test_digits_split_sizes_and_shapes():
    train = load_data(DataSpec("digits", split="train"))
    test = load_data(DataSpec("digits", split="test"))
    assert (len(train), len(test)) == (DIGITS_TRAIN_SIZE, 1797 - DIGITS_TRAIN_SIZE) == (1437, 360)
    assert train.sample_shape == (64,) and train.num_classes == 10
    x, y = all_batches(train)
    assert x.shape == (1437, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_digits_matches_sklearn_and_is_deterministic():
    from sklearn.datasets import load_digits

    digits = load_digits()
    test = load_data(DataSpec("digits", split="test"))
    x, y = all_batches(test, batch_size=50)
    assert_close(x, torch.tensor(digits.data[1437:] / 16.0, dtype=torch.float32))
    assert torch.equal(y, torch.tensor(digits.target[1437:]))
    x2, y2 = all_batches(test, batch_size=50)  # same order on every call
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert test.describe() == load_data(DataSpec("digits", split="test")).describe()


def test_batches_cover_all_samples_in_order():
    data = load_data(DataSpec("digits", split="test"))
    sizes = [len(x) for x, _ in data.batches(100)]
    assert sizes == [100, 100, 100, 60]
    x, _ = data.tensors()
    assert torch.equal(torch.cat([b for b, _ in data.batches(7)]), x)


def test_describe_is_json_and_records_provenance():
    spec = DataSpec("digits", split="train", max_samples=100, seed=3)
    info = load_data(spec).describe()
    json.dumps(info)
    assert info["name"] == "digits" and info["split"] == "train" and info["n"] == 100
    assert info["max_samples"] == 100 and info["seed"] == 3 and info["available"] == 1437
    assert len(info["indices_sha256"]) == 16 and len(info["data_sha256"]) == 16


def test_load_train_data_gives_train_split():
    data = load_train_data(DataSpec("digits", split="test"))
    assert len(data) == 1437 and data.describe()["split"] == "train"


# --- max_samples ----------------------------------------------------------------------------------


def test_max_samples_is_a_sorted_seeded_subset():
    spec = DataSpec("digits", split="train", max_samples=200, seed=7)
    a, b = load_data(spec), load_data(spec)
    xa, ya = a.tensors()
    assert len(a) == 200 and torch.equal(xa, b.tensors()[0])
    idx = select_indices(1437, 200, 7)
    assert np.all(np.diff(idx) > 0)
    expected = np.sort(np.random.default_rng(7).permutation(1437)[:200])
    assert np.array_equal(idx, expected)
    full_x, full_y = load_data(DataSpec("digits", split="train")).tensors()
    assert torch.equal(xa, full_x[idx]) and torch.equal(ya, full_y[idx])


def test_different_seeds_give_different_subsets():
    a = load_data(DataSpec("digits", max_samples=100, seed=0)).describe()
    b = load_data(DataSpec("digits", max_samples=100, seed=1)).describe()
    assert a["indices_sha256"] != b["indices_sha256"] and a["data_sha256"] != b["data_sha256"]


def test_max_samples_larger_than_set_is_clamped_and_noted():
    data = load_data(DataSpec("digits", split="test", max_samples=10_000))
    assert len(data) == 360
    assert any("exceeds" in note for note in data.describe()["notes"])


def test_max_samples_below_one_is_refused():
    with pytest.raises(DataError, match="at least 1"):
        load_data(DataSpec("digits", max_samples=0))


# --- CIFAR-10 -------------------------------------------------------------------------------------


def write_cifar(
    folder: Path, per_batch: int = 2, bytes_keys: bool = False
) -> dict[str, np.ndarray]:
    """A tiny CIFAR-10 folder; returns the uint8 rows written per file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {"batch_label": name, "data": data, "labels": labels}
        if bytes_keys:
            batch = {k.encode(): v for k, v in batch.items()}
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f)
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_reads_batches_in_order(tmp_path, bytes_keys):
    written = write_cifar(tmp_path / "c10", bytes_keys=bytes_keys)
    data = load_data(DataSpec(f"cifar10:{tmp_path / 'c10'}", split="train", normalize=False))
    x, y = data.tensors()
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32 and data.num_classes == 10
    rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = [v for i in range(1, 6) for v in written[f"data_batch_{i}"][1]]
    assert_close(x, torch.tensor(rows.reshape(10, 3, 32, 32), dtype=torch.float32) / 255)
    assert y.tolist() == labels


def test_cifar10_test_split_and_normalization(tmp_path):
    written = write_cifar(tmp_path / "c10", per_batch=3)
    data = load_data(DataSpec(f"cifar10:{tmp_path / 'c10'}", split="test"))
    x, _ = data.tensors()
    raw = torch.tensor(written["test_batch"][0].reshape(3, 3, 32, 32), dtype=torch.float32) / 255
    mean = torch.tensor([125.3, 123.0, 113.9]).view(3, 1, 1) / 255
    std = torch.tensor([63.0, 62.1, 66.7]).view(3, 1, 1) / 255
    assert len(data) == 3 and data.describe()["normalize"] is True
    assert_close(x, (raw - mean) / std)


@pytest.mark.skipif(CIFAR_FIXTURE is None, reason="reference fixture folder not available")
def test_cifar10_reference_fixture_loads():
    train = load_data(DataSpec(f"cifar10:{CIFAR_FIXTURE}", split="train"))
    test = load_data(DataSpec(f"cifar10:{CIFAR_FIXTURE}", split="test"))
    assert len(train) == 1000 and len(test) == 1000 and train.sample_shape == (3, 32, 32)
    with (CIFAR_FIXTURE / "data_batch_2").open("rb") as f:
        batch = pickle.load(f, encoding="latin1")
    x, y = train.tensors()
    # sample 0 of data_batch_2 is sample 200 overall; pixel (c=1, row 5, col 7) by hand
    raw = int(batch["data"][0][1 * 1024 + 5 * 32 + 7])
    expected = (raw / 255 - 123.0 / 255) / (62.1 / 255)
    assert float(x[200, 1, 5, 7]) == pytest.approx(expected, rel=1e-5)
    assert int(y[200]) == batch["labels"][0]
    assert CIFAR10_MEAN[2] == 113.9 / 255 and CIFAR10_STD[0] == 63.0 / 255


def test_cifar10_missing_folder_and_batch(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataSpec(f"cifar10:{tmp_path / 'nope'}"))
    write_cifar(tmp_path / "c10")
    (tmp_path / "c10" / "data_batch_4").unlink()
    with pytest.raises(DataError, match="data_batch_4' is missing"):
        load_data(DataSpec(f"cifar10:{tmp_path / 'c10'}"))


def test_cifar10_malformed_batches(tmp_path):
    write_cifar(tmp_path / "c10")
    (tmp_path / "c10" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot be unpickled"):
        load_data(DataSpec(f"cifar10:{tmp_path / 'c10'}", split="test"))
    with (tmp_path / "c10" / "test_batch").open("wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(DataError, match="'labels'"):
        load_data(DataSpec(f"cifar10:{tmp_path / 'c10'}", split="test"))
    with (tmp_path / "c10" / "test_batch").open("wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}, f)
    with pytest.raises(DataError, match="expected"):
        load_data(DataSpec(f"cifar10:{tmp_path / 'c10'}", split="test"))


# --- MNIST ----------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def write_mnist(folder: Path, compress: bool, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return images, labels


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_plain_and_gz(tmp_path, compress):
    images, labels = write_mnist(tmp_path / "mnist", compress)
    data = load_data(DataSpec(f"mnist:{tmp_path / 'mnist'}", split="test", normalize=False))
    x, y = data.tensors()
    assert x.shape == (5, 1, 28, 28) and data.sample_shape == (1, 28, 28)
    assert_close(x[:, 0], torch.tensor(images, dtype=torch.float32) / 255)
    assert y.tolist() == labels.tolist() and y.dtype == torch.int64


def test_mnist_normalization(tmp_path):
    images, _ = write_mnist(tmp_path / "mnist", compress=False)
    x, _ = load_data(DataSpec(f"mnist:{tmp_path / 'mnist'}")).tensors()
    assert float(x[2, 0, 3, 4]) == pytest.approx(
        (images[2, 3, 4] / 255 - 0.1307) / 0.3081, rel=1e-5
    )


def test_mnist_errors(tmp_path):
    with pytest.raises(DataError, match="MNIST folder"):
        load_data(DataSpec(f"mnist:{tmp_path / 'nope'}"))
    write_mnist(tmp_path / "m", compress=False)
    (tmp_path / "m" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_data(DataSpec(f"mnist:{tmp_path / 'm'}"))
    (tmp_path / "m" / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04junk")
    with pytest.raises(DataError, match="magic"):
        load_data(DataSpec(f"mnist:{tmp_path / 'm'}", split="test"))


# --- npz / pt -------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    x = np.arange(24, dtype=np.uint8).reshape(6, 4)
    y = np.array([0, 1, 2, 0, 1, 2], dtype=np.int32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_data(DataSpec(f"npz:{tmp_path / 'd.npz'}", split="test"))
    xt, yt = data.tensors()
    assert xt.dtype == torch.float32 and yt.dtype == torch.int64
    assert_close(xt, torch.tensor(x, dtype=torch.float32))
    assert yt.tolist() == y.tolist() and data.num_classes == 3
    info = data.describe()
    assert info["split"] is None and "split 'test' ignored" in info["notes"][0]


def test_pt_round_trip_keeps_float_targets(tmp_path):
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2)
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    data = load_data(DataSpec(f"pt:{tmp_path / 'd.pt'}", max_samples=3, seed=1))
    xt, yt = data.tensors()
    idx = select_indices(5, 3, 1)
    assert torch.equal(xt, x[idx]) and torch.equal(yt, y[idx])  # float64 x kept as it is
    assert data.num_classes is None and data.sample_shape == (3,)


def test_npz_and_pt_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataSpec(f"npz:{tmp_path / 'missing.npz'}"))
    np.savez(tmp_path / "nokey.npz", x=np.zeros((3, 2)))
    with pytest.raises(DataError, match="no array 'y'"):
        load_data(DataSpec(f"npz:{tmp_path / 'nokey.npz'}"))
    np.savez(tmp_path / "mismatch.npz", x=np.zeros((3, 2)), y=np.zeros(4))
    with pytest.raises(DataError, match="3 samples but y has 4"):
        load_data(DataSpec(f"npz:{tmp_path / 'mismatch.npz'}"))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 2)), y=np.zeros(0))
    with pytest.raises(DataError, match="empty"):
        load_data(DataSpec(f"npz:{tmp_path / 'empty.npz'}"))
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot be read"):
        load_data(DataSpec(f"npz:{tmp_path / 'bad.npz'}"))
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(DataError, match="not a dict"):
        load_data(DataSpec(f"pt:{tmp_path / 'list.pt'}"))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="weights_only"):
        load_data(DataSpec(f"pt:{tmp_path / 'bad.pt'}"))


# --- factories ------------------------------------------------------------------------------------

FACTORY_SOURCE = """
import torch
from torch.utils.data import Dataset, TensorDataset


def make(split="train"):
    n = 10 if split == "train" else 4
    x = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    return TensorDataset(x, torch.arange(n) % 3)


def no_split():
    return TensorDataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))


def empty(split):
    return TensorDataset(torch.zeros(0, 2), torch.zeros(0))


def not_a_dataset():
    return 42


def broken(split):
    raise RuntimeError("disk on fire")
"""


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "mydata.py"
    path.write_text(FACTORY_SOURCE)
    return path


def test_factory_from_file_with_split(factory_file):
    train = load_data(DataSpec(f"{factory_file}:make", split="train"))
    test = load_data(DataSpec(f"{factory_file}:make", split="test"))
    assert (len(train), len(test)) == (10, 4) and train.sample_shape == (2,)
    x, y = all_batches(train, batch_size=3)
    assert torch.equal(x, torch.arange(20, dtype=torch.float32).reshape(10, 2))
    assert y.tolist() == [i % 3 for i in range(10)]
    assert [len(b) for b, _ in train.batches(4)] == [4, 4, 2]


def test_factory_subset_and_no_split(factory_file):
    data = load_data(DataSpec(f"{factory_file}:make", max_samples=4, seed=2))
    x, _ = data.tensors()
    idx = select_indices(10, 4, 2)
    assert torch.equal(x, torch.arange(20, dtype=torch.float32).reshape(10, 2)[idx])
    plain = load_data(DataSpec(f"{factory_file}:no_split", split="test"))
    assert len(plain) == 3 and plain.describe()["split"] is None


def test_factory_module_form(factory_file, monkeypatch):
    monkeypatch.syspath_prepend(str(factory_file.parent))
    assert len(load_data(DataSpec("mydata:make", split="test"))) == 4


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("empty", "empty"),
        ("not_a_dataset", "map-style"),
        ("broken", "disk on fire"),
        ("missing", "no attribute"),
    ],
)
def test_factory_errors(factory_file, attr, message):
    with pytest.raises(DataError, match=message):
        load_data(DataSpec(f"{factory_file}:{attr}"))


def test_factory_file_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataSpec(f"{tmp_path / 'none.py'}:make"))
    with pytest.raises(DataError, match=r"cannot be imported.*data specs: digits"):
        load_data(DataSpec("no_such_module_xyz:make"))


# --- spec errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["imagenet", "cifar100:/data", "data/train.csv", ""])
def test_unknown_spec_lists_accepted_forms(name):
    with pytest.raises(DataError, match=r"unknown data spec.*cifar10:DIR.*npz:FILE"):
        load_data(DataSpec(name))


def test_prefix_without_path_and_bad_split():
    with pytest.raises(DataError, match="needs a path"):
        load_data(DataSpec("cifar10:"))
    with pytest.raises(DataError, match="train, test"):
        load_data(DataSpec("digits", split="validation"))


COUNTING_SOURCE = """
import torch
from torch.utils.data import Dataset

READS = []


class Decoding(Dataset):
    '''Like torchvision's CIFAR10 with transforms: work at every __getitem__.'''

    def __len__(self):
        return 40

    def __getitem__(self, i):
        READS.append(i)
        g = torch.Generator().manual_seed(i)
        return torch.randn(6, generator=g), i % 3


def make(split="train"):
    return Decoding()
"""


def test_a_factory_dataset_is_read_once_for_the_whole_grid(tmp_path: Path) -> None:
    import warnings

    from landscape.config import ComputeConfig
    from landscape.runs.surface import run_compute

    source = tmp_path / "decoding.py"
    source.write_text(COUNTING_SOURCE)
    config = ComputeConfig.from_dict(
        {
            "model": {"name": "mlp", "args": {"in_features": 6, "hidden": 8, "num_classes": 3}},
            "data": {"name": f"{source}:make", "batch_size": 7},
            "grid": {"x": "-1:1:3", "y": "-1:1:3"},
            "eval": {"engine": "reference", "compile": "off", "device": "cpu"},
            "out": str(tmp_path / "s.h5"),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no checkpoint: a random initialization
        run_compute(config)
    module = next(
        m for name, m in sys.modules.items() if name.startswith("_landscape_user_")
        and getattr(m, "__file__", "") == str(source)
    )  # fmt: skip
    # each sample decoded once (the first once more, to check its shape), not once a point
    assert sorted(set(module.READS)) == list(range(40)) and len(module.READS) == 41


def rewrite_batch(folder: Path, name: str, **changes) -> None:
    """Replace entries of one pickled CIFAR batch (as a foreign tool might have written it)."""
    with (folder / name).open("rb") as f:
        batch = pickle.load(f)
    batch.update(changes)
    with (folder / name).open("wb") as f:
        pickle.dump(batch, f)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"data": np.full((2, 3072), 0.5)}, r"float64 pixels in \[0.5, 0.5\], not the whole"),
        ({"data": np.full((2, 3072), 300, np.int64)}, r"int64 pixels in \[300, 300\]"),
        ({"labels": ["cat", "dog"]}, "'labels' is not a flat list of class numbers"),
        ({"labels": [[1, 2], [3]]}, "'labels' is not a flat list of class numbers"),
        ({"labels": [[1], [2]]}, r"'labels' of shape \(2, 1\) is not a flat list"),
        ({"labels": [1.5, 2.0]}, "label 1.5 is not a whole class number"),
    ],
)
def test_cifar10_batches_that_are_not_cifar_are_refused(tmp_path, changes, message):
    write_cifar(tmp_path / "c10")
    rewrite_batch(tmp_path / "c10", "test_batch", **changes)
    with pytest.raises(DataError, match=message):
        load_data(DataSpec(f"cifar10:{tmp_path / 'c10'}", split="test"))


def test_cifar10_whole_numbers_of_other_dtypes_still_read(tmp_path):
    written = write_cifar(tmp_path / "c10")
    pixels, labels = written["test_batch"]
    rewrite_batch(tmp_path / "c10", "test_batch", data=pixels.astype(np.float64),
                  labels=np.asarray(labels, dtype=np.float32))  # fmt: skip
    x, y = load_data(
        DataSpec(f"cifar10:{tmp_path / 'c10'}", split="test", normalize=False)
    ).tensors()
    assert_close(x, torch.tensor(pixels.reshape(2, 3, 32, 32), dtype=torch.float32) / 255)
    assert y.dtype == torch.int64 and y.tolist() == list(labels)


def test_sparse_inputs_are_read_dense(tmp_path):
    x = torch.zeros(5, 4)
    x[1, 2], x[3, 0] = 2.0, -1.0
    torch.save({"x": x.to_sparse(), "y": torch.arange(5).to_sparse()}, tmp_path / "s.pt")
    xt, yt = load_data(DataSpec(f"pt:{tmp_path / 's.pt'}")).tensors()
    assert xt.layout == torch.strided and torch.equal(xt, x) and yt.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("which", ["x", "y"])
def test_complex_data_is_refused_not_cast_to_real(tmp_path, which):
    arrays = {"x": np.ones((4, 3), np.float32), "y": np.arange(4)}
    arrays[which] = arrays[which] * (1 + 2j)
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(DataError, match=f"{which} is complex[0-9]+; .* drop the imaginary part"):
        load_data(DataSpec(f"npz:{tmp_path / 'c.npz'}"))


def test_class_labels_saved_as_floats_are_one_error_naming_the_fix(tmp_path: Path) -> None:
    """numpy's default float labels (0., 1., 2.) reached torch's cross-entropy, which read them as
    class probabilities and failed with a shape error the message blamed on --loss."""
    from tests.test_security import MLP, one_error_line, run

    x = np.random.default_rng(0).normal(size=(12, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(12) % 3 * 1.0)
    code, _, err = run("compute", *MLP, "--data", f"npz:{tmp_path / 'd.npz'}", "--x=-1:1:3",
                       "--out", str(tmp_path / "s.h5"))  # fmt: skip
    assert "save the labels as integers" in one_error_line(code, err)
    assert not (tmp_path / "s.h5").exists()
