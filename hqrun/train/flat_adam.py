"""Adam over parameters packed into one flat buffer per parameter group.

Why: torch's fused CPU Adam is one kernel, but around it every parameter costs Python and
dispatcher work per step (state lookups, a step counter and several small ``foreach`` ops that
run as one operation per tensor on the CPU), and so does QKeras's weight clip. A learned-widths
jet model has 24 parameter tensors — each fractional/integer-bit tensor is a parameter — so that
per-tensor work cost more than the update itself. Packing makes it one tensor per group: each
parameter's ``data`` becomes a view into its group's flat buffer, the optimizer updates the
flat buffer with the same fused kernel, and the model keeps
its own ``Parameter`` objects (state dicts, hooks, constraints and names are unchanged). Adam is
element-wise, so the updates are ``torch.optim.Adam``'s — the same kernel on the same numbers —
except that an element may round differently in its last bit where packing moves it between the
kernel's vector body and its scalar tail (tests/test_flat_adam.py: within 1e-6 relative).

Gradients stay ordinary per-parameter tensors (autograd hands them over without a copy);
``step`` gathers them into the group's flat gradient buffer with one ``cat`` and checks that every
parameter still points into the flat data (one whose ``data`` was replaced is copied back in and
re-attached), so nothing is ever silently left out of an update. One difference from
``torch.optim.Adam``: a parameter without a gradient in a step counts as a zero gradient (its
moments decay and it moves), where Adam would skip it; in a training step every parameter of
these models has a gradient.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

__all__ = ["FlatAdam"]


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The tensors' elements back to back in one new 1-D tensor (torch's C++ helper, which DDP
    uses for its buckets; a Python loop of reshapes where it is missing)."""
    fn = getattr(getattr(torch._C, "_nn", None), "flatten_dense_tensors", None)
    if fn is not None:
        return fn(tensors)
    return torch.cat([t.reshape(-1) for t in tensors])


class _Pack:
    """One flat buffer (a ``Parameter`` the optimizer sees) and the parameters viewing it."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        first = params[0]
        total = sum(p.numel() for p in params)
        flat = torch.empty(total, dtype=first.dtype, device=first.device)
        self.params = params
        self.spans: list[tuple[int, int]] = []
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                flat[offset:offset + n].copy_(p.detach().reshape(-1))
                self.spans.append((offset, n))
                offset += n
        self.master = nn.Parameter(flat)
        self.master.grad = torch.zeros_like(flat)
        for p, (offset, n) in zip(params, self.spans):
            p.data = flat[offset:offset + n].view_as(p)
        self.pointers = [p.data_ptr() for p in params]

    def drop_grads(self) -> None:
        for p in self.params:
            p.grad = None

    def gather(self) -> None:
        """Copy the parameters' gradients into the flat buffer (a missing one counts as zero),
        and re-attach any parameter whose ``data`` was replaced (taking its values)."""
        flat, grad = self.master.data, self.master.grad
        for k, p in enumerate(self.params):
            if p.data_ptr() != self.pointers[k]:
                offset, n = self.spans[k]
                with torch.no_grad():
                    flat[offset:offset + n].copy_(p.detach().reshape(-1))
                p.data = flat[offset:offset + n].view_as(p)
                self.pointers[k] = p.data_ptr()
        grads = [p.grad for p in self.params]
        if all(g is not None for g in grads):
            grad.copy_(_flatten(grads))  # two whole-group operations, not one per parameter
            return
        for (offset, n), g in zip(self.spans, grads):
            if g is None:
                grad[offset:offset + n].zero_()
            else:
                grad[offset:offset + n].copy_(g.reshape(-1))


class FlatAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (fused) on flat buffers; see the module docstring.

    Takes parameters or parameter groups like Adam. Parameters that do not require gradients are
    left alone. ``param_groups`` hold the flat buffers (one per group, dtype and device), so a
    learning-rate scheduler works on them as usual.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, weight_decay: float = 0.0,
                 **kwargs: Any) -> None:
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self._packs: list[_Pack] = []
        flat_groups = []
        for group in groups:
            by_kind: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.requires_grad:
                    by_kind.setdefault((p.dtype, p.device), []).append(p)
            packs = [_Pack(ps) for ps in by_kind.values()]
            self._packs += packs
            flat_groups.append({**group, "params": [pk.master for pk in packs]})
        super().__init__(flat_groups, lr=lr, weight_decay=weight_decay, **kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the parameters' gradients (``set_to_none=False``: zero them in place)."""
        for pack in self._packs:
            if set_to_none:
                pack.drop_grads()
            else:
                for p in pack.params:
                    if p.grad is not None:
                        p.grad.zero_()

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for pack in self._packs:
            pack.gather()
        if not self._fused_update():
            # Adam's own update, without the hook wrapper torch puts around ``Adam.step`` once any
            # Adam exists (this class's ``step`` has one already: hooks would run twice)
            adam_step = torch.optim.Adam.step
            getattr(adam_step, "__wrapped__", adam_step)(self)
        return loss

    @torch.no_grad()
    def _fused_update(self) -> bool:
        """What ``Adam.step`` runs for fused plain Adam — the step counters' increment and one
        ``_fused_adam_`` call per group, on the same state entries — without the generic
        bookkeeping around it (~30 us per group on this machine). False, having changed
        nothing, for any setting it does not cover; ``Adam.step`` then runs."""
        fused = getattr(torch, "_fused_adam_", None)
        plain = all(g.get("fused") and not g.get("amsgrad") and not g.get("maximize")
                    and not g.get("capturable") and not g.get("differentiable")
                    and not g.get("decoupled_weight_decay") and not isinstance(g["lr"], torch.Tensor)
                    for g in self.param_groups)
        if fused is None or not plain:
            return False
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            for p, st in zip(params, states):
                if not st:  # the entries Adam creates (its state dict stays interchangeable)
                    st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            steps = [st["step"] for st in states]
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            fused(params, [p.grad for p in params], [st["exp_avg"] for st in states],
                  [st["exp_avg_sq"] for st in states], [], steps, amsgrad=False, lr=group["lr"],
                  beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                  maximize=False, grad_scale=None, found_inf=None)
        return True
