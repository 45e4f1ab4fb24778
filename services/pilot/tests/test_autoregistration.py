"""VM auto-registration on a real bus, time driven by a manual clock: the entry Istio would make,
its connect/disconnect annotations, the grace period (a reconnect within it keeps the entry),
ownership across two Pilot replicas, health reports and the sweep."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format, struct_pb2

from meshplane.pilot.model import workload_entry as we
from meshplane.pilot.model.config import Config
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.xds.autoregister import AutoRegistration, RegistrationError
from meshplane.shared.bus import Buckets, Bus, EventType
from meshplane.shared.bus.buckets import workload_key
from meshplane.shared.config import models
from meshplane.shared.testing.polling import eventually

from .clock import ManualClock

NS = "vms"
GROUP = {
    "metadata": {"labels": {"team": "db", "app": "from-group"}, "annotations": {"owner": "ops"}},
    "template": {"ports": {"http": 8080}, "labels": {"app": "mysql"}, "serviceAccount": "mysql"},
    "probe": {"httpGet": {"port": 8080, "path": "/ready"}},
}


def group_config(spec: dict[str, Any] = GROUP) -> Config[models.WorkloadGroup]:
    cfg = Config.parse("WorkloadGroup", "networking.istio.io", "v1", NS, "mysql", spec)
    return cfg  # type: ignore[return-value]


def vm_proxy(ip: str = "10.0.0.5", network: str = "", probe: bool = True) -> Proxy:
    meta: dict[str, Any] = {
        "NAMESPACE": NS,
        "AUTO_REGISTER_GROUP": "mysql",
        "LABELS": {"app": "mysql-vm", "istio-locality": "r1.z1", "version": "v2"},
        "INSTANCE_IPS": ip,
    }
    if network:
        meta["NETWORK"] = network
    if probe:
        meta["PROXY_CONFIG"] = {"readinessProbe": GROUP["probe"]}
    struct = struct_pb2.Struct()
    json_format.ParseDict(meta, struct)
    return parse_proxy(f"sidecar~{ip}~vm-1.{NS}~{NS}.svc.cluster.local", struct, "r1/z1")


class Replica:
    """One Pilot's controller with the bucket watched into its ``entries`` (as Pilot's watcher does)."""

    def __init__(self, bus: Bus, pilot_id: str, clock: ManualClock, groups: dict[str, Any]) -> None:
        self.kv = Buckets(bus).workload_entries
        self.entries: dict[str, we.Entry] = {}
        self.deletes: list[str] = []
        self.ctl = AutoRegistration(
            self.kv,
            self.entries,
            lambda ns, name: groups.get(f"{ns}/{name}"),
            pilot_id,
            grace_period=10.0,
            clock=clock,
            sleep=clock.sleep,
        )
        self.synced = asyncio.Event()

    async def watch(self) -> None:
        async with self.kv.watch() as w:
            async for ev in w:
                if ev.type is EventType.SYNCED:
                    self.synced.set()
                elif ev.type is EventType.PUT and ev.value is not None:
                    self.entries[ev.key] = ev.value
                else:
                    self.entries.pop(ev.key, None)
                    self.deletes.append(ev.key)


@contextlib.asynccontextmanager
async def replicas(bus: Bus, *ids: str) -> AsyncIterator[tuple[ManualClock, dict[str, Any], list[Replica]]]:
    clock = ManualClock(start=1_800_000_000.0)
    groups: dict[str, Any] = {f"{NS}/mysql": group_config()}
    made = [Replica(bus, i, clock, groups) for i in ids]
    tasks = [asyncio.create_task(r.watch()) for r in made]
    try:
        for r in made:
            await asyncio.wait_for(r.synced.wait(), 10)
        yield clock, groups, made
    finally:
        for r in made:
            r.ctl.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def seen(r: Replica, key: str, check: Any = lambda e: e is not None) -> we.Entry | None:
    """Wait until the replica's watched view of ``key`` passes ``check``."""
    await eventually(
        lambda: check(r.entries.get(key)), f"{key}: the replica's watched view passing the check"
    )
    return r.entries.get(key)


KEY = workload_key(NS, "mysql-10.0.0.5")


def test_entry_names_follow_istio() -> None:
    assert we.entry_name("mysql", "10.0.0.5") == "mysql-10.0.0.5"
    assert we.entry_name("mysql", "fd00::5", "net-1") == "mysql-fd00--5-net-1"
    long = we.entry_name("g" * 300, "10.0.0.5")
    assert len(long) == 253 and long.endswith("g-10.0.0.5")  # cut from the front


def test_entry_from_group_merges_labels_and_annotations_as_istio() -> None:
    entry = we.entry_from_group(group_config(), vm_proxy(network="net-1"), "mysql-10.0.0.5-net-1")
    res = entry.entry
    spec = json.loads(res.spec_json)
    # template < group metadata < proxy labels; the locality label dropped
    assert spec["labels"] == {"app": "mysql-vm", "team": "db", "version": "v2"}
    assert dict(res.labels) == spec["labels"]
    assert spec["address"] == "10.0.0.5" and spec["network"] == "net-1" and spec["locality"] == "r1/z1"
    assert spec["ports"] == {"http": 8080} and spec["serviceAccount"] == "mysql"
    assert dict(res.annotations) == {
        "istio.io/autoRegistrationGroup": "mysql",
        "owner": "ops",
        "proxy.istio.io/health-checks-enabled": "true",
    }
    assert (res.kind, res.namespace, res.name) == ("WorkloadEntry", NS, "mysql-10.0.0.5-net-1")
    # health-checked: no traffic before the first healthy report
    assert not we.is_healthy(entry)
    assert not we.health_checked(we.entry_from_group(group_config(), vm_proxy(probe=False), "x"))


async def test_connect_registers_disconnect_deletes_after_the_grace_period(bus: Bus) -> None:
    async with replicas(bus, "pilot-a") as (clock, _, [a]):
        proxy = vm_proxy()
        await a.ctl.connect(proxy)
        entry = await seen(a, KEY)
        assert entry is not None
        assert entry.entry.annotations[we.WORKLOAD_CONTROLLER] == "pilot-a"
        assert we.connected_at(entry) == pytest.approx(clock.now, abs=1e-5)
        await a.ctl.disconnect(proxy)
        entry = await seen(a, KEY, lambda e: e is not None and we.DISCONNECTED_AT in e.entry.annotations)
        assert entry is not None and we.CONNECTED_AT not in entry.entry.annotations
        await clock.advance(9.5)
        assert KEY in a.entries and a.deletes == []
        await clock.advance(0.5)
        await seen(a, KEY, lambda e: e is None)
        assert a.deletes == [KEY]


async def test_a_wall_clock_behind_the_timer_still_deletes_at_the_end_of_the_grace_period(bus: Bus) -> None:
    # the entry records wall-clock time, the timer sleeps on the loop's clock: when the wall clock
    # falls behind (NTP slewing, a step back), the timer wakes a little before the entry's grace
    # period is over, and must wait out the rest rather than leave the entry to the sweep
    async with replicas(bus, "pilot-a") as (clock, _, [a]):
        lag = 0.0
        a.ctl.clock = lambda: clock.now - lag
        proxy = vm_proxy()
        await a.ctl.connect(proxy)
        await a.ctl.disconnect(proxy)
        await seen(a, KEY, lambda e: e is not None and we.DISCONNECTED_AT in e.entry.annotations)
        lag = 0.25
        await clock.advance(10)
        assert KEY in a.entries and a.deletes == []
        await clock.advance(0.25)
        await seen(a, KEY, lambda e: e is None)
        assert a.deletes == [KEY]


async def test_reconnect_within_the_grace_period_keeps_the_entry(bus: Bus) -> None:
    async with replicas(bus, "pilot-a") as (clock, _, [a]):
        proxy = vm_proxy()
        await a.ctl.connect(proxy)
        await a.ctl.disconnect(proxy)
        await clock.advance(6)
        await a.ctl.connect(proxy)
        entry = await seen(a, KEY, lambda e: e is not None and we.CONNECTED_AT in e.entry.annotations)
        await clock.advance(30)  # well past the first grace period
        assert entry is not None and KEY in a.entries and a.deletes == []


async def test_a_second_stream_of_the_same_proxy_keeps_it_connected(bus: Bus) -> None:
    async with replicas(bus, "pilot-a") as (clock, _, [a]):
        proxy = vm_proxy()
        await a.ctl.connect(proxy)
        await a.ctl.connect(proxy)
        await a.ctl.disconnect(proxy)
        await clock.advance(20)
        entry = await seen(a, KEY)
        assert entry is not None and we.CONNECTED_AT in entry.entry.annotations and a.deletes == []


async def test_only_the_replica_the_proxy_is_connected_to_owns_the_entry(bus: Bus) -> None:
    async with replicas(bus, "pilot-a", "pilot-b") as (clock, _, [a, b]):
        proxy = vm_proxy()
        await a.ctl.connect(proxy)
        await seen(b, KEY)
        await clock.advance(1)
        await b.ctl.connect(proxy)  # the proxy moved to pilot-b before pilot-a saw it go
        await seen(a, KEY, lambda e: e is not None and we.controller(e) == "pilot-b")
        await a.ctl.disconnect(proxy)  # pilot-a no longer owns it: nothing changes
        await clock.advance(20)
        entry = await seen(b, KEY)
        assert entry is not None and we.controller(entry) == "pilot-b"
        assert we.CONNECTED_AT in entry.entry.annotations and b.deletes == []


async def test_missing_group_fails_the_connection(bus: Bus) -> None:
    async with replicas(bus, "pilot-a") as (_, groups, [a]):
        groups.clear()
        with pytest.raises(RegistrationError, match=f"cannot find WorkloadGroup {NS}/mysql"):
            await a.ctl.connect(vm_proxy())


def _health(error: str = "") -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(type_url="type.googleapis.com/istio.v1.HealthInformation")
    if error:
        req.error_detail.code = 13
        req.error_detail.message = error
    return req


async def test_health_reports_set_the_healthy_condition(bus: Bus) -> None:
    async with replicas(bus, "pilot-a") as (_, _, [a]):
        proxy = vm_proxy()
        await a.ctl.report_health(proxy, _health())  # before registration: kept for it
        await a.ctl.connect(proxy)
        entry = await seen(a, KEY)
        assert entry is not None and we.is_healthy(entry)
        await a.ctl.report_health(proxy, _health("GET /ready: HTTP 503"))
        entry = await seen(a, KEY, lambda e: e is not None and not we.is_healthy(e))
        assert entry is not None
        [cond] = entry.conditions
        assert (cond.type, cond.status, cond.message) == ("Healthy", "False", "GET /ready: HTTP 503")


async def test_sweep_deletes_what_dead_replicas_and_deleted_groups_left(bus: Bus) -> None:
    async with replicas(bus, "pilot-a", "pilot-b") as (clock, groups, [a, b]):
        for ip in ("5", "6", "7"):
            await a.ctl.connect(vm_proxy(f"10.0.0.{ip}"))
        await a.ctl.disconnect(vm_proxy("10.0.0.6"))
        a.ctl.close()  # pilot-a dies before its grace-period timer fires
        key6 = workload_key(NS, "mysql-10.0.0.6")
        await seen(b, key6, lambda e: e is not None and we.DISCONNECTED_AT in e.entry.annotations)
        for ip in ("5", "7"):
            await seen(b, workload_key(NS, f"mysql-10.0.0.{ip}"))
        await clock.advance(11)
        assert await b.ctl.sweep() == 1  # disconnected for longer than the grace period
        await clock.advance(1.5 * 1800)
        assert await b.ctl.sweep() == 2  # "connected" to a Pilot that stopped refreshing them
        await seen(b, workload_key(NS, "mysql-10.0.0.7"), lambda e: e is None)
        await b.ctl.connect(vm_proxy("10.0.0.8"))
        await a.ctl.connect(vm_proxy("10.0.0.9"))
        await seen(b, workload_key(NS, "mysql-10.0.0.9"))
        del groups[f"{NS}/mysql"]
        # the group is gone: each replica deletes its own entries (another may not have seen the
        # group yet, so pilot-b leaves pilot-a's connected one alone)
        assert await b.ctl.sweep() == 1
        await seen(b, workload_key(NS, "mysql-10.0.0.8"), lambda e: e is None)
        assert sorted(b.entries) == [workload_key(NS, "mysql-10.0.0.9")]
        await seen(a, workload_key(NS, "mysql-10.0.0.9"))
        assert await a.ctl.sweep() == 1
        await seen(b, workload_key(NS, "mysql-10.0.0.9"), lambda e: e is None)


async def test_with_mutual_tls_the_proxys_account_must_be_the_entrys(bus: Bus) -> None:
    async with replicas(bus, "pilot-a") as (_, _, [a]):
        a.ctl.validate_identity = True
        with pytest.raises(RegistrationError, match="is not the WorkloadEntry's service account 'mysql'"):
            await a.ctl.connect(vm_proxy())  # claims no account: its certificate's is not "mysql"
        struct = struct_pb2.Struct()
        json_format.ParseDict(
            {"NAMESPACE": NS, "AUTO_REGISTER_GROUP": "mysql", "SERVICE_ACCOUNT": "mysql"}, struct
        )
        await a.ctl.connect(parse_proxy(f"sidecar~10.0.0.5~vm-1.{NS}~{NS}.svc.cluster.local", struct))
        assert await seen(a, KEY) is not None
