"""Hydra callback that claims the job's output directory before Hydra writes anything into it.

Hydra writes ``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml`` and a log file into the
run directory before hqrun's command starts, so a check inside the command would come too
late: ``hqrun train hydra.run.dir=<a finished run>`` would already have replaced that run's
record. ``on_run_start`` runs before any of it, with the same resolved ``hydra.run.dir`` Hydra
then uses, and applies :func:`hqrun.rundir.claim` (refuse a finished or foreign run, lock the
directory); ``on_multirun_start`` refuses a sweep directory that already holds a sweep. Both
first refuse a choice of an optional config group that names no file (``experiment=jettagging``
would otherwise run the defaults without a word).
A refusal is hqrun's one-paragraph error and exit status 2, with nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hqrun import rundir
from hqrun.errors import HqrunError, RunDirError
from hqrun.hydra_errors import check_choices, check_no_op_overrides
from hqrun.safenames import check_name, check_output_path


class GuardRunDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_choices(config)
            check_no_op_overrides(config)
            run_dir = check_output_path(str(OmegaConf.select(config, "hydra.run.dir")),
                                        "hydra.run.dir")
            check_name(str(OmegaConf.select(config, "hydra.job.name")), "hydra.job.name")
            command = str(config.get("command") or "train")
            claimed = rundir.claim(run_dir, command, what="hydra.run.dir", create=True)
        except HqrunError as err:
            _refuse(err)
        rundir.set_job_claim(claimed)
        if claimed.existed and command in rundir.RESUMABLE and (run_dir / ".hydra").is_dir():
            # Resuming: the earlier run's .hydra record stays as it was (if this resume fails
            # early, e.g. on other search settings, the finished run is untouched).
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.output_subdir = None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_job_claim()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _NEW_SWEEP_DIR
        try:
            check_choices(config)
            sweep_dir = check_output_path(str(OmegaConf.select(config, "hydra.sweep.dir")),
                                          "hydra.sweep.dir")
            check_name(str(OmegaConf.select(config, "hydra.job.name")), "hydra.job.name")
            _check_subdir(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
            _refuse_used_sweep_dir(sweep_dir)
        except HqrunError as err:
            _refuse(err)
        _NEW_SWEEP_DIR = None if sweep_dir.exists() else sweep_dir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _NEW_SWEEP_DIR
        _NEW_SWEEP_DIR = None


#: The sweep directory this process's multirun is about to create (None: it existed before).
_NEW_SWEEP_DIR: Path | None = None


def forget_unused_sweep_dir() -> None:
    """Remove the sweep directory a multirun created if no job ran in it.

    Hydra writes ``multirun.yaml`` into the sweep directory before it composes the jobs' configs,
    so a sweep stopped by a bad override (``quant=q4,q66``) would leave a directory that the
    corrected command, given the same ``hydra.sweep.dir``, then refuses as "an earlier sweep".
    """
    global _NEW_SWEEP_DIR
    sweep_dir, _NEW_SWEEP_DIR = _NEW_SWEEP_DIR, None
    if sweep_dir is None or not sweep_dir.is_dir():
        return
    leftovers = {p.name for p in sweep_dir.iterdir()}
    if leftovers <= {"multirun.yaml"}:
        for name in leftovers:
            (sweep_dir / name).unlink()
        sweep_dir.rmdir()


def release_job_claim() -> None:
    """Drop the claim on the job directory (the CLI calls this however the job ended)."""
    claimed = rundir.job_claim()
    if claimed is not None:
        claimed.release()
    rundir.set_job_claim(None)


def _check_subdir(template: Any) -> None:
    """Each job's directory is ``hydra.sweep.subdir`` below the sweep dir: it may not leave it."""
    parts = Path(str(template or "")).parts
    if Path(str(template or "")).is_absolute() or ".." in parts:
        raise RunDirError(f"hydra.sweep.subdir={template!r} would put jobs outside "
                          "hydra.sweep.dir; use a relative name such as ${hydra.job.num}.")


def _refuse_used_sweep_dir(sweep_dir: Path) -> None:
    try:
        names = [p.name for p in sweep_dir.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return
    if not names:
        return
    what = "an earlier sweep" if "multirun.yaml" in names else "files that are not an hqrun sweep"
    raise RunDirError(
        f"hydra.sweep.dir {sweep_dir} already holds {what}; a sweep writes its jobs 0, 1, ... "
        "there and hqrun never writes over earlier results. Choose a new directory (drop "
        "hydra.sweep.dir= to get a fresh timestamped one)."
    )


def _refuse(err: HqrunError) -> None:
    from hqrun.cli import report_error

    report_error(err)
    sys.exit(2)
