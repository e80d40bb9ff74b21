"""The ``hqrun`` command line.

``hqrun <command> key=value ...`` is a Hydra app whose command word becomes the ``command``
config key, so every command shares one config tree and every knob is an override
(``hqrun -m train quant=q4,q8`` sweeps too). Commands that are not config-driven
(``datagen``, ``collect``) take ordinary flags. Heavy imports happen inside the command
functions, so ``hqrun --help`` and override errors come back fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

from hqrun.errors import HqrunError

#: Config-driven commands -> "module:function" taking the composed DictConfig.
HYDRA_COMMANDS: dict[str, str] = {
    "train": "hqrun.train.command:run",
    "cost": "hqrun.cost.command:run",
    "search": "hqrun.search.command:run",
    "firmware": "hqrun.firmware_command:run",
    "study": "hqrun.study.command:run",
    "export": "hqrun.interchange.commands:export_run",
    "import": "hqrun.interchange.commands:import_run",
}

#: Flag-driven commands -> "module:function" taking the remaining argv.
PLAIN_COMMANDS: dict[str, str] = {
    "datagen": "hqrun.datagen.command:main",
    "collect": "hqrun.sweep.collect:main",
}


def _load(target: str) -> Callable:
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def report_error(err: BaseException) -> None:
    """Print a user error as one paragraph (no traceback)."""
    print(f"hqrun: error: {err}", file=sys.stderr)


#: Hydra flags whose next argument is their value, not a command word.
_HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name",
                      "-cn", "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}


def _split_command(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take the first bare command word out of argv (flags, their values and overrides stay)."""
    for i, arg in enumerate(argv):
        if i > 0 and argv[i - 1] in _HYDRA_VALUE_FLAGS and arg not in HYDRA_COMMANDS:
            continue
        if arg in HYDRA_COMMANDS or arg in PLAIN_COMMANDS:
            return arg, argv[:i] + argv[i + 1 :]
        if not arg.startswith("-") and "=" not in arg:
            import difflib

            commands = sorted({**HYDRA_COMMANDS, **PLAIN_COMMANDS})
            known = ", ".join(commands)
            close = difflib.get_close_matches(arg, commands, n=1, cutoff=0.6)
            guess = f" Did you mean `hqrun {close[0]}`?" if close else ""
            raise HqrunError(
                f"unknown command {arg!r}.{guess} hqrun's commands are: {known}; everything else on "
                "the command line must be a Hydra override such as key=value (e.g. "
                "`hqrun train quant=q6 trainer.max_epochs=5`)."
            )
    return None, argv


def _flags_first(argv: list[str]) -> list[str]:
    """Hydra's parser wants overrides in one run; users interleave them with flags freely."""
    flags: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            flags.append(arg)
            takes_value = arg in _HYDRA_VALUE_FLAGS and i + 1 < len(argv) and "=" not in argv[i + 1]
            if takes_value and not argv[i + 1].startswith("-"):
                flags.append(argv[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags + overrides


def run_config_command(cfg) -> object:
    """Hydra task function: validate the composed config, then dispatch on ``cfg.command``.

    Every job records ``job_status.json`` in its output dir. In a multirun a failing job is
    recorded and returns normally, so the launcher goes on with the others and the sweep
    table marks it failed; a single run exits with status 2 after a one-paragraph message.
    A single run that fails before writing any artefact leaves no run directory behind, and a
    run directory that held a finished run is never re-labelled as failed.
    """
    import time

    from hqrun.config import validate_config
    from hqrun.sweep.jobstatus import write_status

    started = time.time()
    job_dir = _job_dir()
    multirun = _in_multirun()
    command = str(cfg.get("command", "")) if hasattr(cfg, "get") else ""
    try:
        cfg = validate_config(cfg)
        command = cfg.command
        if command not in HYDRA_COMMANDS:
            raise HqrunError(
                f"command={command!r} is not a config-driven hqrun command; use one of "
                f"{', '.join(HYDRA_COMMANDS)}."
            )
        result = _load(HYDRA_COMMANDS[command])(cfg)
    except HqrunError as err:
        _record_failure(job_dir, err, started, multirun, command)
        report_error(err)
        if multirun:
            return None
        sys.exit(2)
    except Exception as err:  # noqa: BLE001 - a sweep records any failure and goes on
        storage = _storage_error(err)
        if storage is not None:  # a full disk or read-only dir anywhere: one paragraph, no traceback
            _record_failure(job_dir, storage, started, multirun, command)
            report_error(storage)
            if multirun:
                return None
            sys.exit(2)
        _record_failure(job_dir, err, started, multirun, command)
        if not multirun:
            raise
        report_error(f"job failed with {type(err).__name__}: {err} (traceback in {job_dir}/error.txt)")
        return None
    if job_dir and (multirun or not _drop_unused_job_dir()):
        write_status(job_dir, "ok", None, started, command)
    return result


def _drop_unused_job_dir() -> bool:
    """Remove Hydra's job directory when the command wrote all its artefacts elsewhere
    (``hqrun firmware run=<dir>`` writes into that run): no directory holding only Hydra's
    record and a log is left behind."""
    from hqrun import rundir

    return rundir.remove_if_unused(rundir.job_claim())


def _record_failure(job_dir: str | None, err: BaseException, started: float, multirun: bool,
                    command: str) -> None:
    """job_status.json for a failed job, unless the job dir is better left alone.

    A single run that wrote no artefact removes the directory it created (nothing to keep), and
    a directory that already held a finished run keeps its own status.
    """
    from hqrun import rundir
    from hqrun.sweep.jobstatus import write_status

    if not job_dir:
        return
    claimed = None if multirun else rundir.job_claim()
    if claimed is not None and rundir.remove_if_unused(claimed):
        return
    if claimed is not None and claimed.was_finished:
        rundir.drop_new_empty_logs(claimed)
        return
    try:
        write_status(job_dir, "failed", err, started, command)
    except HqrunError:  # e.g. the disk is full: the message printed next says so
        pass


def _storage_error(err: BaseException) -> HqrunError | None:
    """hqrun's paragraph for a disk-full/read-only OSError raised below some library call."""
    from hqrun.atomic import is_storage_error, storage_error

    seen = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, HqrunError):
            return cause
        if is_storage_error(cause):
            return storage_error(cause, getattr(cause, "filename", None))  # type: ignore[arg-type]
        cause = cause.__cause__ or cause.__context__
    return None


def _job_dir() -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.output_dir
    except Exception:  # noqa: BLE001 - called outside Hydra (tests calling the function)
        return None


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001 - no Hydra context: not a multirun
        return False


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        command, rest = _split_command(args)
    except HqrunError as err:
        report_error(err)
        sys.exit(2)
    from hqrun.clihelp import command_help, main_help, wants_help

    if command not in PLAIN_COMMANDS and wants_help(rest):   # hqrun's (Hydra's: --hydra-help)
        print(command_help(command) if command else main_help())
        sys.exit(0)
    if command in PLAIN_COMMANDS:
        try:
            code = _load(PLAIN_COMMANDS[command])(rest)
        except HqrunError as err:
            report_error(err)
            sys.exit(2)
        sys.exit(code or 0)
    if command is not None:
        rest = rest + [f"command={command}"]
    import hydra
    from hydra.core.plugins import Plugins
    from hydra_plugins.hqrun_ray_launcher.ray_launcher import RayLauncher

    # An editable install hides the hydra_plugins namespace from Hydra's scan; registering
    # explicitly makes `hydra/launcher=ray` work in every kind of install.
    Plugins.instance().register(RayLauncher)
    task = hydra.main(config_path="pkg://hqrun.conf", config_name="config", version_base="1.3")(
        run_config_command
    )
    sys.argv = [sys.argv[0] if sys.argv else "hqrun"] + _flags_first(rest)
    from hqrun.sweep import callback

    from hqrun.runguard import release_job_claim

    callback.LAST_SUMMARY = None  # only this invocation's sweep decides the exit status
    from hqrun.hydra_errors import hydra_errors_explained
    from hqrun.runguard import forget_unused_sweep_dir

    try:
        with hydra_errors_explained(rest, command):  # Hydra's own errors: one paragraph, exit 2
            task()
    except HqrunError as err:
        forget_unused_sweep_dir()
        report_error(err)
        sys.exit(2)
    finally:
        release_job_claim()
    if callback.LAST_SUMMARY is not None and callback.LAST_SUMMARY["failed"]:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
