"""Hydra's own command-line errors, told as one hqrun paragraph with a "did you mean".

Why: an unknown key (``trainer.max_epoch=3``), an unknown config-group option (``quant=q66``)
or a malformed override never reach hqrun's checks: Hydra stops first, prints several lines
and exits with status 1. For a misspelt key it even advises ``+trainer.max_epoch=3``, which
adds the typo to the config and then fails in hqrun's schema check with another message. A user
needs the culprit, the closest valid spelling and the valid choices, once, with the exit status
of every other input error (2).

:func:`hydra_errors_explained` runs the Hydra app with Hydra's own reporting off
(``HYDRA_FULL_ERROR=1``, so its exceptions reach us) and turns each
:class:`hydra.errors.HydraException` into a :class:`hqrun.errors.ConfigError`. The valid keys
and options come from composing hqrun's config again without the culprit, so they follow the
user's own group choices (``model=cnn`` has other keys than ``model=jet_dnn``). A user who sets
``HYDRA_FULL_ERROR=1`` gets Hydra's report and traceback unchanged.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from typing import Any, Iterator, Sequence

from hqrun.errors import ConfigError

__all__ = ["hydra_errors_explained", "explain", "check_choices", "check_no_op_overrides",
           "unknown_option_error"]

#: Mappings whose keys the user names (layer names, specs, regexes, ray.init arguments): a new
#: key there is added with a leading ``+``, so that advice is right for them and only them.
FREE_FORM_KEYS = ("quant.layers", "search.space.menu", "search.space.limits",
                  "hydra.launcher.init", "study.max_cost")

_CONFIG_MODULE = "hqrun.conf"
_CONFIG_NAME = "config"


@contextlib.contextmanager
def hydra_errors_explained(overrides: Sequence[str], command: str | None) -> Iterator[None]:
    """Run a Hydra app inside: Hydra's composition errors come out as :class:`ConfigError`.

    Other exceptions pass through unchanged. With ``HYDRA_FULL_ERROR`` already set by the user,
    nothing is changed (Hydra prints its own report and traceback).
    """
    if os.environ.get("HYDRA_FULL_ERROR"):
        yield
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except Exception as err:  # noqa: BLE001 - only Hydra's own errors are rewritten below
        from hydra.errors import HydraException

        if not isinstance(err, HydraException) or _raised_by_hqrun(err):
            raise
        raise explain(err, list(overrides), command) from None
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def _raised_by_hqrun(err: BaseException) -> bool:
    """An InstantiationException etc. wrapping one of hqrun's own errors is not Hydra's fault."""
    from hqrun.errors import HqrunError

    return isinstance(err.__cause__, HqrunError)


def explain(err: Exception, overrides: list[str], command: str | None = None) -> ConfigError:
    """One paragraph for Hydra error ``err`` raised while composing ``overrides``."""
    from hydra.errors import MissingConfigException, OverrideParseException

    cmd = command or "train"
    if isinstance(err, OverrideParseException):
        return _bad_syntax(str(err.override), err.message)
    if isinstance(err, MissingConfigException):
        return _unknown_option(err, overrides, cmd)
    text = str(err)
    match = re.search(r"Could not override '([^']+)'", text)
    if match:
        return _unknown_key(match.group(1), overrides, cmd, removing=False)
    match = re.search(r"Could not delete from config\. '([^']+)' does not exist", text)
    if match:
        return _unknown_key(match.group(1), overrides, cmd, removing=True)
    match = re.search(r"An item is already at '([^']+)'", text)
    if match:
        key = match.group(1)
        return ConfigError(
            f"+{key}=... adds a key, but {key} exists already; to change it drop the '+' "
            f"({_override_for(key, overrides, strip_plus=True)}).")
    match = re.search(r"Ambiguous value for argument '([^']+)'", text)
    if match:
        line = match.group(1)
        key, _, value = line.partition("=")
        return ConfigError(
            f"{line} gives several values, which a single run cannot take: to run one job per "
            f"value add -m (`hqrun -m {cmd} {line}`); for a list write {key}=[{value}]; for a "
            f"string with commas quote it: {key}='{value}'.")
    match = re.search(r"Sweep parameters '([^']+)' requires --multirun", text)
    if match:
        return ConfigError(f"{match.group(1)} is a sweep; add -m to run one job per value "
                           f"(`hqrun -m {cmd} {match.group(1)}`).")
    flat = " ".join(line.strip() for line in text.splitlines() if line.strip())
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        flat += f" ({' '.join(str(cause).split())})"
    return ConfigError(
        f"the command line could not be turned into a config: {flat}. Check the overrides "
        f"(`hqrun {cmd} --cfg job` prints the composed config).")


# --------------------------------------------------------------------------- the three kinds


def _bad_syntax(override: str, message: str) -> ConfigError:
    if "=" not in override:
        return ConfigError(
            f"{override!r} has no value: an override is key=value (e.g. {override}=3), a group "
            f"choice group=option, or ~key to remove a key.")
    detail = " ".join(line.strip() for line in message.splitlines()
                      if line.strip() and not line.startswith("See https://")
                      and set(line.strip()) != {"^"})
    return ConfigError(
        f"the override {override!r} is not valid override syntax ({detail}). Write key=value "
        "with lists as key=[a,b] and quote a value holding spaces, commas, brackets, '=' or "
        "quotes, e.g. 'key=\"a b\"' (Hydra's override grammar).")


def _unknown_option(err: Any, overrides: list[str], cmd: str) -> ConfigError:
    missing = str(getattr(err, "missing_cfg_file", "") or "")
    group, option = _group_and_option(missing, overrides)
    options = [str(o) for o in (getattr(err, "options", None) or [])]
    if not group:       # not a group option (e.g. the primary config): say what Hydra said
        return ConfigError(f"{' '.join(str(err).split())}.")
    return unknown_option_error(group, option, options, cmd)


def unknown_option_error(group: str, option: str, options: Sequence[str], cmd: str) -> ConfigError:
    """``group=option`` names no config file of ``group``: the closest options and all of them."""
    options = sorted(options, key=_natural)
    sentences = [f"{group}={option} is not an option of the config group {group}."]
    lowered = {o.lower(): o for o in options}
    close = ([option.lower()] if option.lower() in lowered
             else difflib.get_close_matches(option.lower(), list(lowered), n=2, cutoff=0.6))
    if close:
        sentences.append(f"Did you mean {' or '.join(f'{group}={lowered[c]}' for c in close)}?")
    listing = ", ".join(options) if options else "(none)"
    plan_hint = ""
    if group == "quant":
        plan_hint = " (or a plan file with plan=<file.yaml>, e.g. a search's winner.yaml)"
        if "/" in option or option.endswith((".yaml", ".yml")):
            sentences.append(f"A plan file is given with plan={option}, not quant=.")
    sentences.append(f"The options are: {listing}{plan_hint}; `hqrun {cmd} --cfg job` prints "
                     "the composed config.")
    return ConfigError(" ".join(sentences))


def check_choices(config: Any) -> None:
    """Refuse a choice of an *optional* config group that names no file (``experiment=jettagging``).

    Hydra skips a missing optional config without a word, so a misspelt experiment would run
    the plain defaults; called by hqrun's Hydra callback before anything is written.
    """
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    choices = OmegaConf.select(config, "hydra.runtime.choices") or {}
    if not GlobalHydra.instance().is_initialized():
        return
    loader = GlobalHydra.instance().config_loader()
    for group, option in choices.items():
        if option is None or str(group).startswith("hydra/"):
            continue
        options = loader.get_group_options(str(group))
        if options and str(option) not in options:
            raise unknown_option_error(str(group), str(option), options,
                                       str(config.get("command") or "train"))


def check_no_op_overrides(config: Any) -> None:
    """Refuse ``key={}`` on a non-empty mapping: Hydra merges it in, which changes nothing.

    Why: ``search.space.menu={}`` looked like "an empty menu" and silently searched
    AutoQKeras's whole menu. Called by hqrun's Hydra callback before anything is written.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig, OmegaConf

    task = list(OmegaConf.select(config, "hydra.overrides.task") or [])
    for override in OverridesParser.create().parse_overrides(overrides=task):
        if override.is_delete() or override.is_sweep_override():
            continue
        value = override.value()
        if value == {}:
            node = OmegaConf.select(config, override.key_or_group, default=None)
            if isinstance(node, DictConfig) and len(node) > 0:
                key = override.key_or_group
                raise ConfigError(
                    f"{override.input_line} changes nothing: an override merges a mapping into "
                    f"the one already at {key} ({', '.join(str(k) for k in node)}), and an empty "
                    f"one adds nothing. To remove {key}'s entries, write the settings in a YAML "
                    "file (e.g. a search space in conf/search/space/) or set each entry; to keep "
                    f"the defaults, drop the override.")


def _group_and_option(missing: str, overrides: list[str]) -> tuple[str, str]:
    """Which override named the missing ``group/option`` file (an option may contain '/')."""
    for line in overrides:
        key, _, value = line.partition("=")
        key = key.lstrip("+~").removeprefix("override ").strip()
        if value and missing == f"{key}/{value}":
            return key, value
    group, _, option = missing.rpartition("/")
    return group, option


def _unknown_key(key: str, overrides: list[str], cmd: str, removing: bool) -> ConfigError:
    cfg = _compose_without(key, overrides)
    prefix, missing, choices = _first_missing(cfg, key)
    where = f"{prefix}" if prefix else "the top level of the config"
    action = f"~{key} removes" if removing else f"{key}=... sets"
    if missing is None:     # the key exists in a plain compose: Hydra objected to something else
        return ConfigError(f"{action} a key Hydra could not change in this composition; check "
                           f"the override (`hqrun {cmd} --cfg job` prints the composed config).")
    free_form = prefix and any(prefix == f or prefix.startswith(f + ".") for f in FREE_FORM_KEYS)
    if free_form and not removing and (choices is None or not
                                       difflib.get_close_matches(missing, choices, n=1, cutoff=0.6)):
        return ConfigError(
            f"{key} is a new entry of {prefix}, whose keys you name yourself: add it with a "
            f"leading '+' ({_override_for(key, overrides, add_plus=True)}).")
    if choices is None:
        return ConfigError(f"{action} a key inside {prefix}, but {prefix} is a value, not a group "
                           f"of settings; set it with {prefix}=<value>.")
    full = f"{prefix}.{missing}" if prefix else missing
    prefixed = [c for c in choices if c.startswith(missing) or missing.startswith(c)]
    close = list(dict.fromkeys(prefixed + difflib.get_close_matches(missing, choices, n=3,
                                                                    cutoff=0.6)))[:3]
    rest = key[len(full):]          # what followed the unknown part (".max_epochs" etc.)
    sentences = [f"{action} a key that does not exist: {where} has no {missing!r}."]
    if close:
        suggestions = [f"{prefix + '.' if prefix else ''}{c}{rest}" for c in close]
        sentences.append(f"Did you mean {' or '.join(suggestions)}?")
    listing = ", ".join(sorted(choices)) if choices else "(none)"
    name = f"Valid keys of {prefix}" if prefix else "Valid top-level keys"
    sentences.append(f"{name}: {listing}; `hqrun {cmd} --cfg job` prints the composed config.")
    return ConfigError(" ".join(sentences))


# --------------------------------------------------------------------------- helpers


def _first_missing(cfg: Any, key: str) -> tuple[str, str | None, list[str] | None]:
    """(existing prefix, first missing part, keys available at the prefix) for dotted ``key``.

    ``choices`` is None when the prefix is a plain value (nothing can be below it).
    """
    from omegaconf import DictConfig

    node, prefix = cfg, ""
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return prefix, part, None
        if part not in node:
            return prefix, part, [str(k) for k in node.keys()]
        node = node._get_node(part)
        prefix = f"{prefix}.{part}" if prefix else part
    return prefix, None, []


def _compose_without(key: str, overrides: list[str]) -> Any:
    """hqrun's config composed with the user's other overrides (fewer if those fail too)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import DictConfig

    others = [o for o in overrides if _override_key(o) != key]
    groups = [o for o in others if "=" in o and "." not in o.split("=", 1)[0]
              and not o.startswith(("+", "~"))]
    for attempt in (others, groups, []):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_module(config_module=_CONFIG_MODULE, version_base="1.3"):
                return compose(_CONFIG_NAME, overrides=[o for o in attempt if "=" in o],
                               return_hydra_config=key.startswith("hydra."))
        except Exception:  # noqa: BLE001 - the next, smaller set of overrides is tried
            continue
        finally:
            GlobalHydra.instance().clear()
    return DictConfig({})


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _override_for(key: str, overrides: list[str], *, strip_plus: bool = False,
                  add_plus: bool = False) -> str:
    """The user's own override of ``key``, re-spelt with or without the leading '+'."""
    line = next((o for o in overrides if _override_key(o) == key), f"{key}=<value>")
    bare = line.lstrip("+")
    if strip_plus:
        return bare
    return f"+{bare}" if add_plus else line


def _natural(text: str) -> list:
    """Sort key that puts q2 before q10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
