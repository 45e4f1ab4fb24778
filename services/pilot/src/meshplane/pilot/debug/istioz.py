"""More of Istio's Pilot debug endpoints, with Istio's JSON shapes (``pilot/pkg/xds/debug.go``).

- ``/debug/adsz[?proxyID=]``: ``{"totalClients", "clients": [{"connectionId", "connectedAt",
  "address", "labels", "metadata", "watches": {typeUrl: [names]}}]}``, sorted by connection ID;
  ``?push=true`` queues a full push to every proxy ("Pushed to N servers").
- ``/debug/edsz?proxyID=``: the ClusterLoadAssignments the proxy would be sent now (Envoy JSON).
- ``/debug/instancesz``: proxy ID → the service instances it implements (``service``,
  ``servicePort``, ``endpoint``).
- ``/debug/authorizationz``: ``{"authorization_policies": {"namespace_to_policies": {ns: [{"name",
  "namespace", "spec"}]}, "root_namespace"}}``.
- ``/debug/mesh``: the MeshConfig Pilot applies, in MeshConfig's field names.

A request naming no proxy where one is needed gets Istio's 400, an unknown one Istio's 404 (text
bodies, as Istio's). Pure functions of the server's state: :mod:`.http` mounts them.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format

from meshplane.pilot.generators import common
from meshplane.pilot.model.config import AnyConfig
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.xds.connection import Connection
from meshplane.pilot.xds.discovery import DiscoveryServer
from meshplane.shared.config import models
from meshplane.shared.meshconfig import MeshConfig

NO_PROXY_ID = "You must provide a proxyID in the query string\n"
NOT_CONNECTED = "Proxy not connected to this Pilot instance. It may be connected to another instance.\n"


def _metadata(proxy: Proxy) -> dict[str, Any]:
    """The node metadata Istio shows (NodeMetadata's JSON names), from what the proxy sent."""
    meta: dict[str, Any] = {
        "NAMESPACE": proxy.namespace,
        "LABELS": proxy.labels,
        "SERVICE_ACCOUNT": proxy.service_account,
        "INSTANCE_IPS": ",".join(proxy.instance_ips),
        "WORKLOAD_NAME": proxy.workload_name,
        "CLUSTER_ID": proxy.cluster_id,
        "MESH_ID": proxy.mesh_id,
        "ISTIO_VERSION": proxy.istio_version,
        "INTERCEPTION_MODE": "NONE" if proxy.interception_none else "REDIRECT",
    }
    if proxy.generator:
        meta["GENERATOR"] = proxy.generator
    return {k: v for k, v in meta.items() if v not in ("", {}, None)}


def _timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat().replace("+00:00", "Z")


def ads_client(conn: Connection) -> dict[str, Any]:
    return {
        "connectionId": conn.id,
        "connectedAt": _timestamp(conn.connected_at),
        "address": conn.peer,
        "labels": conn.proxy.labels,
        "metadata": _metadata(conn.proxy),
        "watches": {url: sorted(w.names) for url, w in sorted(conn.watched.items())},
    }


def adsz(connections: list[Connection]) -> dict[str, Any]:
    clients = sorted((ads_client(c) for c in connections), key=lambda c: str(c["connectionId"]))
    out: dict[str, Any] = {"totalClients": len(clients)}
    if clients:
        out["clients"] = clients
    return out


def edsz(server: DiscoveryServer, conn: Connection) -> list[dict[str, Any]]:
    """The proxy's ClusterLoadAssignments, generated now from the current push context."""
    w = conn.watched.get(common.ENDPOINT)
    if w is None:
        return []
    names = None if w.wildcard else w.names
    resources = server.cache.generate(server.ctx, conn.proxy, common.ENDPOINT, names)
    out = []
    for _, r in sorted(resources.items()):
        body = json_format.MessageToDict(r.any)
        body.pop("@type", None)
        out.append(body)
    return out


def instances(ctx: PushContext, proxy: Proxy) -> list[dict[str, Any]]:
    """Istio's ServiceInstances of ``proxy``: each port of each service its IPs implement."""
    workload = next((w for w in ctx.workloads if w.address in proxy.instance_ips), None)
    out = []
    for svc in ctx.workloads_for(proxy):
        for port in svc.ports:
            target = (workload.ports.get(port.name) if workload else None) or port.target_port or port.number
            out.append(
                {
                    "service": {"hostname": svc.hostname, "namespace": svc.namespace},
                    "servicePort": {"name": port.name, "port": port.number, "protocol": port.protocol},
                    "endpoint": {
                        "address": workload.address if workload else proxy.ip,
                        "endpointPort": target,
                        "servicePortName": port.name,
                        "labels": workload.labels if workload else proxy.labels,
                        "serviceAccount": (workload.service_account if workload else "")
                        or proxy.service_account,
                    },
                }
            )
    return out


def instancesz(server: DiscoveryServer) -> dict[str, list[dict[str, Any]]]:
    return {c.proxy.id: instances(server.ctx, c.proxy) for c in server.connections.values()}


def authorizationz(configs: Iterable[AnyConfig], root_namespace: str) -> dict[str, Any]:
    by_ns: dict[str, list[dict[str, Any]]] = {}
    policies = [c for c in configs if isinstance(c.spec, models.AuthorizationPolicy)]
    for cfg in sorted(policies, key=lambda c: (c.namespace, c.name)):
        by_ns.setdefault(cfg.namespace, []).append(
            {"name": cfg.name, "namespace": cfg.namespace, "spec": cfg.spec_json()}
        )
    return {
        "authorization_policies": {
            "namespace_to_policies": by_ns,
            "root_namespace": root_namespace,
        }
    }


def configz(configs: Iterable[AnyConfig]) -> list[dict[str, Any]]:
    """Every config object as Kubernetes shows it (Istio's configz)."""
    return [
        {
            "apiVersion": f"{c.group}/{c.version}",
            "kind": c.kind,
            "metadata": {"name": c.name, "namespace": c.namespace, "resourceVersion": c.resource_version},
            "spec": c.spec_json(),
        }
        for c in sorted(configs, key=lambda c: (c.kind, c.namespace, c.name))
    ]


def mesh_json(mesh: MeshConfig) -> dict[str, Any]:
    """The MeshConfig Pilot applies, under MeshConfig's own field names."""
    providers: list[dict[str, Any]] = []
    for name, log in mesh.file_log_providers:
        body: dict[str, Any] = {"path": log.path}
        if log.text is not None:
            body["logFormat"] = {"text": log.text}
        elif log.labels is not None:
            body["logFormat"] = {"labels": dict(log.labels)}
        if log.omit_empty_values:
            body["omitEmptyValues"] = True
        providers.append({"name": name, "envoyFileAccessLog": body})
    for name, als in mesh.otel_als_providers:
        fmt = {**({"text": als.text} if als.text is not None else {}), "labels": dict(als.labels)}
        body = {"service": als.service, "port": als.port, "logName": als.log_name, "logFormat": fmt}
        providers.append({"name": name, "envoyOtelAls": body})
    for name, tracer in mesh.tracing_providers:
        otel: dict[str, Any] = {
            "service": tracer.service,
            "port": tracer.port,
            "maxTagLength": tracer.max_tag_length,
        }
        if tracer.http_path is not None:
            otel["http"] = {"path": tracer.http_path, "timeout": f"{tracer.http_timeout:g}s"}
        providers.append({"name": name, "opentelemetry": otel})
    return {
        "rootNamespace": mesh.root_namespace,
        "trustDomain": mesh.trust_domain,
        "trustDomainAliases": list(mesh.traffic.trust_domain_aliases),
        "accessLogFile": mesh.access_log_file,
        "accessLogEncoding": mesh.access_log_encoding,
        "accessLogFormat": mesh.access_log_format,
        "defaultProviders": {
            "accessLogging": list(mesh.default_access_log_providers),
            "tracing": list(mesh.default_tracing_providers),
        },
        "extensionProviders": providers,
        "outboundTrafficPolicy": {"mode": mesh.traffic.outbound_traffic_policy},
        "enableAutoMtls": mesh.traffic.enable_auto_mtls,
        "defaultServiceExportTo": list(mesh.traffic.default_service_export_to),
        "defaultVirtualServiceExportTo": list(mesh.traffic.default_virtual_service_export_to),
        "defaultDestinationRuleExportTo": list(mesh.traffic.default_destination_rule_export_to),
        **(
            {"localityLbSetting": mesh.traffic.locality_lb_setting.to_yaml_dict()}
            if mesh.traffic.locality_lb_setting is not None
            else {}
        ),
        # meshplane's addition: what the file gave that is accepted, not applied
        "notApplied": list(mesh.not_applied),
    }
