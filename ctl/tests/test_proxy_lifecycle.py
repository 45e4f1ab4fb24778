"""`meshctl wait` and `meshctl drain` (the injected proxy's postStart and preStop hooks for
holdApplicationUntilProxyStarts and terminationDrainDuration) against a real Envoy."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshplane.ctl.bootstrap import BootstrapOptions, render_bootstrap
from meshplane.ctl.main import main
from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import free_port
from meshplane.shared.testing.polling import eventually


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            return conn.recv(16) == b"hi"
    except OSError:
        return False


def listener(name: str, port: int, direction: str) -> dict[str, Any]:
    reply = {
        "name": "envoy.filters.network.direct_response",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.direct_response.v3.Config",
            "response": {"inline_string": "hi"},
        },
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    return {
        "name": name,
        "address": address,
        "traffic_direction": direction,
        "filter_chains": [{"filters": [reply]}],
    }


def static_envoy(tmp_path: Path, health: int, listeners: list[dict[str, Any]]) -> EnvoyProcess:
    """An Envoy without xDS (live at once), Istio's health listener and ``listeners``."""
    admin = free_port()
    boot = render_bootstrap(BootstrapOptions(admin=f"127.0.0.1:{admin}", health_port=health))
    del boot["dynamic_resources"]
    boot["static_resources"]["clusters"] = [
        c for c in boot["static_resources"]["clusters"] if c["name"] != "xds-grpc"
    ]
    boot["static_resources"]["listeners"] += listeners
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(boot))
    return EnvoyProcess(path, admin, log_file=tmp_path / "envoy.log")


def test_wait_returns_once_the_proxy_is_ready_and_fails_after_its_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    health = free_port()
    url = f"http://127.0.0.1:{health}/healthz/ready"
    assert main(["wait", "--url", url, "--timeout", "300ms", "--period", "50ms"]) == 1
    assert "the proxy was not ready within 300ms" in capsys.readouterr().err
    with static_envoy(tmp_path, health, []) as envoy:
        assert main(["wait", "--url", url, "--timeout", "30s", "--period", "100ms"]) == 0
        envoy.wait_ready()
    assert main(["wait", "--url", url, "--timeout", "soon"]) == 2


def test_drain_stops_inbound_listeners_after_serving_for_the_duration(tmp_path: Path) -> None:
    inbound, outbound = free_port(), free_port()
    listeners = [listener("inbound", inbound, "INBOUND"), listener("outbound", outbound, "OUTBOUND")]
    envoy = static_envoy(tmp_path, free_port(), listeners)
    envoy.drain_time_s = 1
    with envoy:
        envoy.wait_ready()
        assert accepts(inbound) and accepts(outbound)
        started = time.monotonic()
        assert main(["drain", "--admin", f"127.0.0.1:{envoy.admin_port}", "--duration", "1500ms"]) == 0
        assert time.monotonic() - started >= 1.5  # the hook keeps the pod alive while draining

        async def inbound_closed() -> bool:
            return not accepts(inbound)

        asyncio.run(eventually(inbound_closed, "the inbound listener to stop after its drain", 10))
        assert accepts(outbound)  # inboundonly: outbound traffic of the app still flows
    assert main(["drain", "--admin", f"127.0.0.1:{free_port()}", "--duration", "0s"]) == 2
