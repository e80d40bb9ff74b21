"""The study's firmware builds: one job per (model, backend), run in turn or a few at a time.

Why a pool: with ``study.backends=[hls4ml,rtl]`` the firmware step is mostly single-threaded
external tools (g++ for hls4ml's C simulation, Verilator, Yosys for the RTL build: 1.5-3.5 min
per jet model), so on a machine with idle cores two builds at once take about half the wall time.
``study.firmware_workers`` sets how many run together (1: in turn, in this process). Each job
writes only into its own ``<model>/<folder>``; a refused build leaves ``<folder>_error.json`` in
the model's study directory and the other jobs go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from hqrun import atomic
from hqrun.errors import HqrunError

__all__ = ["FirmwareJob", "plan_jobs", "run_jobs"]


@dataclass(frozen=True)
class FirmwareJob:
    """One firmware build: ``backend`` builds ``target`` (a run directory) into
    ``target/folder``; ``directory`` is the model's study directory (where errors are kept)."""

    label: str
    target: Path
    directory: Path
    backend: str
    folder: str


def plan_jobs(models: Iterable[tuple[str, Path, Path]], backends: Sequence[str],
              extra_models: Optional[set[str]]) -> list[FirmwareJob]:
    """Every (model, backend) build, models in order and each model's backends in order; the
    backends after the first only for ``extra_models`` (None: every model)."""
    jobs = []
    for label, directory, target in models:
        for i, backend in enumerate(backends):
            if i and extra_models is not None and label not in extra_models:
                continue
            jobs.append(FirmwareJob(label, target, directory, backend,
                                    "firmware" if i == 0 else f"firmware_{backend}"))
    return jobs


def _run_one(cfg: DictConfig, job: FirmwareJob) -> Optional[str]:
    """Build one job; its refusal as text (None when it built)."""
    from hqrun.study.steps import firmware_step

    print(f"[study] {job.label}: {job.backend} firmware and bit-exact check ({job.target.name})",
          flush=True)
    try:
        firmware_step(cfg, job.target, job.backend, job.folder)
    except HqrunError as err:  # recorded in the report; the other models go on
        return str(err)
    return None


def _run_in_worker(cfg_data: dict, job: FirmwareJob) -> Optional[str]:
    """:func:`_run_one` in a pool process (the config travels as plain data)."""
    import torch

    torch.set_num_threads(1)
    return _run_one(OmegaConf.create(cfg_data), job)


def _record(job: FirmwareJob, error: Optional[str]) -> None:
    error_file = job.directory / f"{job.folder}_error.json"
    if error is None:
        error_file.unlink(missing_ok=True)
        return
    print(f"[study] {job.label}: {job.backend} firmware refused or failed: {error}")
    atomic.write_json(error_file, {"error": error})


def run_jobs(cfg: DictConfig, jobs: Sequence[FirmwareJob], workers: int = 1) -> None:
    """Run ``jobs``, ``workers`` at a time (1: in turn, here); errors are recorded per job."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            _record(job, _run_one(cfg, job))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    data: Any = OmegaConf.to_container(cfg, resolve=True)
    context = multiprocessing.get_context("spawn")   # no forked torch/Ray state in the workers
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        futures = [(job, pool.submit(_run_in_worker, data, job)) for job in jobs]
        for job, future in futures:
            _record(job, future.result())
