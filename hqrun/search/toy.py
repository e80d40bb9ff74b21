"""A self-contained toy backend: a small MLP with rounding quantizers and a bit-count cost.

It lets the search machinery (space, Ray, journal, resume, results) be exercised and timed
without the real model and cost packages, e.g. in tests and in ``bench/search_throughput.py``
(``--toy``). Its numbers mean nothing physically; the layer names mirror hqrun's jet model
(``dense_1, relu_1, ..., dense_N, softmax``) so the same search YAML applies to both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from hqrun.search.space import LayerInfo
from hqrun.search.trial import CostInfo, Split, TrialData


def toy_bits(spec: Any) -> int | None:
    """Bit count of a QKeras-style spec string, good enough for the toy model."""
    if spec is None:
        return None
    s = str(spec)
    if s.startswith(("binary", "stochastic_binary")):
        return 1
    if s.startswith(("ternary", "stochastic_ternary")):
        return 2
    m = re.search(r"\((\d+)", s)
    return int(m.group(1)) if m else 8


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, step, lo, hi):  # noqa: D102
        return torch.clamp(torch.round(x / step) * step, lo, hi)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return g, None, None, None


class ToyQuant(nn.Module):
    def __init__(self, bits: int | None, unsigned: bool = False) -> None:
        super().__init__()
        self.bits, self.unsigned = bits, unsigned

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return x
        if self.unsigned:
            step = 4.0 / 2 ** self.bits
            return _RoundSTE.apply(x, step, 0.0, 4.0 - step)
        step = 2.0 / 2 ** self.bits
        return _RoundSTE.apply(x, step, -1.0, 1.0 - step)


class ToyDense(nn.Linear):
    def __init__(self, n_in: int, n_out: int, kbits: int | None, bbits: int | None) -> None:
        super().__init__(n_in, n_out)
        self.kq, self.bq = ToyQuant(kbits), ToyQuant(bbits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.kq(self.weight), self.bq(self.bias))


class ToyAct(nn.Module):
    def __init__(self, bits: int | None) -> None:
        super().__init__()
        self.q = ToyQuant(bits, unsigned=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(torch.relu(x))


class ToySequential(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, mod in self.named_children():
            if name != "softmax":
                x = mod(x)
        return x


@dataclass
class ToyBackend:
    """``hidden`` sizes of an MLP ``n_in -> hidden... -> n_out``; optional fault injection."""

    n_in: int = 16
    hidden: Sequence[int] = (16, 8)
    n_out: int = 5
    fail_spec: str | None = None     # a trial whose plan uses this spec raises
    nan_spec: str | None = None      # ... or produces NaN
    ref_bits: int = 8
    slow: float = 0.0                # seconds of sleep per build (to test kills)
    # a directory: the first build of each plan (reference excluded) kills its own process, as
    # a lost node or a crashed worker would; the next build of that plan runs normally
    crash_once_in: str | None = None
    _names: list = field(default_factory=list)

    def _crash_once(self, plan: Mapping[str, Any]) -> None:
        import hashlib
        import json
        import os
        from pathlib import Path

        key = hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()
        marker = Path(str(self.crash_once_in)) / key[:16]
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(1)     # the process dies as if its node went away: no exception, no result

    def layer_names(self) -> list[str]:
        n = len(self.hidden) + 1
        out = ["input"]
        for i in range(1, n + 1):
            out.append(f"dense_{i}")
            out.append(f"relu_{i}" if i < n else "softmax")
        return out

    def describe(self) -> list[LayerInfo]:
        infos = [LayerInfo("input", "Input", ("activation",), linear=True)]
        n = len(self.hidden) + 1
        for i in range(1, n + 1):
            infos.append(LayerInfo(f"dense_{i}", "Dense", ("kernel", "bias"), resizable=True))
            infos.append(LayerInfo(f"relu_{i}", "Activation", ("activation",)) if i < n
                         else LayerInfo("softmax", "Activation", ()))
        return infos

    def build(self, plan: Mapping[str, Any], widths: Mapping[str, float]) -> nn.Module:
        import time

        if self.slow:
            time.sleep(self.slow)
        specs = [plan.get("input")] + [v for lay in (plan.get("layers") or {}).values()
                                       for v in lay.values()]
        if self.fail_spec is not None and self.fail_spec in specs:
            raise RuntimeError(f"toy failure injected for {self.fail_spec}")
        if self.crash_once_in and plan.get("name") != "float":
            self._crash_once(plan)
        layers = plan.get("layers") or {}
        default = plan.get("default") or {}

        def slot(name: str, s: str) -> int | None:
            return toy_bits((layers.get(name) or {}).get(s, default.get(s)))

        mods: list[tuple[str, nn.Module]] = [("input", ToyAct(None) if plan.get("input") is None
                                              else _LinearQ(toy_bits(plan["input"])))]
        sizes = [int(max(1, h * widths.get(f"dense_{i + 1}", 1.0)))
                 for i, h in enumerate(self.hidden)] + [self.n_out]
        prev = self.n_in
        for i, size in enumerate(sizes, start=1):
            mods.append((f"dense_{i}", ToyDense(prev, size, slot(f"dense_{i}", "kernel"),
                                                slot(f"dense_{i}", "bias"))))
            if i < len(sizes):
                mods.append((f"relu_{i}", ToyAct(slot(f"relu_{i}", "activation"))))
            else:
                mods.append(("softmax", nn.Softmax(dim=1)))
            prev = size
        model = ToySequential()
        for name, m in mods:
            model.add_module(name, m)
        if self.nan_spec is not None and self.nan_spec in specs:
            with torch.no_grad():
                model.dense_1.weight.fill_(float("nan"))
            model.dense_1.kq.bits = None
        return model

    def transfer(self, src: nn.Module, dst: nn.Module) -> None:
        d = dst.state_dict()
        d.update({k: v for k, v in src.state_dict().items() if k in d and d[k].shape == v.shape})
        dst.load_state_dict(d)
        if self.nan_spec is not None and getattr(dst.dense_1.kq, "bits", 0) is None:
            with torch.no_grad():
                dst.dense_1.weight.fill_(float("nan"))

    def _cost(self, model: nn.Module, ref: bool) -> CostInfo:
        rows: dict[str, dict[str, float]] = {}
        in_bits = self.ref_bits if ref or model.input.__class__ is ToyAct else model.input.q.bits
        act = self.ref_bits
        for name, m in model.named_children():
            if isinstance(m, ToyDense):
                kb = self.ref_bits if ref or m.kq.bits is None else m.kq.bits
                bb = self.ref_bits if ref or m.bq.bits is None else m.bq.bits
                params = m.weight.numel() * kb + m.bias.numel() * bb
                ebops = m.weight.numel() * kb * in_bits
                rows[name] = {"bits": float(params), "energy": float(0.01 * ebops + params * 0.1),
                              "ebops": float(ebops)}
            elif isinstance(m, ToyAct) and name != "input":
                act = self.ref_bits if ref or m.q.bits is None else m.q.bits
                n = _out_features(model, name)
                rows[name] = {"bits": float(n * act), "energy": float(n * act * 0.05), "ebops": 0.0}
                in_bits = act
        totals = {k: sum(r[k] for r in rows.values()) for k in ("bits", "energy", "ebops")}
        return CostInfo(totals, rows)

    def cost(self, model: nn.Module) -> CostInfo:
        return self._cost(model, ref=False)

    def reference_cost(self, model: nn.Module) -> CostInfo:
        return self._cost(model, ref=True)


class _LinearQ(nn.Module):
    def __init__(self, bits: int | None) -> None:
        super().__init__()
        self.q = ToyQuant(bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x)


def _out_features(model: nn.Module, act_name: str) -> int:
    prev = None
    for name, m in model.named_children():
        if name == act_name:
            return prev.out_features if prev is not None else 0
        if isinstance(m, nn.Linear):
            prev = m
    return 0


def toy_data(n_train: int = 512, n_val: int = 256, n_test: int = 256, n_in: int = 16,
             n_out: int = 5, seed: int = 0) -> TrialData:
    """Gaussian blobs: separable enough that accuracy moves with quantization."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_out, n_in, generator=g) * 1.5

    def split(n: int) -> Split:
        y = torch.randint(0, n_out, (n,), generator=g)
        x = centers[y] + torch.randn(n, n_in, generator=g)
        return Split(x.float() / 3.0, y.long())

    return TrialData(split(n_train), split(n_val), split(n_test))
