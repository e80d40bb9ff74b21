"""The training step of a learned-widths dense network as one autograd node.

Why: the jet model's training step is dominated by per-operation overhead, not arithmetic
(4,256 multiply-accumulates per sample). Learned widths add a quantizer call with its own
autograd node, C loop and bookkeeping on every weight and activation — 16 nodes per step on the
jet model, plus the autograd engine walking them — which left learned training at ~0.55-0.6x the
speed of Q6 QAT. A chain of learned input/activation quantizers and dense layers (what
``jet_dnn`` and ``mlp`` are under the ``learned`` plan) is run here forward and backward by hand
inside a single :class:`torch.autograd.Function`: the same C loops and matrix products, the same
formulas (``learned_ops``), without the graph in between. Values and gradients equal the layer
by layer path exactly (tests/test_learned_chain.py compares every parameter's gradient).

What qualifies (:func:`chain_for`): a ``QSequential`` whose children up to the last dense layer
are ``QInput``/``QActivation`` layers holding a learned quantizer with trainable integer bits
(``int_bits="learned"``, the ``learned`` plan's default) and ``QDense`` layers whose kernel and
bias quantizers are learned (a float bias is fine) and whose fused activation is absent or such
a learned quantizer; and the compiled C loops must be there. Anything else trains layer by layer.
The chain is re-checked on every call (a handful of identity tests), so editing the model
(``set_quantizer``) simply turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .chain_walk import dense_chain_stage, leading_stages, slots_intact
from .ebops import DEFAULT_INPUT_BITS, FLOAT_BITS, _is_mac
from .learned_base import LearnedFixedPoint
from .learned_ops import (_reduce_to, _round_weights, _weight_frac_grad, sat_round_backward,
                          sat_round_forward)
from .native import kernels

__all__ = ["LearnedChain", "chain_for", "fused_ebops"]


@dataclass(frozen=True)
class _Act:
    """A learned activation/input quantizer held in ``layer._modules[slot]``."""

    layer: nn.Module
    q: LearnedFixedPoint

    def checks(self) -> list[tuple[dict, str, Any]]:
        """``(slots, name, quantizer)``: the chain holds while ``slots.get(name) is quantizer``."""
        return [(self.layer._modules, "activation", self.q)]


@dataclass(frozen=True)
class _Dense:
    """A dense layer with learned kernel (and learned or float bias), and its fused activation."""

    layer: nn.Module
    kq: LearnedFixedPoint
    bq: LearnedFixedPoint | None
    act: LearnedFixedPoint | None

    def checks(self) -> list[tuple[dict, str, Any]]:
        m = self.layer._modules
        return [(m, "kernel_quantizer", self.kq), (m, "bias_quantizer", self.bq),
                (m, "activation", self.act)]


def _saturating(q: Any) -> bool:
    """A learned data quantizer with trainable integer bits (the chain's activation kind)."""
    return isinstance(q, LearnedFixedPoint) and q.role == "data" and q.int_bits == "learned" \
        and q.materialized


def _learned_weight(q: Any) -> bool:
    return isinstance(q, LearnedFixedPoint) and q.role == "weight" and q.materialized


def _stage(layer: nn.Module) -> Any:
    return dense_chain_stage(layer, _saturating, _learned_weight, _Act, _Dense)


class LearnedChain:
    """The fused training forward of a model's leading chain (see the module docstring).

    ``chain(x)`` returns what the chain's layers would return (the logits of ``jet_dnn``); the
    model then applies whatever follows the chain. Each learned quantizer's ``_last_bits`` is set
    from the node's outputs, so the EBOPs penalty sees the same differentiable widths as after a
    layer-by-layer forward.
    """

    def __init__(self, stages: list[_Act | _Dense], length: int, covers_macs: bool,
                 watch: list | None = None) -> None:
        self.stages = stages
        #: Number of the model's leading children the chain replaces.
        self.length = length
        #: True when every MAC layer of the model is in the chain: then the EBOPs the node
        #: counts are the model's (:func:`fused_ebops`).
        self.covers_macs = covers_macs
        #: True when the first dense layer reads the float model input (its widths are then the
        #: penalty's ``input_bits``; the node counts them as ``DEFAULT_INPUT_BITS``).
        self.reads_float_input = isinstance(stages[0], _Dense)
        #: The EBOPs of the last training forward, until the penalty takes them.
        self.pending: torch.Tensor | None = None
        #: What the backward needs to know of each stage, as plain data: ("act", signed) or
        #: ("dense", signed of its fused activation, None without one).
        self.plan = tuple(("act", st.q.signed) if isinstance(st, _Act)
                          else ("dense", None if st.act is None else st.act.signed)
                          for st in stages)
        self._constants: dict[tuple, torch.Tensor] = {}
        #: The quantizers whose widths the node returns, in its order (fixed while intact).
        self.owners = self.widths_owners()
        self._checks = [check for st in stages for check in st.checks()] + list(watch or [])

    def constant(self, value: float, n: int) -> torch.Tensor:
        """Widths of a float operand (``n`` elements of ``value`` bits), made once."""
        key = (value, n)
        if key not in self._constants:
            self._constants[key] = torch.full((n,), float(value))
        return self._constants[key]

    def intact(self) -> bool:
        """True while every quantizer is still the one the chain was built on (runs every
        training step: a flat list of identity checks)."""
        return slots_intact(self._checks)

    def params(self) -> list[torch.Tensor | None]:
        """The node's tensor inputs after ``x``, in stage order (None for an absent bias)."""
        out: list[torch.Tensor | None] = []
        for st in self.stages:
            if isinstance(st, _Act):
                out += [st.q._parameters["f"], st.q._parameters["i"]]
                continue
            bias = st.layer.bias
            out += [st.layer.weight, st.kq._parameters["f"], bias,
                    None if st.bq is None else st.bq._parameters["f"]]
            if st.act is not None:
                out += [st.act._parameters["f"], st.act._parameters["i"]]
        return out

    def widths_owners(self) -> list[LearnedFixedPoint]:
        """The quantizers whose widths the node returns, in the order it returns them."""
        owners: list[LearnedFixedPoint] = []
        for st in self.stages:
            if isinstance(st, _Act):
                owners.append(st.q)
            else:
                owners += [st.kq] + ([st.bq] if st.bq is not None else [])
                owners += [st.act] if st.act is not None else []
        return owners

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        """The chain's output, or None when an operand is not a float32 CPU tensor — the only
        kind the C loops read (a model moved to a GPU or to float64): the caller then runs the
        layers, which choose their own path per tensor."""
        params = self.params()
        if not all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu")
                   for t in (x, *params)):
            return None
        out = _ChainFunction.apply(self, x.contiguous(), *params)
        self.pending = out[1]
        for q, width in zip(self.owners, out[2:]):
            q.__dict__["_last_bits"] = width
        return out[0]


def chain_for(model: nn.Module) -> LearnedChain | None:
    """The fused chain of ``model``'s leading children, or None when they do not qualify."""
    if kernels() is None:
        return None
    lead = leading_stages(model, _stage, lambda st: isinstance(st, _Dense))
    if lead is None:
        return None
    return LearnedChain(lead.stages, lead.length,
                        covers_macs=not any(_is_mac(layer) for layer in lead.rest), watch=lead.watch)


def fused_ebops(model: nn.Module, input_bits: float) -> torch.Tensor | None:
    """The differentiable EBOPs the fused chain counted in ``model``'s last training forward
    (taken once), when they are the whole model's at ``input_bits``; None otherwise (the
    penalty then counts layer by layer — the same number, tests/test_learned_chain.py)."""
    chain = model.__dict__.get("_chain")
    if not isinstance(chain, LearnedChain) or chain.pending is None or not chain.covers_macs:
        return None
    if chain.reads_float_input and float(input_bits) != DEFAULT_INPUT_BITS:
        return None
    value, chain.pending = chain.pending, None
    return value


def _as_input_widths(width: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """An activation's widths as the next layer's per-element input widths, without the node's
    output itself (an alias without grad_fn: see :func:`_act_forward`)."""
    alias = width.detach()
    return alias if alias.shape == shape else alias.expand(shape)


def _act_forward(q: LearnedFixedPoint, h: torch.Tensor, f: torch.Tensor, i: torch.Tensor,
                 saved: list) -> tuple[torch.Tensor, torch.Tensor]:
    q._init_integer(h)  # the first training batch sets the integer bits, as the layer path does
    hq, width, state = sat_round_forward(kernels(), h, f, i, q.signed)
    # ``width`` is an output of the node: keep an alias without its grad_fn, or the node would
    # hold itself alive through it (a reference cycle the garbage collector cannot see)
    saved.append((state[0], width.detach(), state[2], state[3]))
    return hq, width


class _ChainFunction(torch.autograd.Function):
    """Forward and backward of a :class:`LearnedChain` (inputs: the chain, ``x``, its params)."""

    @staticmethod
    def forward(ctx: Any, chain: LearnedChain, x: torch.Tensor, *params: torch.Tensor | None) -> tuple:  # type: ignore[override]
        saved: list = []  # per stage, in order: what its backward needs
        widths: list[torch.Tensor] = []
        # the EBOPs count's operands (layers' input, kernel, bias widths), as EbopsProgram reads
        # them, and for each layer the index of the width output its input widths are (-1: a
        # constant: the float input or a float dense output)
        in_sources: list[int] = []
        ebops, ebops_saved = 0.0, []  # the count (learned_ops' C loop) and (b_in, colsum(b_w))
        in_bits, in_source = None, -1
        h, k = x, 0
        lib = kernels()
        for st in chain.stages:
            if isinstance(st, _Act):
                h, width = _act_forward(st.q, h, params[k], params[k + 1], saved)
                in_bits, in_source = _as_input_widths(width, st.q._shape), len(widths)
                widths.append(width)
                k += 2
                continue
            w, fw, b, fb = params[k:k + 4]
            if in_bits is None:
                in_bits = chain.constant(DEFAULT_INPUT_BITS if not saved else FLOAT_BITS, w.shape[1])
            in_sources.append(in_source)
            wq, width_w = _round_weights(w, fw, lib)
            widths.append(width_w)
            if fb is not None:
                bq, width_b = _round_weights(b, fb, lib)
                widths.append(width_b)
            else:
                bq, width_b = b, None
            colsum = torch.empty(w.shape[1], dtype=w.dtype)
            in_bits = in_bits.contiguous()  # held: the C loop reads its memory
            ebops += lib.hq_dense_ebops(
                in_bits.data_ptr(), width_w.data_ptr(), w.shape[0], w.shape[1],
                None if fb is None else width_b.data_ptr(), 0 if fb is None else b.numel(),
                colsum.data_ptr())
            ebops_saved += [in_bits, colsum]
            y = torch.addmm(bq, h, wq.t()) if bq is not None else torch.mm(h, wq.t())
            # widths are outputs of the node: aliases without grad_fn (see _act_forward)
            saved.append((h, wq, width_w.detach(), bq, None if width_b is None else width_b.detach()))
            h, k = y, k + 4
            in_bits, in_source = None, -1  # a dense output without quantizer is float
            if st.act is not None:
                h, width = _act_forward(st.act, h, params[k], params[k + 1], saved)
                in_bits, in_source = _as_input_widths(width, st.act._shape), len(widths)
                widths.append(width)
                k += 2
        ctx.set_materialize_grads(False)  # unused outputs (widths) send None, not zeros
        ctx.out_shape, ctx.out_dtype = h.shape, h.dtype
        # plain data only on ctx: a module or an output kept here would tie the graph into a
        # reference cycle through C++ that the garbage collector cannot free (a leak per step)
        ctx.plan, ctx.saved, ctx.params = chain.plan, saved, params
        ctx.ebops = (ebops_saved, in_sources, [t.shape for t in widths])
        return (h, torch.scalar_tensor(ebops, dtype=torch.float32), *widths)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor, grad_ebops: torch.Tensor | None,  # type: ignore[override]
                 *grad_widths: torch.Tensor | None) -> tuple:
        saved, params = ctx.saved, ctx.params
        ebops_saved, in_sources, width_shapes = ctx.ebops
        # the EBOPs count's gradient (the penalty's): d/d b_w(j, i) = b_in(i) * g_e,
        # d/d b_b = g_e, d/d b_in = colsum(b_w) * g_e — handed to the loops below compactly
        g_e = None if grad_ebops is None else float(grad_ebops)
        act_gw: dict[int, torch.Tensor] = {}  # width index -> colsum(b_w) of the layer it feeds
        if grad_out is None:  # only the widths were used (a cost-only loss)
            grad_out = torch.zeros(ctx.out_shape, dtype=ctx.out_dtype)
        grads: list[torch.Tensor | None] = [None] * len(params)
        # walk the stages backwards; ``k`` indexes params, ``s`` saved entries, ``j`` widths,
        # ``layer`` the dense layers
        k, s, j, layer = len(params), len(saved), len(grad_widths), len(in_sources)
        g = grad_out
        lib = kernels()
        plan = ctx.plan
        carried = None  # grad.sum(0) below an activation, from its own pass: a dense bias gradient
        for p in reversed(range(len(plan))):
            kind, signed = plan[p]
            if kind == "act" or signed is not None:
                k, s, j = k - 2, s - 1, j - 1
                gw, scale = grad_widths[j], 1.0
                colsum = act_gw.pop(j, None)  # this width is the next layer's b_in
                if colsum is not None and gw is None and colsum.shape == width_shapes[j]:
                    gw, scale = colsum, g_e  # the C loop scales it: no tensor op here
                elif colsum is not None:
                    gw = _sum(gw, colsum * g_e, width_shapes[j])
                # a plain dense layer right below: its bias gradient is this pass's column sums
                feeds_bias = kind == "dense" or (p > 0 and plan[p - 1] == ("dense", None))
                carried = torch.empty(saved[s][0].shape[1:]) if feeds_bias else None
                gx, grads[k], grads[k + 1] = sat_round_backward(
                    saved[s], params[k], params[k + 1], signed, g, gw, scale, carried)
                if kind == "act":  # nothing before the model input's quantizer needs it
                    g = gx if (s > 0 or ctx.needs_input_grad[1]) else None
                    continue
                g = gx
            k, s, layer = k - 4, s - 1, layer - 1
            h, wq, width_w, bq, width_b = saved[s]
            w, fw, b, fb = params[k:k + 4]
            in_bits, colsum = ebops_saved[2 * layer], ebops_saved[2 * layer + 1]
            grad_b = (carried if carried is not None else g.sum(0)) if b is not None else None
            carried = None
            if fb is not None:
                j -= 1
                grads[k + 2] = grad_b
                grads[k + 3] = _weight_frac_grad(grad_b, grad_widths[j], b, bq, width_b, fb.shape,
                                                 None, g_e, lib)
            elif b is not None:
                grads[k + 2] = grad_b
            j -= 1
            grad_w = g.t().mm(h)
            grads[k] = grad_w
            grads[k + 1] = _weight_frac_grad(grad_w, grad_widths[j], w, wq, width_w, fw.shape,
                                             in_bits, g_e, lib)
            if g_e is not None and in_sources[layer] >= 0:
                act_gw[in_sources[layer]] = colsum
            g = g.mm(wq) if (s > 0 or ctx.needs_input_grad[1]) else None
        return (None, g, *grads)


def _sum(a: torch.Tensor | None, b: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
    """``a + b`` where either may be absent; ``b`` (per element) summed to ``shape``."""
    if b is not None:
        b = _reduce_to(b, shape)
    if a is None:
        return b
    return a if b is None else a + b
