"""Compute only what moves: the forward pass split at the first moved tensor (issue 27).

When the directions move only some tensors (a layer-by-layer study, a LoRA adapter, a head),
every grid point would recompute the same activations up to the first moved layer. Here the
forward pass ``f(x; θ)`` is split into a static part ``s``, which reads no moved tensor, and a
dependent part ``g``:

    f(x; θ + Σ c_k·d_k) = g(s(x; θ_static), x; θ_moved + Σ c_k·d_k, θ_static)

``s`` is computed once per data batch, its outputs at the frontier (the values ``g`` reads) are
kept, and only ``g`` runs at each grid point. Two ways to find the split:

- ``graph``: the model traced by ``torch.fx``. A node depends on the moved tensors when one of its
  inputs does, or it reads a moved tensor (``get_attr``) or calls a module that owns one; the
  frontier is every static node (an input included) that a dependent node reads. The static and
  dependent graphs are the same nodes, so the dependent graph computes the same operations in the
  same order: the same values.
- ``modules``: for models ``torch.fx`` cannot trace (Hugging Face decoder stacks: GPT-2, Llama),
  the module tree. One probe forward records the order modules run in; every module that has
  finished before the first module owning a moved tensor starts, owns no moved tensor and runs
  once, is *replayed*: its output at θ is recorded once per batch (the static pass stops where
  the first moved module would start), and at each point a private copy of the model whose
  replayed modules return the recorded outputs runs the rest (the blocks from the first moved one
  on, the final norm, the head, and the plain code between, such as attention masks). Its memory
  is the replayed modules' outputs, but of a run of blocks of a ``ModuleList`` or
  ``Sequential`` each feeding the next (a decoder's layers) only the last one's: each block of
  the run returns that output, which the next replayed block ignores, so that a stack keeps one
  block's output, not one per block (where plain code reads another block's output too, as a
  U-Net's skips do, the split at θ on the first sample differs from the model and every output
  is kept).

Either split is checked on the first samples against the full forward, at θ and at a moved
point, before a run uses it (:func:`agrees`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.func import functional_call

Point = dict[str, torch.Tensor]


@dataclass
class Split:
    """A forward pass split in two. ``static(centre, x)``: the frontier of one batch (computed
    once); ``dynamic(point, frontier)``: the logits at ``point`` from it. ``how``: graph |
    modules; ``static_nodes``: operations (graph) or modules (modules) the static part holds."""

    how: str
    static: Callable[[Point, torch.Tensor], Any]
    dynamic: Callable[[Point, Any], torch.Tensor]
    static_nodes: int
    figures: dict[str, Any] = field(default_factory=dict)
    store: str = "memory"  # where the frontiers are kept: memory | disk (engine.frontier)


def split_forward(model: nn.Module, moved: set[str], fold_bn: bool = False) -> Split | str:
    """The model's forward split at the moved tensors (names as in ``model.state_dict()``): by its
    graph when torch.fx traces it (``fold_bn``: BatchNorm folded in its dependent part), else by
    its module tree; a reason when neither can."""
    if not moved:
        return "no tensor moves"
    try:
        traced = fx.symbolic_trace(model)
    except Exception:  # any tracing failure: data-dependent control flow, hooks, ...
        return module_split(model, moved)  # found on the first batch (Unsplittable if none)
    return graph_split(model, traced, moved, fold_bn)  # a traced graph's answer stands


# --- graph: torch.fx ------------------------------------------------------------------------


def _owners(moved: set[str]) -> set[str]:
    """Every module path (and tensor name) that holds a moved tensor: ``a``, ``a.b``, ``a.b.w``."""
    out = {""}
    for name in moved:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def _dependent(graph: fx.Graph, owners: set[str]) -> set[fx.Node]:
    """The nodes whose value depends on a moved tensor (in topological order, one pass)."""
    dep: set[fx.Node] = set()
    for node in graph.nodes:
        reads = node.op in ("get_attr", "call_module") and str(node.target) in owners
        if reads or any(a in dep for a in node.all_input_nodes):
            dep.add(node)
    return dep


def graph_split(
    model: nn.Module, traced: fx.GraphModule, moved: set[str], fold_bn: bool = False
) -> Split | str:
    """The split by the model's torch.fx graph (``traced``), or why there is none; ``fold_bn``:
    fold eval-mode BatchNorm in its dependent part (``engine.fold``)."""
    if model._forward_pre_hooks or model._forward_hooks:
        return "torch.fx would drop the model's forward hooks"
    nodes = list(traced.graph.nodes)
    drawn = _random(nodes)
    if drawn:
        return f"its forward draws random numbers ({drawn}): each point must draw its own"
    dep = _dependent(traced.graph, _owners(moved))
    if not any(n.op == "output" for n in dep):
        return "no moved tensor reaches the output"
    frontier = [
        n for n in nodes
        if n not in dep and n.op not in ("get_attr", "output") and any(u in dep for u in n.users)
    ]  # fmt: skip
    computed = [n for n in nodes if n not in dep and n.op.startswith("call_")]
    if not computed:
        return "the first operation moves: nothing to compute once"
    static_gm = fx.GraphModule(traced, _static_graph(nodes, dep, frontier))
    dynamic_gm = fx.GraphModule(traced, _dynamic_graph(nodes, dep, frontier))
    mutated = _mutated(frontier, dep)
    folded = 0
    if fold_bn:  # the dependent part with BatchNorm folded (engine.fold); frontier values are
        # its inputs, never a folded call's output, so no folded add writes into one
        from landscape.engine import fold

        done = fold.fold_batchnorm(dynamic_gm)
        dynamic_gm, folded = (
            (done.module, done.chains) if done.module is not None else (dynamic_gm, 0)
        )
    return Split(
        "graph",
        static=lambda centre, x: functional_call(static_gm, _subset(static_gm, centre), (x,)),
        dynamic=lambda point, front: functional_call(
            dynamic_gm,
            _subset(dynamic_gm, point),
            tuple(f.clone() if i in mutated else f for i, f in enumerate(front)),
        ),
        static_nodes=len(computed),
        figures={"frontier_values": len(frontier), "fused": folded},
    )


RANDOM = ("rand", "randn", "randint", "rand_like", "randn_like", "bernoulli", "multinomial",
          "normal", "poisson")  # fmt: skip


def _random(nodes: list[fx.Node]) -> str:
    """The first random operation of the graph (dropout in training mode included), or ''."""
    for n in nodes:
        name = getattr(n.target, "__name__", str(n.target)).rstrip("_")
        if n.op.startswith("call_") and name in RANDOM:
            return name
        if "dropout" in name and n.op != "call_module" and n.kwargs.get("training", False):
            return name
    return ""


def _static_graph(nodes: list[fx.Node], dep: set[fx.Node], frontier: list[fx.Node]) -> fx.Graph:
    """The static nodes, returning the frontier's values as a tuple."""
    graph, env = fx.Graph(), {}
    for n in nodes:
        if n not in dep and n.op != "output":
            env[n] = graph.node_copy(n, lambda a: env[a])
    graph.output(tuple(env[f] for f in frontier))
    return graph


def _dynamic_graph(nodes: list[fx.Node], dep: set[fx.Node], frontier: list[fx.Node]) -> fx.Graph:
    """The dependent nodes (and the static parameters they read), the frontier as inputs."""
    graph = fx.Graph()
    env = {f: graph.placeholder(f"frontier_{i}") for i, f in enumerate(frontier)}
    for n in nodes:
        wanted = n in dep or (n.op == "get_attr" and any(u in dep for u in n.users))
        if wanted and n not in env:
            env[n] = graph.node_copy(n, lambda a: env[a])
    return graph


def _mutated(frontier: list[fx.Node], dep: set[fx.Node]) -> set[int]:
    """The frontier values a dependent node writes in place (``x += y``, ``relu_``, an
    ``inplace`` module): copied at each point, so that the kept values stay those of θ."""
    out = set()
    for i, f in enumerate(frontier):
        for u in f.users:
            if u not in dep or not u.args or u.args[0] is not f:
                continue
            name = getattr(u.target, "__name__", str(u.target))
            inplace = name.endswith("_") or (name.startswith("i") and u.op == "call_function")
            if u.op == "call_module":
                inplace = bool(getattr(u.graph.owning_module.get_submodule(u.target), "inplace", 0))
            if inplace or u.kwargs.get("inplace"):
                out.add(i)
    return out


def _names(module: nn.Module) -> set[str]:
    return {
        n
        for n, _ in itertools.chain(
            module.named_parameters(remove_duplicate=False),
            module.named_buffers(remove_duplicate=False),
        )
    }


def _subset(module: nn.Module, point: Point) -> Point:
    """The tensors of ``point`` that ``module`` holds (functional_call refuses the others)."""
    names = module.__dict__.setdefault("_landscape_names", _names(module))
    return {k: v for k, v in point.items() if k in names}


# --- modules: the module tree ---------------------------------------------------------------


class _Stop(Exception):
    """Raised where the static pass ends: the first moved module is about to run."""


class _Replay(nn.Module):
    """Stands in for a static module: returns its output at θ for the batch being evaluated."""

    def __init__(self, outputs: dict[str, Any], path: str) -> None:
        super().__init__()
        self.outputs, self.path = outputs, path

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.outputs[self.path]


def _call_order(
    model: nn.Module, moved: set[str], x: torch.Tensor
) -> tuple[list[str], str, set[tuple[str, str]]]:
    """From one probe forward at the model's own tensors: the modules to replay (finished before
    the first module directly holding a moved tensor started, holding none, run once; the
    outermost of them), that first moved module's path, and the pairs of consecutive modules to
    replay where the second's first input is the first's output (a block feeding the next)."""
    paths = {m: p for p, m in model.named_modules()}
    holders = {p.rpartition(".")[0] for p in moved}
    ended: list[str] = []
    calls: dict[str, int] = {}
    first: list[str] = []
    ins: dict[str, Any] = {}
    outs: dict[str, Any] = {}

    def pre(m: nn.Module, args: Any, kwargs: Any) -> None:
        p = paths[m]
        calls[p] = calls.get(p, 0) + 1
        ins.setdefault(p, _lead(args) if args else _lead(tuple(kwargs.values())))
        if p in holders and not first:
            first.append(p)

    def post(m: nn.Module, _args: Any, out: Any) -> None:
        if not first:
            ended.append(paths[m])
            outs.setdefault(paths[m], _lead(out))

    handles = [m.register_forward_pre_hook(pre, with_kwargs=True) for m in paths]
    handles += [m.register_forward_hook(post) for m in paths]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    owners = _owners(moved)
    static = {p for p in ended if p and p not in owners and calls.get(p) == 1}
    outer = [p for p in ended if p in static and p.rpartition(".")[0] not in static]
    fed = {(a, b) for a, b in itertools.pairwise(outer) if _fed(outs.get(a), ins.get(b))}
    return outer, (first[0] if first else ""), fed


def _lead(value: Any) -> Any:
    """The first tensor of a module's inputs or output (a tensor, or the first of a tuple)."""
    while isinstance(value, (tuple, list)) and value:
        value = value[0]
    return value if isinstance(value, torch.Tensor) else None


def _fed(output: Any, given: Any) -> bool:
    return output is not None and given is output


def _replaced(model: nn.Module, stand_ins: dict[str, nn.Module]) -> nn.Module:
    """A shallow copy of ``model`` with the modules at ``stand_ins``' paths replaced: every module
    on a path to one is copied with its own child table; the caller's model is not touched."""
    root = copy.copy(model)
    root._modules = dict(model._modules)
    copies = {"": root}
    for path in stand_ins:
        parts = path.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in copies:
                parent = copies[".".join(parts[: i - 1])]
                child = copy.copy(parent._modules[parts[i - 1]])
                child._modules = dict(child._modules)
                parent._modules[parts[i - 1]] = copies[prefix] = child
        copies[".".join(parts[:-1])]._modules[parts[-1]] = stand_ins[path]
    for private in copies.values():
        private.training = False  # the copies are private; the evaluator runs in eval mode
    return root


def module_split(model: nn.Module, moved: set[str]) -> Split:
    """The split by the module tree (the module docstring); which modules it replays is found on
    the first batch, where :class:`Unsplittable` says when there is none."""
    return _ModuleSplit(model, moved).split()


class _ModuleSplit:
    """The module-tree split, built on its first batch (the call order needs an input)."""

    def __init__(self, model: nn.Module, moved: set[str]) -> None:
        self.model, self.moved = model, moved
        self.replayed: list[str] | None = None
        self.first = ""
        self.outputs: dict[str, Any] = {}
        self.private: nn.Module | None = None

    def split(self) -> Split:
        made = Split("modules", self.static, self.dynamic, static_nodes=0)
        self.made = made
        return made

    def _prepare(self, centre: Point, x: torch.Tensor) -> None:
        replayed, self.first, fed = _call_order(self.model, self.moved, x[:1])
        if not self.first or not replayed:
            raise Unsplittable("the first module to run holds a moved tensor: nothing to reuse")
        self.replayed = replayed
        self.made.static_nodes = len(replayed)
        self.made.figures.update(replayed=replayed[-1], first_moved=self.first)
        self._stand_in(_runs_of_blocks(self.model, replayed, fed))
        if len(self.kept) < len(replayed) and not self._agrees(centre, x[:1]):
            self._stand_in({})  # plain code reads a block's output that a run hands on: keep all

    def _stand_in(self, runs: dict[str, str]) -> None:
        """The private copy: each replayed module returns its recorded output, a block in a run
        (:func:`_runs_of_blocks`) the run's last one; ``kept``: the outputs recorded."""
        assert self.replayed is not None
        self.kept = [p for p in self.replayed if p not in runs]
        stand_ins = {p: _Replay(self.outputs, runs.get(p, p)) for p in self.replayed}
        self.private = _replaced(self.model, stand_ins)
        self.aliases = _aliases(self.model, _names(self.private))

    def _agrees(self, centre: Point, x: torch.Tensor) -> bool:
        """The split's logits at θ on ``x`` are the model's (1e-6 relative)."""
        with torch.inference_mode():
            full = _lead(functional_call(self.model, centre, (x,)))
            mine = _lead(self.dynamic(centre, self.static(centre, x)))
        if full is None or mine is None or mine.shape != full.shape:
            return False
        return _relative_difference(mine, full) <= 1e-6

    def static(self, centre: Point, x: torch.Tensor) -> dict[str, Any]:
        """The replayed modules' outputs on batch ``x`` at θ; the pass stops where the first
        moved module would start."""
        if self.replayed is None:
            self._prepare(centre, x)
        assert self.replayed is not None
        kept: dict[str, Any] = {}
        wanted = set(self.kept)

        def record(m: nn.Module, _a: Any, out: Any) -> None:
            kept[paths[m]] = out

        def stop(_m: nn.Module, _a: Any) -> None:
            raise _Stop

        paths = {self.model.get_submodule(p): p for p in wanted}
        handles = [m.register_forward_hook(record) for m in paths]
        handles.append(self.model.get_submodule(self.first).register_forward_pre_hook(stop))
        try:
            functional_call(self.model, centre, (x,))
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return {**kept, "__x__": x}

    def dynamic(self, point: Point, frontier: dict[str, Any]) -> torch.Tensor:
        assert self.private is not None
        self.outputs.clear()
        self.outputs.update(frontier)
        given = _subset(self.private, point)
        for name, others in self.aliases.items():  # a tied tensor named by its replayed twin
            given.update((name, point[o]) for o in others[:1] if name not in given and o in point)
        return functional_call(self.private, given, (frontier["__x__"],))


def _runs_of_blocks(
    model: nn.Module, replayed: list[str], fed: set[tuple[str, str]]
) -> dict[str, str]:
    """For each replayed block of a ``ModuleList`` or ``Sequential`` whose output the next block
    of the same list takes next (``fed``, in the call order), the last block of that run:
    ``layers.0`` → ``layers.19`` when layers 0-19 are replayed. The next block is replayed and
    ignores its input, so only the run's last output is kept (plain code that read another
    would give other logits: ``_ModuleSplit._agrees`` finds that, and every output is kept)."""
    runs: dict[str, str] = {}
    for a, b in itertools.pairwise(replayed):
        parent, _, i = a.rpartition(".")
        other, _, j = b.rpartition(".")
        stack = isinstance(model.get_submodule(parent), (nn.ModuleList, nn.Sequential))
        if (a, b) in fed and parent == other and stack and i.isdigit() and j.isdigit():
            runs[a] = b
    for a in reversed(list(runs)):  # to the last block of each run
        runs[a] = runs.get(runs[a], runs[a])
    return runs


def _aliases(model: nn.Module, kept: set[str]) -> dict[str, list[str]]:
    """For each tensor name in ``kept``, the other names of the same tensor in ``model`` (tied
    weights: GPT-2's head is its token embedding, which the private copy replays)."""
    by_id: dict[int, list[str]] = {}
    for name, t in itertools.chain(
        model.named_parameters(remove_duplicate=False), model.named_buffers(remove_duplicate=False)
    ):
        by_id.setdefault(id(t), []).append(name)
    return {
        n: [o for o in names if o != n] for names in by_id.values() if len(names) > 1
        for n in names if n in kept
    }  # fmt: skip


class Unsplittable(Exception):
    """The module tree offers nothing to compute once."""


def frontier_bytes(frontier: Any) -> int:
    """Bytes of the tensors a frontier holds (nested tuples, lists, dicts, model outputs)."""
    if isinstance(frontier, torch.Tensor):
        return frontier.numel() * frontier.element_size()
    if isinstance(frontier, dict):
        return sum(frontier_bytes(v) for v in frontier.values())
    if isinstance(frontier, (tuple, list)):
        return sum(frontier_bytes(v) for v in frontier)
    values = getattr(frontier, "values", None)  # transformers' ModelOutput
    return frontier_bytes(list(values())) if callable(values) else 0


def frontier_rates(one: int, many: int, n: int) -> tuple[int, int]:
    """A frontier's bytes per sample and per batch, from its bytes on one sample (``one``) and on
    ``n`` samples (``many``): most of it grows with the samples, but a batch may also hold values
    of its own size whatever its samples (a position embedding, a rotary table, a mask):

        per_sample = (many − one) / (n − 1),    per_batch = one − per_sample
    """
    if n < 2:
        return one, 0
    per_sample = -(-max(0, many - one) // (n - 1))
    return per_sample, max(0, one - per_sample)


def frontier_need(per_sample: int, per_batch: int, total: int, batch: int) -> int:
    """Bytes of every batch's frontier, ``total`` samples in batches of ``batch``."""
    return per_sample * total + per_batch * -(-total // max(1, batch))


PROBE_SAMPLES = 8  # the check runs on this many samples


def probe(
    model: nn.Module,
    made: Split,
    centre: Point,
    directions: list[Point],
    x: torch.Tensor,
) -> dict[str, Any]:
    """The split checked and measured on one batch ``x``: ``check``, the largest relative
    difference from the full forward (at θ, at a moved point, at θ again: a frontier value
    written by the dependent part shows there); ``static_share``, the static part's FLOPs over the
    full forward's on one sample (:func:`_flops`: its linear and convolution layers); the
    frontier's bytes per sample and per batch (:func:`frontier_rates`); what the static part
    holds."""
    from landscape.engine.reference import eval_mode

    moved = {n: centre[n] + 0.5 * sum(d[n] for d in directions) for n in directions[0]}
    point = {**centre, **moved}
    with eval_mode(model), torch.inference_mode():
        few = x[:PROBE_SAMPLES]
        front = made.static(centre, few)
        check = 0.0
        for p in (centre, point, centre):
            full = functional_call(model, p, (few,))
            check = max(check, _relative_difference(made.dynamic(p, front), full))
        static = _flops(model, lambda: made.static(centre, x[:1]))
        whole = _flops(model, lambda: functional_call(model, centre, (x[:1],)))
        one = frontier_bytes(made.static(centre, x[:1]))
    per_sample, per_batch = frontier_rates(one, frontier_bytes(front), int(few.shape[0]))
    return {
        "check": float(f"{check:.2e}"),
        "static_share": round(min(1.0, static / max(whole, 1)), 3),
        "frontier_bytes_per_sample": per_sample,
        "frontier_bytes_per_batch": per_batch,
        "static_parts": made.static_nodes,
        **made.figures,
    }


def _relative_difference(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got − want| / max |want|, in float32 (0/0 read as 0)."""
    diff = (got.float() - want.float()).abs().max()
    return float(diff / want.float().abs().max().clamp_min(1e-30))


def _flops(model: nn.Module, call: Callable[[], Any]) -> int:
    """The multiply-adds (×2) of the layers with weights that ``call`` runs in ``model`` (linear
    and convolution layers: the bulk of a forward), counted by hooks on its leaf modules:
    deterministic, unlike a timing on a shared machine, and cheap on one sample.
    (``torch.utils.flop_counter`` would make a folder for inductor's cache: a library call
    writes no file.)"""
    total = [0]

    def hook(m: nn.Module, _args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += _layer_flops(m, out)

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        call()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def _layer_flops(m: nn.Module, out: torch.Tensor) -> int:
    """2 · products summed per output element: in_features for a linear layer, in_channels/groups ×
    kernel for a convolution, the input size for a transformers ``Conv1D`` (weight: in × out)."""
    w = getattr(m, "weight", None)
    if not isinstance(w, torch.Tensor) or w.ndim < 2 or isinstance(m, nn.Embedding):
        return 0
    if isinstance(m, nn.modules.conv._ConvNd):
        per = w[0].numel()
    elif isinstance(m, nn.Linear):
        per = int(w.shape[1])
    elif w.ndim == 2 and out.shape[-1] == w.shape[1]:
        per = int(w.shape[0])
    else:
        return 0
    return 2 * out.numel() * per
