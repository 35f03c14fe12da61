"""A curve between two trained networks A and B through a bend C (Garipov et al., NeurIPS 2018):
its maths, the :class:`Curve` object and its file.

Both kinds are a weighted sum of the three points, ``θ(t) = w_A(t)·A + w_C(t)·C + w_B(t)·B``
with weights summing to one:

    bezier     (quadratic Bézier)  w = ((1 − t)²,  2t(1 − t),  t²)
    polychain  (A → C → B)         w = (1 − 2t, 2t, 0)          for t ≤ 1/2
                                   w = (0, 2 − 2t, 2t − 1)      for t > 1/2

so θ(0) = A and θ(1) = B exactly (the other weights are exact zeros). Since the weights sum to
one, ``θ(t) = A + w_C(t)·(C − A) + w_B(t)·(B − A)``: a point of the curve is the point with
coefficients ``(w_C(t), w_B(t))`` along the two directions ``C − A`` and ``B − A`` from A, which is
how the engine evaluates a curve (``coefficients``), and the curve lies in the plane through A, B
and C.

The file is safetensors (tensors and text, nothing that runs): A's, B's and C's tensors under the
names ``a/<name>``, ``b/<name>``, ``c/<name>``, and the metadata ``landscape_curve`` (JSON: the
kind, how C was trained, the source files' sha256, the training loss per epoch) with
``format_version``. This module imports nothing above the base layer.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from landscape._files import check_input, check_output, write_bytes_atomically
from landscape.errors import DirectionError, SurfaceFileError

KINDS: tuple[str, ...] = ("bezier", "polychain")
DEFAULT_KIND = "bezier"
FORMAT = "landscape-curve"
FORMAT_VERSION = 1
PREFIXES = {"a": "A", "b": "B", "c": "C"}  # file prefix → point

StateDict = OrderedDict[str, torch.Tensor]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise DirectionError(f"unknown curve {kind!r}; choose one of {', '.join(KINDS)}")
    return kind


def weights(kind: str, t: float) -> tuple[float, float, float]:
    """``(w_A, w_C, w_B)`` of the point at ``t`` (see the module's docstring)."""
    if kind == "bezier":
        return ((1.0 - t) ** 2, 2.0 * t * (1.0 - t), t * t)
    if t <= 0.5:  # polychain, first segment A → C
        return (1.0 - 2.0 * t, 2.0 * t, 0.0)
    return (0.0, 2.0 - 2.0 * t, 2.0 * t - 1.0)  # second segment C → B


def coefficients(kind: str, t: float) -> tuple[float, float]:
    """The point at ``t`` as coefficients along ``(C − A, B − A)`` from A: ``(w_C, w_B)``."""
    _, w_c, w_b = weights(kind, t)
    return (w_c, w_b)


def combine(kind: str, t: float, a: Mapping, c: Mapping, b: Mapping, names: list[str]) -> dict:
    """``θ(t)`` on ``names``: ``w_A·A + w_C·C + w_B·B`` (differentiable in C)."""
    w_a, w_c, w_b = weights(kind, t)
    return {k: w_a * a[k] + w_c * c[k] + w_b * b[k] for k in names}


@dataclass
class Curve:
    """A trained curve: its kind, its end points A and B, its bend C (state dicts, name → tensor,
    on the CPU) and ``record``: how it was made (training settings, the source files' sha256,
    ``losses``: the mean training loss per epoch).

    ``at(t)`` is the network's state at ``t`` (parameters and floating-point buffers on the
    curve; integer buffers, e.g. ``num_batches_tracked``, A's), ready for ``load_state_dict``;
    BatchNorm statistics on the curve are not those of θ(t): recalibrate them (``--bn
    recalibrate``) before reading the loss there.
    """

    kind: str
    a: StateDict
    b: StateDict
    c: StateDict
    record: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_kind(self.kind)
        check_same_shapes(self.a, self.b, "B")
        check_same_shapes(self.a, self.c, "C")

    def at(self, t: float) -> StateDict:
        if not 0.0 <= float(t) <= 1.0:
            raise DirectionError(f"a curve's t runs from 0 (A) to 1 (B), got {t}")
        w_a, w_c, w_b = weights(self.kind, float(t))
        out = OrderedDict()
        for k, a in self.a.items():
            if a.is_floating_point():
                # in float64; at t = 0 and 1 the other weights are exact zeros, so A and B
                # come back bit for bit
                mix = w_a * a.double() + w_c * self.c[k].double() + w_b * self.b[k].double()
                out[k] = mix.to(a.dtype)
            else:
                out[k] = a.clone()
        return out

    @property
    def losses(self) -> list[float]:
        return list(self.record.get("losses", []))

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the curve file (atomically; an existing file only with ``overwrite``)."""
        out = check_output(path, "curve file")
        if out.exists() and not overwrite:
            raise SurfaceFileError(
                f"{str(out)!r} already exists; pass overwrite=True (--overwrite) or another path"
            )
        write_bytes_atomically(out, self.to_bytes())
        return out

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        # each its own copy: C's integer buffers (num_batches_tracked) are A's own tensors, and
        # safetensors refuses tensors that share memory
        tensors = {
            f"{prefix}/{k}": state[k].detach().cpu().clone(memory_format=torch.contiguous_format)
            for prefix, state in (("a", self.a), ("b", self.b), ("c", self.c))
            for k in state
        }
        meta = {"kind": self.kind, **self.record}
        return save(tensors, metadata=file_metadata(meta))


def file_metadata(record: dict[str, Any], fmt: str = FORMAT) -> dict[str, str]:
    """The safetensors metadata of a curve (or its training state): text only."""
    return {
        "format": fmt,
        "format_version": str(FORMAT_VERSION),
        "landscape_curve": json.dumps(record, sort_keys=True),
    }


def check_same_shapes(a: Mapping, b: Mapping, what: str) -> None:
    """``b`` names the same tensors as ``a`` with the same shapes: one architecture."""
    if list(a) != list(b):
        missing = [k for k in a if k not in b] or [k for k in b if k not in a] or ["(order)"]
        raise DirectionError(
            f"{what} has other tensors than A ({missing[0]}); both ends and the bend must come "
            "from the same architecture"
        )
    for k in a:
        if tuple(a[k].shape) != tuple(b[k].shape):
            raise DirectionError(
                f"{what}: tensor {k} has shape {tuple(b[k].shape)}, A's {tuple(a[k].shape)}; "
                "both ends and the bend must come from the same architecture"
            )


def load_curve(path: str | Path) -> Curve:
    """Read a curve file (safetensors: tensors and JSON text, nothing executed)."""
    tensors, meta = read_safetensors(path, "curve file", FORMAT)
    record = json.loads(meta["landscape_curve"])
    kind = record.pop("kind", None)
    if kind not in KINDS:
        raise SurfaceFileError(f"curve file {str(path)!r} names no known curve kind ({kind!r})")
    parts: dict[str, StateDict] = {p: OrderedDict() for p in PREFIXES}
    for key, t in tensors.items():
        prefix, _, name = key.partition("/")
        if prefix not in parts or not name:
            raise SurfaceFileError(
                f"curve file {str(path)!r} holds {key!r}, not a/, b/ or c/ tensor; "
                "was it written by `landscape connect`?"
            )
        parts[prefix][name] = t
    try:
        return Curve(kind, parts["a"], parts["b"], parts["c"], record)
    except DirectionError as exc:
        raise SurfaceFileError(f"curve file {str(path)!r}: {exc}") from None


def read_safetensors(
    path: str | Path, what: str, fmt: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of one of our safetensors files of format ``fmt``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = check_input(path, what)
    try:
        from safetensors import safe_open

        with safe_open(str(file), "pt") as f:
            meta = dict(f.metadata() or {})
        tensors = dict(load_file(str(file), device="cpu"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SurfaceFileError(
            f"{what} {str(file)!r} is not a readable safetensors file ({str(exc)[:120]}); "
            "write it with `landscape connect`"
        ) from None
    if meta.get("format") != fmt:
        raise SurfaceFileError(
            f"{what} {str(file)!r} is not a {fmt} file (format {meta.get('format')!r}); "
            "write it with `landscape connect`"
        )
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise SurfaceFileError(
            f"{what} {str(file)!r} has format version {meta.get('format_version')!r}; this "
            f"landscape reads version {FORMAT_VERSION}: upgrade landscape"
        )
    try:
        json.loads(meta["landscape_curve"])
    except (KeyError, ValueError, RecursionError):
        raise SurfaceFileError(f"{what} {str(file)!r} has no readable curve metadata") from None
    return tensors, meta


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """A hash of the tensors' names and bytes (identifies A or B whatever file held them)."""
    h = hashlib.sha256()
    for name, t in state.items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def chart(kind: str | None) -> Callable[[tuple[float, ...]], tuple[float, ...]]:
    """A surface's grid point → its coefficients along the directions: the identity for a
    plane or a line; for the 1-D surface along a curve of ``kind``, ``(t,) → (w_C(t), w_B(t))``
    along ``(C − A, B − A)`` (``coefficients``)."""
    if kind is None:
        return lambda point: point
    check_kind(kind)
    return lambda point: coefficients(kind, float(point[0]))
