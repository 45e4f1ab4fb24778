"""Shared pieces of generated resources: type URLs, names, ADS config sources, Istio metadata."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, grpc_service_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.protobuf.message import Message

from meshplane.pilot.model.config import AnyConfig
from meshplane.shared.durations import parse_duration

PREFIX = "type.googleapis.com/"
CLUSTER = PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

BLACKHOLE = "BlackHoleCluster"
PASSTHROUGH = "PassthroughCluster"
INBOUND_PASSTHROUGH = "InboundPassthroughCluster"
#: Source address of inbound passthrough connections; the capture rules never redirect it.
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"


@dataclass(frozen=True)
class ClusterKey:
    direction: str
    port: int
    subset: str
    host: str

    @property
    def name(self) -> str:
        return f"{self.direction}|{self.port}|{self.subset}|{self.host}"

    @staticmethod
    def parse(name: str) -> ClusterKey | None:
        parts = name.split("|")
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return ClusterKey(parts[0], int(parts[1]), parts[2], parts[3])

    @staticmethod
    def parse_sni(name: str) -> ClusterKey | None:
        """The SNI form ``outbound_.9080_.v1_.reviews.default.svc.cluster.local``."""
        parts = name.split("_.", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return ClusterKey(parts[0], int(parts[1]), parts[2], parts[3])


def sni_name(key: ClusterKey) -> str:
    """Istio's SNI / DNS-SRV form of a cluster name (also its default mTLS SNI)."""
    return f"{key.direction}_.{key.port}_.{key.subset}_.{key.host}"


def previous_hosts(policy: Any) -> None:
    """Istio's retry host predicate: retry on a different host than the failed attempt."""
    pred = policy.retry_host_predicate.add(name="envoy.retry_host_predicates.previous_hosts")
    pred.typed_config.CopyFrom(pack(previous_hosts_pb2.PreviousHostsPredicate()))
    policy.host_selection_retry_max_attempts = 5


def outbound(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def sds_source() -> config_source_pb2.ConfigSource:
    """Secrets from the node agent through the bootstrap's ``sds-grpc`` cluster."""
    return config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            set_node_on_first_message_only=True,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name="sds-grpc")
                )
            ],
        ),
        resource_api_version=config_source_pb2.V3,
    )


def istio_metadata(configs: list[AnyConfig]) -> base_pb2.Metadata:
    """``filter_metadata.istio.config`` naming the source config, as Istio sets it."""
    md = base_pb2.Metadata()
    if configs:
        fields = {"config": struct_pb2.Value(string_value=configs[0].source_path)}
        md.filter_metadata["istio"].CopyFrom(struct_pb2.Struct(fields=fields))
    return md


def endpoint_address(host: str, port: int) -> address_pb2.Address:
    """An endpoint's address: ``unix:///path`` is a pipe (Unix domain socket), anything else host:port."""
    if host.startswith("unix://"):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=host[len("unix://") :]))
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=port))


def cidr_range(value: str) -> address_pb2.CidrRange:
    """``10.0.0.0/8`` (or a bare address, a /32 or /128) as an Envoy CIDR range."""
    net = ipaddress.ip_network(value, strict=False)
    cidr = address_pb2.CidrRange(address_prefix=str(net.network_address))
    cidr.prefix_len.value = net.prefixlen
    return cidr


def pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def duration(text: timedelta | str | float | int | None) -> duration_pb2.Duration | None:
    """A model's duration, or Istio's text forms: ``1.5s``, ``100ms``, ``1m``, ``1h``, plain
    seconds; None when absent."""
    if text is None or text == "":
        return None
    d = duration_pb2.Duration()
    if isinstance(text, timedelta):
        d.FromTimedelta(text)
    elif isinstance(text, int | float):
        d.FromNanoseconds(int(float(text) * 1e9))
    else:
        d.FromTimedelta(parse_duration(str(text), bare_seconds=True))
    return d
