"""Builders for analyzer test inputs: YAML text of the shapes Istio's analyzer tests use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from meshplane.shared.analysis import analyze
from meshplane.shared.analysis.runner import Options


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    expected: list[tuple[str, str, str]]
    #: (old, new) replacements that make the input correct for the codes under test.
    fix: tuple[str, str] | None = None
    options: Options | None = None


def found(text: str, codes: set[str], options: Options | None = None) -> list[tuple[str, str, str]]:
    objs: list[tuple[dict[str, Any], str]] = [(d, "t.yaml:1") for d in yaml.safe_load_all(text) if d]
    return sorted((m.code, m.level, m.resource) for m in analyze(objs, options).messages if m.code in codes)


def ns(name: str, labels: str = "{istio-injection: enabled}") -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n---\n"


def pod(
    name: str, namespace: str, labels: str, containers: str = "[{name: istio-proxy}, {name: app}]"
) -> str:
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}\n"
        f"spec: {{containers: {containers}}}\n---\n"
    )


def gateway(name: str, selector: str, servers: str) -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: default}}\n"
        f"spec: {{selector: {selector}, servers: {servers}}}\n---\n"
    )


TLS_SERVER = (
    "[{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], "
    "tls: {mode: SIMPLE, credentialName: my-cert}}]"
)
SECRET = (
    "apiVersion: v1\nkind: Secret\nmetadata: {name: my-cert, namespace: istio-system}\n"
    "type: kubernetes.io/tls\n---\n"
)


def istio(api: str, kind: str, namespace: str = "default") -> str:
    """A template for an Istio object of ``kind`` (fill ``name`` and ``spec``)."""
    return (
        f"apiVersion: {api}\nkind: {kind}\nmetadata: {{{{name: {{name}}, namespace: {namespace}}}}}\n"
        "spec: {spec}\n---\n"
    )


SIDECAR = istio("networking.istio.io/v1", "Sidecar")
TELEMETRY = istio("telemetry.istio.io/v1", "Telemetry")
AUTHZ = istio("security.istio.io/v1", "AuthorizationPolicy", "{ns}")
EF = istio("networking.istio.io/v1alpha3", "EnvoyFilter")
VS = istio("networking.istio.io/v1", "VirtualService")
DR = istio("networking.istio.io/v1", "DestinationRule")
SUBSETS_V1_V4 = (
    "{host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v4, labels: {version: v4}}]}"
)
SVC2 = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\n"
    "spec: {selector: {app: reviews}, "
    "ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]}\n---\n"
)
SE = (
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: default}\n"
    "spec: {hosts: [db.example.com], ports: [{number: 5432, name: tcp-db, protocol: TCP}], "
    "resolution: DNS}\n---\n"
)
DNS_MESH = {"defaultConfig": {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"}}}
DEPLOY_1337 = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\n"
    "spec: {selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: "
    "{containers: [{name: web, image: web, securityContext: {runAsUser: 1337}}]}}}\n---\n"
)


def ef_case(title: str, patches: str, expected: list[tuple[str, str]], fix: tuple[str, str]) -> Case:
    """An EnvoyFilter ``default/ef`` with these patches and priority 0 (unset)."""
    text = EF.format(name="ef", spec=f"{{priority: 0, configPatches: [{patches}]}}")
    return Case(title, text, [(code, level, "EnvoyFilter default/ef") for code, level in expected], fix)


def two_select_one_pod(template: str, kind: str, code: str, selector: str) -> Case:
    """Two objects ``default/a`` and ``default/b`` whose selectors (``selector`` filled with labels)
    both match pod ``default/r``."""
    spec = selector.format("app: reviews")
    text = template.format(name="a", spec=spec) + template.format(name="b", spec=spec)
    text += pod("r", "default", "{app: reviews, version: v2}")
    expected = [(code, "Error", f"{kind} default/a"), (code, "Error", f"{kind} default/b")]
    prefix = "name: b, namespace: default}\nspec: "
    return Case(
        f"{code} two {kind}s select one pod",
        text,
        expected,
        (prefix + spec, prefix + selector.format("version: v3")),
    )


def svc(name: str, ports: str) -> str:
    """A Service in ``default`` selecting ``app: web``."""
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n"
        f"spec: {{selector: {{app: web}}, ports: {ports}}}\n---\n"
    )


def injector(name: str, ns_selector: str, service: str = "istiod") -> str:
    """An Istio injector MutatingWebhookConfiguration with one webhook."""
    return (
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n"
        f"metadata: {{name: {name}, labels: {{app: sidecar-injector}}}}\n"
        f"webhooks: [{{name: {name}.sidecar-injector.istio.io, namespaceSelector: {ns_selector}, "
        f"clientConfig: {{service: {{name: {service}, namespace: istio-system, path: /inject}}}}}}]\n---\n"
    )


ISTIOD = "apiVersion: v1\nkind: Service\nmetadata: {name: istiod, namespace: istio-system}\nspec: {}\n---\n"
ENABLED = "{matchLabels: {istio-injection: enabled}}"


def external(url: str) -> str:
    """The two webhook configurations of a remote cluster managed by an external control plane."""
    return (
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n"
        f"metadata: {{name: istio-validator-external-istiod}}\nwebhooks: [{{name: v.istio.io, "
        f"clientConfig: {{url: '{url}'}}}}]\n---\n"
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n"
        "metadata: {name: istio-sidecar-injector-external-istiod}\nwebhooks: [{name: i.istio.io, "
        "clientConfig: {url: 'https://istiod.example.com:15017/inject'}}]\n---\n"
    )


def two_services_one_deployment(
    code: str, a: tuple[str, str], b: tuple[str, str], fix: tuple[str, str]
) -> Case:
    """Deployment ``default/web`` selected by two Services (name, ports) that disagree."""
    text = DEPLOY_1337.replace("1337", "1000") + svc(*a) + svc(*b)
    return Case(
        f"{code} two services, one deployment", text, [(code, "Warning", "Deployment default/web")], fix
    )


ROUTE_A = "{route: [{destination: {host: a.example.com}}]}"
ROUTE_B = ROUTE_A.replace("a.example.com", "b.example.com")
