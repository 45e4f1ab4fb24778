"""``free_port``: ports a caller can still bind seconds later, whatever connections open meanwhile."""

from __future__ import annotations

import socket

from meshplane.shared.natsserver import _ephemeral_low, free_port


def test_free_ports_are_below_the_ephemeral_range_bindable_and_not_repeated() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < _ephemeral_low() for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))
