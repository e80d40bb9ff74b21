"""The one place hqrun starts (or joins) Ray: loopback only, no dashboard, no probes.

hqrun runs on air-gapped lab machines and must send nothing beyond the loopback interface of
its own or through Ray (except to a cluster address the user gives). A plain
``ray.init(include_dashboard=False)`` on Ray 2.60 still does all of this (measured with
``strace -f -e trace=connect``, see docs/security.md):

- every Ray process talks to the others over the machine's *external* address, which Ray finds
  by connecting a UDP socket to 8.8.8.8:53 (the driver and each worker do it);
- the "dashboard" process still starts, in a minimal mode whose only module is the usage-stats
  module, and that module asks the cloud metadata service whether it runs on Azure, GCP or AWS
  (HTTP to 169.254.169.254 twice and a DNS lookup of metadata.google.internal) even with usage
  stats disabled;
- the per-node agent starts a metrics exporter.

So a local session is started with, and only with, these settings (each line says what it stops):

- ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray's "no multi-node cluster" switch. With it,
  ``get_node_ip_address()`` returns 127.0.0.1 instead of asking 8.8.8.8 which interface is
  routed; set before ``import ray`` in every Ray process (they inherit it), and patched into
  Ray's constant in this process if Ray was imported already;
- ``_node_ip_address="127.0.0.1"``: every Ray process binds and connects on loopback;
- ``HTTP_PROXY=http://127.0.0.1:9`` (and ``NO_PROXY`` for loopback) in the environment of Ray's
  processes only: the metadata probe is plain HTTP through ``requests``, which then connects to
  a closed loopback port and gives up at once; gRPC, which Ray uses between its processes,
  reads only the lower-case variables and is not affected; hqrun's own process gets its
  environment back as it was;
- ``_system_config={"enable_metrics_collection": False}`` and ``RAY_enable_metrics_collection=0``:
  the agent starts no metrics exporter and workers report no metrics;
- ``include_dashboard=False``, ``RAY_USAGE_STATS_ENABLED=0``: no web UI, no usage report;
- Ray's token authentication stays as Ray sets it for a new local session (on, token in
  ``~/.ray/auth_token``: other local users cannot submit work to the session); only its
  start-up banner is silenced;
- ``RAY_DISABLE_DOCKER_CPU_WARNING=1``: a warning about container CPU limits, not a probe.

With a cluster address (``search.ray.address``, ``hydra.launcher.address``) hqrun joins that
cluster and changes nothing but usage stats: the cluster's own configuration decides. An
address on loopback (a cluster of several nodes on this one machine, :mod:`hqrun.localcluster`)
also keeps the single-node switch, so Ray does not turn 127.0.0.1 into the routed address.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Iterator, Mapping

__all__ = ["LOOPBACK", "cluster_node_env", "is_loopback_address", "local_ray_env", "ray_init_kwargs",
           "start_ray"]

LOOPBACK = "127.0.0.1"
#: A loopback port nothing should listen on: HTTP sent "through" it never leaves the machine.
_CLOSED_PROXY = f"http://{LOOPBACK}:9"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")

#: Settings every Ray start gets (local or cluster): quiet, no usage report.
_ALWAYS_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


def local_ray_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables a *local* Ray session is started with (see module doc)."""
    environ = os.environ if environ is None else environ
    no_proxy = [h for h in (environ.get("NO_PROXY") or "").split(",") if h.strip()]
    no_proxy += [h for h in _LOOPBACK_NAMES if h not in no_proxy]
    env = dict(_ALWAYS_ENV)
    env.update({
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_enable_metrics_collection": "0",
        "HTTP_PROXY": _CLOSED_PROXY,
        "NO_PROXY": ",".join(no_proxy),
    })
    if "http_proxy" in environ:      # Python prefers the lower-case one: override it as well
        env["http_proxy"] = _CLOSED_PROXY
        lower = [h for h in (environ.get("no_proxy") or "").split(",") if h.strip()]
        env["no_proxy"] = ",".join(lower + [h for h in _LOOPBACK_NAMES if h not in lower])
    return env


def cluster_node_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every process of a Ray cluster kept on one machine's loopback (its
    nodes and the drivers that join it; :mod:`hqrun.localcluster`): everything
    :func:`local_ray_env` sets, the single-node switch included, because with the switch off Ray
    turns ``--node-ip-address=127.0.0.1`` into the machine's routed address (found by asking
    8.8.8.8) and the nodes would talk over the external interface. (The one place Ray checks
    the switch otherwise, ``ray start --address=...``, is passed by hqrun.localcluster's node
    starter.) Token authentication is on (``RAY_AUTH_MODE=token`` unless set otherwise): a new
    head turns it on by itself when a token exists, and then every other node and driver must
    present the token too (the user's own ``~/.ray/auth_token``), so other users of the machine
    cannot submit work."""
    environ = os.environ if environ is None else environ
    env = local_ray_env(environ)
    env["RAY_AUTH_MODE"] = environ.get("RAY_AUTH_MODE", "token")
    return env


def is_loopback_address(address: str | None) -> bool:
    """Whether a cluster address (``host:port``) names this machine's loopback interface."""
    host = str(address or "").rsplit(":", 1)[0].strip("[]")
    return host in _LOOPBACK_NAMES or host.startswith("127.")


def ray_init_kwargs(address: str | None = None, num_cpus: int | None = None,
                    log_to_driver: bool = False, extra: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """``ray.init`` keyword arguments for a local session (``address`` None) or a cluster."""
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": log_to_driver,
                              "configure_logging": False}
    if address:
        kwargs["address"] = address
    else:
        kwargs["_node_ip_address"] = LOOPBACK
        kwargs["_system_config"] = {"enable_metrics_collection": False}
        if num_cpus is not None:
            kwargs["num_cpus"] = int(num_cpus)
    kwargs.update(dict(extra or {}))
    return kwargs


def start_ray(address: str | None = None, num_cpus: int | None = None, *,
              log_to_driver: bool = False, extra: Mapping[str, Any] | None = None) -> bool:
    """Start a local Ray session on loopback, or join the cluster at ``address``.

    Returns False when Ray is already initialised in this process (that session is reused as
    it is). Ray's own exceptions propagate; callers turn them into hqrun errors.
    """
    for key, value in _ALWAYS_ENV.items():
        os.environ.setdefault(key, value)
    proxies: dict[str, str] = {}
    if not address:
        env = local_ray_env()
        proxies = {k: v for k, v in env.items() if k.lower() in ("http_proxy", "no_proxy")}
        # Ray reads its settings when it is imported and its processes inherit them: set them
        # in this process first. The proxy variables are for Ray's processes only, so this
        # process gets its own back after ray.init.
        os.environ.update({k: v for k, v in env.items() if k not in proxies})
    else:
        _present_the_users_token()
        if is_loopback_address(address):
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # 127.0.0.1 stays 127.0.0.1
    import ray

    if ray.is_initialized():
        return False
    kwargs = ray_init_kwargs(address, num_cpus, log_to_driver, extra)
    if address:
        # a cluster on this machine's loopback (hqrun.localcluster) stays on loopback; for any
        # other address, undo an earlier local session's switch
        _cluster_node_address_in_this_process(not is_loopback_address(address))
        ray.init(**kwargs)
        return True
    _cluster_node_address_in_this_process(False)
    with _environment(proxies), _quiet_token_banner():
        ray.init(**kwargs)
    return True


def _present_the_users_token() -> None:
    """Join a cluster with Ray's token authentication when the user has a token.

    A head started by ``ray start`` turns token authentication on by itself when
    ``~/.ray/auth_token`` exists, but a driver joining it sends no token unless
    ``RAY_AUTH_MODE=token`` is set, and is refused ("InvalidAuthToken"). A cluster without
    authentication accepts a driver that sends one (checked with Ray 2.60), so the user's own
    token is presented whenever there is one and the user did not choose a mode.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(token_file):
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray._raylet" in sys.modules:   # Ray read its settings at import: refresh them
            sys.modules["ray._raylet"].Config.initialize("")


#: Ray's own value of its cluster switch in this process, before hqrun changed it (if it did).
_RAY_CLUSTER_DEFAULT: bool | None = None


def _cluster_node_address_in_this_process(enabled: bool) -> None:
    """Switch how this process's Ray finds its node address: the routed interface (``enabled``,
    what joining a cluster needs) or 127.0.0.1 (a local session, no 8.8.8.8 probe).

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when its constants are imported; in a
    process that imported Ray before hqrun set it (a notebook, pytest) the constant itself is
    set, and restored when the same process later joins a cluster.
    """
    global _RAY_CLUSTER_DEFAULT
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        return
    if not enabled:
        if _RAY_CLUSTER_DEFAULT is None:
            _RAY_CLUSTER_DEFAULT = bool(constants.ENABLE_RAY_CLUSTER)
        constants.ENABLE_RAY_CLUSTER = False
    elif _RAY_CLUSTER_DEFAULT:      # hqrun switched it off: switch it back on
        constants.ENABLE_RAY_CLUSTER = True
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)


@contextlib.contextmanager
def _quiet_token_banner() -> Iterator[None]:
    """Ray enables token authentication for a new local session (good: other local users
    cannot submit work to it) and says so in a warning on every start; hqrun keeps the
    protection and drops the banner."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` updated with ``env`` for the block, restored afterwards."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
