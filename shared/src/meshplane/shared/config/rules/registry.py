"""Maps each Istio kind to its rule function ``check(model, ctx, issues)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshplane.shared.config.issues import Issues
from meshplane.shared.config.lazy import LazyTable
from meshplane.shared.config.rules.context import ObjectContext

Rule = Callable[[Any, ObjectContext, Issues], None]

_R = "meshplane.shared.config.rules."

#: kind -> its rule function; each rule module is imported when its kind is first validated
RULES: LazyTable[Rule] = LazyTable(
    {
        "VirtualService": _R + "virtual_service:check",
        "DestinationRule": _R + "destination_rule:check",
        "Gateway": _R + "gateway:check",
        "ServiceEntry": _R + "service_entry:check",
        "WorkloadEntry": _R + "workload:check",
        "WorkloadGroup": _R + "workload:check_group",
        "Sidecar": _R + "sidecar:check",
        "EnvoyFilter": _R + "envoy_filter:check",
        "PeerAuthentication": _R + "authentication:check_peer",
        "AuthorizationPolicy": _R + "authorization:check",
        "RequestAuthentication": _R + "authentication:check_request",
        "Telemetry": _R + "telemetry:check",
        "WasmPlugin": _R + "extensions:check_wasm",
        "ProxyConfig": _R + "extensions:check_proxy_config",
    }
)
