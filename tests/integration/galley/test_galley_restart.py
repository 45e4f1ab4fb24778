"""A galley killed and started again re-reads its directory and reconciles without a flap: objects
that did not change are not written again (same revision, no delete-then-put), changed ones are."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from meshplane.shared.bus import Bus
from meshplane.shared.bus.buckets import Buckets
from meshplane.shared.natsserver import NatsServer

from .process import run_galley
from .test_galley_directory import REGISTRY, config_state, vs_key, vs_spec, vs_yaml, wait_config, write

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def stream_heads(bus: Bus) -> dict[str, int]:
    """The last sequence of each bucket galley writes: any put or delete moves it."""
    b = Buckets(bus)
    kvs = {"config": b.config.stream, "services": b.services.stream, "workloads": b.workloads.stream}
    return {name: (await bus.jetstream.stream_info(s)).state.last_seq for name, s in kvs.items()}


async def test_killed_galley_restarts_without_rewriting_unchanged_objects(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    for i in range(3):
        write(conf / f"vs{i}.yaml", vs_yaml(f"vs{i}", f"host{i}"))
    write(conf / "registry.yaml", REGISTRY)
    with run_galley(nats_server.url, conf, tmp_path / "galley-1.log") as first:
        await first.wait_ready()
        expected = await config_state(bus)  # the VirtualServices, the ServiceEntry, WorkloadEntries
        assert {vs_key(f"vs{i}") for i in range(3)} < expected.keys()
        before = await stream_heads(bus)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    services = await Buckets(bus).services.items()
    workloads = await Buckets(bus).workloads.items()
    assert services and workloads

    with run_galley(nats_server.url, conf, tmp_path / "galley-2.log") as second:
        await second.wait_ready()  # ready only once its reconcile is on the bus
        assert await stream_heads(bus) == before, "the restarted galley rewrote unchanged objects"
        assert await Buckets(bus).services.items() == services
        assert await Buckets(bus).workloads.items() == workloads

        # It follows the directory: an edit after the restart is one put, nothing else.
        write(conf / "vs1.yaml", vs_yaml("vs1", "host1", subset="v2"))
        expected[vs_key("vs1")] = vs_spec("host1", "v2")
        await wait_config(bus, expected, "an edit made after the restart")
        after = await stream_heads(bus)
        assert after["config"] == before["config"] + 1
        assert (after["services"], after["workloads"]) == (before["services"], before["workloads"])
