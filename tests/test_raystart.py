"""The settings every Ray start gets (hqrun/raystart.py); the traced run is tests/test_network.py."""

from __future__ import annotations

import os
import sys
import types

from hqrun import raystart


def test_a_local_session_is_pinned_to_loopback_without_dashboard_or_metrics():
    kwargs = raystart.ray_init_kwargs(num_cpus=2)
    assert kwargs["_node_ip_address"] == "127.0.0.1" and kwargs["num_cpus"] == 2
    assert kwargs["include_dashboard"] is False
    assert kwargs["_system_config"] == {"enable_metrics_collection": False}
    env = raystart.local_ray_env({})
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"          # no 8.8.8.8 probe
    assert env["RAY_USAGE_STATS_ENABLED"] == "0" and env["RAY_enable_metrics_collection"] == "0"
    assert env["HTTP_PROXY"] == "http://127.0.0.1:9"                  # metadata probe stays local
    assert set(env["NO_PROXY"].split(",")) >= {"127.0.0.1", "localhost", "::1"}
    assert "http_proxy" not in env           # gRPC reads the lower-case one: left alone


def test_a_proxy_the_user_set_cannot_carry_the_metadata_probe_out():
    env = raystart.local_ray_env({"http_proxy": "http://proxy.lab:3128", "no_proxy": "lab.local",
                                  "NO_PROXY": "corp"})
    assert env["http_proxy"] == env["HTTP_PROXY"] == "http://127.0.0.1:9"
    assert env["no_proxy"].split(",")[0] == "lab.local" and "127.0.0.1" in env["no_proxy"]
    assert env["NO_PROXY"].split(",")[0] == "corp"


def test_a_cluster_address_is_joined_as_given():
    kwargs = raystart.ray_init_kwargs("10.0.0.5:6379", num_cpus=8, extra={"namespace": "lab"})
    assert kwargs["address"] == "10.0.0.5:6379" and kwargs["namespace"] == "lab"
    assert "_node_ip_address" not in kwargs and "num_cpus" not in kwargs
    assert "_system_config" not in kwargs


def test_the_node_address_switch_is_restored_for_a_cluster(monkeypatch):
    constants = types.SimpleNamespace(ENABLE_RAY_CLUSTER=True)
    monkeypatch.setitem(sys.modules, "ray._private.ray_constants", constants)
    monkeypatch.setattr(raystart, "_RAY_CLUSTER_DEFAULT", None)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    raystart._cluster_node_address_in_this_process(False)
    assert constants.ENABLE_RAY_CLUSTER is False
    raystart._cluster_node_address_in_this_process(True)
    assert constants.ENABLE_RAY_CLUSTER is True
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ


def test_a_loopback_cluster_keeps_the_local_settings_and_authenticates():
    env = raystart.cluster_node_env({})
    assert raystart.local_ray_env({}).items() <= env.items()  # loopback, no metrics, no probes
    assert env["RAY_AUTH_MODE"] == "token"
    assert raystart.cluster_node_env({"RAY_AUTH_MODE": "disabled"})["RAY_AUTH_MODE"] == "disabled"
    assert raystart.is_loopback_address("127.0.0.1:6379")
    assert raystart.is_loopback_address("localhost:6379")
    assert not raystart.is_loopback_address("10.0.0.1:6379")
    assert not raystart.is_loopback_address("auto")


def test_free_ports_are_distinct_and_bindable_on_loopback():
    import socket

    from hqrun.localcluster import free_port

    ports = {free_port() for _ in range(5)}
    assert len(ports) >= 4
    with socket.socket() as sock:
        sock.bind((raystart.LOOPBACK, ports.pop()))


def test_joining_a_cluster_presents_the_users_token_when_there_is_one(monkeypatch, tmp_path):
    token = tmp_path / "auth_token"
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    raystart._present_the_users_token()
    assert "RAY_AUTH_MODE" not in os.environ            # no token: nothing to present
    token.write_text("0" * 64)
    raystart._present_the_users_token()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")     # the user's choice stands
    raystart._present_the_users_token()
    assert os.environ["RAY_AUTH_MODE"] == "disabled"
