"""The one door to alkaid (the distributed-arithmetic RTL generator the RTL backend builds on).

Why a door: alkaid imports PyPI's ``quantizers``, which hqrun's checkout shadows (see
:mod:`hqrun.firmware.pypi_import`), it is an optional dependency (the ``rtl`` extra), and its API
is young. Every other module of the backend asks this one, so a missing install gives one clear
message and an API change is fixed in one file.
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace

from ...pypi_import import import_beside_checkout

__all__ = ["alkaid", "prepare_for_codegen", "ALKAID_VERSION_PINNED", "INSTALL_HINT"]

#: The version the backend was written and tested against (pinned in pyproject's ``rtl`` extra).
ALKAID_VERSION_PINNED = "0.8.2"
INSTALL_HINT = (f"`pip install 'alkaid=={ALKAID_VERSION_PINNED}'` (or `pip install -e '.[rtl]'` "
                "in an hqrun checkout; scripts/install.sh installs it by default)")

_cache: SimpleNamespace | None = None


def alkaid() -> SimpleNamespace:
    """alkaid's pieces the backend uses: ``FVArray``, ``trace``, ``to_pipeline``, ``RTLModel``,
    ``fuse_ternary_adders``, ``dead_code_elimin``, ``add_surrogate``, ``version``."""
    global _cache
    if _cache is None:
        root: ModuleType = import_beside_checkout("alkaid", INSTALL_HINT)
        tr = import_beside_checkout("alkaid.trace", INSTALL_HINT)
        passes = import_beside_checkout("alkaid.trace.passes", INSTALL_HINT)
        codegen = import_beside_checkout("alkaid.codegen", INSTALL_HINT)
        _cache = SimpleNamespace(
            FVArray=tr.FVArray, trace=tr.trace, to_pipeline=tr.to_pipeline,
            RTLModel=codegen.RTLModel, fuse_ternary_adders=passes.fuse_ternary_adders,
            dead_code_elimin=passes.dead_code_elimin, add_surrogate=passes.add_surrogate,
            version=str(getattr(root, "__version__", "unknown")),
        )
    return _cache


def prepare_for_codegen(comb: object) -> object:
    """The passes alkaid's ``RTLModel`` runs on a combinational program before splitting it
    (ternary-adder fusion, dead-code removal, cost/latency annotation), run here so hqrun can
    choose the register placement itself and still get alkaid's own cost estimate."""
    a = alkaid()
    return a.add_surrogate(a.dead_code_elimin(a.fuse_ternary_adders(comb)), _skip_op8_cost=True)
