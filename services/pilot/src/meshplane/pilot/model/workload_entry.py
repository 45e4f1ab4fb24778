"""Auto-registered WorkloadEntries as Istio makes them (``pilot/pkg/autoregistration``).

A proxy that connects with ``AUTO_REGISTER_GROUP`` gets a WorkloadEntry named
``<group>-<ip>[-<network>]``, made from the group's ``template`` and the proxy's metadata, with
Istio's annotations: the group, the controlling Pilot, and when the proxy connected or
disconnected. Health reports become the entry's ``Healthy`` condition; an entry annotated
``proxy.istio.io/health-checks-enabled`` contributes endpoints only while it is healthy.

Everything here is pure: the controller (``xds.autoregister``) decides when, and writes.
"""

from __future__ import annotations

import datetime as dt
import json

from google.protobuf import timestamp_pb2

from meshplane.pilot.model.config import NETWORK_LABEL, Config, Workload
from meshplane.pilot.model.proxy import Proxy
from meshplane.proto.bus.v1 import config_pb2, workload_entry_pb2
from meshplane.shared.config import models

AUTO_REGISTRATION_GROUP = "istio.io/autoRegistrationGroup"
WORKLOAD_CONTROLLER = "istio.io/workloadController"
CONNECTED_AT = "istio.io/connectedAt"
DISCONNECTED_AT = "istio.io/disconnectedAt"
HEALTH_CHECKS_ENABLED = "proxy.istio.io/health-checks-enabled"
#: The condition type Istio writes from health reports.
HEALTHY = "Healthy"
#: A proxy's locality label, which Istio keeps out of the entry's labels.
LOCALITY_LABEL = "istio-locality"
MAX_NAME = 253

Entry = workload_entry_pb2.RegisteredWorkloadEntry


def entry_name(group: str, ip: str, network: str = "") -> str:
    """Istio's ``<group>-<ip with ':' as '-'>[-<network>]``, cut from the front to 253 characters."""
    name = f"{group}-{ip.replace(':', '-')}" + (f"-{network}" if network else "")
    return name[-MAX_NAME:]


def proxy_address(proxy: Proxy) -> str:
    """The entry's address: the proxy's first IP."""
    return proxy.instance_ips[0] if proxy.instance_ips else proxy.ip


def entry_from_group(group: Config[models.WorkloadGroup], proxy: Proxy, name: str) -> Entry:
    """The WorkloadEntry for ``proxy`` in ``group`` (Istio's workloadEntryFromGroup)."""
    wg = group.spec
    template = wg.template or models.WorkloadEntry()
    spec = template.model_dump(by_alias=True, exclude_none=True, mode="json")
    # later wins: template labels, then the group's metadata labels, then the proxy's own
    labels = dict(template.labels or {})
    labels.update((wg.metadata.labels or {}) if wg.metadata else {})
    labels.update(proxy.labels)
    labels.pop(LOCALITY_LABEL, None)
    spec["address"] = proxy_address(proxy)
    spec["labels"] = labels
    if proxy.network:
        spec["network"] = proxy.network
    if proxy.locality:
        spec["locality"] = proxy.locality
    annotations = {AUTO_REGISTRATION_GROUP: group.name}
    annotations.update((wg.metadata.annotations or {}) if wg.metadata else {})
    if proxy.readiness_probe:
        annotations[HEALTH_CHECKS_ENABLED] = "true"
    resource = config_pb2.ConfigResource(
        kind="WorkloadEntry",
        group="networking.istio.io",
        version="v1",
        namespace=proxy.namespace,
        name=name,
        labels=labels,
        annotations=annotations,
        spec_json=json.dumps(spec, sort_keys=True),
    )
    return Entry(entry=resource)


def rfc3339(seconds: float) -> str:
    """``2026-12-05T07:07:25.123456789Z`` (Istio's RFC3339Nano, to the microsecond)."""
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{stamp}000Z"


def parse_time(text: str) -> float | None:
    """Seconds since the epoch of an RFC3339 time, or None when absent or unreadable."""
    if not text:
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        base = dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None
    return base + (float(f"0.{frac}") if frac.isdigit() else 0.0)


def connected_at(entry: Entry) -> float | None:
    return parse_time(entry.entry.annotations.get(CONNECTED_AT, ""))


def disconnected_at(entry: Entry) -> float | None:
    return parse_time(entry.entry.annotations.get(DISCONNECTED_AT, ""))


def last_change(entry: Entry) -> float:
    """The newest connect or disconnect time recorded on the entry (0 when none)."""
    return max(connected_at(entry) or 0.0, disconnected_at(entry) or 0.0)


def controller(entry: Entry) -> str:
    return entry.entry.annotations.get(WORKLOAD_CONTROLLER, "")


def connected(entry: Entry, pilot_id: str, now: float) -> Entry:
    """A copy recording that ``pilot_id`` serves the proxy since ``now`` (Istio's setConnectMeta)."""
    out = Entry()
    out.CopyFrom(entry)
    annotations = out.entry.annotations
    annotations[WORKLOAD_CONTROLLER] = pilot_id
    annotations[CONNECTED_AT] = rfc3339(now)
    annotations.pop(DISCONNECTED_AT, None)
    return out


def disconnected(entry: Entry, now: float) -> Entry:
    """A copy recording that the proxy's last connection closed at ``now``."""
    out = Entry()
    out.CopyFrom(entry)
    annotations = out.entry.annotations
    annotations.pop(CONNECTED_AT, None)
    annotations[DISCONNECTED_AT] = rfc3339(now)
    return out


def with_health(entry: Entry, healthy: bool, message: str, now: float) -> Entry | None:
    """A copy whose ``Healthy`` condition says ``healthy``; None when that is already what it
    says (so an unchanged report writes nothing)."""
    status = "True" if healthy else "False"
    message = "" if healthy else message
    old = next((c for c in entry.conditions if c.type == HEALTHY), None)
    if old is not None and old.status == status and old.message == message:
        return None
    out = Entry()
    out.CopyFrom(entry)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(now * 1e9))
    del out.conditions[:]
    out.conditions.extend(c for c in entry.conditions if c.type != HEALTHY)
    out.conditions.add(
        type=HEALTHY, status=status, message=message, last_probe_time=stamp, last_transition_time=stamp
    )
    return out


def spec_of(entry: Entry) -> models.WorkloadEntry:
    return models.WorkloadEntry.model_validate(json.loads(entry.entry.spec_json or "{}"))


def service_account(entry: Entry) -> str:
    return spec_of(entry).service_account or ""


def health_checked(entry: Entry) -> bool:
    return entry.entry.annotations.get(HEALTH_CHECKS_ENABLED, "").lower() == "true"


def is_healthy(entry: Entry) -> bool:
    """Istio's rule: an entry without health checks is healthy; one with them is healthy only
    while its ``Healthy`` condition is True (none yet counts as unhealthy)."""
    if not health_checked(entry):
        return True
    return any(c.type == HEALTHY and c.status == "True" for c in entry.conditions)


def workload_of(entry: Entry) -> Workload:
    """The entry as a registry workload; services select it by labels (``workloadSelector``)."""
    return workload_from_spec(entry.entry.name, entry.entry.namespace, spec_of(entry))


def workload_from_spec(name: str, namespace: str, spec: models.WorkloadEntry) -> Workload:
    """A WorkloadEntry (applied or auto-registered) as a registry workload."""
    return Workload(
        name=name,
        namespace=namespace,
        address=spec.address or "",
        labels=dict(spec.labels or {}),
        service_account=spec.service_account or "",
        locality=spec.locality or "",
        weight=spec.weight or 1,
        ports=dict(spec.ports or {}),
        network=spec.network or (spec.labels or {}).get(NETWORK_LABEL, ""),
    )
