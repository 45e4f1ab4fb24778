"""Convert an EnvoyFilter patch value to the Envoy message for its ``applyTo``, as Envoy would.

Envoy NACKs a patch whose value does not fit the target type; Istio rejects such EnvoyFilters at
admission. The Envoy API comes from the ``xds-protos`` package; ``typed_config`` types named by
``@type`` are imported on demand from their proto package.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from functools import cache
from typing import Any

from google.protobuf import descriptor_pool, json_format
from google.protobuf.message import Message

TYPE_PREFIX = "type.googleapis.com/"

#: applyTo -> (module, message) of the Envoy type the patch value must convert to.
APPLY_TO_TYPES: dict[str, tuple[str, str]] = {
    "LISTENER": ("envoy.config.listener.v3.listener_pb2", "Listener"),
    "FILTER_CHAIN": ("envoy.config.listener.v3.listener_components_pb2", "FilterChain"),
    "NETWORK_FILTER": ("envoy.config.listener.v3.listener_components_pb2", "Filter"),
    "LISTENER_FILTER": ("envoy.config.listener.v3.listener_components_pb2", "ListenerFilter"),
    "HTTP_FILTER": (
        "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
        "HttpFilter",
    ),
    "ROUTE_CONFIGURATION": ("envoy.config.route.v3.route_pb2", "RouteConfiguration"),
    "VIRTUAL_HOST": ("envoy.config.route.v3.route_components_pb2", "VirtualHost"),
    "HTTP_ROUTE": ("envoy.config.route.v3.route_components_pb2", "Route"),
    "CLUSTER": ("envoy.config.cluster.v3.cluster_pb2", "Cluster"),
    "EXTENSION_CONFIG": ("envoy.config.core.v3.extension_pb2", "TypedExtensionConfig"),
    "BOOTSTRAP": ("envoy.config.bootstrap.v3.bootstrap_pb2", "Bootstrap"),
}


@cache
def _load_package(package: str) -> bool:
    """Import every ``*_pb2`` module of a proto package so its messages are in the pool."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    for info in pkgutil.iter_modules(spec.submodule_search_locations):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")
    return True


def _type_urls(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "@type" and isinstance(item, str):
                found.add(item)
            else:
                found |= _type_urls(item)
    elif isinstance(value, list):
        for item in value:
            found |= _type_urls(item)
    return found


def _known(full_name: str) -> bool:
    try:
        descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        return False
    return True


def unknown_type_urls(value: Any) -> list[str]:
    """The ``@type`` URLs in ``value`` that name no known protobuf message."""
    unknown = []
    for url in sorted(_type_urls(value)):
        full_name = url.rsplit("/", 1)[-1]
        if full_name.startswith("envoy.") and ".v2" in full_name:
            unknown.append(url)  # Envoy 1.40 dropped the v2 API; Istio no longer resolves it either
            continue
        if not _known(full_name):
            _load_package(full_name.rsplit(".", 1)[0])
        if not _known(full_name):
            unknown.append(url)
    return unknown


def conversion_problems(apply_to: str, value: dict[str, Any]) -> tuple[str | None, str | None]:
    """(error, warning) from converting ``value`` to the Envoy type for ``apply_to``.

    The error is what Envoy would reject (wrong types, unknown ``@type``); the warning reports
    fields Envoy's strict parsing does not know, which older Istio libraries may also not know.
    """
    target = APPLY_TO_TYPES.get(apply_to)
    if target is None:
        return None, None
    module_name, message_name = target
    message_type: type[Message] = getattr(importlib.import_module(module_name), message_name)
    unknown = unknown_type_urls(value)
    if unknown:
        hint = " (hint: try using the v3 xDS API)" if any(".v2." in u for u in unknown) else ""
        return f"referenced type unknown{hint}: {', '.join(unknown)}", None
    try:
        json_format.ParseDict(value, message_type(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        return f"value is not a valid {message_type.DESCRIPTOR.full_name}: {_first_line(exc)}", None
    try:
        json_format.ParseDict(value, message_type())
    except json_format.ParseError as exc:
        return None, f"value has fields unknown to {message_type.DESCRIPTOR.full_name}: {_first_line(exc)}"
    return None, None


def _first_line(exc: Exception) -> str:
    return str(exc).split("\n", 1)[0].strip()
