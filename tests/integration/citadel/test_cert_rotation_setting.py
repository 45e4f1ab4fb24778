"""``CITADEL_ENABLE_WORKLOAD_CERT_ROTATION=false`` on a real node agent (issue 15 item 8): it says
at start that certificates will not be rotated and what that means, still serves the workload its
certificate over SDS, and a bad value stops it with a message naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.token import make_token
from meshplane.shared.testing.kubeenv import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_rotation_off_is_warned_at_start_and_the_certificate_is_still_served(tmp_path: Path) -> None:
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    citadel.start()
    token = make_token(tmp_path / "ca", "shop", "cart", "istio-ca", 3600)
    env = {"CITADEL_ENABLE_WORKLOAD_CERT_ROTATION": "false"}
    agent = NodeAgentProcess(
        tmp_path / "agent", citadel.target, tmp_path / "ca" / "root-cert.pem", token, env=env
    )
    try:
        agent.start()
        assert (
            "CITADEL_ENABLE_WORKLOAD_CERT_ROTATION=false: workload certificates are issued once"
            in agent.log()
        )
        # FetchSecrets answers from the agent's cache: ask until the one issuance has happened.
        with grpc.insecure_channel(f"unix:{agent.socket}") as channel:
            stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)

            def fetched() -> bool:
                request = discovery_pb2.DiscoveryRequest(resource_names=["default"])
                return len(stub.FetchSecrets(request, timeout=20).resources) == 1

            wait_until(fetched, "the workload certificate, issued once, served over SDS", 30)
    finally:
        agent.stop()
        citadel.stop()


def test_a_bad_value_is_named() -> None:
    argv = [sys.executable, "-m", "meshplane.citadel.nodeagent", "--sds-socket", "s", "--ca-addr", "h:1"]
    env = {"CITADEL_ENABLE_WORKLOAD_CERT_ROTATION": "sometimes", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "CITADEL_ENABLE_WORKLOAD_CERT_ROTATION: expected true or false, got 'sometimes'" in done.stderr
