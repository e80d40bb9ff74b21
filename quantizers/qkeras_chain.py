"""The training step of a QKeras-quantized dense network as one autograd node.

Why: the jet model's step is dominated by per-operation overhead, not arithmetic (4,256
multiply-accumulates per sample). Layer by layer, a Q6 step builds about twenty autograd nodes
(each weight's rounding, each ReLU's clip, residue and subtraction, the products) and walks them
back; a quantized ReLU alone is three passes over the batch forward (hardtanh, C residue,
subtraction) and hardtanh's backward. Here a chain of dense layers and element-wise quantizers —
``jet_dnn`` and ``mlp`` under every QKeras plan, and the search's deployable menu — runs forward
and backward by hand inside one :class:`torch.autograd.Function`: one C loop per quantized ReLU
each way, one per fast weight rounding, the same matrix products. Values and gradients are the
layer path's bit for bit (tests/test_qkeras_chain.py compares the loss and every gradient).

What qualifies (:func:`chain_for`): a ``QSequential`` whose children up to its last dense layer
are ``QInput``/``QActivation`` layers (float pass-through, or an element-wise quantizer of the
kinds below) and ``QDense`` layers whose kernel quantizer (and bias quantizer, when present) is
*straight-through* (:attr:`Quantizer.straight_through`: gradient exactly 1, deterministic) and
whose fused activation is absent or of the kinds below. Activations: a ``quantized_relu`` with a
fast path (QKeras's clipped straight-through ReLU) or a straight-through quantizer. Anything else
(stochastic rounding, ``qnoise_factor``, ``quantized_tanh``, float ReLUs, convolutions) ends the
chain; a model whose first dense layer does not qualify trains layer by layer. The compiled C loops
(``native``) must be there. The chain is re-checked on every call (identity tests), so editing the
model (``set_quantizer``) simply turns it off.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import Quantizer
from .chain_walk import dense_chain_stage, leading_stages, slots_intact
from .native import kernels
from .relu import quantized_relu

__all__ = ["QKerasChain", "chain_for"]


def _straight_through(q: Any) -> bool:
    return isinstance(q, Quantizer) and q.straight_through


def _elementwise_ok(q: Any) -> bool:
    """An activation the node runs: a fast quantized ReLU or a straight-through quantizer."""
    if isinstance(q, quantized_relu):
        return q.clipped_ste_constants() is not None
    return _straight_through(q)


def _relu_constants(q: Any) -> tuple | None:
    """The C loops' constants of a fast quantized ReLU; None for a straight-through quantizer."""
    return q.clipped_ste_constants() if isinstance(q, quantized_relu) else None


@dataclass(frozen=True)
class _Act:
    """An element-wise quantizer held in ``layer._modules["activation"]`` (QInput/QActivation)."""

    layer: nn.Module
    q: Quantizer

    @property
    def relu(self) -> tuple | None:
        return _relu_constants(self.q)


@dataclass(frozen=True)
class _Dense:
    """A dense layer with straight-through kernel (and bias) quantizers, and its activation."""

    layer: nn.Module
    kq: Quantizer
    bq: Quantizer | None
    act: Quantizer | None

    @property
    def kernel_transposed(self) -> bool:
        """True when the kernel quantizer sees the Keras layout (per-channel scales)."""
        from .layers_core import is_elementwise

        return not is_elementwise(self.kq)


def _stage(layer: nn.Module) -> Any:
    return dense_chain_stage(layer, _elementwise_ok, _straight_through, _Act, _Dense)


def _is_dense(st: Any) -> bool:
    return isinstance(st, _Dense)


class QKerasChain:
    """The fused training forward of a model's leading chain (see the module docstring).

    ``chain(x)`` returns what the chain's layers would return; the model applies what follows.
    """

    def __init__(self, stages: list[_Act | _Dense], length: int, watch: list | None = None) -> None:
        self.stages = stages
        #: Number of the model's leading children the chain replaces.
        self.length = length
        self._checks = list(watch or [])
        self._param_slots = [st.layer._parameters for st in stages if isinstance(st, _Dense)]
        #: The fast quantized_bits weights, rounded in one C call per step (None: fewer than 2).
        self.weight_batch = _WeightBatch.of(stages)
        #: The forward's program, resolved once (the quantizers cannot change while intact):
        #: ("act", quantizer, ReLU constants or None) and
        #: ("dense", kernel quantizer, kernel transposed, bias quantizer, activation, its constants)
        self.program = tuple(
            ("act", st.q, st.relu) if isinstance(st, _Act) else
            ("dense", st.kq, st.kernel_transposed, st.bq, st.act,
             None if st.act is None else _relu_constants(st.act))
            for st in stages)
        for st in stages:
            m = st.layer._modules
            if isinstance(st, _Act):
                self._checks.append((m, "activation", st.q))
            else:
                self._checks += [(m, "kernel_quantizer", st.kq), (m, "bias_quantizer", st.bq),
                                 (m, "activation", st.act)]

    def intact(self) -> bool:
        """True while every quantizer is still the one the chain was built on."""
        return slots_intact(self._checks)

    def params(self) -> list[torch.Tensor | None]:
        """The node's tensor inputs after ``x``: each dense layer's weight and bias (or None).
        Read from the layers' parameter dicts on every call (a parameter may be replaced)."""
        out: list[torch.Tensor | None] = []
        for slots in self._param_slots:
            out += [slots["weight"], slots.get("bias")]
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        """The chain's output, or None when an operand is not a float32 CPU tensor or the input
        is not a batch of vectors (the caller then runs the layers)."""
        params = self.params()
        f32 = torch.float32
        if x.dim() != 2 or not all(t is None or (t.dtype is f32 and t.is_cpu) for t in (x, *params)):
            return None
        return _ChainFunction.apply(self, x.contiguous(), *params)


def chain_for(model: nn.Module) -> QKerasChain | None:
    """The fused chain of ``model``'s leading children, or None when they do not qualify."""
    if kernels() is None:
        return None
    lead = leading_stages(model, _stage, _is_dense)
    return None if lead is None else QKerasChain(lead.stages, lead.length, lead.watch)


class _WeightBatch:
    """The chain's weights whose quantizers take quantized_bits's fast path, rounded in one C
    call per step (``hq_bits_value_many``) into one buffer, handed out as views of it: the same
    values as each quantizer's ``training_value``, without a call and an allocation per tensor
    (measured: ~30 µs -> ~12 µs per jet step)."""

    def __init__(self, members: list[tuple[int, Any, torch.Size]]) -> None:
        self.index = [k for k, _, _ in members]  # positions in ``QKerasChain.params()``
        self.quantizers = [q for _, q, _ in members]
        self.shapes = [shape for _, _, shape in members]
        sizes = [int(shape.numel()) for shape in self.shapes]
        offsets = [sum(sizes[:j]) for j in range(len(sizes))]
        self.views = [(shape, _contiguous_strides(shape), offset)
                      for shape, offset in zip(self.shapes, offsets)]
        self.total = sum(sizes)
        self._sizes = (ctypes.c_int64 * len(sizes))(*sizes)
        self._consts = (ctypes.c_float * (4 * len(sizes)))(
            *[v for q in self.quantizers for v in q.fast_constants()])

    @staticmethod
    def of(stages: list) -> "_WeightBatch | None":
        from .bits import quantized_bits

        members: list[tuple[int, Any, torch.Size]] = []
        k = 0
        for st in stages:
            if not isinstance(st, _Dense):
                continue
            for q, p, pos in ((st.kq, st.layer.weight, k), (st.bq, st.layer.bias, k + 1)):
                if isinstance(q, quantized_bits) and p is not None and q.fast_constants() is not None:
                    members.append((pos, q, p.shape))  # elementwise: no transposed kernel
            k += 2
        return _WeightBatch(members) if len(members) > 1 else None

    def values(self, params: tuple, lib: Any) -> dict[int, torch.Tensor]:
        """Param position -> training value; empty when a tensor is not as built (shape,
        layout) or a quantizer is in eval mode (each then takes its own path)."""
        tensors = [params[k] for k in self.index]
        if not all(t.is_contiguous() and t.shape == s for t, s in zip(tensors, self.shapes)) \
                or not all(q.training for q in self.quantizers):
            return {}
        flat = torch.empty(self.total)
        ptrs = (ctypes.c_int64 * len(tensors))(*[t.data_ptr() for t in tensors])
        lib.hq_bits_value_many(len(tensors), ptrs, self._sizes, self._consts, flat.data_ptr())
        return {k: flat.as_strided(shape, stride, offset)
                for k, (shape, stride, offset) in zip(self.index, self.views)}


def _contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= int(n)
    return tuple(reversed(strides))


def _act_forward(q: Quantizer, relu: tuple | None, h: torch.Tensor, lib: Any) -> tuple[torch.Tensor, Any]:
    """The activation's value and what its backward needs: ``(pre-activation, upper)`` for a
    clipped ReLU, None for a straight-through quantizer (its gradient passes unchanged)."""
    if relu is None:
        return q.training_value(h), None
    h = h.contiguous()
    return q.c_value(lib, h), (h, relu[2])


class _ChainFunction(torch.autograd.Function):
    """Forward and backward of a :class:`QKerasChain` (inputs: the chain, ``x``, its params)."""

    @staticmethod
    def forward(ctx: Any, chain: QKerasChain, x: torch.Tensor, *params: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        lib = kernels()
        saved: list = []  # per stage, in order: what its backward needs
        h, k = x, 0
        batch = chain.weight_batch
        ready = batch.values(params, lib) if batch is not None else {}
        for op in chain.program:
            if op[0] == "act":
                h, keep = _act_forward(op[1], op[2], h, lib)
                saved.append(("act", keep))
                continue
            _, kq, transposed, bq_q, act, relu = op
            w, b = params[k], params[k + 1]
            k += 2
            wq = ready.get(k - 2)
            if wq is None:
                wq = kq.training_value(w.t()).t() if transposed else kq.training_value(w)
            bq = ready.get(k - 1)
            if bq is None:
                bq = b if b is None or bq_q is None else bq_q.training_value(b)
            y = torch.addmm(bq, h, wq.t()) if bq is not None else torch.mm(h, wq.t())
            saved.append(("dense", (h, wq, b is not None)))
            h = y
            if act is not None:
                h, keep = _act_forward(act, relu, h, lib)
                saved.append(("act", keep))
        # plain tensors only on ctx (no module, no output): nothing ties the graph into a cycle
        ctx.saved = saved
        return h

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:  # type: ignore[override]
        lib = kernels()
        saved = ctx.saved
        grads: list[torch.Tensor | None] = []  # reversed: bias, weight, bias, weight, ...
        g, fresh = grad_out, False  # fresh: g is a tensor this backward made (writable)
        for s in range(len(saved) - 1, -1, -1):
            kind, keep = saved[s]
            if kind == "act":
                if keep is not None and g is not None:  # the clipped ReLU's mask, in place
                    pre, upper = keep
                    if not fresh:  # autograd's tensor: not ours to write
                        g = g.clone(memory_format=torch.contiguous_format)
                    elif not g.is_contiguous():
                        g = g.contiguous()
                    lib.hq_relu_grad_(pre.data_ptr(), g.data_ptr(), upper, g.numel())
                    fresh = True
                continue
            h, wq, has_bias = keep
            grads.append(g.sum(0) if has_bias else None)
            grads.append(g.t().mm(h))
            g = g.mm(wq) if (s > 0 or ctx.needs_input_grad[1]) else None
            fresh = True
        return (None, g, *reversed(grads))
