"""Fixtures for citadel tests: a running meshplane-citadel subprocess and token/gRPC helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from meshplane.citadel.testing import CitadelProcess
from meshplane.ctl.token import make_token
from meshplane.proto.istio.v1.auth import ca_pb2_grpc


@pytest.fixture(scope="module")
def citadel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CitadelProcess]:
    """A self-signed EC citadel, shared by the tests of one module."""
    tmp = tmp_path_factory.mktemp("citadel")
    proc = CitadelProcess(tmp / "ca", tmp / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def token_for(citadel: CitadelProcess) -> Callable[..., str]:
    def make(ns: str = "default", sa: str = "a", audience: str = "istio-ca", ttl: int = 600) -> str:
        return make_token(citadel.ca_dir, ns, sa, audience, ttl)

    return make


StubFactory = Callable[..., ca_pb2_grpc.IstioCertificateServiceStub]


@pytest.fixture
def stub_factory() -> Iterator[StubFactory]:
    """``make(target, root_pem, client_pair=(key_pem, chain_pem))`` → a stub over real TLS."""
    channels: list[grpc.Channel] = []

    def make(
        target: str, root_pem: bytes, client_pair: tuple[bytes, bytes] | None = None
    ) -> ca_pb2_grpc.IstioCertificateServiceStub:
        key, chain = client_pair if client_pair else (None, None)
        creds = grpc.ssl_channel_credentials(
            root_certificates=root_pem, private_key=key, certificate_chain=chain
        )
        channel = grpc.secure_channel(target, creds)
        channels.append(channel)
        return ca_pb2_grpc.IstioCertificateServiceStub(channel)  # type: ignore[no-untyped-call]

    try:
        yield make
    finally:
        for channel in channels:
            channel.close()


@pytest.fixture
def stub(citadel: CitadelProcess, stub_factory: StubFactory) -> ca_pb2_grpc.IstioCertificateServiceStub:
    return stub_factory(citadel.target, citadel.root_pem())
