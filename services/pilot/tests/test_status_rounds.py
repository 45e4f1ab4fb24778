"""When the status publisher writes a changed proxy's record: once per push when the proxy
acknowledges it, and every 5 s while it stays out of sync (``status._later`` on real connections)."""

from __future__ import annotations

from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.status import STATUS_EVERY, _later
from meshplane.pilot.xds.connection import Connection

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"


def connection() -> Connection:
    proxy = Proxy(
        type=ProxyType.SIDECAR,
        ip="10.0.0.1",
        id="client-1.default",
        dns_domain="default.svc.cluster.local",
        node_id="sidecar~10.0.0.1~client-1.default~default.svc.cluster.local",
        namespace="default",
    )
    return Connection(proxy, "ipv4:127.0.0.1:1", delta=True)


def test_synced_follows_every_response_and_its_answer() -> None:
    conn = connection()
    cds, lds = conn.watch(CDS), conn.watch(LDS)
    assert conn.synced()  # nothing sent yet
    conn.sent(cds, "1", "v1")
    conn.sent(lds, "2", "v1")
    assert not conn.synced()
    conn.answered(cds, "1")
    assert not conn.synced()
    conn.answered(lds, "1")  # a NACK of a nonce that is not the last one sent
    assert not conn.synced()
    conn.answered(lds, "2")
    assert conn.synced()
    conn.sent(cds, "3", "v2")
    assert not conn.synced()


def test_a_pushed_proxy_is_written_once_in_sync_not_also_while_acknowledging() -> None:
    conn = connection()
    conn.sent(conn.watch(CDS), "1", "v1")
    assert not _later(conn, 100.0)  # just connected: shown at once, even out of sync
    conn.status_written = 100.0
    conn.answered(conn.watched[CDS], "1")
    assert not _later(conn, 100.5)
    conn.status_written = 100.5

    conn.sent(conn.watched[CDS], "2", "v2")  # a push, long after the last write
    assert _later(conn, 130.0)
    assert _later(conn, 130.0 + STATUS_EVERY - 0.5)
    conn.answered(conn.watched[CDS], "2")
    assert not _later(conn, 131.0)  # in sync: written now, once


def test_a_proxy_out_of_sync_for_5_s_is_written_every_5_s() -> None:
    conn = connection()
    conn.status_written = 10.0
    conn.sent(conn.watch(CDS), "1", "v1")  # never answered
    assert _later(conn, 50.0)
    assert not _later(conn, 50.0 + STATUS_EVERY)  # out of sync for 5 s: written as it is
    conn.status_written = 50.0 + STATUS_EVERY
    assert _later(conn, 50.0 + STATUS_EVERY + 1)
    assert not _later(conn, 50.0 + 2 * STATUS_EVERY)
