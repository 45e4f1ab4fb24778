"""A live Pilot deletes proxy-status records no Pilot has refreshed for the grace period (real bus)."""

from __future__ import annotations

import time

from meshplane.pilot.status import sweep_stale
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, Bus, make_key
from meshplane.shared.proxystatus import GC_AFTER_SECONDS, STALE_AFTER_SECONDS, is_live


def _record(proxy: str, pilot: str, age: float | None) -> status_pb2.ProxyStatus:
    rec = status_pb2.ProxyStatus(proxy_id=proxy, pilot_id=pilot)
    if age is not None:
        rec.updated.FromNanoseconds(int((time.time() - age) * 1e9))
    return rec


async def test_sweep_deletes_only_records_unrefreshed_past_the_grace_period(bus: Bus) -> None:
    kv = Buckets(bus).proxy_status
    records = {
        make_key("live", "a.ns"): _record("a.ns", "live", 3),
        make_key("dead", "b.ns"): _record("b.ns", "dead", GC_AFTER_SECONDS + 5),
        make_key("ancient", "c.ns"): _record("c.ns", "ancient", None),
        make_key("dying", "d.ns"): _record("d.ns", "dying", STALE_AFTER_SECONDS + 5),
    }
    for key, rec in records.items():
        await kv.put(key, rec)
    assert await sweep_stale(kv) == 2
    left = await kv.items()
    assert sorted(left) == sorted([make_key("live", "a.ns"), make_key("dying", "d.ns")])
    # hidden from readers already, deleted once the grace period has passed too
    assert not is_live(left[make_key("dying", "d.ns")])
    assert await sweep_stale(kv, now=time.time() + GC_AFTER_SECONDS - 10) == 1
    assert list(await kv.items()) == [make_key("live", "a.ns")]
