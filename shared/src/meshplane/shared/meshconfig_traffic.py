"""MeshConfig's mesh-wide traffic defaults, parsed for :mod:`meshplane.shared.meshconfig`.

Istio's fields and defaults: ``outboundTrafficPolicy.mode`` (``ALLOW_ANY``; a Sidecar's own policy
wins), ``enableAutoMtls`` (true), ``localityLbSetting`` (used where a DestinationRule has none; its
``enabled: false`` turns locality load balancing off everywhere), ``defaultServiceExportTo``,
``defaultVirtualServiceExportTo`` and ``defaultDestinationRuleExportTo`` (``["*"]``: the visibility
of an object that sets no ``exportTo``) and ``trustDomainAliases`` (other trust domains whose
identities count as this mesh's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from meshplane.shared.config.models import LocalityLoadBalancerSetting

#: the fields this module parses, all applied by Pilot (so not named in the MeshConfig warning)
APPLIED = (
    "outboundTrafficPolicy",
    "enableAutoMtls",
    "localityLbSetting",
    "defaultServiceExportTo",
    "defaultVirtualServiceExportTo",
    "defaultDestinationRuleExportTo",
    "trustDomainAliases",
)
KEYS = frozenset(APPLIED)
MODES = ("ALLOW_ANY", "REGISTRY_ONLY")
_EXPORT = re.compile(r"^(\*|\.|~|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")


class TrafficFieldError(ValueError):
    """A traffic field that cannot be used; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class MeshTraffic:
    #: ``outboundTrafficPolicy.mode``: what a sidecar does with a destination not in its registry
    outbound_traffic_policy: str = "ALLOW_ANY"
    #: ``enableAutoMtls``: ISTIO_MUTUAL to endpoints with a sidecar when no DestinationRule sets TLS
    enable_auto_mtls: bool = True
    #: ``localityLbSetting``: the default of a DestinationRule without one (None: Istio's enabled)
    locality_lb_setting: LocalityLoadBalancerSetting | None = field(default=None, hash=False)
    #: ``default*ExportTo``: the visibility of a Service/ServiceEntry, VirtualService, DestinationRule
    #: that sets no ``exportTo``
    default_service_export_to: tuple[str, ...] = ("*",)
    default_virtual_service_export_to: tuple[str, ...] = ("*",)
    default_destination_rule_export_to: tuple[str, ...] = ("*",)
    #: ``trustDomainAliases``
    trust_domain_aliases: tuple[str, ...] = ()


def parse_traffic(doc: dict[str, Any], where: str) -> MeshTraffic:
    """The traffic fields of a MeshConfig mapping; raise TrafficFieldError naming a bad one."""
    policy = doc.get("outboundTrafficPolicy") or {}
    if not isinstance(policy, dict) or set(policy) - {"mode"}:
        raise TrafficFieldError(f"{where}: outboundTrafficPolicy: expected {{mode: ALLOW_ANY|REGISTRY_ONLY}}")
    mode = policy.get("mode") or "ALLOW_ANY"
    if mode not in MODES:
        raise TrafficFieldError(
            f"{where}: outboundTrafficPolicy.mode: expected ALLOW_ANY or REGISTRY_ONLY, got {mode!r}"
        )
    auto = doc.get("enableAutoMtls", True)
    if not isinstance(auto, bool):
        raise TrafficFieldError(f"{where}: enableAutoMtls: expected true or false, got {auto!r}")
    locality = None
    if doc.get("localityLbSetting") is not None:
        try:
            locality = LocalityLoadBalancerSetting.model_validate(doc["localityLbSetting"])
        except ValidationError as exc:
            first = exc.errors()[0]
            at = ".".join(str(p) for p in first["loc"])
            raise TrafficFieldError(
                f"{where}: localityLbSetting{'.' + at if at else ''}: {first['msg']}"
            ) from None
    aliases = doc.get("trustDomainAliases") or []
    if not isinstance(aliases, list) or not all(_is_domain(a) for a in aliases):
        raise TrafficFieldError(
            f"{where}: trustDomainAliases: expected a list of trust domains, got {aliases!r}"
        )
    return MeshTraffic(
        mode,
        auto,
        locality,
        _export_to(doc, "defaultServiceExportTo", where),
        _export_to(doc, "defaultVirtualServiceExportTo", where),
        _export_to(doc, "defaultDestinationRuleExportTo", where),
        tuple(aliases),
    )


def _export_to(doc: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None or value == []:
        return ("*",)
    if not isinstance(value, list) or not all(isinstance(v, str) and _EXPORT.match(v) for v in value):
        raise TrafficFieldError(
            f"{where}: {key}: expected a list of namespaces, '*', '.' or '~', got {value!r}"
        )
    return tuple(value)


def _is_domain(value: object) -> bool:
    return isinstance(value, str) and _TRUST_DOMAIN.match(value) is not None
