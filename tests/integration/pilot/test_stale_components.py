"""A component killed with SIGKILL cannot withdraw its record: ``meshctl version`` must stop listing
it within the stale limit, a live component must delete the record after the collection limit,
and the live component, which keeps refreshing, stays listed. Real nats-server, two real Pilots,
the real CLI; the limits are shortened through the documented environment variables."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from meshplane.shared.bus import Buckets, Bus, BusOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MESHCTL = Path(sys.executable).parent / "meshctl"
REFRESH, STALE, GC = 0.5, 3.0, 6.0
LIMITS = {
    "MESHPLANE_COMPONENT_REFRESH_SECONDS": str(REFRESH),
    "MESHPLANE_COMPONENT_STALE_SECONDS": str(STALE),
    "MESHPLANE_COMPONENT_GC_SECONDS": str(GC),
}


def listed(nats_url: str) -> set[str]:
    """Instances ``meshctl version -o json`` lists."""
    out = subprocess.run(
        [str(MESHCTL), "version", "-o", "json", "--nats-url", nats_url],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **LIMITS},
    )
    assert out.returncode == 0, out.stderr
    return {c["instance"] for c in json.loads(out.stdout)["components"]}


def stored(nats_url: str) -> set[str]:
    """Instances with a record in the components bucket, fresh or not."""

    async def go() -> set[str]:
        bus = await Bus.connect(BusOptions(url=nats_url))
        try:
            return {info.instance for info in (await Buckets(bus).components.items()).values()}
        finally:
            await bus.close()

    return asyncio.run(go())


def test_sigkilled_component_disappears_from_version_live_one_stays(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    url = nats_module.url
    pilots = {name: kit.start_pilot(url, tmp_path, name, LIMITS) for name in ("doomed-c", "survivor-c")}
    try:
        kit.wait_until(lambda: set(pilots) <= listed(url), 30, "both Pilots in meshctl version")
        first_seen = time.monotonic()
        pilots["doomed-c"].proc.send_signal(signal.SIGKILL)
        pilots["doomed-c"].proc.wait(10)
        killed = time.monotonic()
        # hidden by readers within the stale limit (plus slack for a loaded machine)
        kit.wait_until(lambda: "doomed-c" not in listed(url), STALE + 15, "dead Pilot no longer listed")
        assert time.monotonic() - killed <= STALE + 15
        # deleted from the bucket by the live Pilot's sweep (every GC / 2) once older than GC
        kit.wait_until(lambda: "doomed-c" not in stored(url), GC * 1.5 + 15, "dead Pilot's record swept")
        # the survivor's first write is long past the stale limit: it is listed because it refreshes
        assert time.monotonic() - first_seen > STALE
        assert "survivor-c" in listed(url)
        pilots["survivor-c"].stop()
        assert "survivor-c" not in stored(url)  # a clean stop withdraws at once
    finally:
        for pilot in pilots.values():
            pilot.stop()
