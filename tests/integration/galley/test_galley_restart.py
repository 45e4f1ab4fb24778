"""A galley killed and started again re-reads its directory and reconciles without a flap: objects
that did not change are not written again (same revision, no delete-then-put), changed ones are;
a file broken while it was down keeps the objects it last published."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from meshplane.shared.bus import Bus
from meshplane.shared.bus.buckets import Buckets, config_key
from meshplane.shared.natsserver import NatsServer

from .process import run_galley
from .test_galley_directory import (
    DR,
    DR_SPEC,
    NET,
    REGISTRY,
    config_state,
    vs_key,
    vs_spec,
    vs_yaml,
    wait_config,
    write,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DR_KEY = config_key(NET, "DestinationRule", "default", "reviews")


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


async def test_file_broken_while_galley_was_down_keeps_its_last_good_objects(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    """Istio keeps the last good config in effect: a restarted galley that finds a file broken keeps
    what that file last published; a file deleted meanwhile still loses its objects."""
    conf = tmp_path / "conf"
    conf.mkdir()
    write(conf / "kept.yaml", vs_yaml("kept", "reviews") + "---\n" + DR)
    write(conf / "partial.yaml", vs_yaml("p1", "ratings") + "---\n" + vs_yaml("p2", "details"))
    write(conf / "gone.yaml", vs_yaml("gone", "productpage"))
    with run_galley(nats_server.url, conf, tmp_path / "galley-1.log") as first:
        await first.wait_ready()
        expected = {
            vs_key("kept"): vs_spec("reviews"),
            DR_KEY: DR_SPEC,
            vs_key("p1"): vs_spec("ratings"),
            vs_key("p2"): vs_spec("details"),
            vs_key("gone"): vs_spec("productpage"),
        }
        await wait_config(bus, expected, "the first galley's objects")
        before = await stream_heads(bus)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)

    # While galley is down: kept.yaml stops parsing, partial.yaml changes p1 and breaks p2 (an
    # invalid field), gone.yaml is deleted.
    write(conf / "kept.yaml", vs_yaml("kept", "reviews", subset="v9") + "---\nkind: [unclosed\n")
    write(
        conf / "partial.yaml",
        vs_yaml("p1", "ratings", subset="v2") + "---\n" + vs_yaml("p2", "details", "v2", hosts="details"),
    )
    (conf / "gone.yaml").unlink()

    with run_galley(nats_server.url, conf, tmp_path / "galley-2.log") as second:
        await second.wait_ready()  # ready only once its reconcile is on the bus
        del expected[vs_key("gone")]
        expected[vs_key("p1")] = vs_spec("ratings", "v2")
        assert await config_state(bus) == expected
        # One delete (gone) and one put (p1): the kept objects were not written again.
        assert (await stream_heads(bus))["config"] == before["config"] + 2

        files = {f["path"]: f for f in (await second.get("/debug/sources"))["files"]}
        assert files["kept.yaml"]["state"] == "error"
        assert any("kept.yaml:" in e for e in files["kept.yaml"]["errors"])
        assert any("keeping 2 object(s)" in w for w in files["kept.yaml"]["warnings"])
        assert files["partial.yaml"]["state"] == "error"
        assert any("VirtualService default/p2" in e for e in files["partial.yaml"]["errors"])
        assert "gone.yaml" not in files
        assert "config file kept.yaml" in second.log_text()

        # Fixed: the new content is published (and the DR the file no longer holds is deleted).
        write(conf / "kept.yaml", vs_yaml("kept", "reviews", subset="v9"))
        del expected[DR_KEY]
        expected[vs_key("kept")] = vs_spec("reviews", "v9")
        await wait_config(bus, expected, "the fixed file's new content")
        files = {f["path"]: f for f in (await second.get("/debug/sources"))["files"]}
        assert files["kept.yaml"]["state"] == "ok" and files["kept.yaml"]["warnings"] == []
