"""Permutation groups of a model torch.fx cannot trace, read off its ``torch.export`` graph.

``symbolic_trace`` runs the forward on proxies and stops at Python control flow that depends on
the input (``if x.shape[1] == 3``); ``torch.export`` runs it on an example input and records the
ATen operators it reached. The walk is ``graph.Walk``'s: the same rules, read off ATen names
(``aten.linear``, ``aten.conv2d``, ``aten.batch_norm``, ...), with the weights lifted into graph
inputs that the program's signature names (``p_fc_weight`` → ``fc.weight``), and every shape
known from the example. A weight that is no Linear's, Conv's or norm's own (a raw parameter in
``F.linear``) is read directly: its units stay where they are.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn

from landscape.alignment.graph import CHANNEL_NORMS, CONVS, Val, Walk, argument, finish
from landscape.alignment.spec import PermutationSpec
from landscape.errors import AlignError, first_line

ELEMENTWISE = {
    "relu", "relu_", "gelu", "silu", "sigmoid", "tanh", "hardtanh", "leaky_relu", "elu", "mish",
    "hardswish", "hardsigmoid", "softplus", "dropout", "clone", "alias", "_to_copy",
    "contiguous", "abs", "neg", "exp", "sqrt", "clamp", "detach",
}  # fmt: skip
POOLS = {
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "upsample_nearest2d", "upsample_bilinear2d",
    "max_pool2d_with_indices",
}  # fmt: skip
BINARY = {"add", "sub", "mul", "div", "maximum", "minimum"}
REDUCE = {"mean", "sum", "amax", "amin"}
SOFTMAX = {"softmax", "_softmax", "log_softmax", "_log_softmax"}
SIZES = {"sym_size", "size", "sym_numel"}


def export_spec(model: nn.Module, example: torch.Tensor, why: str) -> PermutationSpec:
    """The groups of ``model`` from its torch.export graph on ``example`` (a batch of inputs);
    ``why``: torch.fx's reason, named if export fails too."""
    private = copy.deepcopy(model)  # export may touch the module it runs
    try:
        program = torch.export.export(private, (example,), strict=False)
    except Exception as exc:  # export runs the user's forward: any error it raises
        raise AlignError(
            f"{why}; torch.export on the data fails too ({first_line(exc, 160)}): a forward "
            "without data-dependent Python control flow traces"
        ) from None
    signature = program.graph_signature
    walk = ExportWalk(model, {**signature.inputs_to_parameters, **signature.inputs_to_buffers})
    walk.run(program.graph)
    return finish(walk, model)


class ExportWalk(Walk):
    """``Walk`` over an ATen graph: operators instead of modules, lifted weights as inputs."""

    def __init__(self, model: nn.Module, lifted: dict[str, str]) -> None:
        super().__init__(model)
        self.lifted = lifted  # graph input name -> state-dict name

    def visit(self, node: fx.Node) -> Val:
        ndim = _ndim(node)
        if node.op == "placeholder" and node.name in self.lifted:
            self.reads.append(node)  # a weight: pinned unless a layer below takes it as its own
            return Val(ndim, attr=self.lifted[node.name])
        if node.op == "placeholder":
            return Val(ndim)
        if node.op == "call_function" and type(node.target).__name__ == "OpOverload":
            return self.aten(node, node.target.__name__.split(".")[0])
        if node.op == "call_function" and node.target is operator.getitem:
            # a tuple of results (max_pool2d_with_indices): the first is the values
            source = self.value(node.args[0]) or Val()
            return source if node.args[1] == 0 else Val(ndim)
        return super().visit(node)

    def aten(self, node: fx.Node, op: str) -> Val:
        args = [self.value(a) for a in node.args]
        x = args[0] if args and args[0] is not None else Val()
        layer = self.layers().get(op)
        if layer is not None:
            return layer(node, x)
        if op in SIZES:
            return Val(scalar=True)
        if op in ELEMENTWISE:
            return x
        if op in POOLS:
            return self.pool(node, x)
        if op in BINARY:
            return self.binary(node, args)
        if op in ("flatten", "view", "reshape", "_unsafe_view"):
            return self.merge(node, x)
        if op in REDUCE:
            return self.reduce(node, x)
        if op in ("permute", "transpose"):
            return self.reorder(node, x, op == "permute")
        if op in SOFTMAX:
            return self.along(node, x, argument(node, 1, "dim", None))
        if op in ("constant_pad_nd", "pad"):
            return self.pad(node, x, argument(node, 1, "pad", None))
        return self.unknown(node)

    def layers(self) -> dict[str, Callable[[fx.Node, Val], Val]]:
        return {
            "linear": self.linear_op,
            "conv1d": self.conv_op,
            "conv2d": self.conv_op,
            "conv3d": self.conv_op,
            "batch_norm": self.norm_op,
            "native_batch_norm": self.norm_op,  # older IRs: (out, mean, rstd), out first
            "_native_batch_norm_legit_no_training": self.norm_op,
            "layer_norm": self.norm_op,
            "group_norm": self.norm_op,
            "embedding": self.embedding_op,
            "prelu": self.prelu_op,
        }

    # --- the weighted operators: their weights must be a module's own -----------------------

    def owner(self, node: fx.Node, weight: Any, kinds: tuple[type, ...]) -> str | None:
        """The module whose ``weight`` (and bias, statistics) the operator reads, if it is one
        of ``kinds``; its reads are then followed here, not pinned."""
        attr = self.value(weight).attr if isinstance(weight, fx.Node) else None
        name = attr.rsplit(".", 1)[0] if attr and attr.endswith(".weight") else None
        if name is None or not isinstance(self.modules.get(name), kinds):
            return None
        reads = [self.vals[a].attr for a in node.all_input_nodes if self.vals[a].attr]
        if not all(r.startswith(name + ".") for r in reads):  # a bias of another module
            return None
        self.scaled.add(node)
        return name

    def linear_op(self, node: fx.Node, x: Val) -> Val:
        name = self.owner(node, argument(node, 1, "weight", None), (nn.Linear,))
        if name is None:
            return self.unknown(node)
        return val_ndim(self.linear(node, self.modules[name], x, name), _ndim(node))

    def conv_op(self, node: fx.Node, x: Val) -> Val:
        name = self.owner(node, argument(node, 1, "weight", None), CONVS)
        if name is None:
            return self.unknown(node)
        return self.conv(node, self.modules[name], x, name)

    def norm_op(self, node: fx.Node, x: Val) -> Val:
        op = node.target.__name__.split(".")[0]  # type: ignore[union-attr]
        op = op if op in ("layer_norm", "group_norm") else "batch_norm"
        index = {"batch_norm": 1, "layer_norm": 2, "group_norm": 2}[op]  # the weight's position
        kinds: tuple[type, ...] = {
            "batch_norm": CHANNEL_NORMS,
            "layer_norm": (nn.LayerNorm,),
            "group_norm": (nn.GroupNorm,),
        }[op]
        name = self.owner(node, argument(node, index, "weight", None), kinds)
        if name is None:
            return self.unknown(node)
        mod = self.modules[name]
        if op == "layer_norm":
            return self.scale(node, x, x.at_last() and len(mod.normalized_shape) == 1, name)
        # GroupNorm: statistics over all channels (one group) or over each alone
        whole = getattr(mod, "num_groups", 1) in (1, getattr(mod, "num_channels", 1))
        return self.scale(node, x, x.at_channels() and whole, name)

    def prelu_op(self, node: fx.Node, x: Val) -> Val:
        name = self.owner(node, argument(node, 1, "weight", None), (nn.PReLU,))
        if name is None:
            return self.unknown(node)
        if self.modules[name].num_parameters == 1:  # type: ignore[union-attr]
            return x  # one slope for all: elementwise
        return self.scale(node, x, x.at_channels(), name)  # one slope per channel

    def embedding_op(self, node: fx.Node, x: Val) -> Val:
        name = self.owner(node, node.args[0], (nn.Embedding,))
        if name is None:
            return self.unknown(node)
        ids = self.value(node.args[1]) or Val()
        return val_ndim(self.embedding(node, self.modules[name], ids, name), _ndim(node))

    def merge(self, node: fx.Node, x: Val) -> Val:
        """A view, reshape or flatten, read off the shapes before and after: trailing dimensions
        merged into one (``view(B, -1)``) is a flatten; anything else may mix units."""
        before, after = _shape(node.args[0]), _shape(node)
        if before is None or after is None:
            return self.unknown(node)
        k = len(after) - 1  # dims 0..k-1 kept, k.. merged into dim k
        if after[:k] == before[:k] and after[k] == math.prod(before[k:]):
            return self.flatten(node, x, k, len(before) - 1)
        return self.unknown(node)


def val_ndim(v: Val, ndim: int | None) -> Val:
    """``v`` with its number of dimensions known from the graph, units counted from 0."""
    if ndim is None or v.ndim is not None:
        return v
    if v.group is None:
        return Val(ndim)
    return Val(ndim, v.group, (v.dim if v.dim is not None else -1) % ndim, v.block)


def _shape(node: Any) -> tuple[int, ...] | None:
    fake = node.meta.get("val") if isinstance(node, fx.Node) else None
    if not isinstance(fake, torch.Tensor):
        return None
    try:
        return tuple(int(d) for d in fake.shape)
    except TypeError:  # a symbolic size
        return None


def _ndim(node: fx.Node) -> int | None:
    fake = node.meta.get("val")
    return fake.ndim if isinstance(fake, torch.Tensor) else None
