"""The shared Kubernetes reflector against a local HTTP server replaying the API's JSON shapes.

The unit-level facts; ``tests/kube/test_galley_api.py`` shows the same against the real API server
(a restart, etcd compaction and the 410 relist).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from kubernetes import client as kube_client

from meshplane.shared.reflector import ApiError, ApiUnreachable, Reflector, ResourceDef, WatchEvent
from meshplane.shared.retry import RetryPolicy
from meshplane.shared.tasks import Backoff, TaskSupervisor
from meshplane.shared.testing.kubeapi import RecordedAPI, serve
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.timeout(60)

PATH = "/api/v1/configmaps"
CONFIGMAPS = ResourceDef("", "v1", "ConfigMap", "configmaps")
FAST = RetryPolicy(retry_on=(ApiError, ApiUnreachable), initial=0.01, maximum=0.05)


def cm(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}, "data": {"v": rv}}


def listing(rv: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "ConfigMapList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv},
        "items": list(items),
    }


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


GONE = event(
    "ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
)


class Seen:
    """A sink recording what it was given: (type, name, resourceVersion) and list completions."""

    def __init__(self, fail_first: str = "") -> None:
        self.delivered: list[tuple[str, str, str]] = []
        self.lists = 0
        self.fail_first = fail_first

    async def __call__(self, changes: Sequence[WatchEvent], listed: bool) -> None:
        for change in changes:
            name = change.obj["metadata"]["name"]
            if name == self.fail_first:
                self.fail_first = ""
                raise RuntimeError(f"sink failed on {name}")
            self.delivered.append((change.type, name, change.obj["metadata"]["resourceVersion"]))
        self.lists += listed


def reflector(url: str, sink: Seen) -> Reflector:
    api = kube_client.ApiClient(kube_client.Configuration(host=url))
    return Reflector(api, CONFIGMAPS, sink, policy=FAST, field_selector="metadata.namespace=ns")


async def run_until(
    api: RecordedAPI,
    seen: Seen,
    done: Callable[[Reflector], bool],
    what: str,
    make: Callable[[str, Seen], Reflector] = reflector,
) -> Reflector:
    """Run a reflector against ``api`` until ``done(reflector)``; its stop must end it within 2 s."""
    stop = asyncio.Event()
    with serve(api) as url:
        r = make(url, seen)
        task = asyncio.create_task(r.run(stop))

        async def check() -> bool:
            return done(r)

        try:
            await eventually(check, what)
        finally:
            stop.set()
            await asyncio.wait_for(task, 2)
    return r


async def test_duplicates_are_dropped_and_a_410_relist_delivers_only_the_difference() -> None:
    api = RecordedAPI()
    api.add_list(PATH, listing("10", cm("a", "1"), cm("b", "2")))
    api.add_watch(PATH, [
        event("ADDED", cm("a", "1")),  # already held at this version: not again
        event("MODIFIED", cm("b", "11")),
        event("DELETED", cm("unknown", "12")),  # never held: nothing to delete
        {"type": "BOOKMARK", "object": {"kind": "ConfigMap", "metadata": {"resourceVersion": "13"}}},
        GONE,
    ])  # fmt: skip
    # Meanwhile: a deleted, b unchanged since the watch, c added.
    api.add_list(PATH, listing("20", cm("b", "11"), cm("c", "15")))
    seen = Seen()
    r = await run_until(api, seen, lambda r: r.lists == 2, "the relist after 410 Gone")
    assert seen.delivered == [
        ("ADDED", "a", "1"), ("ADDED", "b", "2"),  # the first list
        ("MODIFIED", "b", "11"),  # the watch
        ("DELETED", "a", "1"), ("ADDED", "c", "15"),  # the relist's difference
    ]  # fmt: skip
    assert seen.lists == 2
    assert (r.expired, r.resource_version, sorted(r.store)) == (1, "20", ["ns/b", "ns/c"])
    assert r.events == {"ADDED": 3, "MODIFIED": 1, "DELETED": 1}
    watches = api.requested(PATH, watch=True)
    assert [q.get("resourceVersion") for q in watches] == ["10", "20"]
    assert all(q["fieldSelector"] == "metadata.namespace=ns" for q in api.requested(PATH, watch=False))


async def test_one_namespace_and_a_field_selector_narrow_the_list_and_the_watch() -> None:
    path = "/api/v1/namespaces/gw/configmaps"
    api = RecordedAPI()
    api.add_list(path, listing("3"))  # not there yet
    api.add_watch(path, [event("ADDED", cm("cred", "4")), event("DELETED", cm("cred", "5"))])
    api.add_watch(path, 410)  # resumed from "5", which is gone: relist
    api.add_list(path, listing("6", cm("cred", "6")))

    def one(url: str, sink: Seen) -> Reflector:
        api_client = kube_client.ApiClient(kube_client.Configuration(host=url))
        return Reflector(api_client, CONFIGMAPS, sink, namespace="gw", field_selector="metadata.name=cred",
                         policy=FAST)  # fmt: skip

    seen = Seen()
    r = await run_until(api, seen, lambda r: r.lists == 2, "the relist after 410", one)
    assert seen.delivered == [("ADDED", "cred", "4"), ("DELETED", "cred", "5"), ("ADDED", "cred", "6")]
    assert r.status()["path"] == path
    requests = api.requested(path, watch=False) + api.requested(path, watch=True)
    assert len(requests) >= 3
    assert all(q["fieldSelector"] == "metadata.name=cred" for q in requests)
    assert api.requested(PATH, watch=False) == []  # never the Secrets of every namespace


async def test_an_api_error_is_retried_with_backoff_and_kept_as_the_last_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = RecordedAPI()
    forbidden = {"kind": "Status", "code": 403, "message": 'configmaps is forbidden: User "x" cannot list'}
    api.add_list(PATH, forbidden, status=403)
    api.add_list(PATH, forbidden, status=403)
    api.add_list(PATH, listing("5", cm("a", "1")))
    seen = Seen()
    caplog.set_level(logging.INFO, "meshplane.reflector")
    r = await run_until(api, seen, lambda _: seen.lists == 1, "the list once the API allows it")
    assert seen.delivered == [("ADDED", "a", "1")]
    assert "HTTP 403" in r.last_error and "forbidden" in r.last_error
    assert len(api.requested(PATH, watch=False)) == 3
    assert "(attempt 2); retrying in" in caplog.text


async def test_stop_ends_a_watch_the_server_holds_open_at_once() -> None:
    api = RecordedAPI()
    api.add_list(PATH, listing("5"))  # and no watch events: the server holds the stream open
    r = await run_until(api, Seen(), lambda r: r.watches == 1, "the watch to open")
    assert r.lists == 1


async def test_a_failure_under_the_supervisor_is_counted_and_the_restart_delivers_each_change_once() -> None:
    api = RecordedAPI()
    api.add_list(PATH, listing("5", cm("a", "1")))
    api.add_watch(PATH, [event("ADDED", cm("b", "6"))])
    api.add_list(PATH, listing("7", cm("a", "1"), cm("b", "6")))
    seen, stop = Seen(fail_first="b"), asyncio.Event()
    tasks = TaskSupervisor("test", backoff=Backoff(initial=0.01))
    with serve(api) as url:
        r = reflector(url, seen)
        tasks.spawn("reflector", lambda: r.run(stop))

        async def relisted() -> bool:
            return seen.lists == 2

        await eventually(relisted, "the restarted reflector's relist")
        stop.set()
        await tasks.aclose()
    assert tasks.failures("reflector") == 1
    assert seen.delivered == [("ADDED", "a", "1"), ("ADDED", "b", "6")]
