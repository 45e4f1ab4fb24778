"""The registry services a ServiceEntry makes (one per host), and a registry service's identities
taken from the ServiceEntry it came from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from meshplane.pilot.model.config import NETWORK_LABEL, Config, Port, Service
from meshplane.shared.config import models


def service_entry_services(cfg: Config[models.ServiceEntry]) -> list[Service]:
    spec = cfg.spec
    ports = tuple(
        Port(p.name or "", p.number, (p.protocol or "").upper(), p.target_port or 0) for p in spec.ports or []
    )
    # an endpoint's ``network`` becomes its topology.istio.io/network label (Istio's augmented labels)
    endpoints = tuple(
        (
            e.address or "",
            dict(e.ports or {}),
            {**(e.labels or {}), **({NETWORK_LABEL: e.network} if e.network else {})},
            e.locality or "",
            e.weight or 1,
        )
        for e in spec.endpoints or []
    )
    selector = dict(spec.workload_selector.labels or {}) if spec.workload_selector else {}
    return [
        Service(
            hostname=host,
            namespace=cfg.namespace,
            ports=ports,
            resolution=(spec.resolution or models.Resolution.NONE).value,
            addresses=tuple(spec.addresses or ()),
            mesh_external=spec.location is not models.Location.MESH_INTERNAL,
            export_to=cfg.export_to,
            selector=selector,
            static_endpoints=endpoints,
            source=f"ServiceEntry/{cfg.namespace}/{cfg.name}",
            subject_alt_names=tuple(spec.subject_alt_names or ()),
        )
        for host in spec.hosts or []
    ]


def with_sans(svc: Service, entries: Mapping[str, Config[models.ServiceEntry]]) -> Service:
    """A registry service made from a ServiceEntry, with that entry's ``subjectAltNames`` (the
    registry carries no identities of its own)."""
    entry = entries.get(svc.source)
    if entry is None or not entry.spec.subject_alt_names or svc.subject_alt_names:
        return svc
    return dataclasses.replace(svc, subject_alt_names=tuple(entry.spec.subject_alt_names))
