"""Parse what the runtime hands the plugin: ``CNI_*`` environment and the NetConf on stdin.

Accepts the 1.0.0 config and the 0.3.x/0.4.0 configs Istio's templates use, Istio's 1.4
``kubernetes`` block (``exclude_namespaces``) and HEAD's top-level fields.  Anything malformed
raises :class:`CNIError` with the spec's code and a message naming the field.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from typing import NamedTuple

from meshplane.cni.plugin.errors import (
    DECODE_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    CNIError,
)
from meshplane.cni.rules.pods import DEFAULT_EXCLUDED_NAMESPACES

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")
DEFAULT_AGENT_RUN_DIR = "/var/run/meshplane-cni"
AGENT_SOCKET_NAME = "agent.sock"


class Invocation(NamedTuple):
    """The ``CNI_*`` environment of one call."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = {}  # never mutated
    path: tuple[str, ...] = ()

    @property
    def pod(self) -> tuple[str, str] | None:
        """``(namespace, name)`` from ``CNI_ARGS`` or ``None`` when the runtime did not say."""
        namespace, name = self.args.get("K8S_POD_NAMESPACE", ""), self.args.get("K8S_POD_NAME", "")
        return (namespace, name) if namespace and name else None


class NetConf(NamedTuple):
    """The plugin's network configuration."""

    cni_version: str
    name: str
    type: str
    prev_result: Mapping[str, object] | None
    exclude_namespaces: tuple[str, ...]
    agent_socket: str


def load_invocation(environ: Mapping[str, str]) -> Invocation:
    """Read ``CNI_COMMAND`` and friends; ADD/DEL/CHECK need a container id."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}")
    args: dict[str, str] = {}
    for pair in environ.get("CNI_ARGS", "").split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENVIRONMENT, f"CNI_ARGS item {pair!r} is not KEY=VALUE")
        args[key] = value
    invocation = Invocation(
        command=command,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        args=args,
        path=tuple(p for p in environ.get("CNI_PATH", "").split(":") if p),
    )
    if command != "VERSION" and not invocation.container_id:
        raise CNIError(INVALID_ENVIRONMENT, f"CNI_CONTAINERID is required for {command}")
    return invocation


def split_cidr(text: str) -> tuple[str, int] | None:
    """``("10.1.2.3", 24)`` for ``"10.1.2.3/24"`` (v4 or v6), ``None`` when it is not one.

    ``socket.inet_pton`` instead of :mod:`ipaddress`: this runs on every pod start.
    """
    address, sep, prefix = text.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        socket.inet_pton(family, address)
    except OSError:
        return None
    bits = 128 if family == socket.AF_INET6 else 32
    if not sep or not prefix.isdigit() or int(prefix) > bits:
        return None
    return address, int(prefix)


def _check_prev_result(prev: object) -> Mapping[str, object]:
    if not isinstance(prev, dict):
        raise CNIError(DECODE_FAILURE, "prevResult must be a JSON object")
    ips = prev.get("ips", [])
    if not isinstance(ips, list):
        raise CNIError(DECODE_FAILURE, "prevResult.ips must be a list")
    for index, entry in enumerate(ips):
        where = f"prevResult.ips[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("address"), str):
            raise CNIError(DECODE_FAILURE, f"{where} must be an object with an 'address' string")
        if split_cidr(entry["address"]) is None:
            raise CNIError(DECODE_FAILURE, f"{where}.address {entry['address']!r} is not a CIDR")
    interfaces = prev.get("interfaces", [])
    if not isinstance(interfaces, list) or not all(isinstance(i, dict) for i in interfaces):
        raise CNIError(DECODE_FAILURE, "prevResult.interfaces must be a list of objects")
    return prev


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CNIError(INVALID_CONFIG, f"{where} must be a list of strings")
    return tuple(value)


def load_netconf(raw: bytes) -> NetConf:
    """Parse and check the NetConf JSON from stdin."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CNIError(DECODE_FAILURE, f"network config on stdin is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CNIError(DECODE_FAILURE, "network config on stdin must be a JSON object")
    version = data.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {version!r} is not supported",
            f"supported versions: {', '.join(SUPPORTED_VERSIONS)}",
        )
    for key in ("name", "type"):
        if not isinstance(data.get(key, ""), str):
            raise CNIError(INVALID_CONFIG, f"network config field {key!r} must be a string")
    prev = _check_prev_result(data["prevResult"]) if data.get("prevResult") is not None else None
    kubernetes = data.get("kubernetes", {})
    if not isinstance(kubernetes, dict):
        raise CNIError(INVALID_CONFIG, "network config field 'kubernetes' must be an object")
    excluded: tuple[str, ...] = DEFAULT_EXCLUDED_NAMESPACES
    if "exclude_namespaces" in data:
        excluded = _string_list(data["exclude_namespaces"], "exclude_namespaces")
    elif "exclude_namespaces" in kubernetes:
        excluded = _string_list(kubernetes["exclude_namespaces"], "kubernetes.exclude_namespaces")
    run_dir = data.get("cni_agent_run_dir", DEFAULT_AGENT_RUN_DIR)
    if not isinstance(run_dir, str) or not run_dir:
        raise CNIError(INVALID_CONFIG, "network config field 'cni_agent_run_dir' must be a path")
    return NetConf(
        cni_version=version,
        name=data.get("name", ""),
        type=data.get("type", ""),
        prev_result=prev,
        exclude_namespaces=excluded,
        agent_socket=run_dir.rstrip("/") + "/" + AGENT_SOCKET_NAME,
    )


def pod_addresses(prev: Mapping[str, object] | None, args: Mapping[str, str]) -> list[str]:
    """The pod's IP addresses (no prefix) from prevResult, else from ``CNI_ARGS`` ``IP``."""
    found: list[str] = []
    ips = (prev or {}).get("ips") or []
    if isinstance(ips, list):
        found = [entry["address"].split("/")[0] for entry in ips]
    if not found and args.get("IP"):
        found = [a.split("/")[0] for a in args["IP"].split(",") if a]
    return found
