"""A Ray cluster of several nodes on this machine's loopback: the cluster path without a second
machine (the cluster test, ``bench/faults.py``, and a way to try docs/user_guide.md's recipe).

Why not ``ray.cluster_utils.Cluster``: hqrun's searches and sweeps join a cluster *by address*
from another process, as a user's ``search.ray.address=<head>:<port>`` does, and a node must be
lost the way a machine is lost (its processes killed), not shut down politely. So each node is
a real ``ray start --block`` process in its own session, with:

- ``--node-ip-address=127.0.0.1`` and every port chosen free on loopback (two nodes on one
  machine must not share Ray's fixed default ports; other users' Ray sessions may be running);
- the environment of :func:`hqrun.raystart.cluster_node_env` (no metrics exporter, no cloud
  metadata probe, no usage report, token authentication; Ray's single-node switch on, so that
  127.0.0.1 is not turned into the machine's routed address);
- worker nodes started through :func:`start_worker_node`, which lets ``ray start --address``
  past Ray's refusal of a second node while that switch is on (and nothing else changes);
- its own ``--temp-dir`` inside the directory the caller gives, so Ray's state and logs stay
  there (keep that path short: Ray's socket paths must fit in 107 bytes).

Only the processes these nodes started are ever signalled (found through ``/proc`` as
descendants of each ``ray start`` process or by their temp dir in the command line); ``ray
stop``, which kills every Ray process of every user on the machine, is never called.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hqrun.raystart import LOOPBACK, cluster_node_env

__all__ = ["LocalCluster", "Node", "free_port", "start_worker_node"]


def free_port() -> int:
    """A TCP port nothing listens on right now (on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class Node:
    """One ``ray start --block`` process and the node it runs."""

    name: str
    process: subprocess.Popen
    temp_dir: Path
    log: Path
    pids: set[int] = field(default_factory=set)   # every process seen in the node's tree

    def refresh(self) -> set[int]:
        """Record the node's current processes (so they can be killed after their parent)."""
        self.pids |= _descendants(self.process.pid) | _mentioning(str(self.temp_dir))
        return self.pids

    def alive(self) -> bool:
        return self.process.poll() is None

    def busy_workers(self, window: float = 1.0) -> int:
        """Ray worker processes of this node computing right now: a task or actor process
        (a ``ray::`` title that is not ``ray::IDLE``) that used more than a tenth of a CPU over
        ``window`` seconds. (An actor kept for reuse between trials holds its title while it
        waits, and its background threads use a little CPU.)"""
        workers = [pid for pid in self.refresh() if _cmdline(pid).startswith("ray::")
                   and not _cmdline(pid).startswith(_NOT_WORK)]
        before = {pid: _cpu_seconds(pid) for pid in workers}
        time.sleep(window)
        return sum(1 for pid in workers if _cpu_seconds(pid) - before[pid] > 0.1 * window)


#: Process titles of a node's own helpers and idle workers (not a task or a trial).
_NOT_WORK = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")


class LocalCluster:
    """A head node and any number of worker nodes on 127.0.0.1 (see the module docstring).

    Use as a context manager: every node is torn down at the end, whatever happened.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.nodes: list[Node] = []

    @property
    def address(self) -> str:
        """What ``search.ray.address`` / ``hydra.launcher.address`` take."""
        return f"{LOOPBACK}:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment for processes of this cluster (nodes and drivers)."""
        env = {**os.environ, **cluster_node_env()}
        env.pop("RAY_ADDRESS", None)
        return env

    # ----------------------------------------------------------------- nodes
    def start_head(self, num_cpus: int = 1, resources: dict[str, float] | None = None,
                   timeout: float = 180.0) -> Node:
        return self._start("head", ["--head", f"--port={self.port}", "--include-dashboard=false"],
                           num_cpus, resources, timeout)

    def add_worker(self, name: str = "worker", num_cpus: int = 1,
                   resources: dict[str, float] | None = None, timeout: float = 180.0) -> Node:
        return self._start(name, [f"--address={self.address}"], num_cpus, resources, timeout)

    def _start(self, name: str, role: list[str], num_cpus: int,
               resources: dict[str, float] | None, timeout: float) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        starter = (["-m", "ray.scripts.scripts"] if "--head" in role
                   else ["-m", "hqrun.localcluster", WORKER_NODE])
        argv = [sys.executable, *starter, "start", *role, "--block",
                f"--node-ip-address={LOOPBACK}", f"--num-cpus={num_cpus}",
                f"--temp-dir={temp_dir}", "--disable-usage-stats",
                f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
                f"--resources={json.dumps(resources or {})}"]
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                       env=self.env(), start_new_session=True)
        node = Node(name, process, temp_dir, log)
        self.nodes.append(node)
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = log.read_text(errors="replace")
            if "Ray runtime started" in text:
                node.refresh()
                return node
            if process.poll() is not None:
                break
            time.sleep(0.5)
        how = (f"exited with status {process.returncode}" if process.poll() is not None
               else f"did not start within {timeout:.0f} s")
        raise RuntimeError(f"Ray node {name!r} {how}; its log {log} ends with:\n"
                           f"{log.read_text(errors='replace')[-2000:]}")

    def kill(self, node: Node) -> int:
        """Lose ``node`` as a machine is lost: SIGKILL every one of its processes at once.
        Returns how many processes were killed."""
        pids = node.refresh()
        for pid in pids | {node.process.pid}:
            _signal(pid, signal.SIGKILL)
        node.process.wait(timeout=30)
        return len(pids)

    def stop(self) -> None:
        """Tear every node down: SIGTERM to each ``ray start``, then SIGKILL whatever is left."""
        for node in self.nodes:
            node.refresh()
            _signal(node.process.pid, signal.SIGTERM)
        deadline = time.time() + 20
        for node in self.nodes:
            try:
                node.process.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for node in self.nodes:
            for pid in node.refresh() | {node.process.pid}:
                _signal(pid, signal.SIGKILL)
            if node.process.poll() is None:
                node.process.wait(timeout=30)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False


# --------------------------------------------------------------------------- /proc helpers


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now running."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name in parentheses may hold spaces: parse after its closing bracket
        fields = stat[stat.rfind(")") + 2:].split()
        out[int(entry.name)] = int(fields[1])
    return out


def _descendants(root: int) -> set[int]:
    parents = _parents()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def _mentioning(directory: str) -> set[int]:
    """Processes whose command line names ``directory`` or a path below it (a node's temp dir:
    its own processes, even those that left the ``ray start`` process tree)."""
    me = os.getpid()
    below = directory.rstrip("/") + "/"
    found = set()
    for pid in _parents():
        words = _cmdline(pid).replace("=", " ").split()
        if pid != me and any(w == directory or w.startswith(below) for w in words):
            found.add(pid)
    return found


# --------------------------------------------------------------------------- entry points

#: ``python -m hqrun.localcluster <WORKER_NODE> start --address=... ...`` starts a worker node.
WORKER_NODE = "_ray-start-worker-node"


def start_worker_node(argv: list[str]) -> None:
    """``ray start`` for a worker node of a loopback cluster, in this process.

    Ray's single-node switch (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) is what keeps
    127.0.0.1 as the node's address, but ``ray start --address=...`` refuses to run under it
    ("multi-node clusters are not supported"). So the switch is turned on in this process only,
    and the two functions it would then send to the routed address keep loopback addresses on
    loopback; the node's own processes inherit the switch from the environment.
    """
    from ray._private import ray_constants, services
    from ray.scripts.scripts import main as ray_main

    resolve = services.resolve_ip_for_localhost
    node_ip = services.get_node_ip_address

    def keep_loopback(host: str) -> str:
        return host if services.is_localhost(host) else resolve(host)

    def loopback_node_ip(address: str | None = None) -> str:
        return LOOPBACK if address is None or address.startswith(("127.", "localhost")) \
            else node_ip(address)

    ray_constants.ENABLE_RAY_CLUSTER = True
    services.resolve_ip_for_localhost = keep_loopback
    services.get_node_ip_address = loopback_node_ip
    sys.argv = ["ray", *argv]
    ray_main()


def _serve(argv: list[str]) -> int:
    """``python -m hqrun.localcluster [--workers N] [--num-cpus C] [--dir D]``: start a head and
    N worker nodes on loopback, print the address, keep them up until Ctrl-C (or SIGTERM),
    then stop them (and only them)."""
    import argparse
    import shutil
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m hqrun.localcluster", description=_serve.__doc__)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--num-cpus", type=int, default=1, help="CPUs of each node")
    ap.add_argument("--dir", help="Ray state and logs (default: a new /tmp/hqc* directory)")
    args = ap.parse_args(argv)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hqc", dir="/tmp"))
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    with LocalCluster(root) as cluster:
        cluster.start_head(num_cpus=args.num_cpus)
        for i in range(args.workers):
            cluster.add_worker(f"worker{i + 1}", num_cpus=args.num_cpus,
                               resources={f"worker{i + 1}": 1})
        print(f"Ray cluster on loopback: {1 + args.workers} nodes at {cluster.address} (state in "
              f"{root}). Join it with search.ray.address={cluster.address} or "
              f"hydra.launcher.address={cluster.address}; Ctrl-C stops it.", flush=True)
        try:
            while not stop["now"]:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [WORKER_NODE]:
        start_worker_node(sys.argv[2:])
    else:
        sys.exit(_serve(sys.argv[1:]))
