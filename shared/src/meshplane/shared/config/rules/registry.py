"""Maps each Istio kind to its rule function ``check(model, ctx, issues)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshplane.shared.config.issues import Issues
from meshplane.shared.config.rules import (
    authentication,
    authorization,
    destination_rule,
    envoy_filter,
    extensions,
    gateway,
    service_entry,
    sidecar,
    telemetry,
    virtual_service,
    workload,
)
from meshplane.shared.config.rules.context import ObjectContext

Rule = Callable[[Any, ObjectContext, Issues], None]

RULES: dict[str, Rule] = {
    "VirtualService": virtual_service.check,
    "DestinationRule": destination_rule.check,
    "Gateway": gateway.check,
    "ServiceEntry": service_entry.check,
    "WorkloadEntry": workload.check,
    "WorkloadGroup": workload.check_group,
    "Sidecar": sidecar.check,
    "EnvoyFilter": envoy_filter.check,
    "PeerAuthentication": authentication.check_peer,
    "AuthorizationPolicy": authorization.check,
    "RequestAuthentication": authentication.check_request,
    "Telemetry": telemetry.check,
    "WasmPlugin": extensions.check_wasm,
    "ProxyConfig": extensions.check_proxy_config,
}
