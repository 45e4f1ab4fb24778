"""Plain TCP and TLS clients for tests: send a payload, read until the peer closes."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    while data := conn.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def tcp_exchange(address: str, port: int, payload: bytes) -> bytes:
    """Send ``payload`` over plain TCP; return all the peer sends back until it closes."""
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.sendall(payload)
        return _read_all(conn)


def tls_exchange(
    address: str,
    port: int,
    sni: str,
    cafile: Path,
    payload: bytes,
    client_cert: tuple[Path, Path] | None = None,
    tls12: bool = False,
    verify_name: bool = True,
) -> tuple[bytes, bytes]:
    """Send ``payload`` over TLS (at most 1.2 with ``tls12``); return (peer cert DER, all read back)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = verify_name
    if client_cert is not None:
        ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    with (
        socket.create_connection((address, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        peer = tls.getpeercert(binary_form=True) or b""
        tls.sendall(payload)
        return peer, _read_all(tls)
