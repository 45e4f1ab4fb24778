"""`meshctl workload-probe`: run a VM's readiness probe and report its health to Pilot over xDS.

In Istio the VM's istio-agent runs the ProxyConfig ``readinessProbe`` (the WorkloadGroup's
``probe``) and sends each result on the proxy's ADS stream as a DiscoveryRequest of type
``istio.v1.HealthInformation``: no ``error_detail`` when healthy, ``error_detail{INTERNAL, why}``
when not. meshplane's Envoy talks to Pilot without an agent in between, so this command is the
agent's prober: it reads the VM's bootstrap (written by ``meshctl bootstrap --workload-group``:
the node, its ``PROXY_CONFIG.readinessProbe``, the Pilots), opens an ADS stream of its own with
that node, and sends those same requests. When xDS is mutual TLS the stream goes through the
bootstrap's ``xds-relay`` Unix socket (``--xds-relay-socket``): Envoy carries it to Pilot on its
own connection, with the workload certificate, so Pilot checks the reports' identity as the
proxy's. Pilot turns them into the auto-registered
WorkloadEntry's ``Healthy`` condition, and an unhealthy entry's endpoint leaves EDS.

Probes as Istio's: ``httpGet`` (2xx/3xx is success), ``tcpSocket`` (a connection), both to
``host`` or 127.0.0.1, and ``exec`` (exit code 0), each within ``timeoutSeconds`` (1); every
``periodSeconds`` (10) after ``initialDelaySeconds``; the state flips after
``successThreshold`` (1) successes or ``failureThreshold`` (3) failures in a row. The current
state is re-sent every period, so a Pilot that restarted or a replica the stream moved to
learns it without waiting for a change. ``grpc`` probes are refused at start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format, struct_pb2

from meshplane.ctl.errors import EXIT_USAGE, error

log = logging.getLogger("meshctl.workload-probe")

HEALTH_TYPE = "type.googleapis.com/istio.v1.HealthInformation"
_ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
_INTERNAL = 13  # google.rpc.Code.INTERNAL


@dataclass(frozen=True)
class Probe:
    """A ReadinessProbe (Istio's JSON field names) with Istio's defaults."""

    spec: dict[str, Any]

    def seconds(self, field: str, default: float) -> float:
        value = self.spec.get(field)
        return float(value) if value else default

    @property
    def kind(self) -> str:
        kinds = [k for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in self.spec]
        if len(kinds) != 1:
            raise ValueError("the readinessProbe needs exactly one of httpGet, tcpSocket, exec")
        if kinds[0] == "grpc":
            raise ValueError("grpc probes are not run by meshctl workload-probe (use httpGet or tcpSocket)")
        return kinds[0]

    async def run(self) -> str | None:
        """One probe: None when it passed, else why it failed."""
        timeout = self.seconds("timeoutSeconds", 1)
        try:
            return await asyncio.wait_for(self._run(timeout), timeout)
        except TimeoutError:
            return f"{self.kind} probe timed out after {timeout:g}s"

    async def _run(self, timeout: float) -> str | None:
        kind = self.kind
        if kind == "httpGet":
            get = self.spec["httpGet"]
            scheme = str(get.get("scheme") or "HTTP").lower()
            url = f"{scheme}://{get.get('host') or '127.0.0.1'}:{get['port']}{get.get('path') or '/'}"
            headers = {h["name"]: h.get("value", "") for h in get.get("httpHeaders") or []}
            try:
                async with httpx.AsyncClient(verify=False, timeout=timeout) as client:  # noqa: S501 - Istio's prober skips verification
                    resp = await client.get(url, headers=headers)
            except httpx.HTTPError as exc:
                return f"GET {url}: {exc or type(exc).__name__}"
            return None if 200 <= resp.status_code < 400 else f"GET {url}: HTTP {resp.status_code}"
        if kind == "tcpSocket":
            tcp = self.spec["tcpSocket"]
            host, port = tcp.get("host") or "127.0.0.1", int(tcp["port"])
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                return f"connect {host}:{port}: {exc.strerror or exc}"
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return None
        command = [str(c) for c in self.spec["exec"].get("command") or []]
        try:
            proc = await asyncio.create_subprocess_exec(*command)
        except OSError as exc:
            return f"exec {command[0] if command else ''}: {exc.strerror or exc}"
        try:
            code = await proc.wait()
        except asyncio.CancelledError:  # timed out: no command outlives its probe
            proc.kill()
            await proc.wait()
            raise
        return None if code == 0 else f"exec {' '.join(command)}: exit code {code}"


class HealthState:
    """Consecutive results to a state, flipping at Istio's thresholds (None until the first flip)."""

    def __init__(self, success_threshold: int, failure_threshold: int) -> None:
        self.success_threshold = max(success_threshold, 1)
        self.failure_threshold = max(failure_threshold, 1)
        self.healthy: bool | None = None
        self.message = ""
        self._run = 0
        self._last: bool | None = None

    def record(self, failure: str | None) -> bool:
        """Record one result; True when the state changed."""
        ok = failure is None
        self._run = self._run + 1 if ok == self._last else 1
        self._last = ok
        needed = self.success_threshold if ok else self.failure_threshold
        if self._run >= needed and self.healthy is not ok:
            self.healthy, self.message = ok, failure or ""
            return True
        if not ok and self.healthy is False:
            self.message = failure or ""
        return False


@dataclass(frozen=True)
class Vm:
    """What the bootstrap says: the node to report as, its probe, and the Pilots."""

    node: dict[str, Any]
    probe: Probe
    pilots: list[str]


def read_bootstrap(path: str) -> Vm:
    """The VM's node, probe and Pilots from its Envoy bootstrap; ValueError naming the problem."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
        node = doc["node"]
        clusters = doc["static_resources"]["clusters"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ValueError(f"--bootstrap: cannot read an Envoy bootstrap from {path}: {exc}") from None
    meta = node.get("metadata") or {}
    probe = (meta.get("PROXY_CONFIG") or {}).get("readinessProbe")
    if not probe:
        raise ValueError(
            f"--bootstrap: {path} has no PROXY_CONFIG.readinessProbe (meshctl bootstrap "
            "--workload-group with a group that has a probe)"
        )
    xds = next((c for c in clusters if c.get("name") == "xds-grpc"), None)
    if xds is None:
        raise ValueError(f"--bootstrap: {path} has no xds-grpc cluster")
    listeners = (doc.get("static_resources") or {}).get("listeners") or []
    relay = next((x for x in listeners if x.get("name") == "xds-relay"), None)
    if relay is not None:  # through Envoy's own (mutual TLS) connection to Pilot
        return _checked(Vm(node, Probe(probe), [f"unix:{relay['address']['pipe']['path']}"]))
    if xds.get("transport_socket"):
        raise ValueError(
            f"--bootstrap: {path}: xDS is mutual TLS and the bootstrap has no xds-relay listener "
            "(meshctl bootstrap --xds-relay-socket PATH): the reports need Envoy's identity"
        )
    pilots = [
        f"{e['endpoint']['address']['socket_address']['address']}:"
        f"{e['endpoint']['address']['socket_address']['port_value']}"
        for group in xds["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
    ]
    return _checked(Vm(node, Probe(probe), pilots))


def _checked(vm: Vm) -> Vm:
    _ = vm.probe.kind  # refuse a probe that cannot run now, not at the first period
    return vm


def health_request(vm: Vm, state: HealthState, with_node: bool) -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(type_url=HEALTH_TYPE)
    if with_node:
        req.node.id = vm.node["id"]
        req.node.cluster = vm.node.get("cluster", "")
        meta = struct_pb2.Struct()
        json_format.ParseDict(vm.node.get("metadata") or {}, meta)
        req.node.metadata.CopyFrom(meta)
    if not state.healthy:
        req.error_detail.code = _INTERNAL
        req.error_detail.message = state.message or "unhealthy"
    return req


async def report(vm: Vm, state: HealthState, changes: asyncio.Queue[None], pilot: str) -> None:
    """One ADS stream to ``pilot``: the current state first, then on every change or period."""
    period = vm.probe.seconds("periodSeconds", 10)
    async with grpc.aio.insecure_channel(pilot) as channel:
        call = channel.stream_stream(
            _ADS,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )

        async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            yield health_request(vm, state, with_node=True)
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changes.get(), period)
                yield health_request(vm, state, with_node=False)

        async for _ in call(requests()):
            pass  # Pilot answers nothing on a health stream


async def probe_forever(vm: Vm, state: HealthState, changes: asyncio.Queue[None]) -> None:
    await asyncio.sleep(vm.probe.seconds("initialDelaySeconds", 0))
    period = vm.probe.seconds("periodSeconds", 10)
    while True:
        failure = await vm.probe.run()
        if state.record(failure):
            log.info("healthy" if state.healthy else f"unhealthy: {state.message}")
            changes.put_nowait(None)
        await asyncio.sleep(period)


async def serve(vm: Vm) -> None:
    """Probe forever; keep a report stream to the first Pilot that answers (retrying each in turn)."""
    probe = vm.probe.spec
    state = HealthState(int(probe.get("successThreshold") or 1), int(probe.get("failureThreshold") or 3))
    changes: asyncio.Queue[None] = asyncio.Queue()
    prober = asyncio.create_task(probe_forever(vm, state, changes))
    try:
        attempt = 0
        while True:
            while state.healthy is None:  # nothing to say before the first result
                await changes.get()
            pilot = vm.pilots[attempt % len(vm.pilots)]
            try:
                await report(vm, state, changes, pilot)
            except grpc.aio.AioRpcError as exc:
                log.warning("health stream to %s ended: %s %s", pilot, exc.code().name, exc.details())
            attempt += 1
            await asyncio.sleep(min(0.5 * attempt, 5.0))
    finally:
        prober.cancel()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("workload-probe", help="run a VM's WorkloadGroup probe and report its health to Pilot")
    p.add_argument(
        "--bootstrap",
        required=True,
        metavar="FILE",
        help="the VM's Envoy bootstrap (meshctl bootstrap --workload-group): node, probe and Pilots",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        vm = read_bootstrap(args.bootstrap)
    except ValueError as exc:
        error("workload-probe", str(exc))
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(vm))
    return 0
