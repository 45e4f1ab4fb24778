"""meshplane-galley --config-dir as a process with a real nats-server: only valid state reaches the bus.

Files are written, changed, broken, fixed, duplicated and deleted; the bus is read back after
each step. The last test restarts NATS while files change and checks that nothing is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus import Buckets, Bus
from meshplane.shared.bus.buckets import config_key, service_key, workload_key
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.polling import eventually

from .process import run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NET = "networking.istio.io"


def vs_yaml(name: str, host: str, subset: str = "v1", hosts: str = "") -> str:
    hosts_line = hosts or f"[{host}]"
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: default
  labels: {{app: {host}}}
spec:
  hosts: {hosts_line}
  http:
  - route:
    - destination: {{host: {host}, subset: {subset}}}
"""


DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
"""

REGISTRY = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http-web, protocol: HTTP}
  workloadSelector:
    labels: {app: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec:
  address: 127.0.0.11
  labels: {app: reviews, version: v1}
  serviceAccount: bookinfo-reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec:
  address: 127.0.0.12
  labels: {app: reviews, version: v2}
"""


def write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, as editors and kubectl-mounted ConfigMaps do."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def vs_key(name: str) -> str:
    return config_key(NET, "VirtualService", "default", name)


async def config_state(bus: Bus) -> dict[str, dict[str, object]]:
    items = await Buckets(bus).config.items()
    return {k: json.loads(v.spec_json) for k, v in items.items()}


async def wait_config(bus: Bus, expected: dict[str, dict[str, object]], what: str) -> None:
    async def matches() -> bool:
        return await config_state(bus) == expected

    await eventually(matches, what, timeout=60)


def vs_spec(host: str, subset: str = "v1") -> dict[str, object]:
    return {"hosts": [host], "http": [{"route": [{"destination": {"host": host, "subset": subset}}]}]}


DR_SPEC = {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}


async def test_directory_changes_reach_the_bus_and_invalid_ones_do_not(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    write(conf / "reviews.yaml", vs_yaml("reviews", "reviews") + "---\n" + DR)
    write(conf / "broken.yaml", vs_yaml("ratings", "ratings", hosts="ratings"))  # hosts must be a list
    write(conf / "garbage.yaml", "kind: [unclosed\n  : :")
    with run_galley(nats_server.url, conf, tmp_path / "galley.log") as galley:
        await galley.wait_ready()
        # Ready means the initial load is already on the bus: no waiting here.
        assert await config_state(bus) == {
            vs_key("reviews"): vs_spec("reviews"),
            config_key(NET, "DestinationRule", "default", "reviews"): DR_SPEC,
        }
        sources = await galley.get("/debug/sources")
        by_path = {f["path"]: f for f in sources["files"]}
        assert by_path["reviews.yaml"]["state"] == "ok"
        assert by_path["broken.yaml"]["state"] == "error"
        assert "spec.hosts" in " ".join(by_path["broken.yaml"]["errors"])
        assert by_path["garbage.yaml"]["state"] == "error"
        assert "galley_source_files_invalid 2.0" in await _metrics(galley.monitoring)
        # The analyzers ran on the loaded state: the routes point at hosts no Service/ServiceEntry defines.
        analysis = (await galley.get("/debug/analyze"))["messages"]
        assert {(m["code"], m["resource"]) for m in analysis} >= {
            ("IST0101", "VirtualService default/reviews")
        }
        assert (
            "analysis: Error [IST0101] (VirtualService default/reviews reviews.yaml:1)" in galley.log_text()
        )

        expected = {
            vs_key("reviews"): vs_spec("reviews"),
            config_key(NET, "DestinationRule", "default", "reviews"): DR_SPEC,
        }
        # Fixing a broken file publishes its object.
        write(conf / "broken.yaml", vs_yaml("ratings", "ratings"))
        expected[vs_key("ratings")] = vs_spec("ratings")
        await wait_config(bus, expected, "the fixed file's VirtualService")

        # A change is published; breaking the file keeps the last valid version.
        write(conf / "broken.yaml", vs_yaml("ratings", "ratings", subset="v2"))
        expected[vs_key("ratings")] = vs_spec("ratings", "v2")
        await wait_config(bus, expected, "the changed VirtualService")
        write(conf / "broken.yaml", vs_yaml("ratings", "ratings", hosts="oops") + "  bogusField: 1\n")
        write(conf / "marker.yaml", vs_yaml("marker", "marker"))
        expected[vs_key("marker")] = vs_spec("marker")
        await wait_config(bus, expected, "the marker file (the broken change must not be published)")
        sources = await galley.get("/debug/sources")
        broken = next(f for f in sources["files"] if f["path"] == "broken.yaml")
        assert broken["state"] == "error"
        assert broken["objects"] == ["VirtualService default/ratings"]

        # The same object in a second file is a conflict: the first definition stays.
        write(conf / "zz-duplicate.yaml", vs_yaml("reviews", "reviews", subset="v9"))
        write(conf / "marker.yaml", vs_yaml("marker", "marker", subset="v2"))
        expected[vs_key("marker")] = vs_spec("marker", "v2")
        await wait_config(bus, expected, "the marker change (the duplicate must not win)")
        dup = next(
            f for f in (await galley.get("/debug/sources"))["files"] if f["path"] == "zz-duplicate.yaml"
        )
        assert dup["state"] == "conflict"
        assert "reviews.yaml" in dup["conflicts"][0]

        # Deleting a file deletes its objects; the duplicate now provides the VirtualService.
        (conf / "reviews.yaml").unlink()
        del expected[config_key(NET, "DestinationRule", "default", "reviews")]
        expected[vs_key("reviews")] = vs_spec("reviews", "v9")
        await wait_config(bus, expected, "the deletion of reviews.yaml")

        # Subdirectories count too.
        (conf / "sub").mkdir()
        write(conf / "sub" / "dr.yaml", DR)
        expected[config_key(NET, "DestinationRule", "default", "reviews")] = DR_SPEC
        await wait_config(bus, expected, "the file in a new subdirectory")
        assert galley.stop() == 0
    log = galley.log_text()
    assert "Traceback" not in log
    assert "shutting down" in log


async def _metrics(base: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(base + "/metrics")).text


async def test_registry_from_serviceentry_and_workloadentries(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    write(conf / "registry.yaml", REGISTRY)
    buckets = Buckets(bus)
    with run_galley(nats_server.url, conf, tmp_path / "galley.log") as galley:
        await galley.wait_ready()
        services = await buckets.services.items()
        svc = services[service_key("default", "reviews.default.svc.cluster.local")]
        assert svc.resolution == registry_pb2.STATIC
        assert [(p.name, p.number, p.protocol) for p in svc.ports] == [("http-web", 9080, registry_pb2.HTTP)]
        assert dict(svc.selector) == {"app": "reviews"}
        workloads = await buckets.workloads.items()
        v1 = workloads[workload_key("default", "reviews-v1")]
        assert v1.address == "127.0.0.11"
        assert v1.service_account == "bookinfo-reviews"
        assert list(v1.services) == ["reviews.default.svc.cluster.local"]
        assert dict(v1.labels) == {"app": "reviews", "version": "v1"}
        assert set(workloads) == {
            workload_key("default", "reviews-v1"),
            workload_key("default", "reviews-v2"),
        }

        # Removing a WorkloadEntry removes its instance.
        write(conf / "registry.yaml", REGISTRY.rsplit("---\n", 1)[0])

        async def one_left() -> bool:
            return set(await buckets.workloads.items()) == {workload_key("default", "reviews-v1")}

        await eventually(one_left, "reviews-v2 to leave the registry")


async def test_nats_restart_while_files_change_loses_nothing(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    for i in range(5):
        write(conf / f"vs{i}.yaml", vs_yaml(f"vs{i}", f"host{i}"))
    expected = {vs_key(f"vs{i}"): vs_spec(f"host{i}") for i in range(5)}
    with run_galley(nats_server.url, conf, tmp_path / "galley.log") as galley:
        await galley.wait_ready()
        assert await config_state(bus) == expected

        nats_server.stop()
        # Changes while the bus is down: add, change, delete.
        write(conf / "vs5.yaml", vs_yaml("vs5", "host5"))
        write(conf / "vs1.yaml", vs_yaml("vs1", "host1", subset="v2"))
        (conf / "vs2.yaml").unlink()
        expected[vs_key("vs5")] = vs_spec("host5")
        expected[vs_key("vs1")] = vs_spec("host1", "v2")
        del expected[vs_key("vs2")]
        nats_server.start()
        await wait_config(bus, expected, "the changes made while NATS was down")

        # A NATS that comes back with an empty store (lost volume) is refilled too.
        nats_server.stop()
        store = nats_server.store_dir
        for path in sorted(store.rglob("*"), reverse=True):
            if path.is_file():
                path.unlink()
        nats_server.start()
        write(conf / "vs6.yaml", vs_yaml("vs6", "host6"))
        expected[vs_key("vs6")] = vs_spec("host6")
        await wait_config(bus, expected, "the whole state after NATS lost its store")
        assert galley.proc.poll() is None
        reconciles = [
            ln
            for ln in (await _metrics(galley.monitoring)).splitlines()
            if ln.startswith("galley_bus_reconciles_total")
        ]
        # Start-up, then at least one more after the reconnects (two reconnects close together
        # may share one reconcile: a read that straddles a reconnect is simply read again).
        assert float(reconciles[0].split()[1]) >= 2
