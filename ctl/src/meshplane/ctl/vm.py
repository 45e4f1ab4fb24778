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


def vm_metadata(args: argparse.Namespace) -> dict[str, Any]:
    """Istio's VM node metadata from the flags: ``NETWORK``, ``AUTO_REGISTER_GROUP`` and, when the
    group has a probe, ``PROXY_CONFIG.readinessProbe`` (Pilot then keeps the entry's endpoint out
    until the probe reports healthy). ValueError naming the flag when the group file is bad."""
    out: dict[str, Any] = {}
    if args.network:
        out["NETWORK"] = args.network
    if args.workload_group:
        try:
            wg = read_workload_group(args.workload_group)
        except ValueError as exc:
            raise ValueError(f"--workload-group: {exc}") from None
        if wg.namespace and wg.namespace != args.namespace:
            raise ValueError(f"--workload-group: the group is in namespace {wg.namespace!r} (--namespace)")
        out["AUTO_REGISTER_GROUP"] = wg.name
        if wg.probe:
            out["PROXY_CONFIG"] = {"readinessProbe": wg.probe}
    return out
