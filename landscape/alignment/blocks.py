"""Permutation groups of transformers models, read off their module tree.

torch.fx does not trace most Hugging Face models (their forwards branch on configs, caches and
masks), but their blocks have a known shape, so the groups are taken from it:

- GPT-2 MLP (``c_fc``, ``c_proj``: ``Conv1D`` with weights stored ``(in, out)``): the hidden units
  are the columns of ``c_fc.weight``, its bias and the rows of ``c_proj.weight``;
- Llama-shaped gated MLP (``gate_proj``, ``up_proj``, ``down_proj``: ``Linear``, as in Mistral,
  Qwen2, Gemma): ``down(act(gate x) * up x)``, hidden units are the rows of gate and up and the
  columns of down;
- attention heads: GPT-2's fused ``c_attn`` (columns ``[q | k | v]``, each ``heads * head_dim``)
  with ``c_proj``'s rows; Llama's ``q/k/v/o_proj``. With grouped-query attention a key/value
  head and the ``heads / kv_heads`` query heads that read it move together as one unit.

Permuting heads is exact because every head computes softmax(q_h k_hᵀ) v_h on its own
``head_dim`` slice (rotary embeddings act within a head, the same for every head) and the output
projection sums the heads. The residual stream (embeddings, norms) is never permuted.
"""

from __future__ import annotations

from torch import nn

from landscape.alignment.spec import Axis, PermutationSpec, Probe
from landscape.errors import AlignError


def blocks_spec(model: nn.Module) -> PermutationSpec:
    """The MLP and attention-head groups of every GPT-2- or Llama-shaped block of ``model``."""
    spec = PermutationSpec({}, {}, {})
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        children = dict(module.named_children())
        if _is_conv1d(children.get("c_fc")) and _is_conv1d(children.get("c_proj")):
            _gpt2_mlp(spec, prefix, children)
        elif all(
            isinstance(children.get(k), nn.Linear) for k in ("gate_proj", "up_proj", "down_proj")
        ):
            _gated_mlp(spec, prefix, children)
        elif _is_conv1d(children.get("c_attn")) and not getattr(
            module, "is_cross_attention", False
        ):
            _gpt2_heads(spec, prefix, module, children)
        elif all(
            isinstance(children.get(k), nn.Linear) for k in ("q_proj", "k_proj", "v_proj", "o_proj")
        ):
            _llama_heads(spec, prefix, module, children)
    if not spec.sizes:
        raise AlignError(
            f"cannot find GPT-2- or Llama-shaped blocks (MLP c_fc/c_proj or gate/up/down_proj, "
            f"attention c_attn or q/k/v/o_proj) in the transformers {type(model).__name__}; "
            "landscape aligns those"
        )
    return spec


def _is_conv1d(module: nn.Module | None) -> bool:
    return module is not None and type(module).__name__ == "Conv1D"


def _add(spec: PermutationSpec, group: str, size: int, bound: list[tuple[str, int, Axis]]) -> None:
    if size < 2:  # one unit (one key/value head): nothing to reorder
        return
    spec.sizes[group] = size
    for tensor, axis, ax in bound:
        spec.axes.setdefault(tensor, {})[axis] = ax


def _gpt2_mlp(spec: PermutationSpec, prefix: str, children: dict[str, nn.Module]) -> None:
    group = prefix.removesuffix(".")
    ax = Axis(group)
    hidden = children["c_fc"].weight.shape[1]  # Conv1D: weight (in, out)
    bound = [(f"{prefix}c_fc.weight", 1, ax), (f"{prefix}c_fc.bias", 0, ax)]
    _add(spec, group, hidden, [*bound, (f"{prefix}c_proj.weight", 0, ax)])
    spec.probes[group] = [Probe(f"{prefix}c_proj", -1)]


def _gated_mlp(spec: PermutationSpec, prefix: str, children: dict[str, nn.Module]) -> None:
    group = prefix.removesuffix(".")
    ax = Axis(group)
    bound = [(f"{prefix}down_proj.weight", 1, ax)]  # Linear: weight (out, in)
    for k in ("gate_proj", "up_proj"):
        bound.append((f"{prefix}{k}.weight", 0, ax))
        if children[k].bias is not None:
            bound.append((f"{prefix}{k}.bias", 0, ax))
    _add(spec, group, children["up_proj"].out_features, bound)
    spec.probes[group] = [Probe(f"{prefix}down_proj", -1)]


def _gpt2_heads(
    spec: PermutationSpec, prefix: str, module: nn.Module, children: dict[str, nn.Module]
) -> None:
    heads, size = getattr(module, "num_heads", None), getattr(module, "head_dim", None)
    width = children["c_attn"].weight.shape[1]
    if not isinstance(heads, int) or not isinstance(size, int) or width != 3 * heads * size:
        return  # not the fused layout this reads: its heads stay where they are
    group = f"{prefix}heads"
    qkv = Axis(group, block=size, repeat=3)  # columns [q | k | v], each (heads, head_dim)
    out = Axis(group, block=size)
    bound = [(f"{prefix}c_attn.weight", 1, qkv), (f"{prefix}c_attn.bias", 0, qkv)]
    _add(spec, group, heads, [*bound, (f"{prefix}c_proj.weight", 0, out)])
    spec.probes[group] = [Probe(f"{prefix}c_proj", -1, block=size)]


def _llama_heads(
    spec: PermutationSpec, prefix: str, module: nn.Module, children: dict[str, nn.Module]
) -> None:
    size = getattr(module, "head_dim", None)
    q, k, v = (children[n].out_features for n in ("q_proj", "k_proj", "v_proj"))
    if not isinstance(size, int) or k != v or k % size or q % k:
        return
    kv_heads, share = k // size, q // k  # query heads per key/value head: q // k
    group = f"{prefix}heads"
    query, key = Axis(group, block=share * size), Axis(group, block=size)
    bound = [(f"{prefix}o_proj.weight", 1, query)]
    for name, ax in (("q_proj", query), ("k_proj", key), ("v_proj", key)):
        bound.append((f"{prefix}{name}.weight", 0, ax))
        if children[name].bias is not None:
            bound.append((f"{prefix}{name}.bias", 0, ax))
    _add(spec, group, kv_heads, bound)
    spec.probes[group] = [Probe(f"{prefix}o_proj", -1, block=share * size)]
