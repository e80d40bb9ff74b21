"""Structured-config validation.

Hydra composes plain YAML; before any work starts, each config group is merged into its
dataclass schema so that a wrong type or an unknown key is refused up front with a message
naming the key, instead of failing minutes later inside a trial. Schemas live next to the code
that reads them (``hqrun/<pkg>/config.py``) and are looked up lazily here.
"""

from __future__ import annotations

import importlib

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hqrun.errors import ConfigError

#: config group -> "module:DataclassName". A group whose module is absent is not validated.
GROUP_SCHEMAS: dict[str, str] = {
    "data": "hqrun.data.config:DataConfig",
    "trainer": "hqrun.train.config:TrainerConfig",
    "cost": "hqrun.cost.config:CostConfig",
    "search": "hqrun.search.config:SearchConfig",
    "firmware": "hqrun.firmware_command:FirmwareConfig",
    "study": "hqrun.study.config:StudyConfig",
    "export": "hqrun.interchange.config:ExportConfig",
    "import": "hqrun.interchange.config:ImportConfig",
}


def _schema(target: str):
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            return None
        raise
    return getattr(module, class_name, None)


def validate_config(cfg: DictConfig) -> DictConfig:
    """Return ``cfg`` with each known group merged into its schema (types checked, no extras)."""
    for group, target in GROUP_SCHEMAS.items():
        if group not in cfg or cfg[group] is None:
            continue
        schema = _schema(target)
        if schema is None:
            continue
        try:
            merged = OmegaConf.merge(OmegaConf.structured(schema), cfg[group])
        except OmegaConfBaseException as err:
            raise ConfigError(
                f"invalid value in config group '{group}': {err.msg if hasattr(err, 'msg') else err}. "
                f"Check the spelling and type of the override (run `hqrun {cfg.get('command', 'train')} "
                f"--cfg job` to see the composed config and its valid keys)."
            ) from None
        with _open(cfg):
            cfg[group] = merged
    return cfg


class _open:
    """Temporarily lift struct mode so validated groups can be put back."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def __enter__(self):
        self.flag = OmegaConf.is_struct(self.cfg)
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, self.flag)
        return False
