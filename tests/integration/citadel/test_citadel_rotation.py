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


def watch_serials(envoy: Any, seconds: float) -> list[set[str]]:
    """Distinct serial sets seen on Envoy's /certs over ``seconds``."""
    seen: list[set[str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        serials = envoy.cert_serials()
        if not seen or serials != seen[-1]:
            seen.append(serials)
        time.sleep(0.2)
    return seen


def test_workload_certs_rotate_under_traffic(make_mesh: Callable[..., Any]) -> None:
    mesh = make_mesh(cert_ttl="20s")
    server_first = mesh.server_envoy.cert_serials()
    with Traffic(mesh.url) as traffic:
        seen = watch_serials(mesh.client_envoy, 26)
    assert traffic.failures == []
    assert mesh.server_envoy.cert_serials() != server_first  # the Delta SDS side rotated too
    assert traffic.ok > 100
    # 20 s certs renewed at about half life: at least two rotations in 26 s
    assert len(seen) >= 3, seen
    assert "workload certificate" in mesh.client_agent.log()


def test_traffic_flows_while_citadel_is_away_and_agent_recovers(make_mesh: Callable[..., Any]) -> None:
    mesh = make_mesh(cert_ttl="30s")
    first = mesh.client_envoy.cert_serials()
    with Traffic(mesh.url) as traffic:
        mesh.citadel.stop()
        time.sleep(17)  # the agents' renewal (at ~13-15 s) falls in this outage
        ok_during_outage = traffic.ok
        mesh.citadel.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and mesh.client_envoy.cert_serials() == first:
            time.sleep(0.2)
    assert traffic.failures == []
    assert ok_during_outage > 50
    assert mesh.client_envoy.cert_serials() != first
    assert "certificate request failed" in mesh.client_agent.log()


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
        deadline = time.monotonic() + 40
        roots = first_root
        while time.monotonic() < deadline:
            roots = mesh.client_envoy.root_serials()
            if len(roots) >= 2 and first_root < roots:
                break
            time.sleep(0.2)
        # keep traffic going over new workload certs issued under the new root
        serials = mesh.server_envoy.cert_serials()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and mesh.server_envoy.cert_serials() == serials:
            time.sleep(0.2)
    assert traffic.failures == []
    # old and new roots trusted side by side, from the trust bundle on the bus
    assert first_root < roots and len(roots) >= 2, roots
    assert mesh.server_envoy.cert_serials() != serials
    assert "rotated self-signed root" in mesh.citadel.log()
