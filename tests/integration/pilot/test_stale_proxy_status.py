"""A Pilot killed with SIGKILL cannot clean up its proxy-status records: ``meshctl proxy-status``
must stop showing its proxies within ``STALE_AFTER_SECONDS`` while a live Pilot's rows, refreshed
every ``REFRESH_SECONDS``, stay. Real nats-server, two real Pilots, two real Envoys, the real CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from meshplane.shared.proxystatus import STALE_AFTER_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NS = "shop"
MESHCTL = Path(sys.executable).parent / "meshctl"


def shown(nats_url: str) -> dict[str, str]:
    """``meshctl proxy-status``'s rows: proxy → the Pilot column."""
    out = subprocess.run(
        [str(MESHCTL), "proxy-status", "--nats-url", nats_url], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]
    return {r[0]: r[-2] for r in rows}


def test_sigkilled_pilot_rows_disappear_live_pilot_rows_stay(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    url = nats_module.url
    base = kit.loopback_base()
    pilots = {name: kit.start_pilot(url, tmp_path, name) for name in ("doomed", "survivor")}
    envoys = []
    try:
        for index, (name, pilot) in enumerate(pilots.items(), start=1):
            opts = kit.proxy_options(
                "sidecar",
                base + str(index),
                f"on-{name}",
                NS,
                {"app": name},
                [f"127.0.0.1:{pilot.grpc}"],
                False,
            )
            envoys.append(kit.start_envoy(tmp_path, name, opts))
        expected = {f"on-doomed.{NS}": "doomed", f"on-survivor.{NS}": "survivor"}
        kit.wait_until(lambda: expected.items() <= shown(url).items(), 60, "both proxies in proxy-status")
        first_seen = time.monotonic()
        pilots["doomed"].proc.send_signal(signal.SIGKILL)
        pilots["doomed"].proc.wait(10)
        killed = time.monotonic()
        # the dead Pilot's row goes within the documented time (plus slack for a loaded machine)
        kit.wait_until(
            lambda: f"on-doomed.{NS}" not in shown(url), STALE_AFTER_SECONDS + 15, "dead Pilot's row gone"
        )
        assert time.monotonic() - killed <= STALE_AFTER_SECONDS + 15
        # once the survivor's first record is older than the stale limit, it is shown only because
        # the live Pilot refreshes it (every REFRESH_SECONDS)
        kit.wait_until(
            lambda: time.monotonic() - first_seen > STALE_AFTER_SECONDS + 1, STALE_AFTER_SECONDS, "staleness"
        )
        assert shown(url) == {f"on-survivor.{NS}": "survivor"}
    finally:
        for envoy in envoys:
            envoy.stop()
        for pilot in pilots.values():
            pilot.stop()
