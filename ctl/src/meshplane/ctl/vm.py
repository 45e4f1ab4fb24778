"""What a VM's proxy side needs from its WorkloadGroup: the node metadata Istio's auto-registration
reads, and the group's name, namespace and probe (read from the group's YAML, as
``istioctl x workload entry configure -f wg.yaml`` does)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class WorkloadGroupFile:
    name: str
    namespace: str
    #: ``spec.probe`` as Istio's ReadinessProbe JSON (None when the group has none)
    probe: dict[str, Any] | None


def read_workload_group(path: str) -> WorkloadGroupFile:
    """The WorkloadGroup in the YAML file ``path``; ValueError naming the file and the problem."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "WorkloadGroup":
        raise ValueError(f"{path} is not a WorkloadGroup")
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    if not name:
        raise ValueError(f"{path}: metadata.name is required")
    probe = (doc.get("spec") or {}).get("probe")
    namespace = str(meta.get("namespace") or "")
    return WorkloadGroupFile(name, namespace, probe if isinstance(probe, dict) else None)


def add_vm_arguments(parser: argparse.ArgumentParser) -> None:
    """``meshctl bootstrap``'s VM flags."""
    parser.add_argument("--network", default="", help="the workload's network (NETWORK metadata)")
    parser.add_argument(
        "--workload-group",
        default="",
        metavar="FILE",
        help="a VM: auto-register under this WorkloadGroup (YAML), as Istio's auto-registration; "
        "its probe is run by `meshctl workload-probe`",
    )
    parser.add_argument(
        "--xds-relay-socket",
        default="",
        metavar="PATH",
        help="a Unix socket where Envoy relays `meshctl workload-probe`'s health reports to Pilot over "
        "its own mutual TLS connection (needed unless xDS is plaintext)",
    )


@dataclass(frozen=True)
class VmOptions:
    """A VM's part of the bootstrap: node metadata (``NETWORK``, ``AUTO_REGISTER_GROUP``), the
    group's probe (the ProxyConfig ``readinessProbe``, as ``istioctl x workload entry configure``
    writes it; Pilot then keeps the entry's endpoint out until the probe reports healthy) and the
    relay socket."""

    metadata: dict[str, Any]
    readiness_probe: dict[str, Any] | None = None
    relay_socket: str = ""

    def proxy_config(self, proxy_config: dict[str, Any]) -> dict[str, Any]:
        """``proxy_config`` with the group's probe, unless it has a ``readinessProbe`` of its own."""
        if not self.readiness_probe or proxy_config.get("readinessProbe"):
            return proxy_config
        return {**proxy_config, "readinessProbe": self.readiness_probe}


def vm_options(args: argparse.Namespace) -> VmOptions:
    """The VM flags; ValueError naming the flag when the group file is bad."""
    metadata: dict[str, Any] = {}
    if args.network:
        metadata["NETWORK"] = args.network
    probe = None
    if args.workload_group:
        try:
            wg = read_workload_group(args.workload_group)
        except ValueError as exc:
            raise ValueError(f"--workload-group: {exc}") from None
        if wg.namespace and wg.namespace != args.namespace:
            raise ValueError(f"--workload-group: the group is in namespace {wg.namespace!r} (--namespace)")
        metadata["AUTO_REGISTER_GROUP"] = wg.name
        probe = wg.probe
    if args.xds_relay_socket and not args.xds_relay_socket.startswith("/"):
        raise ValueError(f"--xds-relay-socket: expected an absolute path, got {args.xds_relay_socket!r}")
    return VmOptions(metadata, probe, args.xds_relay_socket)


def xds_relay_listener(path: str) -> list[dict[str, Any]]:
    """A Unix socket (mode 0600) whose connections Envoy passes to Pilot through its ``xds-grpc``
    cluster, so over Envoy's own mutual TLS with the workload certificate (as Istio's agent shares
    the proxy's connection): ``meshctl workload-probe`` reports a VM's health through it."""
    if not path:
        return []
    tcp = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "xds-relay",
        "cluster": "xds-grpc",
    }
    chain = {"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": tcp}]}
    return [
        {"name": "xds-relay", "address": {"pipe": {"path": path, "mode": 0o600}}, "filter_chains": [chain]}
    ]
