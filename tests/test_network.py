"""No network traffic beyond loopback, Ray included (issue #16).

A 2-trial ``hqrun search`` and a 2-job ``hqrun -m train hydra/launcher=ray`` sweep run as
subprocesses inside a network namespace whose only interface is ``lo`` (``unshare -n`` +
``ip link set lo up``), under ``strace -f -e trace=connect``. The namespace proves they need no
other network; the trace proves that no process (driver, Ray's GCS, raylet, dashboard, agents,
workers) even tried to connect anywhere but loopback. Before hqrun.raystart, Ray connected to
the machine's external address, to 8.8.8.8:53 and to 169.254.169.254:80 (docs/security.md).

Each tool missing or not permitted here is a skip reason for the check that needs it
(``.ci/run`` installs strace and iproute2 when it runs as root).
"""

from __future__ import annotations

import csv
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jets_data import write_tiny_jets

pytestmark = pytest.mark.slow

SEARCH = ["search", "data=jets_file", "search.max_trials=2", "search.epochs=1",
          "search.reference_epochs=1", "search.retrain=none", "search.progress=false"]
SWEEP = ["-m", "train", "data=jets_file", "trainer.max_epochs=1", "trainer.batch_size=64",
         "trainer.progress_bar=false", "trainer.roc_plot=false", "quant=q4,q8",
         "hydra/launcher=ray", "hydra.launcher.num_cpus=2"]

_CONNECT = re.compile(r"connect\(\d+, \{sa_family=AF_INET6?, [^}]*?"
                      r"(?:inet_addr\(\"(?P<v4>[^\"]+)\"\)|inet_pton\(AF_INET6, \"(?P<v6>[^\"]+)\")")


def _permitted(cmd: list[str]) -> str | None:
    """None when ``cmd`` runs, else why not (the skip reason)."""
    if shutil.which(cmd[0]) is None:
        return f"{cmd[0]} is not installed"
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return None if proc.returncode == 0 else f"`{' '.join(cmd)}` is not permitted here ({proc.stderr.strip()[:120]})"


def _netns_problem() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed, so lo cannot be brought up in a namespace"
    return _permitted(["unshare", "-n", "sh", "-c", "ip link set lo up"])


def _strace_problem() -> str | None:
    return _permitted(["strace", "-f", "-qq", "-e", "trace=connect", "-o", os.devnull, "true"])


def non_loopback_connects(trace: str) -> list[str]:
    """Every connect() in an strace log whose address is not loopback."""
    bad = []
    for match in _CONNECT.finditer(trace):
        address = ipaddress.ip_address(match.group("v4") or match.group("v6"))
        mapped = getattr(address, "ipv4_mapped", None)
        if not (address.is_loopback or (mapped is not None and mapped.is_loopback)):
            bad.append(match.group(0))
    return bad


def test_the_trace_parser_tells_loopback_from_the_rest():
    trace = "\n".join([
        '12 connect(7, {sa_family=AF_INET, sin_port=htons(6379), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '12 connect(8, {sa_family=AF_INET6, sin6_port=htons(6379), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        '13 connect(9, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}, 16) = 0',
        '14 connect(3, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("169.254.169.254")}, 16) = -1',
        '15 connect(4, {sa_family=AF_UNIX, sun_path="/tmp/ray/session/sockets/raylet"}, 110) = 0',
    ])
    bad = non_loopback_connects(trace)
    assert len(bad) == 2 and "8.8.8.8" in bad[0] and "169.254.169.254" in bad[1]


@pytest.fixture(scope="module")
def isolated_runs(tmp_path_factory):
    """Run the search and the Ray sweep isolated and traced as far as this machine permits."""
    netns, tracer = _netns_problem(), _strace_problem()
    if netns and tracer:
        pytest.skip(f"neither a loopback-only network namespace ({netns}) nor strace ({tracer}) "
                    "is available here")
    root = tmp_path_factory.mktemp("isolated")
    data = write_tiny_jets(root / "tiny.npz", n=300, seed=3, spread=2.0)
    # The children must get their loopback-only settings from hqrun itself, not from this process.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_") and k.lower() not in ("http_proxy", "no_proxy")}
    env["OMP_NUM_THREADS"] = "1"
    runs = {}
    for name, argv in (("search", SEARCH + [f"data.path={data}", f"hydra.run.dir={root / 'search'}"]),
                       ("sweep", SWEEP + [f"data.path={data}", f"hydra.sweep.dir={root / 'sweep'}"])):
        cmd = [sys.executable, "-m", "hqrun.cli", *argv]
        trace = root / f"{name}.trace"
        if not tracer:
            cmd = ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace), *cmd]
        if not netns:
            cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=root)
        runs[name] = {"proc": proc, "trace": trace.read_text() if trace.exists() else None}
    return {"root": root, "runs": runs, "netns": netns, "strace": tracer}


def test_search_and_ray_sweep_need_only_loopback(isolated_runs):
    if isolated_runs["netns"]:
        pytest.skip(f"no loopback-only network namespace: {isolated_runs['netns']}")
    root = isolated_runs["root"]
    for name, run in isolated_runs["runs"].items():
        assert run["proc"].returncode == 0, f"{name}: {run['proc'].stderr[-3000:]}"
    assert (root / "search" / "winner.yaml").is_file()
    with open(root / "sweep" / "sweep.csv", newline="") as fh:
        assert [row["status"] for row in csv.DictReader(fh)] == ["ok", "ok"]


def test_no_process_tries_a_non_loopback_connection(isolated_runs):
    if isolated_runs["strace"]:
        pytest.skip(f"cannot trace connect() calls: {isolated_runs['strace']}")
    for name, run in isolated_runs["runs"].items():
        assert run["proc"].returncode == 0, f"{name}: {run['proc'].stderr[-3000:]}"
        trace = run["trace"]
        assert trace and "connect(" in trace, f"{name}: the trace is empty"
        bad = non_loopback_connects(trace)
        assert bad == [], f"{name}: {len(bad)} non-loopback connect() calls, e.g. {bad[:5]}"
