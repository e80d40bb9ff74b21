"""EBOPs (effective bit operations): the one definition, differentiable in the bit widths.

HGQ's hardware proxy for an FPGA multiply-accumulate layer ``y_j = b_j + sum_i w_ji x_i`` is

    EBOPs = sum over (j, i) of b_in(i) * b_w(j, i)  +  sum over j of b_b(j)

where ``b`` is the width of each element: ``b_w`` of every weight (0 for a weight that is zero, so
pruned weights cost nothing), ``b_in`` of every input element, ``b_b`` of every bias element. The
bias term is HGQ2's (``QDense._compute_ebops``: the mean bias width times the number of outputs,
i.e. one adder input per output and bias bit). Widths are counted as
:meth:`FixedPointGrid.bits` counts them — **sign bit included**, as hqrun.cost's EBOPs always
have. HGQ2 counts ``keep_negative + integer + fractional`` only for ``SAT`` quantizers; its
default weight (``SAT_SYM``) and activation (``WRAP``) quantizers leave the sign bit out, so
for signed operands hqrun's count is larger (``(b+1)(c+1)`` where HGQ2 counts ``b*c``); for
ReLU outputs (unsigned) the two agree.

Widths pass stateless layers by applying the layer to the width map (Flatten, ReLU, pooling);
an average pool over ``2**k`` values adds ``k`` bits (the firmware keeps ``k`` more fractional
bits after it), so a CNN's dense layer is priced on the widths it is built with.

Convolutions count one kernel instance (hqrun.cost's convention: the hardware is reused over
output positions): the layer's own padded convolution is evaluated on the width maps, summed,
and divided by the number of output positions; with uniform input widths and ``valid`` padding
that is exactly ``sum over non-zero kernel weights of b_in * b_w``. HGQ2, fully unrolled,
multiplies by the positions instead.

Who uses it: the trainer's cost penalty (``beta * EBOPs``, gradient flowing into the learned
widths) and, with widths taken from exported :class:`FixedPointGrid` s, hqrun.cost — so the two
numbers are one function of the same widths. torch only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .layer_kinds import layer_kind

__all__ = ["FLOAT_BITS", "DEFAULT_INPUT_BITS", "mac_ebops", "slot_bits", "trace_shapes",
           "model_ebops", "EbopsProgram", "EbopsReport"]

#: Width counted for a float operand (a slot without quantizer): float32.
FLOAT_BITS = 32
#: Width assumed for a float model input (no input quantizer), as hqrun.cost's default
#: ``quantized_bits(8,0,1)`` input assumption.
DEFAULT_INPUT_BITS = 8


def mac_ebops(mac: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], in_bits: torch.Tensor,
              kernel_bits: torch.Tensor, bias_bits: torch.Tensor | None = None) -> torch.Tensor:
    """EBOPs of one multiply-accumulate layer from its width tensors.

    Args:
        mac: the layer's linear map without bias, ``mac(x, kernel)`` (``layer.mac``: ``F.linear``
            for dense layers, the padded convolution for conv layers).
        in_bits: widths of one input sample (e.g. ``(in_features,)`` or ``(C, H, W)``).
        kernel_bits: widths of the kernel in the layer's (PyTorch) layout, 0 for zero weights.
        bias_bits: widths of the bias (0 for zero biases) or None.

    Returns a 0-d tensor (dtype of the inputs), differentiable in every width tensor.
    """
    if in_bits.dtype != kernel_bits.dtype:
        in_bits = in_bits.to(kernel_bits.dtype)
    if kernel_bits.dim() == 2 and in_bits.dim() == 1:  # dense: sum_j (W_b @ b_in)_j + sum b_b
        return _DenseEbops.apply(in_bits, kernel_bits, bias_bits)
    else:
        out = mac(in_bits.unsqueeze(0), kernel_bits)
        total = out.sum()
        positions = out[0, 0].numel()  # output positions per channel
        if positions != 1:
            total = total / positions
    if bias_bits is not None:
        total = total + bias_bits.sum()
    return total


class _DenseEbops(torch.autograd.Function):
    """The dense count ``sum_j sum_i b_w(j,i) b_in(i) + sum_j b_b(j)`` as one autograd node.

    ``F.linear(b_in, b_w).sum()`` written out: forward ``b_in . colsum(b_w)``; backward
    ``d b_in = g * colsum(b_w)``, ``d b_w(j, i) = g * b_in(i)``, ``d b_b = g``. The same number as
    the layer's own ``mac`` (tests check it) with a handful of ops instead of a chain of autograd
    nodes: the training penalty runs it every step.
    """

    @staticmethod
    def forward(ctx: Any, in_bits: torch.Tensor, kernel_bits: torch.Tensor,
                bias_bits: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        colsum = kernel_bits.sum(0)
        total = torch.dot(in_bits, colsum)
        if bias_bits is not None:
            total = total + bias_bits.sum()
        ctx.save_for_backward(in_bits, colsum)
        ctx.shapes = (kernel_bits.shape, None if bias_bits is None else bias_bits.shape)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:  # type: ignore[override]
        in_bits, colsum = ctx.saved_tensors
        kshape, bshape = ctx.shapes
        grad_in = colsum * grad if ctx.needs_input_grad[0] else None
        grad_k = (in_bits * grad).expand(kshape) if ctx.needs_input_grad[1] else None
        grad_b = grad.expand(bshape) if bshape is not None and ctx.needs_input_grad[2] else None
        return grad_in, grad_k, grad_b


def dense_chain_ebops(layout: tuple[bool, ...], operands: list[torch.Tensor] | tuple
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The dense count over a chain of layers, without autograd: ``(total, saved)``.

    ``operands``, per layer in order: input widths ``(in,)``, kernel widths ``(out, in)`` and,
    where ``layout`` says the layer has one, bias widths ``(out,)``. ``saved`` is what
    :func:`dense_chain_ebops_grads` needs. Shared by :class:`_DenseChainEbops` and the fused
    learned-widths chain (``learned_chain``), so both count with the same arithmetic.
    """
    total = None
    saved: list[torch.Tensor] = []
    k = 0
    for has_bias in layout:
        in_bits, kernel_bits = operands[k], operands[k + 1]
        colsum = kernel_bits.sum(0)
        term = torch.dot(in_bits, colsum)
        if has_bias:
            term = term + operands[k + 2].sum()
        total = term if total is None else total + term
        saved += [in_bits, colsum]
        k += 3 if has_bias else 2
    return total, saved


def dense_chain_ebops_grads(layout: tuple[bool, ...], saved: list[torch.Tensor] | tuple,
                            shapes: list[torch.Size], grad: torch.Tensor,
                            needs: tuple[bool, ...] | None = None) -> list[torch.Tensor | None]:
    """Gradients of :func:`dense_chain_ebops`'s total for each operand (``grad`` the total's):
    ``d b_in = grad * colsum(b_w)``, ``d b_w(j, i) = grad * b_in(i)``, ``d b_b = grad``."""
    grads: list[torch.Tensor | None] = []
    k = 0
    for layer, has_bias in enumerate(layout):
        in_bits, colsum = saved[2 * layer], saved[2 * layer + 1]
        wanted = [True] * 3 if needs is None else needs[k:k + 3]
        grads.append(colsum * grad if wanted[0] else None)
        grads.append((in_bits * grad).expand(shapes[k + 1]) if wanted[1] else None)
        if has_bias:
            grads.append(grad.expand(shapes[k + 2]) if wanted[2] else None)
        k += 3 if has_bias else 2
    return grads


class _DenseChainEbops(torch.autograd.Function):
    """:func:`dense_chain_ebops` as one autograd node.

    The training penalty runs this every step; one node instead of one per layer plus the
    additions between them is a measurable share of a learned-widths step on the jet model
    (bench/learned_throughput.py).
    """

    @staticmethod
    def forward(ctx: Any, layout: tuple[bool, ...], *operands: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total, saved = dense_chain_ebops(layout, operands)
        ctx.save_for_backward(*saved)
        ctx.layout = layout
        ctx.shapes = [t.shape for t in operands]
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:  # type: ignore[override]
        return (None, *dense_chain_ebops_grads(ctx.layout, ctx.saved_tensors, ctx.shapes, grad,
                                               ctx.needs_input_grad[1:]))


def slot_bits(q: nn.Module | None, shape: tuple[int, ...], value: torch.Tensor | None = None,
              dtype: torch.dtype = torch.float32,
              cache: dict[tuple, torch.Tensor] | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Per-element widths of a tensor of ``shape`` held by quantizer ``q``.

    Learned quantizers answer with ``q.bit_widths()`` (differentiable during training). Other
    quantizers with their fixed-point grid (``FixedPointGrid.bits``); one without a grid (data
    dependent scales) with ``q.bits``; no quantizer (float) with :data:`FLOAT_BITS`. ``value``
    (the quantized weights) zeroes the width of every zero element. ``cache`` (a dict kept by the
    caller, e.g. :class:`EbopsProgram` across training steps) keeps a fixed quantizer's widths,
    keyed by the quantizer, its spec and the dtype: they depend on nothing else, and building
    them from the grid every step cost more than the rest of the count (a plan mixing learned
    activations with QKeras kernels trained at half the speed of an all-learned one). Fixed
    widths are made on ``device`` (default: ``value``'s, else the CPU), so they meet the learned
    ones of a model on a GPU.
    """
    fn = getattr(q, "bit_widths", None)
    if callable(fn):
        bits = fn()
        bits = bits if bits.dtype == dtype else bits.to(dtype)
    else:
        if device is None:
            device = value.device if value is not None else "cpu"
        key = (id(q), str(q), dtype, tuple(shape), str(device))
        bits = cache.get(key) if cache is not None else None
        if bits is None:
            bits = _fixed_bits(q, dtype).to(device).expand(shape)
            if cache is not None:
                cache[key] = bits
    if value is not None:
        bits = bits * (value != 0)
    return bits


def _fixed_bits(q: nn.Module | None, dtype: torch.dtype) -> torch.Tensor:
    """Widths of a non-learned quantizer: its grid's, else its ``bits``, else float."""
    grid_fn = getattr(q, "fixed_point_grid", None)
    grid = grid_fn() if callable(grid_fn) else None
    if grid is not None:
        return torch.as_tensor(grid.bits(), dtype=dtype)
    width = getattr(q, "bits", FLOAT_BITS) if q is not None else FLOAT_BITS
    return torch.tensor(float(width), dtype=dtype)


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (the CPU for a model without any): the count's
    constants are made there, so they meet the widths of a model on a GPU."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def trace_shapes(model: nn.Module) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Child name -> (input shape, output shape) of one sample, from a dry run on zeros.

    Runs in eval mode without gradient (no statistics or ranges move); modes are restored.
    """
    input_shape = getattr(model, "input_shape", None)
    if input_shape is None:
        raise ValueError("model_ebops needs model.input_shape (hqrun's QSequential sets it).")
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    modes = {m: m.training for m in model.modules()}
    x = torch.zeros((1, *input_shape), device=model_device(model))
    try:
        model.eval()
        with torch.no_grad():
            for name, child in model.named_children():
                y = child(x)
                shapes[name] = (tuple(x.shape[1:]), tuple(y.shape[1:]))
                x = y
    finally:
        for m, mode in modes.items():
            m.training = mode
    return shapes


@dataclass
class EbopsReport:
    """EBOPs of a model: total and per MAC layer (0-d tensors), and its kernels' zero count."""

    total: torch.Tensor
    layers: dict[str, torch.Tensor] = field(default_factory=dict)
    pruned: torch.Tensor | int = 0  # kernel elements of width 0 (zero weights, learned or not)
    weights: int = 0  # kernel elements in all MAC layers

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers, for metrics.json."""
        return {"ebops": float(self.total), "ebops_layers": {k: float(v) for k, v in self.layers.items()},
                "pruned_weights": int(self.pruned), "weights": int(self.weights)}


def _activation_quantizer(layer: nn.Module) -> nn.Module | None:
    slots = getattr(layer, "slots", None)
    if not callable(slots) or "activation" not in slots():
        return None
    q = layer.quantizer("activation")
    from .layers_core import is_quantizer

    return q if is_quantizer(q) else None


def _is_mac(layer: nn.Module) -> bool:
    slots = getattr(layer, "slots", None)
    return callable(getattr(layer, "mac", None)) and callable(slots) and "kernel" in slots()


def _stateless(layer: nn.Module) -> bool:
    """No parameters and no buffers: applying it to a width map changes nothing it keeps."""
    return next(layer.parameters(), None) is None and next(layer.buffers(), None) is None


def _weight_bits(layer: nn.Module, slot: str, dtype: torch.dtype,
                 cache: dict[tuple, torch.Tensor] | None = None) -> torch.Tensor | None:
    q = layer.quantizer(slot)
    if callable(getattr(q, "bit_widths", None)):
        bits = q.bit_widths()  # learned: zero codes already have width 0
        return bits if bits.dtype == dtype else bits.to(dtype)
    with torch.no_grad():
        value = layer.quantized_kernel() if slot == "kernel" else layer.quantized_bias()
    if value is None:
        return None
    return slot_bits(q, tuple(value.shape), value.detach(), dtype, cache)


def _widening(layer: nn.Module) -> float:
    """Bits an average pool adds: the mean of ``2**k`` values keeps ``k`` more fractional bits,
    which is the type the firmware builds after it (``typeinfer``'s pooling output, the
    ``avgpool2d`` IR node), so the next layer's multipliers are that much wider. 0 otherwise."""
    if layer_kind(layer) != "avgpool2d" or getattr(layer, "average_quantizer", None) is not None:
        return 0.0
    size = getattr(layer, "pool_size", None) or getattr(layer, "kernel_size", None) or 2
    area = math.prod(size) if isinstance(size, (tuple, list)) else int(size) ** 2
    return math.log2(area)


@dataclass
class _Step:
    """One child of the model as the count sees it (decided once per model)."""

    name: str
    layer: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kind: str  # "mac" | "quantizer" (sets the widths) | "apply" (maps them) | "unknown"
    act: nn.Module | None
    has_bias: bool = False
    widening: float = 0.0  # bits the layer adds to the widths passing it (average pooling)


class EbopsProgram:
    """The count of :func:`model_ebops`, prepared once for a model (structure and shapes), so a
    training step pays only for the arithmetic."""

    def __init__(self, model: nn.Module,
                 shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None) -> None:
        shapes = shapes if shapes is not None else trace_shapes(model)
        self.input_shape = tuple(model.input_shape)
        self._model = model  # asked for its device on every count (it may move)
        self._input_bits: dict[tuple, torch.Tensor] = {}
        self._fixed: dict[tuple, torch.Tensor] = {}  # fixed quantizers' widths (slot_bits cache)
        self._chain: bool | None = None  # dense_chain, decided on the first total()
        self.steps: list[_Step] = []
        for name, layer in model.named_children():
            in_shape, out_shape = shapes[name]
            act = _activation_quantizer(layer)
            if _is_mac(layer):
                kind = "mac"
            elif act is not None:
                kind = "quantizer"
            elif _stateless(layer):
                kind = "apply"
            else:
                kind = "unknown"
            self.steps.append(_Step(name, layer, in_shape, out_shape, kind, act,
                                    kind == "mac" and "bias" in layer.slots(),
                                    _widening(layer) if kind == "apply" else 0.0))

    @property
    def dense_chain(self) -> bool:
        """True when every MAC layer is dense on flat inputs: then :meth:`total` counts the whole
        model in one autograd node."""
        return all(len(st.in_shape) == 1 and getattr(st.layer, "weight", None) is not None
                   and st.layer.weight.dim() == 2 for st in self.steps if st.kind == "mac")

    def _macs(self, input_bits: float, dtype: torch.dtype
              ) -> Iterator[tuple[_Step, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """``(step, input widths, kernel widths, bias widths)`` of every MAC layer in order.

        The widths entering a MAC layer are those of the last quantizer the data passed; layers
        between without quantizer and state map the width map itself; anything else makes
        them unknown (float)."""
        device = model_device(self._model)
        bits: torch.Tensor | None = self._input_constant(input_bits, dtype, device)
        for st in self.steps:
            if st.kind == "mac":
                b_in = bits if bits is not None else self._float_constant(st.in_shape, dtype, device)
                if b_in.shape != st.in_shape:
                    b_in = b_in.reshape(st.in_shape)
                kb = _weight_bits(st.layer, "kernel", dtype, self._fixed)
                bb = _weight_bits(st.layer, "bias", dtype, self._fixed) if st.has_bias else None
                yield st, b_in, kb, bb
                bits = (slot_bits(st.act, st.out_shape, dtype=dtype, cache=self._fixed, device=device)
                        if st.act is not None else None)
            elif st.kind == "quantizer":
                bits = slot_bits(st.act, st.out_shape, dtype=dtype, cache=self._fixed, device=device)
            elif st.kind == "apply" and bits is not None:
                bits = st.layer(bits.reshape(st.in_shape).unsqueeze(0))[0]  # Flatten, ReLU, pooling
                if st.widening:
                    bits = torch.where(bits > 0, bits + st.widening, bits)
            else:
                bits = None  # e.g. a float batch norm: the widths after it are not known here

    def total(self, input_bits: float = DEFAULT_INPUT_BITS) -> torch.Tensor:
        """The differentiable float32 total only — the training penalty's hot path. The same
        number as ``self(input_bits, count_pruned=False).total`` (tests compare them), counted in
        one autograd node for dense chains; other models take the general count."""
        if self._chain is None:
            self._chain = self.dense_chain
        if not self._chain:
            return self(input_bits, count_pruned=False).total
        operands: list[torch.Tensor] = []
        layout: list[bool] = []
        for _st, b_in, kb, bb in self._macs(input_bits, torch.float32):
            operands += [b_in, kb] + ([bb] if bb is not None else [])
            layout.append(bb is not None)
        if not layout:
            return torch.zeros((), dtype=torch.float32, device=model_device(self._model))
        return _DenseChainEbops.apply(tuple(layout), *operands)

    def _input_constant(self, input_bits: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The float model input's widths: one constant per width, dtype and device, not one per
        step."""
        key = (float(input_bits), dtype, str(device))
        if key not in self._input_bits:
            self._input_bits[key] = torch.full(self.input_shape, key[0], dtype=dtype, device=device)
        return self._input_bits[key]

    def _float_constant(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = ("float", tuple(shape), dtype, str(device))
        if key not in self._fixed:
            self._fixed[key] = torch.full(shape, float(FLOAT_BITS), dtype=dtype, device=device)
        return self._fixed[key]

    def __call__(self, input_bits: float = DEFAULT_INPUT_BITS, dtype: torch.dtype = torch.float32,
                 count_pruned: bool = True) -> EbopsReport:
        layers: dict[str, torch.Tensor] = {}
        pruned: torch.Tensor | int = 0
        n_weights = 0
        for st, b_in, kb, bb in self._macs(input_bits, dtype):
            layers[st.name] = mac_ebops(st.layer.mac, b_in, kb, bb)
            if count_pruned:
                pruned = pruned + int((kb.detach() == 0).sum())
                n_weights += kb.numel()
        total = sum(layers.values()) if layers else torch.zeros((), dtype=dtype, device=model_device(self._model))
        return EbopsReport(total=total, layers=layers, pruned=pruned, weights=n_weights)


def model_ebops(model: nn.Module, input_bits: float = DEFAULT_INPUT_BITS,
                shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
                dtype: torch.dtype = torch.float32) -> EbopsReport:
    """EBOPs of every multiply-accumulate layer of an hqrun model (children in order).

    The widths entering a MAC layer are those of the last quantizer the data passed (the input
    quantizer, an activation layer's or a layer's fused activation quantizer); layers between
    without a quantizer and without state (Flatten, a float ReLU, pooling) are applied to the
    width map itself; after anything else (a float batch norm) the widths are unknown and count
    as float. A float model input counts ``input_bits`` per element, other float operands
    :data:`FLOAT_BITS`. Differentiable in learned widths after a training-mode forward pass (the
    trainer's penalty calls it right after the forward); in eval mode it is the exact count of
    the deployed model. ``shapes`` (from :func:`trace_shapes`) may be passed to skip the dry run;
    :class:`EbopsProgram` keeps the whole preparation for repeated counts.
    """
    return EbopsProgram(model, shapes)(input_bits, dtype)
