"""One config change is one trace: Galley's validate/publish, Pilot's push and Envoy's ACK.

Real processes only: nats-server, ``meshplane-galley --config-dir``, two ``meshplane-pilot``
replicas and an Envoy bootstrapped by ``meshctl bootstrap``'s renderer, connected to the first
over ADS. Each service writes its spans to its own ``MESHPLANE_TRACE_FILE``. A VirtualService
file is changed; the spans of that change must share one trace id and hang off each other:

    galley.config_change ─┬─ galley.validate (per object)
                          └─ galley.publish (the VirtualService) ─ pilot.push ─ pilot.xds.ack (RDS, …)

Then two changes in a row reach the replica (debounce 3 s) as one push: its ``pilot.push`` is in
the first change's trace and links the second change's publish span.
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from meshplane.ctl.bootstrap import BootstrapOptions, render_bootstrap
from meshplane.shared.bus.buckets import config_key
from meshplane.shared.envoyproc import find_envoy
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BIN = Path(sys.executable).parent
T = TypeVar("T")
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
HOST = "reviews.default.svc.cluster.local"


def config_file(port: int, timeout: str) -> str:
    """A ServiceEntry for reviews (an HTTP port, one endpoint) and a VirtualService with ``timeout``."""
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {port}, name: http-web, protocol: HTTP}}
  endpoints:
  - {{address: 127.0.0.1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{HOST}]
  http:
  - timeout: {timeout}
    route:
    - destination: {{host: {HOST}}}
"""


DESTINATION_RULE = f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: {HOST}
  trafficPolicy: {{connectionPool: {{http: {{http1MaxPendingRequests: 10}}}}}}
"""


async def wait_for(find: Callable[[], T | None], what: str, timeout: float = 20) -> T:
    """Poll ``find`` until it returns something; fail naming ``what`` on timeout."""
    found: list[T] = []

    async def check() -> bool:
        value = find()
        if value is not None:
            found.append(value)
        return bool(found)

    await eventually(check, what, timeout)
    return found[0]


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def process(
    args: list[str], log: Path, trace_file: Path | None = None, **extra_env: str
) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, OTEL_TRACES_EXPORTER="none", **extra_env)
    env.pop("MESHPLANE_TRACE_FILE", None)
    if trace_file is not None:
        env["MESHPLANE_TRACE_FILE"] = str(trace_file)
    child = ChildProcess(args, log, env=env, inherit_env=False)
    try:
        yield child.start()
    finally:
        child.stop(timeout=10)


async def http_ok(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


def spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def route_timeout(admin: int) -> str:
    """The timeout Envoy currently applies on the reviews route ('' until it has one)."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            dump = (
                await client.get(f"http://127.0.0.1:{admin}/config_dump?resource=dynamic_route_configs")
            ).json()
    except (httpx.HTTPError, ValueError):
        return ""
    for cfg in dump.get("configs", []):
        for vhost in cfg.get("route_config", {}).get("virtual_hosts", []):
            if HOST in vhost.get("domains", []):
                for route in vhost.get("routes", []):
                    timeout = route.get("route", {}).get("timeout")
                    if timeout:
                        return str(timeout)
    return ""


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_config_change_is_one_trace_from_galley_to_envoy_ack(
    nats_server: NatsServer, tmp_path: Path, delta: bool
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    vs_file = config / "reviews.yaml"
    # The sidecar gets its own loopback address (no iptables: it binds the outbound listener).
    proxy_ip = f"127.{random.randint(20, 250)}.{random.randint(0, 250)}.{random.randint(2, 250)}"
    service_port = free_port(proxy_ip)
    write_atomically(vs_file, config_file(service_port, "5s"))
    galley_spans, pilot_spans = tmp_path / "galley-spans.jsonl", tmp_path / "pilot-a-spans.jsonl"
    replica_spans = tmp_path / "pilot-b-spans.jsonl"
    monitoring, grpc_port, http_port, admin = free_port(), free_port(), free_port(), free_port()
    opts = BootstrapOptions(
        node_id=f"sidecar~{proxy_ip}~productpage-1.default~default.svc.cluster.local",
        ip=proxy_ip,
        pilots=[f"127.0.0.1:{grpc_port}"],
        admin=f"127.0.0.1:{admin}",
        interception="NONE",
        delta=delta,
        labels={"app": "productpage"},
    )
    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(yaml.safe_dump(render_bootstrap(opts)))

    with ExitStack() as stack:
        galley = stack.enter_context(
            process(
                [
                    str(BIN / "meshplane-galley"),
                    *("--nats-url", nats_server.url, "--config-dir", str(config)),
                    *("--webhook-addr", f"127.0.0.1:{free_port()}"),
                    *("--monitoring-addr", f"127.0.0.1:{monitoring}", "--debug-addr", "127.0.0.1:0"),
                ],
                tmp_path / "galley.log",
                galley_spans,
            )
        )
        await eventually(lambda: http_ok(f"http://127.0.0.1:{monitoring}/readyz"), "galley ready", 60)
        # Two Pilot replicas: the Envoy is connected to the first; both push for every change.
        # The replica debounces for 3 s, so two changes made one after the other become one push.
        for pilot_id, grpc_at, http_at, trace_file, debounce in (
            ("pilot-a", grpc_port, http_port, pilot_spans, "50ms"),
            ("pilot-b", free_port(), free_port(), replica_spans, "3s"),
        ):
            stack.enter_context(
                process(
                    [
                        str(BIN / "meshplane-pilot"),
                        *("--nats-url", nats_server.url, "--id", pilot_id, "--xds-plaintext"),
                        *("--grpc-addr", f"127.0.0.1:{grpc_at}", "--http-addr", f"127.0.0.1:{http_at}"),
                        *("--debug-addr", "127.0.0.1:0"),
                    ],
                    tmp_path / f"{pilot_id}.log",
                    trace_file,
                    PILOT_DEBOUNCE_AFTER=debounce,
                )
            )
            ready = f"http://127.0.0.1:{http_at}/ready"
            await eventually(functools.partial(http_ok, ready), f"{pilot_id} ready", 60)
        stack.enter_context(
            process(
                [find_envoy(), "-c", str(bootstrap), "--use-dynamic-base-id", "--concurrency", "1"]
                + ["-l", "warning", "--drain-time-s", "1"],
                tmp_path / "envoy.log",
            )
        )

        async def timeout_is(value: str) -> bool:
            assert galley.poll() is None, (tmp_path / "galley.log").read_text()[-3000:]
            return await route_timeout(admin) == value

        await eventually(lambda: timeout_is("5s"), "envoy to apply the first VirtualService", 60)

        write_atomically(vs_file, config_file(service_port, "7s"))
        await eventually(lambda: timeout_is("7s"), "envoy to apply the changed VirtualService", 60)

        vs_key = config_key("networking.istio.io", "VirtualService", "default", "reviews")

        def change_publish() -> dict[str, Any] | None:
            published = [
                s
                for s in spans(galley_spans)
                if s["name"] == "galley.publish" and s["attributes"].get("bus.key") == vs_key
            ]
            return max(published, key=lambda s: s["start_ns"]) if published else None

        def acks_of_change() -> list[dict[str, Any]]:
            publish = change_publish()
            if publish is None:
                return []
            return [
                s
                for s in spans(pilot_spans)
                if s["name"] == "pilot.xds.ack" and s["trace_id"] == publish["trace_id"]
            ]

        async def rds_acked_and_replica_pushed() -> bool:
            publish = change_publish()
            replica_pushed = publish is not None and any(
                s["name"] == "pilot.push" and s["trace_id"] == publish["trace_id"]
                for s in spans(replica_spans)
            )
            return replica_pushed and any(s["attributes"]["xds.type_url"] == RDS for s in acks_of_change())

        await eventually(rds_acked_and_replica_pushed, "RDS ACK and both pushes in the change's trace", 30)
        publish = change_publish()
        assert publish is not None

        # Two changes in a row (the VirtualService again, then a new DestinationRule file): the
        # replica's single push continues the first change's trace and links the second.
        def published(key: str, after: int) -> dict[str, Any] | None:
            found = [
                s
                for s in spans(galley_spans)
                if s["name"] == "galley.publish"
                and s["attributes"].get("bus.key") == key
                and s["start_ns"] > after
            ]
            return found[0] if found else None

        since = publish["start_ns"]
        write_atomically(vs_file, config_file(service_port, "9s"))
        first = await wait_for(lambda: published(vs_key, since), "the first of two quick changes published")
        (config / "reviews-dr.yaml").write_text(DESTINATION_RULE)
        dr_key = config_key("networking.istio.io", "DestinationRule", "default", "reviews")
        second = await wait_for(lambda: published(dr_key, since), "the second quick change published")

        def merged_push() -> dict[str, Any] | None:
            pushes = [
                s
                for s in spans(replica_spans)
                if s["name"] == "pilot.push" and s["trace_id"] == first["trace_id"]
            ]
            return pushes[0] if pushes else None

        merged = await wait_for(merged_push, "the replica's push for the two changes", 30)

    assert second["trace_id"] != first["trace_id"]  # two changes, two traces ...
    assert merged["parent_id"] == first["span_id"]  # ... one push: parent is the first change
    assert merged["links"] == [{"trace_id": second["trace_id"], "span_id": second["span_id"]}]
    assert merged["attributes"]["pilot.merged_traces"] == 2
    assert not [
        s for s in spans(replica_spans) if s["name"] == "pilot.push" and s["trace_id"] == second["trace_id"]
    ]

    trace_id = publish["trace_id"]
    in_trace = [s for s in spans(galley_spans) + spans(pilot_spans) if s["trace_id"] == trace_id]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in in_trace:
        by_name.setdefault(s["name"], []).append(s)

    # Galley: one root for the change, the VirtualService validated and published under it.
    (root,) = by_name["galley.config_change"]
    assert root["parent_id"] == "" and root["service"] == "meshplane-galley"
    assert root["attributes"]["galley.files"] == ["reviews.yaml"]
    validated = {s["attributes"]["galley.object"]: s for s in by_name["galley.validate"]}
    vs_validate = next(s for name, s in validated.items() if "VirtualService" in name)
    assert vs_validate["parent_id"] == root["span_id"] and vs_validate["attributes"]["galley.valid"] is True
    assert all(s["parent_id"] == root["span_id"] for s in by_name["galley.validate"])
    (vs_publish,) = by_name["galley.publish"]  # the unchanged ServiceEntry is not re-published
    assert vs_publish["parent_id"] == root["span_id"]
    assert vs_publish["attributes"]["bus.operation"] == "put"

    # Pilot: each replica's push is a child of the publish that carried the change over the bus.
    (push,) = by_name["pilot.push"]
    (replica_push,) = [s for s in spans(replica_spans) if s["trace_id"] == trace_id]
    for p in (push, replica_push):
        assert p["service"] == "meshplane-pilot"
        assert p["parent_id"] == vs_publish["span_id"]
        assert p["start_ns"] >= vs_publish["start_ns"]
        assert p["attributes"]["pilot.reason"] == "config:VirtualService"

    # Envoy's answers to that push, one span per type sent, children of the push.
    acks = by_name["pilot.xds.ack"]
    assert {a["attributes"]["xds.type_url"] for a in acks} >= {RDS}
    for ack in acks:
        assert ack["parent_id"] == push["span_id"]
        assert ack["status"] != "ERROR"
        attrs = ack["attributes"]
        assert attrs["xds.proxy_id"] == "productpage-1.default"
        assert attrs["xds.nonce"] and attrs["xds.ack"] is True
        assert attrs["xds.version"] == push["attributes"]["pilot.version"]
        assert ack["end_ns"] >= ack["start_ns"] >= push["start_ns"]
