"""Certificates rotate under continuous traffic without a failed request: workload certs, Citadel
away for a while, and a self-signed root rotation (old and new roots trusted side by side)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@dataclass
class Traffic:
    url: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.get(self.url)
                    if r.status_code == 200 and "URI=spiffe://" in r.text:
                        self.ok += 1
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.02)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def serial_history(envoy: Any) -> Callable[[], list[set[str]]]:
    """A poll function recording each distinct serial set Envoy's /certs shows (oldest first)."""
    seen: list[set[str]] = []

    def poll() -> list[set[str]]:
        serials = envoy.cert_serials()
        if not seen or serials != seen[-1]:
            seen.append(serials)
        return seen

    return poll


def test_workload_certs_rotate_under_traffic(make_mesh: Callable[..., Any]) -> None:
    mesh = make_mesh(cert_ttl="12s")
    server_first = mesh.server_envoy.cert_serials()
    client = serial_history(mesh.client_envoy)
    client()
    with Traffic(mesh.url) as traffic:
        # 12 s certificates renewed at about half life: two rotations come within ~12 s
        wait_until(lambda: len(client()) >= 3, 45, "two rotations of the client's certificate")
        wait_until(lambda: mesh.server_envoy.cert_serials() != server_first, 20, "the server side to rotate")
        ok_before = traffic.ok
        wait_until(lambda: traffic.ok >= ok_before + 20, 20, "traffic over the rotated certificates")
    assert traffic.failures == []
    assert traffic.ok > 100
    assert "workload certificate" in mesh.client_agent.log()


def test_traffic_flows_while_citadel_is_away_and_agent_recovers(make_mesh: Callable[..., Any]) -> None:
    mesh = make_mesh(cert_ttl="30s")
    first = mesh.client_envoy.cert_serials()
    with Traffic(mesh.url) as traffic:
        mesh.citadel.stop()
        # the agent's renewal (at ~13-15 s of the 30 s lifetime) happens while Citadel is away
        wait_until(
            lambda: "certificate request failed" in mesh.client_agent.log(), 25, "a renewal during the outage"
        )
        ok_at_failure = traffic.ok
        wait_until(lambda: traffic.ok >= ok_at_failure + 50, 10, "traffic on the cached certificate")
        assert mesh.client_envoy.cert_serials() == first  # still the old one, still working
        mesh.citadel.start()
        wait_until(lambda: mesh.client_envoy.cert_serials() != first, 20, "the renewal once Citadel is back")
    assert traffic.failures == []


def test_root_rotation_under_traffic(make_mesh: Callable[..., Any]) -> None:
    env = {
        "CITADEL_SELF_SIGNED_CA_CERT_TTL": "40s",
        "CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL": "1s",
        "CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE": "70",
        "CITADEL_ENABLE_JITTER_FOR_ROOT_CERT_ROTATOR": "false",
    }
    mesh = make_mesh(cert_ttl="20s", citadel_env=env, nats=True)
    first_root = mesh.client_envoy.root_serials()
    with Traffic(mesh.url) as traffic:

        def both_roots() -> bool:
            roots = mesh.client_envoy.root_serials()
            return len(roots) >= 2 and first_root < roots

        wait_until(both_roots, 40, "the new root trusted next to the old one")
        roots = mesh.client_envoy.root_serials()
        # keep traffic going over new workload certs issued under the new root
        serials = mesh.server_envoy.cert_serials()
        wait_until(
            lambda: mesh.server_envoy.cert_serials() != serials, 20, "a certificate under the new root"
        )
    assert traffic.failures == []
    # old and new roots trusted side by side, from the trust bundle on the bus
    assert first_root < roots and len(roots) >= 2, roots
    assert mesh.server_envoy.cert_serials() != serials
    assert "rotated self-signed root" in mesh.citadel.log()
