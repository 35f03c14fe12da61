"""Data specs → a deterministic, unshuffled evaluation set.

Accepted specs (``DataSpec.name``):

- ``digits``: scikit-learn's bundled 8×8 digits, flattened to 64 features scaled to [0, 1]. Fixed
  split: the first 1437 samples (80 %) are ``train``, the remaining 360 are ``test``.
- ``cifar10:DIR``: the standard python-pickle batches (``data_batch_1..5`` in that order for
  ``train``, ``test_batch`` for ``test``), read without torchvision and with a restricted
  unpickler (plain data and numpy arrays only, never code); scaled to [0, 1], then, if
  ``normalize``, per channel with Li et al.'s constants.
- ``mnist:DIR``: IDX files ``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``, gz or not;
  scaled to [0, 1], then, if ``normalize``, with mean 0.1307 and std 0.3081.
- ``npz:FILE`` / ``pt:FILE``: arrays ``x`` and ``y`` used as they are (one set: ``split`` ignored;
  integer inputs become float32, as images stored as bytes need).
- ``tokens:FILE``, ``text:FILE``, ``hf-dataset:DIR``: token sequences for language models, integer
  inputs that stay integer (``landscape.tokens``).
- ``pkg.module:factory`` / ``file.py:factory``: ``factory(split=...)`` (or ``factory()``) returning
  a map-style ``torch.utils.data.Dataset`` of ``(x, y)`` pairs, read once into tensors (its
  transforms run once per sample, not once per grid point).

``max_samples=N`` keeps the first N indices of ``numpy.random.default_rng(seed).permutation(n)``,
sorted so that samples stay in file order. No augmentation, no shuffling: every call of
``EvalData.batches`` yields the same batches in the same order.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import inspect
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from landscape import tokens
from landscape._resolve import is_callable_spec, resolve_callable
from landscape._safe_pickle import RefusedGlobal, load_data_pickle
from landscape.config import IN_MEMORY, SPLIT_CHOICES, DataSpec
from landscape.errors import ConfigError, DataError, first_line
from landscape.raw import Raw

DIGITS_TRAIN_SIZE = 1437  # first 80 % of the 1797 bundled digits; the remaining 360 are `test`

# Li et al.'s reference (torchvision Normalize after ToTensor): (x/255 - mean) / std per channel.
CIFAR10_MEAN = tuple(v / 255.0 for v in (125.3, 123.0, 113.9))
CIFAR10_STD = tuple(v / 255.0 for v in (63.0, 62.1, 66.7))
CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _short_sha256(*buffers: Any) -> str:
    h = hashlib.sha256()
    for buf in buffers:
        h.update(buf)
    return h.hexdigest()[:16]


class EvalData:
    """A fixed, ordered evaluation set held as two tensors (a factory's Dataset is read once).

    Build it with :func:`load_data`. ``info`` is the provenance that :meth:`describe` returns.
    """

    def __init__(
        self,
        *,
        info: dict[str, Any],
        x: Tensor,
        y: Tensor,
        sample_shape: tuple[int, ...] = (),
        num_classes: int | None = None,
    ) -> None:
        self._x, self._y = x, y
        self._info = dict(info)
        self._on_device: dict[str, tuple[Tensor, Tensor]] = {}
        self.sample_shape = tuple(sample_shape)
        self.num_classes = num_classes

    def __len__(self) -> int:
        return int(self._info["n"])

    def __repr__(self) -> str:
        return f"EvalData({self._info['name']!r}, split={self._info['split']!r}, n={len(self)})"

    def batches(
        self, batch_size: int, device: torch.device | str = "cpu"
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x, y)`` batches of at most ``batch_size`` samples on ``device``, always in the
        same order. The set is copied to a device once and kept there."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        x, y = self.tensors(device)
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    def tensors(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """All samples as two tensors ``(x, y)`` on ``device``."""
        key = str(torch.device(device))
        if key not in self._on_device:
            self._on_device[key] = (self._x.to(device), self._y.to(device))
        return self._on_device[key]

    @property
    def name(self) -> str:
        return str(self._info["name"])

    @property
    def split(self) -> str | None:
        """The split read; None for a set that has none (an npz or pt file, ...)."""
        return self._info["split"]

    def with_inputs_in(self, dtype: torch.dtype) -> EvalData:
        """This set with floating inputs cast to ``dtype`` (the model's); integer inputs (token
        ids) and the targets stay as they are."""
        if not self._x.is_floating_point() or self._x.dtype == dtype:
            return self
        info = dict(self._info)
        info.pop("data_sha256", None)  # the hash is of the inputs evaluated
        return EvalData(
            info=info,
            x=self._x.to(dtype),
            y=self._y,
            sample_shape=self.sample_shape,
            num_classes=self.num_classes,
        )

    def subset(self, n: int, seed: int = 0) -> EvalData:
        """The first ``n`` samples of this set's seeded permutation, in set order (as
        ``max_samples`` picks them from a file)."""
        idx = select_indices(len(self), n, seed)
        if len(idx) == len(self):
            return self
        t = torch.from_numpy(idx)
        info = dict(self._info, n=len(idx), max_samples=n, seed=seed)
        info["indices_sha256"] = _short_sha256(idx.astype("<i8").tobytes())
        info.pop("data_sha256", None)
        x, y = self._x.index_select(0, t), self._y.index_select(0, t)
        return EvalData(
            info=info, x=x, y=y, sample_shape=self.sample_shape, num_classes=self.num_classes
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance: spec, split, sizes, subset and content hashes, notes."""
        if "data_sha256" not in self._info:
            x, y = self._x.contiguous(), self._y.contiguous()
            self._info["data_sha256"] = _short_sha256(
                x.view(torch.uint8).numpy(), y.view(torch.uint8).numpy()
            )
        out = dict(self._info)
        out["sample_shape"] = list(self.sample_shape)
        out["num_classes"] = self.num_classes
        out["notes"] = list(out.get("notes", []))
        return out


# --- public entry points --------------------------------------------------------------------------


def load_data(spec: DataSpec, split: str | None = None) -> EvalData:
    """Resolve ``spec`` to an :class:`EvalData`; ``split`` overrides ``spec.split``."""
    split = spec.split if split is None else split
    if split not in SPLIT_CHOICES:
        raise DataError(f"data split must be one of {', '.join(SPLIT_CHOICES)}; got {split!r}")
    if spec.max_samples is not None and spec.max_samples < 1:
        raise DataError(f"data.max_samples must be at least 1, got {spec.max_samples}")
    kind, arg = parse_spec(spec.name)
    if kind == "factory":
        return _load_factory(spec, split)
    raw = FORMATS[kind].loader(arg, split, spec)
    _check_pair(raw.x, raw.y, spec.name)
    return _from_tensors(spec, kind, split, raw)


def as_eval_data(data: Any, *, max_samples: int | None = None, seed: int = 0) -> EvalData:
    """An evaluation set from objects: an :class:`EvalData`, a ``(x, y)`` pair of tensors or
    arrays, a map-style Dataset of ``(x, y)`` items, a DataLoader or any iterable of ``(x, y)``
    batches; read once into tensors, in order. ``max_samples``: a seeded subset, as for files.

    Inputs keep their dtype (integer token ids stay integer); integer labels become int64.
    """
    if isinstance(data, EvalData):
        return data if max_samples is None else data.subset(max_samples, seed)
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _is_pair_list(data):
        x, y = (v if isinstance(v, Tensor) else torch.as_tensor(np.asarray(v)) for v in data)
        kind = "tensors"
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, list):
        if len(data) == 0:
            raise DataError("the dataset is empty; give a set with at least one sample")
        x, y = _materialize(data, data[0], "the dataset")
        kind = "dataset"
    else:
        x, y = _collect_batches(data)
        kind = "batches"
    x, y = x.detach().cpu(), y.detach().cpu()
    if not torch.is_floating_point(y) and y.dtype != torch.bool:
        y = y.to(torch.int64)
    _check_pair(x, y, "in-memory")
    check_finite_samples(x, y, "in-memory")
    spec = DataSpec(f"{IN_MEMORY}{kind}", max_samples=max_samples, seed=seed)
    result = _from_tensors(spec, kind, "train", Raw(x, y))
    result._info["split"] = None  # objects have no splits
    return result


def _is_pair_list(data: Any) -> bool:
    """A list of two ``(x, y)`` batches rather than one ``(x, y)`` pair."""
    return all(isinstance(item, (tuple, list)) and len(item) == 2 for item in data)


def _collect_batches(batches: Any) -> tuple[Tensor, Tensor]:
    """Concatenate an iterable of ``(x, y)`` batches (a DataLoader, a generator, a list)."""
    try:
        pairs = [(torch.as_tensor(x), torch.as_tensor(y)) for x, y in batches]
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"data must be (x, y) tensors, a Dataset, a DataLoader or (x, y) batches ({exc})"
        ) from None
    if not pairs:
        raise DataError("the data yielded no batches; give at least one (x, y) batch")
    return torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])


def load_train_data(spec: DataSpec) -> EvalData:
    """The ``train`` split of the same set (for training scripts and BN recalibration)."""
    return load_data(dataclasses.replace(spec, split="train"))


def select_indices(n: int, max_samples: int | None, seed: int) -> np.ndarray:
    """The first ``max_samples`` of a seeded permutation of ``range(n)``, sorted; all if None."""
    if max_samples is None or max_samples >= n:
        return np.arange(n, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:max_samples]).astype(np.int64)


def parse_spec(name: str) -> tuple[str, str]:
    """``(format, argument)`` for a spec (``("cifar10", "data/cifar")``, ``("factory", spec)``);
    a registered prefix wins over the ``pkg.module:factory`` form."""
    prefix, sep, rest = name.partition(":")
    fmt = FORMATS.get(prefix)
    if fmt is not None and fmt.takes is None and not sep:
        return prefix, ""
    if fmt is not None and fmt.takes is not None and sep:
        if not rest:
            raise DataError(f"data spec {name!r} needs a path after ':', e.g. {prefix}:data/...")
        return prefix, str(Path(rest).expanduser())
    if is_callable_spec(name):
        return "factory", name
    raise DataError(f"unknown data spec {name!r}; use one of: {ACCEPTED_FORMS}")


def input_path(name: str) -> tuple[str, str] | None:
    """``(what, path)`` of the folder or file a spec reads (``("data folder", DIR)``), without
    reading it; None when it reads none (``digits``, a module factory)."""
    kind, arg = parse_spec(name)
    if kind == "factory":
        file = arg.rsplit(":", 1)[0]
        return ("data file", file) if file.endswith(".py") else None
    takes = FORMATS[kind].takes
    return None if takes is None else (f"data {takes}", arg)


# --- subsetting and provenance --------------------------------------------------------------------


def _provenance(
    spec: DataSpec, kind: str, split: str, available: int, idx: np.ndarray, normalized: bool
) -> dict[str, Any]:
    notes = []
    if spec.max_samples is not None and spec.max_samples > available:
        notes.append(f"max_samples={spec.max_samples} exceeds the {available} available; used all")
    return {
        "name": spec.name,
        "kind": kind,
        "split": split,
        "n": len(idx),
        "available": available,
        "max_samples": spec.max_samples,
        "seed": spec.seed,
        "normalize": normalized,
        "indices_sha256": _short_sha256(idx.astype("<i8").tobytes()),
        "notes": notes,
    }


def _from_tensors(spec: DataSpec, kind: str, split: str, raw: Raw) -> EvalData:
    """Subset ``raw`` by ``spec.max_samples`` and wrap it with its provenance."""
    x, y = raw.x, raw.y
    idx = select_indices(len(x), spec.max_samples, spec.seed)
    info = _provenance(spec, kind, split, len(x), idx, raw.normalized)
    if raw.one_set:
        info["split"] = None
        info["notes"].insert(0, f"{kind} files hold one set; split {split!r} ignored")
    info["notes"].extend(raw.notes)
    num_classes = raw.num_classes
    if num_classes is None and not torch.is_floating_point(y):
        num_classes = int(y.max()) + 1  # inferred from the labels of the whole file
    if len(idx) < len(x):
        t = torch.from_numpy(idx)
        x, y = x.index_select(0, t), y.index_select(0, t)
    check_finite_samples(x, y, spec.name)
    return EvalData(info=info, x=x, y=y, sample_shape=tuple(x.shape[1:]), num_classes=num_classes)


def check_finite_samples(x: Tensor, y: Tensor, name: str) -> None:
    """DataError when floating inputs or targets hold NaN or infinity: every loss would be NaN
    and the surface would only show it as a blank plot."""
    for what, t in (("inputs", x), ("targets", y)):
        if not t.is_floating_point():
            continue
        bad = ~torch.isfinite(t.reshape(len(t), -1)).all(dim=1)
        if bool(bad.any()):
            first = int(bad.nonzero()[0, 0])
            raise DataError(
                f"data {name!r} holds NaN or infinite {what} in {int(bad.sum())} of {len(t)} "
                f"samples (the first is sample {first} of the evaluation set); every loss on "
                "them would be NaN: clean the data (or leave those samples out)"
            )


def _check_pair(x: Tensor, y: Tensor, name: str) -> None:
    if x.ndim == 0 or y.ndim == 0:
        raise DataError(f"data {name!r}: x and y must have a sample axis first, not be scalars")
    if len(x) != len(y):
        raise DataError(
            f"data {name!r}: x has {len(x)} samples but y has {len(y)}; they must match"
        )
    if len(x) == 0:
        raise DataError(f"data {name!r} is empty; give a set with at least one sample")


# --- digits ---------------------------------------------------------------------------------------


def _digits(_: str, split: str, spec: DataSpec) -> Raw:
    """scikit-learn's digits: x = pixel/16 as (N, 64) float32; no further normalization."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.data / 16.0).astype(np.float32))  # (1797, 64)
    y = torch.from_numpy(digits.target.astype(np.int64))
    part = slice(0, DIGITS_TRAIN_SIZE) if split == "train" else slice(DIGITS_TRAIN_SIZE, None)
    return Raw(x[part].clone(), y[part].clone(), num_classes=10)


# --- CIFAR-10 -------------------------------------------------------------------------------------


def _cifar10(folder: str, split: str, spec: DataSpec) -> Raw:
    root = _existing_dir(folder, "CIFAR-10", "the extracted cifar-10-batches-py folder")
    parts = [_read_cifar_batch(root / name) for name in CIFAR10_FILES[split]]
    data = np.concatenate([p[0] for p in parts])  # (N, 3072) uint8, channel-major rows
    labels = np.concatenate([p[1] for p in parts])
    x = torch.from_numpy(data).reshape(-1, 3, 32, 32).to(torch.float32).div(255)  # (N, 3, 32, 32)
    if spec.normalize:
        mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(CIFAR10_STD, dtype=torch.float32).view(3, 1, 1)
        x = x.sub(mean).div(std)
    return Raw(x, torch.from_numpy(labels), normalized=spec.normalize, num_classes=10)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch → ``(data (N, 3072) uint8, labels (N,) int64)``; str or bytes keys."""
    if not path.is_file():
        raise DataError(
            f"CIFAR-10 batch file {str(path)!r} is missing; the folder needs data_batch_1..5 and "
            "test_batch from cifar-10-python.tar.gz"
        )
    try:
        with path.open("rb") as f:
            raw = load_data_pickle(f)
    except RefusedGlobal as exc:
        raise DataError(
            f"CIFAR-10 batch {str(path)!r} asks to call {exc.qualified}, which is code, not data: a "
            "CIFAR batch holds only dicts, lists, strings, numbers and numpy arrays; refusing to "
            "unpickle it (replace the file with one from cifar-10-python.tar.gz)"
        ) from None
    except Exception as exc:  # unpickling can fail in many ways on a foreign file
        raise DataError(f"CIFAR-10 batch {str(path)!r} cannot be unpickled ({exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"CIFAR-10 batch {str(path)!r} is not a dict of data and labels")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in raw.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(
            f"CIFAR-10 batch {str(path)!r} has no 'data' or 'labels' key (keys: {sorted(batch)})"
        )
    data, labels = _cifar_pixels(batch["data"], path), _cifar_labels(batch["labels"], path)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"CIFAR-10 batch {str(path)!r}: data of shape {data.shape} and {len(labels)} labels; "
            "expected (N, 3072) and N labels"
        )
    return data, labels


def _as_array(value: Any) -> np.ndarray | None:
    """``value`` as a numeric numpy array; None for strings, ragged lists and other objects."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nested lists
        return None
    return array if array.dtype.kind in "biuf" else None


def _cifar_pixels(value: Any, path: Path) -> np.ndarray:
    """The batch's pixels as uint8, refused unless they are whole numbers 0..255: a batch of
    floats in [0, 1] (already scaled) or above 255 would be cast to other images."""
    data = _as_array(value)
    where = f"CIFAR-10 batch {str(path)!r}"
    if data is None:
        raise DataError(f"{where}: 'data' is not an array of numbers; expected (N, 3072) uint8")
    if data.dtype == np.uint8 or data.size == 0:
        return data.astype(np.uint8, copy=False)
    lo, hi = float(data.min()), float(data.max())
    if lo < 0 or hi > 255 or not np.array_equal(data, np.round(data)):
        raise DataError(
            f"{where} holds {data.dtype} pixels in [{lo:g}, {hi:g}], not the whole numbers 0..255 "
            "of cifar-10-python.tar.gz (casting them to uint8 would change the images): store "
            "them as uint8 0..255, or already scaled images as npz:FILE"
        )
    return data.astype(np.uint8)


def _cifar_labels(value: Any, path: Path) -> np.ndarray:
    """The batch's labels as int64 class indices, refused unless they are a flat list of whole
    numbers (strings, nested lists or fractions are no CIFAR labels; casting truncates them)."""
    labels = _as_array(value)
    where = f"CIFAR-10 batch {str(path)!r}"
    if labels is None or labels.ndim != 1:
        shape = "" if labels is None else f" of shape {labels.shape}"
        raise DataError(
            f"{where}: 'labels'{shape} is not a flat list of class numbers 0..9; "
            "replace the file with one from cifar-10-python.tar.gz"
        )
    with np.errstate(invalid="ignore"):  # NaN or inf: caught just below
        whole = labels.astype(np.int64)
    if not np.array_equal(whole, labels):
        first = labels[whole != labels][0].item()
        raise DataError(
            f"{where}: label {first!r} is not a whole class number (labels are 0..9); "
            "replace the file with one from cifar-10-python.tar.gz"
        )
    return whole


# --- MNIST ----------------------------------------------------------------------------------------


def _mnist(folder: str, split: str, spec: DataSpec) -> Raw:
    root = _existing_dir(folder, "MNIST", "the folder with the IDX files")
    images_name, labels_name = MNIST_FILES[split]
    images = _read_idx(_find_idx(root, images_name))
    labels = _read_idx(_find_idx(root, labels_name))
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(
            f"MNIST files in {folder!r}: images of shape {images.shape}, labels of shape "
            f"{labels.shape}; expected (N, H, W) and (N,)"
        )
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1).div(255)  # (N, 1, 28, 28)
    if spec.normalize:
        x = x.sub(MNIST_MEAN).div(MNIST_STD)
    y = torch.from_numpy(labels.astype(np.int64))
    return Raw(x, y, normalized=spec.normalize, num_classes=10)


def _find_idx(root: Path, name: str) -> Path:
    """``name`` or ``name.gz``, also in the ``train-images.idx3-ubyte`` spelling."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if (root / candidate).is_file():
            return root / candidate
    raise DataError(f"MNIST file {name!r} (or {name}.gz) is missing in {str(root)!r}")


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file: magic ``0 0 dtype ndim``, ``ndim`` big-endian uint32 sizes, then data."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"IDX file {str(path)!r} cannot be read ({exc})") from None
    bad = f"IDX file {str(path)!r} is malformed"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{bad}: bad magic number; is it an MNIST IDX file?")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(f"{bad}: truncated header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = math.prod(dims)
    if len(raw) - header < count * dtype.itemsize:
        raise DataError(f"{bad}: holds fewer values than its header's shape {dims}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)


def _existing_dir(folder: str, what: str, hint: str) -> Path:
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{what} folder {folder!r} does not exist; give {hint}")
    return root


# --- npz / pt -------------------------------------------------------------------------------------


def _npz(file: str, split: str, spec: DataSpec) -> Raw:
    path = _existing_file(file, "npz")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {k: arrays[k] for k in ("x", "y") if k in arrays.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"npz file {file!r} cannot be read ({exc})") from None
    return Raw(*_as_xy(found, f"npz file {file!r}"), one_set=True)


def _pt(file: str, split: str, spec: DataSpec) -> Raw:
    path = _existing_file(file, "pt")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises several types for foreign or unsafe files
        first = first_line(exc)
        raise DataError(
            f"pt file {file!r} cannot be loaded with weights_only=True ({first}); "
            "save a plain dict {'x': tensor, 'y': tensor}"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"pt file {file!r} holds a {type(obj).__name__}, not a dict with x and y")
    return Raw(*_as_xy(obj, f"pt file {file!r}"), one_set=True)


def _as_xy(arrays: dict[str, Any], where: str) -> tuple[Tensor, Tensor]:
    """x as float32 unless already floating; y as int64 if integer, else float as is; both
    dense and real."""
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(f"{where} has no array {missing[0]!r}; it needs arrays 'x' and 'y'")
    try:
        x, y = torch.as_tensor(arrays["x"]), torch.as_tensor(arrays["y"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{where}: x and y must be numeric arrays ({exc})") from None
    x, y = _dense_real(x, "x", where), _dense_real(y, "y", where)
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    if y.dtype == torch.bool:
        y = y.to(torch.float32)
    elif not torch.is_floating_point(y):
        y = y.to(torch.int64)
    return x, y


def _dense_real(t: Tensor, name: str, where: str) -> Tensor:
    """``t`` as a dense tensor (a sparse one is densified: its values are the same); complex
    values are refused, since any cast to a real dtype drops their imaginary part."""
    if t.is_complex():
        raise DataError(
            f"{where}: {name} is {str(t.dtype)[6:]}; a real model's inputs and targets are real "
            "and a cast would drop the imaginary part: save real arrays"
        )
    if t.layout == torch.strided:
        return t
    try:
        return t.to_dense()
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        raise DataError(
            f"{where}: {name} is a {str(t.layout)[6:]} tensor that cannot be made dense "
            f"({first_line(exc, 120)}); save it with .to_dense()"
        ) from None


def _existing_file(file: str, what: str) -> Path:
    path = Path(file)
    if not path.is_file():
        raise DataError(f"{what} file {file!r} does not exist; check the path after '{what}:'")
    return path


# --- the registry of formats: prefix → loader -------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """A data format: ``prefix:ARG`` read by ``loader(arg, split, spec)``."""

    loader: Any  # (arg, split, DataSpec) -> Raw
    takes: str | None  # "folder" or "file" (the ARG after the prefix); None: no argument
    form: str  # how the spec is written, for messages and --help


FORMATS: dict[str, Format] = {
    "digits": Format(_digits, None, "digits"),
    "cifar10": Format(_cifar10, "folder", "cifar10:DIR"),
    "mnist": Format(_mnist, "folder", "mnist:DIR"),
    "npz": Format(_npz, "file", "npz:FILE"),
    "pt": Format(_pt, "file", "pt:FILE"),
    "tokens": Format(tokens.load_tokens, "file", "tokens:FILE"),
    "text": Format(tokens.load_text, "file", "text:FILE"),
    "hf-dataset": Format(tokens.load_hf_dataset, "folder", "hf-dataset:DIR"),
}
ACCEPTED_FORMS = ", ".join(
    [f.form for f in FORMATS.values()] + ["pkg.module:factory", "file.py:factory"]
)


# --- factories ------------------------------------------------------------------------------------


def _load_factory(spec: DataSpec, split: str) -> EvalData:
    """Call a user factory and wrap its map-style Dataset (read lazily, in index order)."""
    try:
        factory = resolve_callable(spec.name, "data")
    except ConfigError as exc:
        hint = f" (data specs: {ACCEPTED_FORMS})" if "cannot be imported" in str(exc) else ""
        raise DataError(f"{exc}{hint}") from None
    if not callable(factory):
        raise DataError(f"data factory {spec.name!r} is not callable")
    takes_split = _accepts_split(factory)
    try:
        dataset = factory(split=split) if takes_split else factory()
    except Exception as exc:
        raise DataError(f"data factory {spec.name!r} raised {type(exc).__name__}: {exc}") from exc
    n = _dataset_length(dataset, spec.name)
    first = dataset[0]
    if not isinstance(first, (tuple, list)) or len(first) != 2:
        raise DataError(f"data factory {spec.name!r}: items must be (x, y) pairs")
    idx = select_indices(n, spec.max_samples, spec.seed)
    info = _provenance(spec, "factory", split, n, idx, normalized=False)
    if not takes_split:
        info["split"] = None
        info["notes"].insert(0, f"factory takes no split argument; split {split!r} ignored")
    subset = dataset if len(idx) == n else Subset(dataset, idx.tolist())
    x, y = _materialize(subset, first, spec.name)
    check_finite_samples(x, y, spec.name)
    classes = getattr(dataset, "classes", None)
    return EvalData(
        info=info,
        x=x,
        y=y,
        sample_shape=tuple(x.shape[1:]),
        num_classes=len(classes) if isinstance(classes, (list, tuple)) else None,
    )


def _materialize(dataset: Dataset, first: Any, name: str) -> tuple[Tensor, Tensor]:
    """Read a map-style Dataset once, in index order, into two tensors.

    A factory's Dataset may decode files and apply transforms at every ``__getitem__``
    (torchvision's CIFAR10 does); read through a DataLoader at every grid point it would be
    decoded once per point, 2,601 times on a 51 × 51 grid. Its samples are fixed (no
    augmentation on an evaluation set), so they are read once, here, as the built-in readers do.
    """
    from landscape.grid import available_memory

    x0, y0 = (torch.as_tensor(v) for v in first)
    need = len(dataset) * (x0.element_size() * x0.numel() + y0.element_size() * y0.numel())
    have = available_memory()
    if have is not None and 2 * need > have:  # the batches and their concatenation
        raise DataError(
            f"data factory {name!r}: its {len(dataset)} samples take about {need / 1e9:.2f} GB "
            f"as tensors, more than half of the {have / 1e9:.2f} GB of memory available; "
            "evaluate on fewer samples (--max-samples N, a seeded subset)"
        )
    xs, ys = [], []
    loader = DataLoader(dataset, batch_size=256, shuffle=False, num_workers=0)
    try:
        for x, y in loader:
            xs.append(torch.as_tensor(x))
            ys.append(torch.as_tensor(y))
    except Exception as exc:
        raise DataError(
            f"data factory {name!r}: reading its samples failed ({type(exc).__name__}: {exc}); "
            "items must be (x, y) pairs of tensors or numbers of one shape"
        ) from None
    return torch.cat(xs), torch.cat(ys)


def _accepts_split(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "split" or p.kind is p.VAR_KEYWORD for p in params)


def _dataset_length(dataset: Any, name: str) -> int:
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise DataError(
            f"data factory {name!r} returned a {type(dataset).__name__}; it must return a "
            "map-style torch.utils.data.Dataset with __len__ and __getitem__"
        )
    n = len(dataset)
    if n == 0:
        raise DataError(f"data factory {name!r} returned an empty dataset")
    return n
