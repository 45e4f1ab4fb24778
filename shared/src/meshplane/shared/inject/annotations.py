"""Istio's injection annotations: checked before anything is injected (``validateAnnotations``).

A bad value fails the admission request (``allowed: false``) with a message naming the
annotation and the value, so a pod is never started with a half-understood set-up.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping

from meshplane.shared.inject.config import ANN_TEMPLATES, TEMPLATES, InjectError

ANN_MODE = "sidecar.istio.io/interceptionMode"
ANN_STATUS_PORT = "status.sidecar.istio.io/port"
ANN_READY_DELAY = "readiness.status.sidecar.istio.io/initialDelaySeconds"
ANN_READY_PERIOD = "readiness.status.sidecar.istio.io/periodSeconds"
ANN_READY_FAILURES = "readiness.status.sidecar.istio.io/failureThreshold"
ANN_PROXY_CPU = "sidecar.istio.io/proxyCPU"
ANN_PROXY_MEMORY = "sidecar.istio.io/proxyMemory"
ANN_PROXY_CPU_LIMIT = "sidecar.istio.io/proxyCPULimit"
ANN_PROXY_MEMORY_LIMIT = "sidecar.istio.io/proxyMemoryLimit"
ANN_PROXY_IMAGE = "sidecar.istio.io/proxyImage"
ANN_LOG_LEVEL = "sidecar.istio.io/logLevel"
ANN_USER_VOLUME = "sidecar.istio.io/userVolume"
ANN_USER_VOLUME_MOUNT = "sidecar.istio.io/userVolumeMount"
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")
MODES = ("REDIRECT", "TPROXY", "NONE")
_QUANTITY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?")
_INTERFACE = re.compile(r"[^\s/]{1,15}")


def _mode(value: str) -> None:
    if value not in MODES:
        raise ValueError(f"expected one of {', '.join(MODES)}")


def _port(value: str) -> None:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ValueError("expected a port number 0..65535")


def _uint(value: str) -> None:
    if not value.isdigit() or int(value) > 2**32 - 1:
        raise ValueError("expected a non-negative integer")


def _bool(value: str) -> None:
    if value.lower() not in ("true", "false", "1", "0", "t", "f"):
        raise ValueError("expected true or false")


def _quantity(value: str) -> None:
    if not _QUANTITY.fullmatch(value):
        raise ValueError("expected a Kubernetes quantity such as 100m or 128Mi")


def _ports(value: str, wildcard: bool = False) -> None:
    for item in (p.strip() for p in value.split(",")):
        if item and not (wildcard and item == "*"):
            try:
                _port(item)
            except ValueError:
                raise ValueError(f"{item!r} is not a port number 0..65535") from None


def _cidrs(value: str) -> None:
    for item in (p.strip() for p in value.split(",")):
        if item and item != "*":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a CIDR") from None


def _interfaces(value: str) -> None:
    for item in (p.strip() for p in value.split(",")):
        if item and not _INTERFACE.fullmatch(item):
            raise ValueError(f"{item!r} is not an interface name")


def _log_level(value: str) -> None:
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")


def named_objects(value: str) -> dict[str, dict[str, object]]:
    """``userVolume``/``userVolumeMount``: a JSON object of name -> volume (or mount) objects."""
    import json

    try:
        doc = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise ValueError("expected a JSON object of name -> object")
    return doc


def _proxy_config(value: str) -> None:
    import yaml

    try:
        doc = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if doc is not None and not isinstance(doc, dict):
        raise ValueError(f"expected a ProxyConfig mapping, got {type(doc).__name__}")
    from meshplane.shared.proxyconfig import ProxyConfigError, check_proxy_config

    try:
        check_proxy_config(doc, "ProxyConfig")
    except ProxyConfigError as exc:
        raise ValueError(str(exc).removeprefix("ProxyConfig: ")) from None


def _templates(value: str) -> None:
    for name in (n.strip() for n in value.split(",")):
        if name not in TEMPLATES:
            raise ValueError(f"requested template {name!r} not found; have {', '.join(TEMPLATES)}")


CHECKS: dict[str, Callable[[str], object]] = {
    ANN_MODE: _mode,
    ANN_STATUS_PORT: _port,
    ANN_READY_DELAY: _uint,
    ANN_READY_PERIOD: _uint,
    ANN_READY_FAILURES: _uint,
    ANN_PROXY_CPU: _quantity,
    ANN_PROXY_MEMORY: _quantity,
    ANN_PROXY_CPU_LIMIT: _quantity,
    ANN_PROXY_MEMORY_LIMIT: _quantity,
    "sidecar.istio.io/rewriteAppHTTPProbers": _bool,
    "prometheus.istio.io/merge-metrics": _bool,
    # the capture annotations the CNI plugin reads (meshplane.cni.rules.settings)
    "traffic.sidecar.istio.io/includeOutboundIPRanges": _cidrs,
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": _cidrs,
    "traffic.sidecar.istio.io/includeInboundPorts": lambda v: _ports(v, wildcard=True),
    "traffic.sidecar.istio.io/excludeInboundPorts": _ports,
    "traffic.sidecar.istio.io/includeOutboundPorts": _ports,
    "traffic.sidecar.istio.io/excludeOutboundPorts": _ports,
    "traffic.sidecar.istio.io/excludeInterfaces": _interfaces,
    ANN_TEMPLATES: _templates,
    ANN_LOG_LEVEL: _log_level,
    ANN_USER_VOLUME: named_objects,
    ANN_USER_VOLUME_MOUNT: named_objects,
    "proxy.istio.io/config": _proxy_config,
}


def validate_annotations(annotations: Mapping[str, object]) -> None:
    """Raise :class:`InjectError` for the first annotation whose value Istio would refuse."""
    for key, check in CHECKS.items():
        if key not in annotations:
            continue
        value = annotations[key]
        if not isinstance(value, str):
            raise InjectError(f"annotation {key}: expected a string, got {type(value).__name__}")
        try:
            check(value)
        except ValueError as exc:
            raise InjectError(f"annotation {key}={value!r} is invalid: {exc}") from None
