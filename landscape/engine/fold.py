"""Folding eval-mode BatchNorm into the convolution before it, at every point.

In eval mode a BatchNorm after a convolution is an affine map per output channel c:

    bn(conv(x))_c = γ_c · (conv(x)_c − μ_c) / sqrt(σ²_c + ε) + β_c
                  = conv_{W'}(x)_c + b'_c,   s_c = γ_c / sqrt(σ²_c + ε),
                    W'_c = s_c · W_c,        b'_c = β_c + s_c · (b_c − μ_c)

(b: the convolution's bias, 0 without one). One convolution with W' and b' computes the pair, and
a following residual add and ReLU are done on its fresh output: on a CPU by oneDNN inside the
convolution (its post-ops, the kernels ``torch.compile`` itself emits), elsewhere in place. Where
the addend is itself a folded convolution's output that nothing reads afterwards (a ResNet's
shortcut), oneDNN adds the convolution into it in place (a sum post-op: no new output buffer, one
pass less over memory; 5-10% of a ResNet-20 forward on a CPU, bit-identical). The BatchNorm's,
the add's and the ReLU's passes over the activations (half of a ResNet's eager CPU time beside
the convolutions) go. Traced by ``torch.compile``, the plain convolution, add and ReLU are used
instead: oneDNN's fused add kernels have no fake-tensor rule, and dynamo would break the graph at
every residual add (inductor fuses the plain ops itself). W' and b' are formed from the
module's tensors at call time, so under ``functional_call`` they are the point's θ + a·d1 + b·d2:
the fold is redone at every forward call (each batch of each point), on weights only (a few
thousand multiplies), and the caller's model is never changed.

:func:`fold_batchnorm` traces the model with ``torch.fx`` and rewrites each chain
``conv → bn [→ add] [→ relu]`` whose intermediate results nothing else reads; a model that does not
trace is left as it is. The result differs from the unfolded forward by float rounding only
(~1e-7 relative); the selector checks it on real samples before using it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from landscape.errors import first_line

_RELU_FUNCTIONS = (F.relu, torch.relu)
_ADD_FUNCTIONS = (operator.add, torch.add)


@dataclass
class Folded:
    """The rewritten module (same parameter and buffer names as the model) and what was fused."""

    module: fx.GraphModule | None
    chains: int  # conv → bn pairs folded
    adds: int  # residual adds done in place on a folded convolution's output
    relus: int  # ReLUs done in place
    reason: str = ""  # why nothing was folded
    into: int = 0  # of the adds, those accumulated into their dead addend (_accumulate_into)

    def describe(self) -> dict[str, object]:
        if self.module is None:
            return {"fused": 0, "fuse_reason": self.reason}
        return {
            "fused": self.chains,
            "fused_adds": self.adds,
            "fused_relus": self.relus,
            "fused_adds_into": self.into,
        }


def conv_bn(
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    x: torch.Tensor,
    other: torch.Tensor | None,
    relu: bool,
    into: bool = False,
) -> torch.Tensor:
    """``relu(bn(conv(x)) + other)`` (each part when asked for) with the BatchNorm folded into the
    convolution's weight and bias (module docstring); the plain chain when ``bn`` is training.
    ``into``: ``other`` is dead after this call (the fold proved it), so oneDNN may accumulate
    into it and return it."""
    if bn.training or bn.running_mean is None or bn.running_var is None:
        y = bn(conv(x))
        y = y if other is None else y + other
        return F.relu(y) if relu else y
    scale = torch.rsqrt(bn.running_var + bn.eps)  # s = γ / sqrt(σ² + ε)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean if conv.bias is None else conv.bias - bn.running_mean
    shift = shift * scale  # b' = β + s · (b − μ)
    if bn.bias is not None:
        shift = shift + bn.bias
    weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.ndim - 1)))  # W' = s · W
    if _onednn_fits(conv, x, weight, other):
        return _onednn(conv, x, weight, shift, other, relu, into)
    y = conv._conv_forward(x, weight, shift)  # padding modes as the module does them
    if other is not None:
        # in place on the convolution's fresh output when that gives the same tensor as y + other
        same = other.shape == y.shape and other.dtype == y.dtype
        y = y.add_(other) if same else y + other
    return y.relu_() if relu else y


_POINTWISE, _POINTWISE_INTO = (
    (
        getattr(torch.ops.mkldnn, "_convolution_pointwise", None),
        getattr(torch.ops.mkldnn, "_convolution_pointwise_", None),  # writes into its addend
    )
    if torch.backends.mkldnn.is_available()
    else (None, None)
)


def _compiling() -> bool:
    """Whether torch.compile is tracing: oneDNN's fused add kernels have no fake-tensor rule, so
    dynamo would break the graph at every residual add."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def _vmapped() -> bool:
    """Whether a ``torch.func`` transform is running (the batched engine's ``vmap`` over the
    split's dependent part): oneDNN's fused kernels have no batching rule."""
    level = getattr(torch._C._functorch, "maybe_current_level", None)
    return level is not None and level() is not None


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch before 2.4
        return (
            torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
        )


def _onednn_fits(
    conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, other: torch.Tensor | None
) -> bool:
    """Whether oneDNN's fused convolution computes this call as ``_conv_forward`` would: a CPU,
    float32 without autocast, no gradient wanted, zero padding given as numbers, and an addend
    of the output's shape and layout."""
    if _POINTWISE is None or x.device.type != "cpu" or x.ndim != 4 or torch.is_grad_enabled():
        return False
    if _compiling() or _vmapped():  # traced or vmapped, the plain ops (which vmap batches)
        return False
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or _autocast_on("cpu"):
        return False
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return False
    if other is None:
        return True
    n, _, h, w = x.shape
    out = [n, conv.out_channels]
    for size, k, s, p, d in zip(
        (h, w), conv.kernel_size, conv.stride, conv.padding, conv.dilation, strict=True
    ):
        out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    last = torch.channels_last
    return (
        list(other.shape) == out
        and other.dtype == torch.float32
        and other.is_contiguous(memory_format=last) == x.is_contiguous(memory_format=last)
    )


def _onednn(
    conv: nn.Conv2d,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    other: torch.Tensor | None,
    relu: bool,
    into: bool = False,
) -> torch.Tensor:
    """relu(conv(x) + other) in one oneDNN call, the add and ReLU as its post-ops; with ``into``
    the sum is accumulated in ``other``'s buffer (other ← relu(conv(x) + other)), which is
    returned."""
    geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    if other is None:
        return _POINTWISE(x, weight, bias, *geometry, "relu" if relu else "none", [], "")
    if into and _POINTWISE_INTO is not None:
        return _POINTWISE_INTO.binary(
            other, x, weight, bias, *geometry, "add", 1.0, "relu" if relu else None, [], None
        )
    return _POINTWISE.binary(
        x, other, weight, bias, *geometry, "add", None, "relu" if relu else None, [], None
    )


def fold_batchnorm(model: nn.Module) -> Folded:
    """``model`` traced and rewritten with every foldable chain done by :func:`conv_bn`."""
    try:
        traced = fx.symbolic_trace(model)
    except Exception as exc:  # data-dependent control flow, unsupported ops, ...
        return Folded(None, 0, 0, 0, f"does not trace with torch.fx: {first_line(exc, 160)}")
    modules = dict(traced.named_modules())
    graph = traced.graph
    chains = adds = relus = 0
    for node in list(graph.nodes):
        conv = _module(node, modules, nn.Conv2d)
        if conv is None or len(node.users) != 1 or len(node.args) != 1 or node.kwargs:
            continue
        (bn_node,) = node.users
        bn = _module(bn_node, modules, nn.BatchNorm2d)
        if bn is None or bn_node.args != (node,) or bn_node.kwargs:
            continue
        if not bn.track_running_stats or bn.num_features != conv.out_channels:
            continue
        chain, other, relu = [node, bn_node], None, False
        add = _only_user(bn_node)
        if add is not None and _is_add(add):
            rest = [a for a in add.args if a is not bn_node]
            if len(rest) == 1 and isinstance(rest[0], fx.Node):
                chain, other = [*chain, add], rest[0]
        after = _only_user(chain[-1])
        if after is not None and _is_relu(after, modules):
            chain, relu = [*chain, after], True
        with graph.inserting_before(chain[-1]):
            fused = graph.call_function(
                conv_bn,
                (graph.get_attr(node.target), graph.get_attr(bn_node.target), node.args[0]),
                {"other": other, "relu": relu},
            )
        chain[-1].replace_all_uses_with(fused)
        for dead in reversed(chain):  # each one's only reader is the next, already gone
            graph.erase_node(dead)
        chains, adds, relus = chains + 1, adds + (other is not None), relus + relu
    if not chains:
        return Folded(None, 0, 0, 0, "no convolution followed by a BatchNorm")
    into = _accumulate_into(graph)
    graph.lint()
    return Folded(fx.GraphModule(traced, graph), chains, adds, relus, into=into)


def _accumulate_into(graph: fx.Graph) -> int:
    """Mark the folded calls that may write their sum into their addend, once every chain is
    rewritten (a later rewrite changes who reads what). Writing into ``other`` is safe when

    - ``other`` is a folded call's output: a fresh buffer, never a view of the model's input, a
      parameter or another live tensor (its own ``into`` returns a buffer that is, again, fresh);
    - no node runs after this one that reads it (graph order is execution order), the output
      included;
    - the nodes that read it before are folded calls too, whose outputs never alias their input
      (a view taken of it earlier and read later would see the sum);
    - it is not this call's own input (the convolution would read what it overwrites).
    """
    order = {node: i for i, node in enumerate(graph.nodes)}
    count = 0
    for node in graph.nodes:
        if node.op != "call_function" or node.target is not conv_bn:
            continue
        other = node.kwargs.get("other")
        if not isinstance(other, fx.Node) or other.target is not conv_bn or other is node.args[2]:
            continue
        readers = [user for user in other.users if user is not node]
        if all(user.target is conv_bn and order[user] < order[node] for user in readers):
            node.update_kwarg("into", True)
            count += 1
    return count


def _module(node: fx.Node, modules: dict[str, nn.Module], kind: type) -> nn.Module | None:
    if node.op != "call_module":
        return None
    module = modules.get(str(node.target))
    return module if type(module) is kind else None  # subclasses may change forward


def _only_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _is_add(node: fx.Node) -> bool:
    plain = node.op == "call_function" and node.target in _ADD_FUNCTIONS
    method = node.op == "call_method" and node.target == "add"
    return (plain or method) and len(node.args) == 2 and not node.kwargs


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        return len(node.args) == 1  # inplace= changes nothing for a fresh tensor
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return len(node.args) == 1 and not node.kwargs
    return _module(node, modules, nn.ReLU) is not None


FOLD_TOLERANCE = (
    1e-4  # relative to the largest output: rounding differs by ~1e-7, a wrong fold by O(1)
)


def agrees(
    model: nn.Module, folded: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor
) -> tuple[bool, float]:
    """Whether the folded module gives the model's outputs at ``state`` on the samples ``x``
    (eval mode, no grad), and their largest difference relative to the largest output."""
    from torch.func import functional_call

    from landscape.engine.reference import eval_mode

    with eval_mode(model), eval_mode(folded), torch.inference_mode():
        want = functional_call(model, state, (x,))
        got = functional_call(folded, state, (x,))
    if not isinstance(want, torch.Tensor) or not isinstance(got, torch.Tensor):
        return False, float("inf")
    if want.shape != got.shape:
        return False, float("inf")
    scale = float(want.abs().max().clamp_min(1e-12))
    diff = float((want.float() - got.float()).abs().max()) / scale
    return diff <= FOLD_TOLERANCE, diff
