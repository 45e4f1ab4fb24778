"""Generate the CustomResourceDefinitions for the Istio kinds meshplane reads (k8s/base/crds/).

Each CRD serves the API versions Istio serves for its group (storage version ``v1``) with one
structural OpenAPI v3 schema. The spec schemas are written here, field by field, from Istio's
public API reference; ``x-kubernetes-preserve-unknown-fields`` is used where Istio itself keeps a
free-form ``google.protobuf.Struct`` (EnvoyFilter patch values, ``status``) and, until the shared
config models exist, on the deeper message types listed in ``PENDING_MODELS``.

Run ``python k8s/gen_crds.py`` from the repository root after changing a schema; the tests in
``tests/deploy`` fail when the committed files differ from what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

Schema = dict[str, Any]

OUT_DIR = Path(__file__).resolve().parent / "base" / "crds"

#: Message types whose inner fields are not yet spelled out here. They keep unknown fields so
#: nothing a user writes is pruned; replace each with its full schema from the config models.
PENDING_MODELS = frozenset(
    {
        "HTTPRoute",
        "TLSRoute",
        "TCPRoute",
        "TrafficPolicy",
        "Subset",
        "Server",
        "ServiceEntryEndpoint",
        "WorkloadGroupProbe",
        "IstioIngressListener",
        "IstioEgressListener",
        "ConnectionPool",
        "OutboundTrafficPolicy",
        "EnvoyConfigObjectMatch",
        "AuthorizationRule",
        "JWTRule",
        "Tracing",
        "Metrics",
        "AccessLogging",
    }
)


def string() -> Schema:
    return {"type": "string"}


def integer(minimum: int | None = None, maximum: int | None = None) -> Schema:
    out: Schema = {"type": "integer"}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


def boolean() -> Schema:
    return {"type": "boolean"}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def string_map() -> Schema:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def obj(description: str = "", **properties: Schema) -> Schema:
    out: Schema = {"type": "object"}
    if description:
        out["description"] = description
    if properties:
        out["properties"] = properties
    return out


def pending(message: str) -> Schema:
    """A message type whose fields are not spelled out yet (see PENDING_MODELS)."""
    if message not in PENDING_MODELS:
        raise ValueError(f"{message} is not listed in PENDING_MODELS")
    return {
        "type": "object",
        "description": f"istio {message}; fields are validated by galley.",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def struct(description: str) -> Schema:
    """A google.protobuf.Struct: free-form in Istio's own CRDs too."""
    return {"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": True}


def workload_selector() -> Schema:
    return obj("Pods this applies to.", matchLabels=string_map())


def policy_target() -> Schema:
    return obj(group=string(), kind=string(), name=string(), namespace=string())


def port_number() -> Schema:
    return integer(minimum=0, maximum=4294967295)


SERVICE_PORT = obj(number=port_number(), protocol=string(), name=string(), targetPort=port_number())

WORKLOAD_ENTRY = obj(
    address=string(),
    ports={"type": "object", "additionalProperties": port_number()},
    labels=string_map(),
    network=string(),
    locality=string(),
    weight=integer(minimum=0, maximum=4294967295),
    serviceAccount=string(),
)

MTLS = obj(mode=enum("UNSET", "DISABLE", "PERMISSIVE", "STRICT"))

SPECS: dict[str, Schema] = {
    "VirtualService": obj(
        hosts=array(string()),
        gateways=array(string()),
        http=array(pending("HTTPRoute")),
        tls=array(pending("TLSRoute")),
        tcp=array(pending("TCPRoute")),
        exportTo=array(string()),
    ),
    "DestinationRule": obj(
        host=string(),
        trafficPolicy=pending("TrafficPolicy"),
        subsets=array(pending("Subset")),
        exportTo=array(string()),
        workloadSelector=workload_selector(),
    ),
    "Gateway": obj(servers=array(pending("Server")), selector=string_map()),
    "ServiceEntry": obj(
        hosts=array(string()),
        addresses=array(string()),
        ports=array(SERVICE_PORT),
        location=enum("MESH_EXTERNAL", "MESH_INTERNAL"),
        resolution=enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"),
        endpoints=array(pending("ServiceEntryEndpoint")),
        workloadSelector=workload_selector(),
        exportTo=array(string()),
        subjectAltNames=array(string()),
    ),
    "WorkloadEntry": WORKLOAD_ENTRY,
    "WorkloadGroup": obj(
        metadata=obj(labels=string_map(), annotations=string_map()),
        template=WORKLOAD_ENTRY,
        probe=pending("WorkloadGroupProbe"),
    ),
    "Sidecar": obj(
        workloadSelector=workload_selector(),
        ingress=array(pending("IstioIngressListener")),
        egress=array(pending("IstioEgressListener")),
        inboundConnectionPool=pending("ConnectionPool"),
        outboundTrafficPolicy=pending("OutboundTrafficPolicy"),
    ),
    "EnvoyFilter": obj(
        workloadSelector=obj(labels=string_map()),
        targetRefs=array(policy_target()),
        configPatches=array(
            obj(
                applyTo=string(),
                match=pending("EnvoyConfigObjectMatch"),
                patch=obj(
                    operation=string(),
                    value=struct("The Envoy configuration to merge, add or replace."),
                    filterClass=string(),
                ),
            )
        ),
        priority=integer(),
    ),
    "PeerAuthentication": obj(
        selector=workload_selector(),
        mtls=MTLS,
        portLevelMtls={"type": "object", "additionalProperties": MTLS},
    ),
    "AuthorizationPolicy": obj(
        selector=workload_selector(),
        targetRef=policy_target(),
        targetRefs=array(policy_target()),
        rules=array(pending("AuthorizationRule")),
        action=enum("ALLOW", "DENY", "AUDIT", "CUSTOM"),
        provider=obj(name=string()),
    ),
    "RequestAuthentication": obj(
        selector=workload_selector(),
        targetRef=policy_target(),
        targetRefs=array(policy_target()),
        jwtRules=array(pending("JWTRule")),
    ),
    "Telemetry": obj(
        selector=workload_selector(),
        targetRef=policy_target(),
        targetRefs=array(policy_target()),
        tracing=array(pending("Tracing")),
        metrics=array(pending("Metrics")),
        accessLogging=array(pending("AccessLogging")),
    ),
}

#: group -> (served versions, newest first; kinds with their plural and short names)
GROUPS: dict[str, tuple[list[str], list[tuple[str, str, list[str]]]]] = {
    "networking.istio.io": (
        ["v1", "v1beta1", "v1alpha3"],
        [
            ("VirtualService", "virtualservices", ["vs"]),
            ("DestinationRule", "destinationrules", ["dr"]),
            ("Gateway", "gateways", ["gw"]),
            ("ServiceEntry", "serviceentries", ["se"]),
            ("WorkloadEntry", "workloadentries", ["we"]),
            ("WorkloadGroup", "workloadgroups", ["wg"]),
            ("Sidecar", "sidecars", []),
            ("EnvoyFilter", "envoyfilters", []),
        ],
    ),
    "security.istio.io": (
        ["v1", "v1beta1"],
        [
            ("PeerAuthentication", "peerauthentications", ["pa"]),
            ("AuthorizationPolicy", "authorizationpolicies", ["ap"]),
            ("RequestAuthentication", "requestauthentications", ["ra"]),
        ],
    ),
    "telemetry.istio.io": (["v1", "v1alpha1"], [("Telemetry", "telemetries", ["telemetry"])]),
}

STORAGE_VERSION = "v1"


def object_schema(kind: str) -> Schema:
    spec = dict(SPECS[kind])
    spec["description"] = f"{kind} spec, as in Istio's API."
    return {
        "type": "object",
        "properties": {
            "apiVersion": string(),
            "kind": string(),
            "metadata": {"type": "object"},
            "spec": spec,
            "status": struct("Status written by the control plane."),
        },
    }


def crd(group: str, versions: list[str], kind: str, plural: str, short_names: list[str]) -> Schema:
    names: Schema = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "categories": ["istio-io", f"{group.split('.')[0]}-istio-io"],
    }
    if short_names:
        names["shortNames"] = short_names
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "labels": {"app.kubernetes.io/part-of": "meshplane"},
        },
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": version == STORAGE_VERSION,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": object_schema(kind)},
                }
                for version in versions
            ],
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """Writes shared sub-schemas out in full (no YAML anchors), as kubectl users expect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> dict[str, str]:
    """File name -> YAML text for every group's CRDs."""
    files: dict[str, str] = {}
    for group, (versions, kinds) in GROUPS.items():
        docs = [crd(group, versions, kind, plural, short) for kind, plural, short in kinds]
        header = f"# Generated by k8s/gen_crds.py: CRDs of {group}. Do not edit by hand.\n"
        files[f"{group.split('.')[0]}.yaml"] = header + yaml.dump_all(
            docs, Dumper=_PlainDumper, sort_keys=False
        )
    return files


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT_DIR / name).write_text(text)
        print(f"wrote {OUT_DIR.name}/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
