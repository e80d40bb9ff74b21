"""Hydra callback that collects a multirun's table when the sweep ends.

It runs in the process that launched the sweep (also under the Ray launcher), so the summary
it keeps here is what ``hqrun.cli.main`` reads to choose its exit status.
"""

from __future__ import annotations

from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hqrun.sweep.collect import collect, print_summary

#: Summary of the last collected sweep in this process (read by the CLI for its exit status).
LAST_SUMMARY: Optional[dict[str, Any]] = None


class CollectSweep(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_SUMMARY
        LAST_SUMMARY = collect(str(config.hydra.sweep.dir))
        print_summary(LAST_SUMMARY)
