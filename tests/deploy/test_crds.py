"""The Istio CRDs: valid apiextensions/v1 objects, structural schemas, and they accept Istio YAML.

Custom objects are checked the way an API server with strict field validation does: a field the
schema does not declare is an error unless the schema node keeps unknown fields.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from meshplane.shared.config import ALL_KINDS, ISTIO_GROUPS

from .conftest import K8S, KUBERNETES_VERSION, REPO, Manifests

EXPECTED = {
    "networking.istio.io": (
        {"v1", "v1beta1", "v1alpha3"},
        {
            "VirtualService",
            "DestinationRule",
            "Gateway",
            "ServiceEntry",
            "WorkloadEntry",
            "WorkloadGroup",
            "Sidecar",
            "EnvoyFilter",
            "ProxyConfig",
        },
    ),
    "security.istio.io": (
        {"v1", "v1beta1"},
        {"PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication"},
    ),
    "telemetry.istio.io": ({"v1", "v1alpha1"}, {"Telemetry"}),
    "extensions.istio.io": ({"v1alpha1"}, {"WasmPlugin"}),
}
#: Kinds Istio serves in one version only; every other kind stores v1.
SINGLE_VERSION = {"ProxyConfig": "v1beta1", "WasmPlugin": "v1alpha1"}

#: Where unknown fields are kept: Istio's free-form Struct fields (and WasmPlugin fields the
#: models do not type yet). Every status is free-form too.
FREE_FORM = {
    "EnvoyFilter.spec.configPatches[].patch.value",
    "WasmPlugin.spec.pluginConfig",
    "WasmPlugin.spec.vmConfig",
    "WasmPlugin.spec.match[]",
}

#: kubectl's client-side apply keeps the whole object in an annotation limited to 256 KiB.
LAST_APPLIED_LIMIT = 262144

#: JSON-Schema keywords allowed in a structural schema as used here (no $ref, no combinators).
STRUCTURAL_KEYWORDS = {
    "type",
    "description",
    "properties",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "maximum",
    "format",
    "required",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
}


def structural_problems(schema: dict[str, Any], path: str = "") -> list[str]:
    """Ways ``schema`` breaks Kubernetes' structural-schema rules, each with its path."""
    problems = []
    unknown = set(schema) - STRUCTURAL_KEYWORDS
    if unknown:
        problems.append(f"{path or '/'}: keywords not allowed here: {sorted(unknown)}")
    if not schema.get("type") and not schema.get("x-kubernetes-int-or-string"):
        problems.append(f"{path or '/'}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: properties and additionalProperties together")
    if schema.get("type") == "array" and not isinstance(schema.get("items"), dict):
        problems.append(f"{path}: an array needs one items schema")
    for name, sub in schema.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}/{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}/*")
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]")
    return problems


def strict_json_schema(schema: dict[str, Any], *, root: bool = True) -> dict[str, Any]:
    """The CRD schema as JSON Schema where undeclared fields fail (server-side strict validation)."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in schema:
        out["properties"] = {
            name: sub if root and name == "metadata" else strict_json_schema(sub, root=False)
            for name, sub in schema["properties"].items()
        }
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_json_schema(schema["additionalProperties"], root=False)
    if isinstance(schema.get("items"), dict):
        out["items"] = strict_json_schema(schema["items"], root=False)
    keeps_unknown = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if schema.get("type") == "object" and "additionalProperties" not in schema and not keeps_unknown:
        out["additionalProperties"] = False
    return out


def crd_errors(crds: list[dict[str, Any]], obj: dict[str, Any]) -> list[str]:
    """Errors the API server would report for the custom object ``obj`` (empty when it is accepted)."""
    group, _, version = obj["apiVersion"].rpartition("/")
    for crd in crds:
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == obj["kind"]:
            served = {v["name"]: v for v in crd["spec"]["versions"] if v["served"]}
            if version not in served:
                return [f"{obj['apiVersion']} is not served for {obj['kind']}"]
            schema = strict_json_schema(served[version]["schema"]["openAPIV3Schema"])
            validator = jsonschema.Draft7Validator(schema)
            return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
    return [f"no CRD for {obj['apiVersion']} {obj['kind']}"]


@pytest.fixture(scope="module")
def crds(base: Manifests) -> list[dict[str, Any]]:
    return base.of_kind("CustomResourceDefinition")


VIRTUAL_SERVICE = yaml.safe_load("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
    - match:
        - headers:
            end-user:
              exact: jason
      route:
        - destination: {host: reviews, subset: v2}
    - route:
        - destination: {host: reviews, subset: v1}
          weight: 75
        - destination: {host: reviews, subset: v3}
          weight: 25
      timeout: 10s
""")


def test_crds_validate_as_apiextensions_v1_objects(crds: list[dict[str, Any]]) -> None:
    assert len(crds) == 14
    for crd in crds:
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def test_crds_cover_the_istio_kinds_and_versions_with_v1_storage(crds: list[dict[str, Any]]) -> None:
    found: dict[str, tuple[set[str], set[str]]] = {}
    for crd in crds:
        spec = crd["spec"]
        versions, kinds = found.setdefault(spec["group"], (set(), set()))
        versions.update(v["name"] for v in spec["versions"] if v["served"])
        kinds.add(spec["names"]["kind"])
        stored = SINGLE_VERSION.get(spec["names"]["kind"], "v1")
        assert [v["name"] for v in spec["versions"] if v["storage"]] == [stored], crd["metadata"]["name"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
        assert spec["scope"] == "Namespaced"
    assert found == EXPECTED


def test_every_crd_schema_is_structural(crds: list[dict[str, Any]]) -> None:
    for crd in crds:
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            assert structural_problems(schema) == [], (crd["metadata"]["name"], version["name"])
            assert schema["properties"]["spec"]["properties"], crd["metadata"]["name"]


def test_structural_check_finds_an_untyped_node() -> None:
    schema = {
        "type": "object",
        "properties": {"spec": {"properties": {"hosts": {"items": {"type": "string"}}}}},
    }
    assert structural_problems(schema) == ["/spec: no type", "/spec/hosts: no type"]


def test_free_form_fields_are_only_where_istio_has_them(crds: list[dict[str, Any]]) -> None:
    kept: set[str] = set()

    def walk(schema: dict[str, Any], path: str) -> None:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            kept.add(path)
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                walk(schema[key], f"{path}[]")

    for crd in crds:
        for version in crd["spec"]["versions"]:
            walk(version["schema"]["openAPIV3Schema"], crd["spec"]["names"]["kind"])
    statuses = {f"{crd['spec']['names']['kind']}.status" for crd in crds}
    assert kept == FREE_FORM | statuses


def test_every_crd_fits_kubectl_client_side_apply(crds: list[dict[str, Any]]) -> None:
    for crd in crds:
        assert len(json.dumps(crd, separators=(",", ":"))) < LAST_APPLIED_LIMIT, crd["metadata"]["name"]


@pytest.mark.parametrize(
    "api_version", ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"]
)
def test_a_valid_virtual_service_is_accepted_in_every_served_version(
    crds: list[dict[str, Any]], api_version: str
) -> None:
    obj = dict(VIRTUAL_SERVICE, apiVersion=api_version)
    assert crd_errors(crds, obj) == []


def test_an_unknown_spec_field_is_rejected(crds: list[dict[str, Any]]) -> None:
    obj = copy.deepcopy(VIRTUAL_SERVICE)
    obj["spec"]["hostz"] = ["reviews"]
    errors = crd_errors(crds, obj)
    assert len(errors) == 1 and "hostz" in errors[0], errors


def test_an_unknown_field_deep_in_a_route_is_rejected(crds: list[dict[str, Any]]) -> None:
    obj = copy.deepcopy(VIRTUAL_SERVICE)
    obj["spec"]["http"][1]["route"][0]["destination"]["hots"] = "reviews"
    errors = crd_errors(crds, obj)
    assert len(errors) == 1 and errors[0].startswith("spec.http.1.route.0.destination"), errors
    assert "hots" in errors[0]


def test_wrong_types_and_enum_values_are_rejected(crds: list[dict[str, Any]]) -> None:
    obj = copy.deepcopy(VIRTUAL_SERVICE)
    obj["spec"]["hosts"] = "reviews"
    assert crd_errors(crds, obj) == ["spec.hosts: 'reviews' is not of type 'array'"]
    policy = yaml.safe_load("""
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: default, namespace: istio-system}
    spec:
      mtls: {mode: STRICT}
      portLevelMtls:
        "8080": {mode: PERMISIVE}
    """)
    errors = crd_errors(crds, policy)
    assert (
        len(errors) == 1 and "PERMISIVE" in errors[0] and errors[0].startswith("spec.portLevelMtls.8080.mode")
    )


def test_an_unserved_version_is_rejected(crds: list[dict[str, Any]]) -> None:
    obj = dict(VIRTUAL_SERVICE, apiVersion="networking.istio.io/v2")
    assert crd_errors(crds, obj) == ["networking.istio.io/v2 is not served for VirtualService"]


def test_envoy_filter_patch_values_stay_free_form(crds: list[dict[str, Any]]) -> None:
    envoy_filter = yaml.safe_load("""
    apiVersion: networking.istio.io/v1alpha3
    kind: EnvoyFilter
    metadata: {name: lua, namespace: default}
    spec:
      workloadSelector: {labels: {app: reviews}}
      configPatches:
        - applyTo: HTTP_FILTER
          match: {context: SIDECAR_INBOUND}
          patch:
            operation: INSERT_BEFORE
            value:
              name: envoy.filters.http.lua
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
                default_source_code: {inline_string: "function envoy_on_request(h) end"}
    """)
    assert crd_errors(crds, envoy_filter) == []


#: Istio YAML kept in the repository that must be accepted: the validation corpus of valid
#: objects and the examples.
VALID_YAML = [REPO / "shared" / "tests" / "config" / "testdata" / "valid", REPO / "examples"]


def test_valid_istio_yaml_in_the_repository_is_accepted(crds: list[dict[str, Any]]) -> None:
    checked: set[str] = set()
    for directory in VALID_YAML:
        for path in sorted(directory.rglob("*.yaml")):
            for obj in yaml.safe_load_all(path.read_text()):
                if isinstance(obj, dict) and obj.get("apiVersion", "").rpartition("/")[0] in EXPECTED:
                    errors = crd_errors(crds, obj)
                    assert errors == [], f"{path.relative_to(REPO)}: {obj['kind']} {obj['metadata']['name']}"
                    checked.add(obj["kind"])
    assert len(checked) >= 10, checked


def test_committed_crds_are_what_gen_crds_writes(gen_crds: ModuleType) -> None:
    for name, text in gen_crds.render().items():
        committed = (K8S / "base" / "crds" / name).read_text()
        assert committed == text, f"k8s/base/crds/{name} is stale: run python k8s/gen_crds.py"


def test_crd_files_are_all_listed_in_the_base(kustomize: ModuleType) -> None:
    listed = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
    on_disk = {f"crds/{p.name}" for p in Path(K8S / "base" / "crds").glob("*.yaml")}
    assert on_disk <= set(listed)


def test_every_kind_galley_watches_has_a_crd_serving_its_version(crds: list[dict[str, Any]]) -> None:
    """Galley lists and watches each Istio kind at its first version; that version must be served."""
    served = {
        (crd["spec"]["group"], crd["spec"]["names"]["plural"], version["name"])
        for crd in crds
        for version in crd["spec"]["versions"]
        if version["served"]
    }
    for kind in ALL_KINDS:
        if kind.group in ISTIO_GROUPS:
            assert (kind.group, kind.plural, kind.versions[0]) in served, kind
