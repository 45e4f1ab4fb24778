"""ADS load generator: many SotW streams from one process that request and ACK as Envoy does.

Each stream asks for CDS, then EDS for the clusters it got, LDS, then RDS for the route names
in its listeners, and ACKs every response. Every response's arrival time is written as one JSON
line ``{"stream": i, "type": "cds", "t": unix_time, "version": ...}`` to stdout, so the runner
can tell when every stream has received a push.

    python -m benchmarks.xds.loadgen --pilot 127.0.0.1:15010 --streams 500 --first 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import AsyncIterator

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import discovery_pb2

P = "type.googleapis.com/envoy."
CDS, EDS = P + "config.cluster.v3.Cluster", P + "config.endpoint.v3.ClusterLoadAssignment"
LDS, RDS = P + "config.listener.v3.Listener", P + "config.route.v3.RouteConfiguration"
SHORT = {CDS: "cds", EDS: "eds", LDS: "lds", RDS: "rds"}
RETRIES: dict[str, int] = {}
METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def _eds_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for r in resp.resources:
        c = cluster_pb2.Cluster.FromString(r.value)
        if c.type == cluster_pb2.Cluster.EDS:
            out.append(c.eds_cluster_config.service_name or c.name)
    return out


def _rds_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    names = set()
    for r in resp.resources:
        lis = listener_pb2.Listener.FromString(r.value)
        for chain in lis.filter_chains:
            for f in chain.filters:
                if f.typed_config.type_url.endswith("HttpConnectionManager"):
                    hcm = http_connection_manager_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                    if hcm.HasField("rds"):
                        names.add(hcm.rds.route_config_name)
    return sorted(names)


async def stream(channel: grpc.aio.Channel, index: int, ns: str, out: list[str]) -> None:
    """One proxy; reconnects with jittered backoff like Envoy when the stream fails."""
    while True:
        try:
            await _stream(channel, index, ns, out)
            return
        except grpc.aio.AioRpcError as exc:
            # Envoy reconnects whatever the reason; count reasons other than the rate limit
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                RETRIES[str(exc.code())] = RETRIES.get(str(exc.code()), 0) + 1
            await asyncio.sleep(random.uniform(0.1, 1.0))


async def _stream(channel: grpc.aio.Channel, index: int, ns: str, out: list[str]) -> None:
    call = channel.stream_stream(
        METHOD,
        request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )
    queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
    node = discovery_pb2.DiscoveryRequest().node
    ip = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
    node.id = f"sidecar~{ip}~load-{index}.{ns}~{ns}.svc.cluster.local"
    node.metadata.update({"NAMESPACE": ns, "LABELS": {"app": "load"}})
    first = discovery_pb2.DiscoveryRequest(type_url=CDS)
    first.node.CopyFrom(node)
    queue.put_nowait(first)
    queue.put_nowait(discovery_pb2.DiscoveryRequest(type_url=LDS))

    async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await queue.get()

    eds: list[str] = []
    rds: list[str] = []
    async for resp in call(requests()):
        now = time.time()
        out.append(
            json.dumps(
                {
                    "stream": index,
                    "type": SHORT.get(resp.type_url, "?"),
                    "t": now,
                    "version": resp.version_info,
                    "n": len(resp.resources),
                }
            )
        )
        ack = discovery_pb2.DiscoveryRequest(
            type_url=resp.type_url, version_info=resp.version_info, response_nonce=resp.nonce
        )
        if resp.type_url == CDS:
            names = _eds_names(resp)
            queue.put_nowait(ack)
            if names != eds:
                eds = names
                queue.put_nowait(discovery_pb2.DiscoveryRequest(type_url=EDS, resource_names=eds))
            continue
        if resp.type_url == LDS:
            names = _rds_names(resp)
            queue.put_nowait(ack)
            if names != rds:
                rds = names
                queue.put_nowait(discovery_pb2.DiscoveryRequest(type_url=RDS, resource_names=rds))
            continue
        ack.resource_names.extend(eds if resp.type_url == EDS else rds)
        queue.put_nowait(ack)


async def main(args: argparse.Namespace) -> None:
    out: list[str] = []
    channels = [
        grpc.aio.insecure_channel(
            args.pilot,
            options=[("grpc.max_receive_message_length", 256 << 20), ("grpc.use_local_subchannel_pool", 1)],
        )
        for _ in range(max(1, args.streams // args.per_channel))
    ]
    tasks = [
        asyncio.create_task(stream(channels[i % len(channels)], args.first + i, args.namespace, out))
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
            if RETRIES:
                print(f"loadgen {args.first}: reconnects {RETRIES}", file=sys.stderr, flush=True)
                RETRIES.clear()

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
    parser.add_argument("--per-channel", type=int, default=25, help="streams sharing one HTTP/2 connection")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
