"""The search's view of hqrun's own packages: models (build, transfer) and cost (price).

Kept in one small adapter so that the search logic depends on a five-method protocol
(:class:`hqrun.search.trial.Backend`) rather than on the details of ``hqrun.models`` and
``hqrun.cost``; tests and benchmarks can swap in :mod:`hqrun.search.toy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from hqrun.search.space import LayerInfo
from hqrun.search.space import _to_plain as _plain  # OmegaConf container -> plain Python
from hqrun.search.trial import CostInfo, Split, TrialData

@dataclass
class HqrunBackend:
    """Builds ``model_cfg`` with plans and prices it with ``cost_cfg`` (conf/cost settings).

    ``ebops_reference``: the plan whose EBOPs a forgiving factor on the ``ebops`` goal divides
    by (AutoQKeras has no EBOPs goal; a homogeneous 8-bit model mirrors its 8-bit references).
    """

    model_cfg: Any
    cost_cfg: Any = None
    ebops_reference: str = "q8"

    def __post_init__(self) -> None:
        self.model_cfg = dict(_plain(self.model_cfg) or {})
        self.cost_cfg = _plain(self.cost_cfg)

    def _cfg(self, widths: Mapping[str, float]) -> dict:
        cfg = dict(self.model_cfg)
        if widths:
            base = cfg.get("width_multiplier", 1.0)
            if isinstance(base, (int, float)) and float(base) != 1.0:
                widths = {k: float(v) * float(base) for k, v in widths.items()}
            cfg["width_multiplier"] = dict(widths)
        return cfg

    def build(self, plan: Mapping[str, Any], widths: Mapping[str, float]) -> nn.Module:
        from hqrun.models import build_model

        return build_model(self._cfg(widths), dict(plan))

    def describe(self) -> list[LayerInfo]:
        from hqrun.quantizers.layers import WEIGHT_LAYERS, QActivation, QInput

        model = self.build({"name": "float"}, {})
        out: list[LayerInfo] = []
        for name, layer in model.named_children():
            slots_fn = getattr(layer, "slots", None)
            slots = tuple(slots_fn()) if callable(slots_fn) else ()
            if isinstance(layer, QInput):
                out.append(LayerInfo(name, "Input", ("activation",), linear=True))
            elif isinstance(layer, WEIGHT_LAYERS):
                cls = layer.keras_class
                out.append(LayerInfo(name, cls, tuple(s for s in ("kernel", "bias") if s in slots),
                                     resizable=cls in ("Dense", "Conv1D", "Conv2D")))
            elif isinstance(layer, QActivation):
                fn = getattr(layer, "float_function", None)
                if fn == "relu":
                    out.append(LayerInfo(name, "Activation", ("activation",)))
                elif fn in (None, "linear"):
                    out.append(LayerInfo(name, "Activation", ("activation",), linear=True))
                else:   # softmax, sigmoid, tanh outputs are not searched (as AutoQKeras)
                    out.append(LayerInfo(name, "Activation", ()))
            else:
                out.append(LayerInfo(name, getattr(layer, "keras_class", "") or type(layer).__name__, ()))
        return out

    def transfer(self, src: nn.Module, dst: nn.Module) -> None:
        from hqrun.models import transfer_weights

        transfer_weights(src, dst)

    def attach_optimizer(self, model: nn.Module, optimizer: Any) -> None:
        """QKeras's Clip constraints on quantized weights after every update (as Keras does)."""
        try:
            from hqrun.models import attach_weight_constraints
        except ImportError:  # pragma: no cover - older models package
            return
        attach_weight_constraints(model, optimizer)

    def _estimate(self, model: nn.Module):
        from hqrun.cost import estimate

        return estimate(model, settings=self.cost_cfg)

    def cost(self, model: nn.Module) -> CostInfo:
        rep = self._estimate(model)
        t = rep.totals
        totals = {"bits": float(t["size_bits"]), "energy": float(t["energy"]),
                  "ebops": float(t["ebops"])}
        layers = {r["name"]: {"bits": float(r["size"]["total"]),
                              "energy": float(r["energy"]["total"]),
                              "ebops": float(r["fpga"].get("ebops", 0))} for r in rep.rows}
        return CostInfo(totals, layers)

    def reference_cost(self, model: nn.Module) -> CostInfo:
        """AutoQKeras's references: bits and energy of the float model under the cost settings."""
        rep = self._estimate(model)
        t = rep.totals
        ebops_model = self.build({"name": "ref"} if self.ebops_reference == "float"
                                 else _named_plan(self.ebops_reference), {})
        eb = self.cost(ebops_model)
        totals = {"bits": float(t["reference_size_bits"]), "energy": float(t["reference_energy"]),
                  "ebops": eb.totals["ebops"]}
        layers = {r["name"]: {"bits": float(r["reference_size"]["total"]),
                              "energy": float(r["reference_energy"]["total"]),
                              "ebops": eb.layers.get(r["name"], {}).get("ebops", 0.0)}
                  for r in rep.rows}
        return CostInfo(totals, layers)


def _named_plan(name: str) -> dict:
    from hqrun.models import load_plan

    return load_plan(name).to_dict()


def splits_to_data(splits: Any, train_samples: int | None = None) -> TrialData:
    """hqrun.data.Splits -> in-memory tensors (the first ``train_samples`` training rows)."""
    def t(x: np.ndarray, y: np.ndarray, n: int | None = None) -> Split:
        if n:
            x, y = x[:n], y[:n]
        return Split(torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32),
                     torch.as_tensor(np.ascontiguousarray(y), dtype=torch.long))

    return TrialData(t(splits.X_train, splits.y_train, train_samples),
                     t(splits.X_val, splits.y_val), t(splits.X_test, splits.y_test))
