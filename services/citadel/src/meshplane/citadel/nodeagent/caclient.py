"""Talking to Citadel: send a CSR with the workload's token, get ``[leaf, ..., root]`` back.

A token file is re-read for every request (projected tokens are refreshed by the kubelet), and
Citadel's root file is re-read whenever the channel is rebuilt after a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0


class CAClientError(Exception):
    """Citadel could not be reached or refused the request; ``retryable`` says whether to retry."""

    def __init__(self, message: str, retryable: bool, unauthenticated: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        #: Citadel refused the caller's credential (the token), not the request
        self.unauthenticated = unauthenticated


def file_token(path: Path) -> Callable[[], str]:
    """A token source reading ``path`` at every call."""

    def read() -> str:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise CAClientError(f"cannot read --token-file {path}: {exc}", retryable=True) from exc

    return read


class CAClient:
    def __init__(self, ca_addr: str, ca_root: Path) -> None:
        self._addr = ca_addr
        self._root_file = ca_root
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> ca_pb2_grpc.IstioCertificateServiceStub:
        if self._channel is None:
            try:
                root = self._root_file.read_bytes()
            except OSError as exc:
                raise CAClientError(
                    f"cannot read --ca-root {self._root_file}: {exc}", retryable=True
                ) from exc
            creds = grpc.ssl_channel_credentials(root_certificates=root)
            self._channel = grpc.aio.secure_channel(self._addr, creds)
        return ca_pb2_grpc.IstioCertificateServiceStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def sign(self, csr_pem: str, ttl_seconds: int, token: str) -> list[str]:
        request = ca_pb2.IstioCertificateRequest(csr=csr_pem, validity_duration=ttl_seconds)
        try:
            response = await self._stub().CreateCertificate(
                request, metadata=[("authorization", f"Bearer {token}")], timeout=REQUEST_TIMEOUT
            )
        except grpc.aio.AioRpcError as exc:
            await self.close()  # rebuild the channel (and re-read the root) next time
            retryable = exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT,)
            raise CAClientError(
                f"CreateCertificate failed: {exc.code().name}: {exc.details()}",
                retryable,
                unauthenticated=exc.code() == grpc.StatusCode.UNAUTHENTICATED,
            ) from exc
        chain = list(response.cert_chain)
        if not chain:
            raise CAClientError("CreateCertificate returned an empty chain", retryable=True)
        return chain
