"""hqrun models: architectures built from a model config and a quantization plan.

``build_model(cfg.model, plan)`` returns a :class:`QSequential` whose child names (``dense_1``,
``relu_1``, ...) are what plans, the cost model and the firmware refer to. See docs/models.md.
"""

from hqrun.models.builders import BUILDERS, build_model, cnn, jet_dnn, layers, mlp
from hqrun.models.constraints import attach_weight_constraints, constrain_weights_
from hqrun.models.plan import (
    Plan,
    apply_plan,
    float_plan,
    homogeneous_plan,
    load_plan,
    plan_from_model,
)
from hqrun.models.penalty import BetaSchedule, EbopsPenalty
from hqrun.models.sequential import QSequential, activation_layers, weight_layers
from hqrun.models.state import learned_state_keys, load_trained_state
from hqrun.models.transfer import transfer_weights

__all__ = [
    "BUILDERS",
    "BetaSchedule",
    "EbopsPenalty",
    "Plan",
    "QSequential",
    "activation_layers",
    "attach_weight_constraints",
    "apply_plan",
    "build_model",
    "cnn",
    "constrain_weights_",
    "float_plan",
    "homogeneous_plan",
    "jet_dnn",
    "learned_state_keys",
    "load_trained_state",
    "layers",
    "load_plan",
    "mlp",
    "plan_from_model",
    "transfer_weights",
    "weight_layers",
]
