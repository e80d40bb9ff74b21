"""Where a command writes: ``out_dir=`` when given, else Hydra's output directory.

The study runs train/search/firmware steps into sub-directories of its own run directory, so
every command resolves its output directory here instead of asking Hydra directly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def output_dir(cfg: Any = None, kind: str = "run") -> Path:
    """``cfg.out_dir``, else Hydra's job output dir, else ``runs/<kind>/<time>`` (notebooks)."""
    explicit = cfg.get("out_dir") if cfg is not None and hasattr(cfg, "get") else None
    if explicit:
        return Path(str(explicit)).expanduser()
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        return Path("runs") / kind / time.strftime("%Y-%m-%d_%H-%M-%S")
