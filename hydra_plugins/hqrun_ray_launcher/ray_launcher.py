"""A Hydra launcher that runs each job of a multirun as a Ray task.

Why not the maintained ``hydra-ray-launcher`` plugin: its 1.2.2 release (the newest) requires
``cloudpickle<3``, while the joblib that scikit-learn needs requires ``cloudpickle>=3``, so the two
cannot be installed together in hqrun's environment. This launcher keeps its command-line
spelling (``hydra/launcher=ray``, configured by ``conf/hydra/launcher/ray.yaml``) and adds what sweeps of hqrun need: local Ray by default, a
cluster when ``hydra.launcher.address`` is set, one CPU per job unless told otherwise, and jobs
that fail are returned as failed jobs instead of aborting the others.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def _run_one(hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig,
             singleton_state: dict) -> JobReturn:
    """Body of one Ray task: restore Hydra's singletons, then run the job as Hydra would."""
    setup_globals()
    Singleton.set_state(singleton_state)
    return run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def start_ray(address: Optional[str], num_cpus: Optional[int], init: dict[str, Any]) -> None:
    """Start (or join) Ray once per process: hqrun's loopback-only settings
    (:mod:`hqrun.raystart`), then ``hydra.launcher.init`` on top."""
    from hqrun.raystart import start_ray as start

    start(address, num_cpus, log_to_driver=True, extra=init)


class RayLauncher(Launcher):
    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None,
                 cpus_per_job: float = 1.0, init: Optional[dict[str, Any]] = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_job = cpus_per_job
        self.init = dict(init or {})
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        start_ray(self.address, self.num_cpus, self.init)
        log.info(f"Ray launcher: {len(job_overrides)} jobs, sweep dir {sweep_dir}")
        # A job's own errors are recorded by hqrun (its job_status.json) and never retried;
        # max_retries only re-runs a job whose worker process or node died (Ray retries system
        # failures, not exceptions), so a lost cluster node does not end the sweep.
        remote = ray.remote(num_cpus=self.cpus_per_job, max_retries=LOST_JOB_RETRIES)(_run_one)
        pending = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"ray_{idx}"
                sweep_config.hydra.job.num = idx
            pending.append(remote.remote(self.hydra_context, self.task_function, sweep_config,
                                         Singleton.get_state()))
        return [_result(ref, overrides) for ref, overrides in zip(pending, job_overrides)]


#: Times a job whose worker or node died is started again.
LOST_JOB_RETRIES = 2


def _result(ref: Any, overrides: Sequence[str]) -> JobReturn:
    """The job's JobReturn; a job lost with its node after every retry is a failed job (the
    sweep table lists it), not the end of the sweep."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        log.error(f"job {' '.join(filter_overrides(overrides))} was lost: {type(err).__name__}: "
                  f"{str(err).splitlines()[0] if str(err) else ''}")
        return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=err)
