"""ADS load generator: many SotW or Delta streams from one process that request and ACK as Envoy does.

Each stream asks for CDS, then LDS once the first response came (as Envoy asks for listeners
once its clusters are in), EDS for the clusters it got and RDS for the route names in its
listeners, and ACKs every response. Only the first request is written before the first
response, so a stream Pilot refuses (rate limit) sees Pilot's status rather than a failed write
(which grpcio reports as INTERNAL). With ``--delta`` it speaks the incremental protocol
(wildcard CDS/LDS, EDS/RDS subscriptions that follow the clusters and listeners it holds).
Every response's arrival time is written as one JSON line ``{"stream": i, "type": "cds",
"t": unix_time, "version": ..., "n": resources, "bytes": gRPC message size}`` to stdout, so the
runner can tell when every stream has received a push and how many bytes a push sent. A stream
that fails is reopened after Envoy's backoff (jittered exponential, 500 ms to 30 s), and the
failure is written as ``{"stream": i, "reset": "INTERNAL", "t": ..., "details": ...}``
(``reset`` is the gRPC status code's name), so the runner can report resets by status code;
each load generator also prints its count by code to stderr every 5 s.

    python -m benchmarks.xds.loadgen --pilot 127.0.0.1:15010 --streams 500 --first 0
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import discovery_pb2

from benchmarks.xds.tls import PILOT_NAME

P = "type.googleapis.com/envoy."
CDS, EDS = P + "config.cluster.v3.Cluster", P + "config.endpoint.v3.ClusterLoadAssignment"
LDS, RDS = P + "config.listener.v3.Listener", P + "config.route.v3.RouteConfiguration"
SHORT = {CDS: "cds", EDS: "eds", LDS: "lds", RDS: "rds"}
RESETS: dict[str, int] = {}
#: When each stream last received a response (a served stream starts its backoff afresh).
LAST_RESPONSE: dict[int, float] = {}
SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
METHOD = SERVICE + "StreamAggregatedResources"
DELTA_METHOD = SERVICE + "DeltaAggregatedResources"

# What a resource asks for next, by its bytes: the 2000 streams of a run get the same resources,
# and parsing each once keeps this process's CPU for the streams (Envoy parses them all, but
# Envoy is not what this benchmark measures).
_EDS_OF: dict[bytes, str | None] = {}
_RDS_OF: dict[bytes, frozenset[str]] = {}


def _eds_of(value: bytes) -> str | None:
    if value not in _EDS_OF:
        c = cluster_pb2.Cluster.FromString(value)
        eds = c.type == cluster_pb2.Cluster.EDS
        _EDS_OF[value] = (c.eds_cluster_config.service_name or c.name) if eds else None
    return _EDS_OF[value]


def _rds_of(value: bytes) -> frozenset[str]:
    if value not in _RDS_OF:
        names = set()
        lis = listener_pb2.Listener.FromString(value)
        for chain in lis.filter_chains:
            for f in chain.filters:
                if f.typed_config.type_url.endswith("HttpConnectionManager"):
                    hcm = http_connection_manager_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                    if hcm.HasField("rds"):
                        names.add(hcm.rds.route_config_name)
        _RDS_OF[value] = frozenset(names)
    return _RDS_OF[value]


def _eds_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    return [n for r in resp.resources if (n := _eds_of(r.value)) is not None]


def _rds_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    return sorted(frozenset().union(*(_rds_of(r.value) for r in resp.resources)))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _header(raw: bytes) -> tuple[str, str, str, int]:
    """(type_url, version, nonce, resource count) of a SotW or Delta response, read from its
    top-level fields without decoding the resources: both messages number them alike (1 the
    version, 2 the resources, 4 the type, 5 the nonce). An endpoint or route push is then
    acknowledged without copying its megabyte of resources into a message first."""
    strings: dict[int, str] = {}
    count = pos = 0
    while pos < len(raw):
        key, pos = _varint(raw, pos)
        field, wire = key >> 3, key & 7
        if wire == 2:
            size, pos = _varint(raw, pos)
            if field == 2:
                count += 1
            elif field in (1, 4, 5):
                strings[field] = raw[pos : pos + size].decode()
            pos += size
        elif wire == 0:
            pos = _varint(raw, pos)[1]
        else:
            pos += 8 if wire == 1 else 4
    return strings.get(4, ""), strings.get(1, ""), strings.get(5, ""), count


#: SotW: the names a CDS or LDS response makes a proxy subscribe to, by the response's bytes. All
#: streams get the same response after a change, so each is decoded once (the last few are kept).
_FOLLOW: OrderedDict[bytes, list[str]] = OrderedDict()


def _follow_names(raw: bytes, type_url: str) -> list[str]:
    names = _FOLLOW.get(raw)
    if names is None:
        resp = discovery_pb2.DiscoveryResponse.FromString(raw)
        names = _FOLLOW[raw] = _eds_names(resp) if type_url == CDS else _rds_names(resp)
        while len(_FOLLOW) > 8:
            _FOLLOW.popitem(last=False)
    return names


def _node(index: int, ns: str) -> Any:
    node = discovery_pb2.DiscoveryRequest().node
    ip = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
    node.id = f"sidecar~{ip}~load-{index}.{ns}~{ns}.svc.cluster.local"
    node.metadata.update({"NAMESPACE": ns, "LABELS": {"app": "load"}})
    return node


def _record(out: list[str], index: int, type_url: str, version: str, n: int, size: int) -> None:
    LAST_RESPONSE[index] = time.time()
    event = {
        "stream": index,
        "type": SHORT.get(type_url, "?"),
        "t": time.time(),
        "version": version,
        "n": n,
        "bytes": size,
    }
    out.append(json.dumps(event))


def _record_reset(out: list[str], index: int, exc: grpc.aio.AioRpcError) -> None:
    code = exc.code().name
    RESETS[code] = RESETS.get(code, 0) + 1
    out.append(json.dumps({"stream": index, "reset": code, "t": time.time(), "details": exc.details()}))


def backoff(failures: int) -> float:
    """Envoy's xDS retry: jittered exponential from 500 ms, at most 30 s (``failures`` >= 1)."""
    return random.uniform(0.0, min(0.5 * ((1 << min(failures, 16)) - 1), 30.0))


async def stream(channel: grpc.aio.Channel, index: int, ns: str, out: list[str], delta: bool) -> None:
    """One proxy; reopens the stream with Envoy's backoff when it fails (reset once it was served)."""
    failures = 0
    while True:
        started = time.time()
        try:
            await (_delta_stream if delta else _stream)(channel, index, ns, out)
            return
        except grpc.aio.AioRpcError as exc:
            _record_reset(out, index, exc)
            failures = 1 if LAST_RESPONSE.get(index, 0.0) >= started else failures + 1
            await asyncio.sleep(backoff(failures))


async def _stream(channel: grpc.aio.Channel, index: int, ns: str, out: list[str]) -> None:
    call = channel.stream_stream(
        METHOD, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString
    )()
    first = discovery_pb2.DiscoveryRequest(type_url=CDS)
    first.node.CopyFrom(_node(index, ns))
    await call.write(first)
    eds: list[str] = []
    rds: list[str] = []
    lds = False
    while (raw := await call.read()) is not grpc.aio.EOF:
        type_url, version, nonce, n = _header(raw)
        _record(out, index, type_url, version, n, len(raw))
        ack = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=version, response_nonce=nonce)
        if type_url in (CDS, LDS):
            await call.write(ack)
            if not lds:
                lds = True
                await call.write(discovery_pb2.DiscoveryRequest(type_url=LDS))
            names = _follow_names(raw, type_url)
            if names != (eds if type_url == CDS else rds):
                follow = EDS if type_url == CDS else RDS
                if follow == EDS:
                    eds = names
                else:
                    rds = names
                await call.write(discovery_pb2.DiscoveryRequest(type_url=follow, resource_names=names))
            continue
        ack.resource_names.extend(eds if type_url == EDS else rds)
        await call.write(ack)


class _Follow:
    """Delta: what a proxy holds of one wildcard type (CDS or LDS) and the names it therefore
    subscribes to in the type that follows (EDS or RDS), with a count per name."""

    def __init__(self, of: Any) -> None:
        self.of = of
        self.held: dict[str, frozenset[str]] = {}
        self.count: dict[str, int] = {}

    def apply(self, resp: discovery_pb2.DeltaDiscoveryResponse) -> tuple[list[str], list[str]]:
        """Update from one response; returns (subscribe, unsubscribe)."""
        add: list[str] = []
        drop: list[str] = []
        changes = [(r.name, self.of(r.resource.value)) for r in resp.resources]
        changes += [(n, frozenset()) for n in resp.removed_resources]
        for name, wants in changes:
            before = self.held.pop(name, frozenset())
            if wants:
                self.held[name] = wants
            for n in wants - before:
                self.count[n] = self.count.get(n, 0) + 1
                if self.count[n] == 1:
                    add.append(n)
            for n in before - wants:
                self.count[n] -= 1
                if not self.count[n]:
                    del self.count[n]
                    drop.append(n)
        return add, drop


def _eds_set(value: bytes) -> frozenset[str]:
    name = _eds_of(value)
    return frozenset() if name is None else frozenset((name,))


async def _delta_stream(channel: grpc.aio.Channel, index: int, ns: str, out: list[str]) -> None:
    call = channel.stream_stream(
        DELTA_METHOD, request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString
    )()
    first = discovery_pb2.DeltaDiscoveryRequest(type_url=CDS)
    first.node.CopyFrom(_node(index, ns))
    await call.write(first)
    follows = {CDS: (_Follow(_eds_set), EDS), LDS: (_Follow(_rds_of), RDS)}
    lds = False
    while (raw := await call.read()) is not grpc.aio.EOF:
        type_url, version, nonce, n = _header(raw)
        _record(out, index, type_url, version, n, len(raw))
        await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce))
        if not lds:
            lds = True
            await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=LDS))
        if type_url not in follows:
            continue
        follow, next_type = follows[type_url]
        add, drop = follow.apply(discovery_pb2.DeltaDiscoveryResponse.FromString(raw))
        if add or drop:
            await call.write(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=next_type, resource_names_subscribe=add, resource_names_unsubscribe=drop
                )
            )


def _channel(args: argparse.Namespace, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
    """Plaintext, or mutual TLS with the benchmark's client certificate (``benchmarks.xds.tls``)."""
    if not args.tls_dir:
        return grpc.aio.insecure_channel(args.pilot, options=options)
    d = Path(args.tls_dir)
    creds = grpc.ssl_channel_credentials(
        (d / "root.pem").read_bytes(), (d / "client-key.pem").read_bytes(), (d / "client.pem").read_bytes()
    )
    return grpc.aio.secure_channel(
        args.pilot, creds, options=[*options, ("grpc.ssl_target_name_override", PILOT_NAME)]
    )


async def main(args: argparse.Namespace) -> None:
    out: list[str] = []
    channels = [
        _channel(
            args,
            [
                ("grpc.max_receive_message_length", 256 << 20),
                ("grpc.use_local_subchannel_pool", 1),
                # Envoy opens a connection for each stream attempt: the stream's backoff above
                # paces reconnects, not gRPC's own (1 s growing to 120 s while Pilot is down).
                # (Not grpc.min_reconnect_backoff_ms: it is also the connect timeout, 20 s, and
                # a short one fails handshakes on a busy machine with UNAVAILABLE.)
                ("grpc.initial_reconnect_backoff_ms", 250),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        for _ in range(max(1, args.streams // args.per_channel))
    ]
    tasks = [
        asyncio.create_task(
            stream(channels[i % len(channels)], args.first + i, args.namespace, out, args.delta)
        )
        for i in range(args.streams)
    ]

    async def flush() -> None:
        while True:
            await asyncio.sleep(0.2)
            if out:
                lines, out[:] = list(out), []
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()

    async def report() -> None:
        while True:
            await asyncio.sleep(5)
            if RESETS:
                print(f"loadgen {args.first}: stream resets by status {RESETS}", file=sys.stderr, flush=True)
                RESETS.clear()

    flusher = asyncio.create_task(flush())
    reporter = asyncio.create_task(report())
    background = (flusher, reporter)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task in background:
        task.cancel()
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        print(f"{len(errors)} streams failed, first: {errors[0]!r}", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pilot", required=True)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--namespace", default="bench")
    parser.add_argument("--delta", action="store_true", help="DeltaAggregatedResources instead of SotW")
    parser.add_argument("--per-channel", type=int, default=25, help="streams sharing one HTTP/2 connection")
    parser.add_argument(
        "--tls-dir", default="", help="mutual TLS with the certificates benchmarks.xds.tls wrote"
    )
    # The load generator lives for one run and reference counting frees nearly all it makes;
    # a cyclic collection walking 500 streams' state in the middle of a push would take CPU
    # from the push being measured (the machine is shared with Pilot).
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
