"""Generate the CustomResourceDefinitions for the Istio kinds (k8s/base/crds/) from the config models.

The spec schema of every kind is the JSON schema of its pydantic model in
``meshplane.shared.config.models`` (the same models galley validates with), turned into a
structural OpenAPI v3 schema: ``$ref`` inlined, ``Optional`` unions collapsed, titles and
defaults dropped, and a free-form ``google.protobuf.Struct`` (a ``dict[str, Any]`` field) marked
``x-kubernetes-preserve-unknown-fields`` as Istio's own CRDs do. Everything else is typed, so
an unknown field is pruned or, with strict field validation, rejected.

Run ``python k8s/gen_crds.py`` from the repository root after the models change; the tests in
``tests/deploy`` fail when the committed files differ from what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from meshplane.shared.config import lookup_kind, models

Schema = dict[str, Any]

OUT_DIR = Path(__file__).resolve().parent / "base" / "crds"

#: group -> versions served (the first is stored) and kinds with their short names.
#: Kinds Istio serves in one version only keep that version (ProxyConfig, WasmPlugin).
GROUPS: dict[str, tuple[tuple[str, ...], dict[str, list[str]]]] = {
    "networking.istio.io": (
        ("v1", "v1beta1", "v1alpha3"),
        {
            "VirtualService": ["vs"],
            "DestinationRule": ["dr"],
            "Gateway": ["gw"],
            "ServiceEntry": ["se"],
            "WorkloadEntry": ["we"],
            "WorkloadGroup": ["wg"],
            "Sidecar": [],
            "EnvoyFilter": [],
        },
    ),
    "security.istio.io": (
        ("v1", "v1beta1"),
        {"PeerAuthentication": ["pa"], "AuthorizationPolicy": ["ap"], "RequestAuthentication": ["ra"]},
    ),
    "telemetry.istio.io": (("v1", "v1alpha1"), {"Telemetry": ["telemetry"]}),
}
SINGLE_VERSION_KINDS: dict[str, tuple[str, str]] = {
    "ProxyConfig": ("networking.istio.io", "v1beta1"),
    "WasmPlugin": ("extensions.istio.io", "v1alpha1"),
}

#: JSON-schema keys pydantic writes that a CRD schema does not carry.
DROPPED = frozenset({"title", "default", "$defs", "format", "additionalProperties", "anyOf", "$ref"})
SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})


class GenerationError(Exception):
    """A model whose JSON schema has no structural equivalent; the message names the path."""


def structural(node: Schema, defs: dict[str, Schema], path: str, seen: tuple[str, ...] = ()) -> Schema:
    """The structural OpenAPI v3 form of one pydantic JSON-schema node."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            raise GenerationError(f"{path}: {name} refers to itself; CRD schemas cannot recurse")
        return structural(defs[name], defs, path, (*seen, name))
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise GenerationError(f"{path}: a union of {len(options)} types has no structural form")
        return structural(options[0], defs, path, seen)

    kind = node.get("type")
    out: Schema = {"type": kind}
    if node.get("description"):
        out["description"] = node["description"]
    if kind == "object":
        extra = node.get("additionalProperties")
        if "properties" in node:
            out["properties"] = {
                name: structural(sub, defs, f"{path}.{name}", seen)
                for name, sub in node["properties"].items()
            }
            if node.get("required"):
                out["required"] = list(node["required"])
        if isinstance(extra, dict):
            out["additionalProperties"] = structural(extra, defs, f"{path}.*", seen)
        elif extra is True or ("properties" not in node and extra is None):
            out["x-kubernetes-preserve-unknown-fields"] = True  # a protobuf Struct
    elif kind == "array":
        out["items"] = structural(node["items"], defs, f"{path}[]", seen)
    elif kind in SCALAR_TYPES:
        for key in ("enum", "minimum", "maximum"):
            if key in node:
                out[key] = node[key]
    else:
        raise GenerationError(f"{path}: unsupported JSON-schema type {kind!r}")
    unknown = set(node) - DROPPED - {"type", "description", "properties", "required", "items"}
    unknown -= {"enum", "minimum", "maximum"}
    if unknown:
        raise GenerationError(f"{path}: unsupported JSON-schema keyword(s) {sorted(unknown)}")
    return out


def spec_schema(kind: str) -> Schema:
    model = getattr(models, kind)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise GenerationError(f"meshplane.shared.config.models.{kind} is not a model")
    source = model.model_json_schema(by_alias=True)
    schema = structural(source, source.get("$defs", {}), f"{kind}.spec")
    schema["description"] = f"{kind} spec, as in Istio's API."
    return schema


def object_schema(kind: str) -> Schema:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(kind),
            "status": {
                "type": "object",
                "description": "Status written by the control plane.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
    }


def crd(group: str, versions: tuple[str, ...], kind: str, short_names: list[str]) -> Schema:
    info = lookup_kind(group, kind)
    if info is None:
        raise GenerationError(f"{group} {kind} is not in meshplane.shared.config.kinds")
    names: Schema = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": info.plural,
        "singular": kind.lower(),
        "categories": ["istio-io", f"{group.split('.')[0]}-istio-io"],
    }
    if short_names:
        names["shortNames"] = short_names
    schema = object_schema(kind)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{group}", "labels": {"app.kubernetes.io/part-of": "meshplane"}},
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": version == versions[0],
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": schema},
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
    by_group: dict[str, list[Schema]] = {}
    for group, (versions, kinds) in GROUPS.items():
        by_group[group] = [crd(group, versions, kind, short) for kind, short in kinds.items()]
    for kind, (group, version) in SINGLE_VERSION_KINDS.items():
        by_group.setdefault(group, []).append(crd(group, (version,), kind, []))
    files: dict[str, str] = {}
    for group, docs in by_group.items():
        header = (
            f"# Generated by k8s/gen_crds.py from meshplane.shared.config.models: {group}. Do not edit.\n"
        )
        files[f"{group.split('.')[0]}.yaml"] = header + yaml.dump_all(
            docs, Dumper=_PlainDumper, sort_keys=False
        )
    return files


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    try:
        files = render()
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, text in files.items():
        (OUT_DIR / name).write_text(text)
        print(f"wrote {OUT_DIR.name}/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
