"""Permutation groups read off a network's traced graph (torch.fx).

The walk follows every value from the input to the output and knows, for each, whether one of its
dimensions holds the units of a group (``Val``). A weighted layer (Linear, Conv) starts a new group
of its output units and binds its input axis to the group of its input; BatchNorm, LayerNorm and
biases are reordered with the units they scale; elementwise activations, dropout and pooling keep
the units where they are; a permute or transpose moves them to another dimension; a flatten
turns C channels of H x W into C blocks of H * W linear inputs; a parameter read directly and
broadcast against them (a layer scale γ) is reordered with them; an addition or product of two
values ties their groups into one (union-find): a residual connection makes the whole stream of
a stage one group.

Anything else (a reshape that mixes units, a transpose, a concatenation, an unknown call) makes
the groups it touches fixed: their units stay where they are, and the operation is recorded. So
are the network's input and output units, which are never permuted.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from landscape.alignment.spec import Axis, PermutationSpec, Probe
from landscape.errors import AlignError, first_line

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CHANNEL_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
)  # fmt: skip
NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")
ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)  # fmt: skip
POOL_MODULES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Upsample,
    nn.ZeroPad2d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
    nn.ReplicationPad3d,
)  # fmt: skip: each acts on every channel's positions alone
ELEMENTWISE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus, torch.tanh, torch.sigmoid, F.tanh,
    F.sigmoid, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, torch.exp,
    torch.abs, torch.neg, operator.neg, torch.square, torch.sqrt, torch.clamp, torch.clip,
}  # fmt: skip
ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "tanh", "exp", "abs", "neg", "square", "sqrt", "clamp", "clip",
    "contiguous", "clone", "detach", "float", "double", "half", "bfloat16", "to", "type_as",
}  # fmt: skip
POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.interpolate,
}  # fmt: skip
BINARY_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
    operator.imul, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
    torch.maximum, torch.minimum,
}  # fmt: skip
BINARY_METHODS = {"add", "sub", "mul", "div", "add_", "sub_", "mul_", "div_"}
REDUCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin, "mean", "sum", "amax", "amin"}
REORDERS = {"permute", torch.permute, "transpose", torch.transpose}
SOFTMAXES = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, "softmax", "log_softmax"}
SIZE_METHODS = {"size", "dim", "numel"}  # give numbers, not tensors
SIZE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda"}  # x.shape[0], not x.T
SCALAR_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.floordiv, operator.pow,
                    operator.truediv, operator.getitem}  # fmt: skip


@dataclass(frozen=True)
class Val:
    """What the walk knows of one value: its number of dimensions (None: unknown); when one
    dimension holds a group's units, the group, that dimension (counted from 0 when ``ndim`` is
    known, else -1 for the last) and each unit's block of entries (0: not known yet, after a
    flatten; the next linear layer's width decides). ``scalar``: a number (a size), not a tensor."""

    ndim: int | None = None
    group: int | None = None
    dim: int | None = None
    block: int = 1
    scalar: bool = False
    attr: str | None = None  # read straight off the model (get_attr): a parameter or buffer

    def at_last(self) -> bool:
        """Units on the last dimension (where a Linear reads its features)."""
        return self.group is not None and (
            self.dim == -1 or (self.ndim is not None and self.dim == self.ndim - 1)
        )

    def at_channels(self) -> bool:
        """Units on dimension 1 (where a conv, BatchNorm and pooling read channels)."""
        return self.group is not None and (self.dim == 1 or (self.ndim == 2 and self.dim == -1))


def val(ndim: int | None, group: int | None = None, dim: int = -1, block: int = 1) -> Val:
    """A Val with ``dim`` counted from 0 whenever ``ndim`` is known."""
    if group is None:
        return Val(ndim)
    return Val(ndim, group, dim % ndim if ndim is not None else dim, block)


class Groups:
    """Union-find over groups of units; a group tied to a fixed one is fixed."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.sizes: list[int] = []
        self.names: list[str] = []
        self.fixed: set[int] = set()

    def new(self, size: int, name: str) -> int:
        self.parent.append(len(self.parent))
        self.sizes.append(size)
        self.names.append(name)
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]  # path halving
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> bool:
        """Tie two groups (the root with the lower index leads); False if their sizes differ,
        which the caller then fixes."""
        ra, rb = sorted((self.find(a), self.find(b)))
        if self.sizes[ra] != self.sizes[rb]:
            return False
        if ra != rb:
            self.parent[rb] = ra
            if rb in self.fixed:
                self.fixed.add(ra)
        return True

    def fix(self, g: int) -> None:
        self.fixed.add(self.find(g))

    def is_fixed(self, g: int) -> bool:
        return self.find(g) in self.fixed


class Walk:
    """One pass over a traced graph: the groups, the tensor axes bound to them, the probes."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        self.tensors = set(model.state_dict().keys())
        self.groups = Groups()
        self.bindings: dict[tuple[str, int], tuple[int, int, int]] = {}  # → (group, block, repeat)
        self.probes: list[tuple[int, Probe]] = []
        self.reads: list[fx.Node] = []  # attributes the graph reads directly (get_attr)
        self.scaled: set[fx.Node] = set()  # the uses of those that ``affine`` followed
        self.not_followed: list[str] = []
        self.vals: dict[fx.Node, Val] = {}

    # --- bookkeeping ----------------------------------------------------------------------------

    def fix(self, v: Val, why: str | None) -> None:
        """Units of ``v`` stay where they are; ``why``: the operation, recorded once."""
        if v.group is None:
            return
        if why is not None and why not in self.not_followed:
            self.not_followed.append(why)
        self.groups.fix(v.group)

    def tie(self, a: int, b: int, why: str) -> None:
        if not self.groups.union(a, b):
            self.groups.fix(a)
            self.groups.fix(b)
            self.not_followed.append(why)

    def bind(self, tensor: str, axis: int, group: int, block: int = 1) -> None:
        """``tensor``'s ``axis`` is reordered by ``group`` (absent tensors: a missing bias)."""
        if tensor not in self.tensors:
            return
        key = (tensor, axis)
        if key in self.bindings:
            other, other_block, _ = self.bindings[key]
            if other_block != block:  # one weight used with two layouts: leave it
                self.groups.fix(group)
                self.groups.fix(other)
                return
            self.tie(group, other, f"{tensor} (used twice)")
            return
        self.bindings[key] = (group, block, 1)

    def consume(self, node: fx.Node, x: Val, dim: int, width: int, axis: int, name: str) -> None:
        """The weighted layer ``name`` reads ``width`` inputs along ``dim`` (-1: features, 1:
        channels): its weight's ``axis`` follows the units of ``x``."""
        if x.group is None:
            return
        n = self.groups.sizes[x.group]
        block = x.block or (width // n if width % n == 0 else 0)
        placed = x.at_last() if dim == -1 else (x.at_channels() and x.block == 1)
        if not placed or n * block != width:
            self.fix(x, describe(node, self.modules))
            return
        self.bind(f"{name}.weight", axis, x.group, block)
        self.probes.append((x.group, Probe(name, dim, block)))

    def value(self, arg: Any) -> Val | None:
        """The Val of a node argument; None for a constant (a Python number)."""
        return self.vals.get(arg) if isinstance(arg, fx.Node) else None

    # --- the walk -------------------------------------------------------------------------------

    def run(self, graph: fx.Graph) -> None:
        for node in graph.nodes:
            self.vals[node] = self.visit(node)

    def visit(self, node: fx.Node) -> Val:
        if node.op == "placeholder":
            return Val()  # input units: never permuted
        if node.op == "get_attr":
            self.reads.append(node)
            t = attribute(self.model, str(node.target))
            return Val(t.ndim if isinstance(t, torch.Tensor) else None, attr=str(node.target))
        if node.op == "output":
            for v in node_vals(node, self.vals):
                self.fix(v, None)  # output units: never permuted
            return Val()
        if node.op == "call_module":
            return self.call_module(node, self.modules[str(node.target)])
        return self.call_function(node)

    def call_module(self, node: fx.Node, mod: nn.Module) -> Val:
        x = self.value(node.args[0]) if node.args else None
        x = x or Val()
        if isinstance(mod, nn.Linear):
            return self.linear(node, mod, x)
        if isinstance(mod, CONVS):
            return self.conv(node, mod, x)
        if isinstance(mod, CHANNEL_NORMS) or (
            isinstance(mod, nn.GroupNorm) and mod.num_groups in (1, mod.num_channels)
        ):
            return self.scale(node, x, x.at_channels())
        if isinstance(mod, nn.LayerNorm | getattr(nn, "RMSNorm", nn.LayerNorm)):
            return self.scale(node, x, x.at_last() and len(mod.normalized_shape) == 1)
        if isinstance(mod, nn.Embedding):
            return self.embedding(node, mod, x)
        if isinstance(mod, nn.Flatten):
            return self.flatten(node, x, mod.start_dim, mod.end_dim)
        if isinstance(mod, ELEMENTWISE_MODULES) or (
            isinstance(mod, nn.PReLU) and mod.num_parameters == 1
        ):
            return x
        if isinstance(mod, nn.PReLU):  # one slope per channel
            return self.scale(node, x, x.at_channels())
        if isinstance(mod, POOL_MODULES):
            return self.pool(node, x)
        if isinstance(mod, nn.Softmax | nn.LogSoftmax):
            return self.along(node, x, mod.dim)
        return self.unknown(node)

    def linear(self, node: fx.Node, mod: nn.Linear, x: Val, name: str | None = None) -> Val:
        # y = x Wᵀ + b: W (out, in) reads x's units on axis 1 and makes y's on axis 0
        name = name or str(node.target)  # the module's name (a call_module node's target)
        self.consume(node, x, -1, mod.in_features, 1, name)
        g = self.groups.new(mod.out_features, name)
        self.bind(f"{name}.weight", 0, g)
        self.bind(f"{name}.bias", 0, g)
        return val(x.ndim, g, -1)

    def conv(self, node: fx.Node, mod: nn.Conv2d, x: Val, name: str | None = None) -> Val:
        ndim = len(mod.kernel_size) + 2
        name = name or str(node.target)
        if mod.groups == 1:  # W (out, in, k...): input channels on axis 1, output on axis 0
            self.consume(node, x, 1, mod.in_channels, 1, name)
            g = self.groups.new(mod.out_channels, name)
        elif mod.groups == mod.in_channels == mod.out_channels and x.at_channels() and x.block == 1:
            g = x.group  # depthwise: output channel c is input channel c filtered
        else:
            self.fix(x, describe(node, self.modules))  # grouped: units stay within their group
            return Val(ndim)
        if g is None:
            return Val(ndim)
        self.bind(f"{name}.weight", 0, g)
        self.bind(f"{name}.bias", 0, g)
        return val(ndim, g, 1)

    def scale(self, node: fx.Node, x: Val, placed: bool, name: str | None = None) -> Val:
        """A normalization with one scale (and shift, and running statistics) per unit."""
        if x.group is not None and placed and x.block == 1:
            for t in NORM_TENSORS:
                self.bind(f"{name or node.target}.{t}", 0, x.group)
        else:
            self.fix(x, describe(node, self.modules))
        return x

    def embedding(self, node: fx.Node, mod: nn.Embedding, x: Val, name: str | None = None) -> Val:
        name = name or str(node.target)
        self.fix(x, describe(node, self.modules))  # ids are values, not units
        g = self.groups.new(mod.embedding_dim, name)
        self.bind(f"{name}.weight", 1, g)  # W (num, dim): a row per id
        return val(x.ndim + 1 if x.ndim is not None else None, g, -1)

    # --- functions and methods ------------------------------------------------------------------

    def call_function(self, node: fx.Node) -> Val:
        target = node.target
        args = [self.value(a) for a in node.args]
        x = args[0] if args and args[0] is not None else Val()
        if node.op == "call_method" and target in SIZE_METHODS:
            return Val(scalar=True)
        if target is getattr and argument(node, 1, "name", None) in SIZE_ATTRIBUTES:
            return Val(scalar=True)
        if args and all(a is None or a.scalar for a in args) and target in SCALAR_FUNCTIONS:
            return Val(scalar=True)  # arithmetic on sizes (x.size(0) * 2, x.shape[1])
        if target in ELEMENTWISE_FUNCTIONS or target in ELEMENTWISE_METHODS:
            return x
        if target in POOL_FUNCTIONS:
            return self.pool(node, x)
        if target in BINARY_FUNCTIONS or target in BINARY_METHODS:
            return self.binary(node, args)
        if target in (torch.flatten, "flatten"):
            start = argument(node, 1, "start_dim", 0)
            return self.flatten(node, x, start, argument(node, 2, "end_dim", -1))
        if target in ("view", "reshape", torch.reshape):
            return self.view(node, x)
        if target in REDUCTIONS:
            return self.reduce(node, x)
        if target in REORDERS:
            return self.reorder(node, x, target in ("permute", torch.permute))
        if target is F.pad:
            return self.pad(node, x, argument(node, 1, "pad", None))
        if target in SOFTMAXES:
            return self.along(node, x, argument(node, 1, "dim", None))
        return self.unknown(node)

    def binary(self, node: fx.Node, args: list[Val | None]) -> Val:
        """Elementwise ``a ∘ b``: both permutable with the same layout ties their groups (a
        residual sum, a gated product); a constant keeps the units; any other tensor (an input,
        a parameter read directly) fixes them."""
        tensors = [a for a in args[:2] if a is not None and not a.scalar]
        if len(tensors) < 2:
            return tensors[0] if tensors else Val(scalar=True)
        a, b = tensors
        if (a.attr is None) != (b.attr is None) and (a.group is None) != (b.group is None):
            x, t = (a, b) if b.attr is not None else (b, a)
            if x.group is not None and t.attr is not None:
                return self.affine(node, x, t.attr)
        ndim = a.ndim if a.ndim is not None else b.ndim
        if a.group is None and b.group is None:
            return Val(ndim)
        same = a.ndim == b.ndim and a.dim == b.dim and a.block == b.block
        if a.group is not None and b.group is not None and same:
            self.tie(a.group, b.group, describe(node, self.modules))
            return a
        why = describe(node, self.modules)
        self.fix(a, why)
        self.fix(b, why)
        return Val(ndim)

    def affine(self, node: fx.Node, x: Val, attr: str) -> Val:
        """``x ∘ t`` with ``t`` a tensor read off the model and broadcast against ``x`` (a layer
        scale γ of shape (C,), a shift of shape (C, 1, 1)): the entries of ``t`` along the units
        of ``x`` are reordered with them; a ``t`` of one entry there needs nothing."""
        t = attribute(self.model, attr)
        if (
            not isinstance(t, torch.Tensor)
            or (x.ndim is not None and t.ndim > x.ndim)
            or (x.ndim is None and not x.at_last())
        ):
            self.fix(x, describe(node, self.modules))
            return Val(x.ndim)
        # broadcasting lines the shapes up from the right: t's axis k meets x's ndim - t.ndim + k
        axis = t.ndim - 1 if x.ndim is None else (x.dim or 0) - (x.ndim - t.ndim)
        if axis >= 0 and t.shape[axis] != 1:  # one entry per unit (else one for all of them)
            n = self.groups.sizes[x.group or 0] * x.block
            if n == 0 or t.shape[axis] != n or attr not in self.tensors:
                self.fix(x, describe(node, self.modules))
                return Val(x.ndim)
            self.bind(attr, axis, x.group or 0, x.block)
        self.scaled.add(node)
        return x

    def reorder(self, node: fx.Node, x: Val, permute: bool) -> Val:
        """``permute`` (else ``transpose``): the units move to another dimension."""
        rest = list(node.args[1:])
        if permute:
            order = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], tuple | list) else rest
            order = order or list(node.kwargs.get("dims", ()))
        elif x.ndim is not None and len(rest) == 2 and all(isinstance(d, int) for d in rest):
            order = list(range(x.ndim))  # transpose(d0, d1): swap two dimensions
            i, j = rest[0] % x.ndim, rest[1] % x.ndim
            order[i], order[j] = order[j], order[i]
        else:
            return self.unknown(node)
        ndim = len(order)
        if not order or not all(isinstance(o, int) for o in order) or x.ndim not in (None, ndim):
            return self.unknown(node)
        if x.group is None:
            return Val(ndim)
        new = [o % ndim for o in order].index((x.dim if x.dim is not None else -1) % ndim)
        return val(ndim, x.group, new, x.block)

    def pad(self, node: fx.Node, x: Val, pad: Any) -> Val:
        """``F.pad`` pads the last ``len(pad) // 2`` dimensions: fine unless the units' one."""
        if x.group is None:
            return x
        if not isinstance(pad, tuple | list) or x.ndim is None or x.dim >= x.ndim - len(pad) // 2:
            self.fix(x, describe(node, self.modules))
        return x

    def flatten(self, node: fx.Node, x: Val, start: int, end: int) -> Val:
        """Dimensions ``start..end`` merged into one: units on ``start`` each own a block of the
        merged entries (channels of H x W: H * W consecutive linear inputs)."""
        if x.ndim is None:
            if x.group is not None and start == 1 and end == -1 and x.dim == 1 and x.block == 1:
                return Val(2, x.group, 1, block=0)
            self.fix(x, describe(node, self.modules))
            return Val()
        s, e = start % x.ndim, end % x.ndim
        ndim = x.ndim - (e - s)
        if x.group is None or x.dim < s:
            return val(ndim, x.group, x.dim or 0, x.block)
        if x.dim > e:
            return val(ndim, x.group, x.dim - (e - s), x.block)
        if x.dim == s and x.block == 1:
            return val(ndim, x.group, s, 0 if e > s else 1)
        self.fix(x, describe(node, self.modules))
        return Val(ndim)

    def view(self, node: fx.Node, x: Val) -> Val:
        """``x.view(x.size(0), -1)``: a flatten from dimension 1; any other reshape may mix
        units."""
        shape = list(node.args[1:])
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = list(shape[0])
        first = self.value(shape[0]) if shape else None
        if len(shape) == 2 and shape[1] == -1 and (first is None or first.scalar):
            return self.flatten(node, x, 1, -1)
        return self.unknown(node)

    def pool(self, node: fx.Node, x: Val) -> Val:
        """Pooling acts on each channel's spatial positions alone."""
        if x.group is not None and not (x.at_channels() and x.ndim != 2 and x.block == 1):
            self.fix(x, describe(node, self.modules))
        return x

    def along(self, node: fx.Node, x: Val, dim: int | None) -> Val:
        """An operation that mixes entries along ``dim`` (softmax): fine unless on the units."""
        if x.group is None:
            return x
        if dim is None or x.ndim is None or dim % x.ndim == x.dim:
            self.fix(x, describe(node, self.modules))
        return x

    def reduce(self, node: fx.Node, x: Val) -> Val:
        """A mean or sum over some dimensions: fine unless over the units' one."""
        dims = argument(node, 1, "dim", None)
        keep = argument(node, 2, "keepdim", False)
        if x.group is None:
            return Val(x.ndim if keep else None)
        dims = tuple(dims) if isinstance(dims, tuple | list) else (dims,)
        if None in dims or x.ndim is None or x.dim in {d % x.ndim for d in dims}:
            self.fix(x, describe(node, self.modules))
            return Val()
        if keep:
            return x
        below = sum(1 for d in {d % x.ndim for d in dims} if d < (x.dim or 0))
        return val(x.ndim - len(dims), x.group, (x.dim or 0) - below, x.block)

    def unknown(self, node: fx.Node) -> Val:
        """An operation the walk cannot follow: the units it touches stay where they are."""
        why = describe(node, self.modules)
        for v in node_vals(node, self.vals):
            self.fix(v, why)
        return Val()

    # --- the result -----------------------------------------------------------------------------

    def spec(self, model: nn.Module) -> PermutationSpec:
        """The groups left permutable, named after the layer that first makes their units."""
        self.pin_direct_reads()
        self.tie_aliases(model)
        roots: dict[int, str] = {}
        axes: dict[str, dict[int, Axis]] = {}
        for (tensor, axis), (g, block, repeat) in self.bindings.items():
            root = self.groups.find(g)
            if root in self.groups.fixed or self.groups.sizes[root] < 2:
                continue
            name = roots.setdefault(root, self.groups.names[root])
            axes.setdefault(tensor, {})[axis] = Axis(name, block, repeat)
        probes: dict[str, list[Probe]] = {name: [] for name in roots.values()}
        for g, probe in self.probes:
            name = roots.get(self.groups.find(g))
            if name is not None and probe not in probes[name]:
                probes[name].append(probe)
        sizes = {name: self.groups.sizes[root] for root, name in roots.items()}
        return PermutationSpec(sizes, axes, probes, list(self.not_followed))

    def pin_direct_reads(self) -> None:
        """A tensor the graph reads as an attribute and uses other than ``affine`` follows
        (``F.linear(x, self.w)``) is used in ways the walk does not see: the groups bound to it
        stay fixed."""
        for node in self.reads:
            users = [u for u in node.users if u not in self.scaled and not self.vals[u].scalar]
            if not users:
                continue
            p = self.vals[node].attr or str(node.target)
            for (tensor, _), (g, _, _) in self.bindings.items():
                if tensor == p or tensor.startswith(p + "."):
                    self.fix(Val(group=g), f"direct read of {tensor}")

    def tie_aliases(self, model: nn.Module) -> None:
        """One tensor under two names (tied weights): its axes follow one group each."""
        owners: dict[int, list[str]] = {}
        for name, t in model.state_dict(keep_vars=True).items():
            owners.setdefault(id(t), []).append(name)
        for names in owners.values():
            for axis in {a for (t, a) in self.bindings if t in names}:
                bound = [self.bindings.get((t, axis)) for t in names]
                if any(b is None for b in bound) or len({b[1] for b in bound if b}) > 1:
                    for b in bound:
                        if b is not None:
                            self.fix(Val(group=b[0]), f"{names[0]} (shared as {names[1]})")
                    continue
                for b in bound[1:]:
                    if b is not None and bound[0] is not None:
                        self.tie(bound[0][0], b[0], f"{names[0]} (shared)")


def attribute(model: nn.Module, target: str) -> Any:
    """The object a get_attr node reads: ``model.a.b`` for ``a.b``."""
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj


def argument(node: fx.Node, index: int, name: str, default: Any) -> Any:
    """A call's argument given by position or by keyword."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def node_vals(node: fx.Node, vals: dict[fx.Node, Val]) -> Iterator[Val]:
    """The Vals of every node among a node's arguments (nested in tuples and dicts too)."""
    found: list[Val] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(vals.get(n, Val())) or n)
    yield from found


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """An operation as a message names it: ``torch.cat (node cat_1)``, ``Tensor.view``,
    ``module layers.1 (Bilinear)``."""
    if node.op == "call_module":
        return f"module {node.target} ({type(modules[str(node.target)]).__name__})"
    if node.op == "call_method":
        return f"Tensor.{node.target} (node {node.name})"
    if type(node.target).__name__ == "OpOverload":  # an ATen operator of an exported graph
        return f"{node.target} (node {node.name})"
    target: Callable[..., Any] | str = node.target  # type: ignore[assignment]
    where = getattr(target, "__module__", None) or ""
    what = getattr(target, "__name__", str(target))
    if where.startswith("torch"):
        where = "torch.nn.functional" if "functional" in where else "torch"
    return f"{where + '.' if where else ''}{what} (node {node.name})"


class Untraceable(AlignError):
    """torch.fx cannot trace the model's forward (data-dependent Python control flow)."""


def trace_spec(model: nn.Module) -> PermutationSpec:
    """The permutation groups of a model that torch.fx can trace; Untraceable when it cannot,
    AlignError when no group is left that is safe to permute."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # tracing runs the user's forward: any error it raises
        raise Untraceable(
            f"cannot trace {type(model).__name__} with torch.fx to find its hidden units "
            f"({first_line(exc, 200)})"
        ) from None
    walk = Walk(model)
    walk.run(graph)
    return finish(walk, model)


def finish(walk: Walk, model: nn.Module) -> PermutationSpec:
    """The walk's groups; AlignError naming the first operation not followed when none is left."""
    spec = walk.spec(model)
    if not spec.sizes:
        raise AlignError(no_groups_message(type(model).__name__, spec.not_followed))
    return spec


def no_groups_message(kind: str, not_followed: list[str]) -> str:
    if not_followed:
        return (
            f"cannot permute the hidden units of {kind}: it could not follow "
            f"{not_followed[0]}, which may mix units, and that leaves no group of units safe to "
            "permute; use elementwise operations, flatten, pooling and additions between layers"
        )
    return (
        f"{kind} has no hidden units to permute (every unit is an input or an output unit); "
        "alignment needs at least one hidden layer"
    )


__all__ = ["Untraceable", "Val", "Walk", "finish", "trace_spec"]
