"""Bad tokens on SDS streams cost Citadel nothing (issue 14, item 5; "garbage-token SDS streams
cause 0 CSRs").

A per-node agent takes each workload's token from its SDS streams. Streams with tokens that are
not JWTs are refused by the agent before any CSR; a well-formed token Citadel refuses costs one
CSR, after which every stream presenting it is refused by the agent while its backoff lasts.
Counted by Citadel's own metric, ``citadel_server_csr_count``.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from meshplane.citadel.nodeagent.refusals import BACKOFF_INITIAL
from meshplane.citadel.server.local_issuer import ensure_local_issuer
from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.token import make_token
from meshplane.shared.natsserver import free_port
from meshplane.shared.testing.scrape import scrape

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STREAMS = 50


def _stream_outcome(channel: grpc.Channel, token: str) -> grpc.StatusCode:
    """Open an SDS stream with ``token`` asking for ``default``; the status it ends with."""
    stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)

    done = threading.Event()

    def requests() -> Iterator[discovery_pb2.DiscoveryRequest]:
        yield discovery_pb2.DiscoveryRequest(resource_names=["default"])
        done.wait(30)  # keep the stream open, as Envoy does

    stream = stub.StreamSecrets(requests(), metadata=[("authorization", f"Bearer {token}")], timeout=20)
    try:
        next(stream)
        return grpc.StatusCode.OK  # a certificate came: accepted
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    finally:
        stream.cancel()
        done.set()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[CitadelProcess, NodeAgentProcess, int]]:
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    citadel.start()
    port = free_port()
    agent = NodeAgentProcess(
        tmp_path / "node",
        citadel.target,
        tmp_path / "ca" / "root-cert.pem",
        None,  # per node: every stream brings its own token
        args=["--monitoring-addr", f"127.0.0.1:{port}"],
    )
    try:
        agent.start()
        yield citadel, agent, port
    finally:
        agent.stop()
        citadel.stop()


def test_garbage_token_streams_cause_no_csr_and_a_refused_token_one(
    mesh: tuple[CitadelProcess, NodeAgentProcess, int], tmp_path: Path
) -> None:
    citadel, agent, port = mesh
    with grpc.insecure_channel(f"unix:{agent.socket}") as channel:
        garbage = [_stream_outcome(channel, secrets.token_urlsafe(24)) for _ in range(STREAMS)]
        assert set(garbage) == {grpc.StatusCode.UNAUTHENTICATED}
        assert citadel.metrics()["citadel_server_csr_count"] == 0

        # A well-formed token signed by a key Citadel does not trust (same issuer name).
        (tmp_path / "forger").mkdir()
        ensure_local_issuer(tmp_path / "forger", "cluster.local")
        forged = make_token(tmp_path / "forger", "shop", "cart", "istio-ca", 3600)
        started = time.monotonic()
        outcomes = [_stream_outcome(channel, forged) for _ in range(STREAMS)]
        elapsed = time.monotonic() - started
        assert set(outcomes) == {grpc.StatusCode.UNAUTHENTICATED}
        # One CSR, then one more each time the backoff (1 s, doubling) runs out: tries at 0, 1,
        # 3, 7, ... seconds. On a quiet machine the 50 streams take well under a second.
        allowed = 1 + int(math.log2(1 + elapsed / BACKOFF_INITIAL))
        metrics = citadel.metrics()
        assert 1 <= metrics["citadel_server_csr_count"] <= allowed
        assert metrics["citadel_server_authentication_failure_count"] == metrics["citadel_server_csr_count"]

        # A good token on the same agent still gets its certificate.
        good = make_token(tmp_path / "ca", "shop", "cart", "istio-ca", 3600)
        assert _stream_outcome(channel, good) == grpc.StatusCode.OK
    assert citadel.metrics()["citadel_server_success_cert_issuance_count"] == 1
    print(f"{STREAMS} streams with one refused token took {elapsed:.2f}s")
    assert scrape(port, "meshplane_nodeagent_")["meshplane_nodeagent_sds_streams"] == 0
