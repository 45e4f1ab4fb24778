"""The floor: the same TLS gRPC service answering CreateCertificate with a fixed chain, no work.

Started by ``run.py --floor`` to show how much of a request's cost is grpc.aio itself.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import grpc

from meshplane.citadel.ca.keycert import load_bundle
from meshplane.citadel.server.tls import ServingCredentials
from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc


class Noop(ca_pb2_grpc.IstioCertificateServiceServicer):
    def __init__(self, chain: list[str]) -> None:
        self._response = ca_pb2.IstioCertificateResponse(cert_chain=chain)

    async def CreateCertificate(
        self, request: ca_pb2.IstioCertificateRequest, context: grpc.aio.ServicerContext
    ) -> ca_pb2.IstioCertificateResponse:
        return self._response


async def serve(ca_dir: Path, port: int) -> None:
    bundle = load_bundle(ca_dir)
    server = grpc.aio.server()
    ca_pb2_grpc.add_IstioCertificateServiceServicer_to_server(Noop([bundle.root_pem] * 2), server)
    server.add_secure_port(f"127.0.0.1:{port}", ServingCredentials(bundle, ()).credentials())
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ca-dir", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    asyncio.run(serve(Path(args.ca_dir), args.port))


if __name__ == "__main__":
    main()
