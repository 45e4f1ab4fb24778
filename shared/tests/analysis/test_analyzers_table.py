"""Table tests: one case per code for the analyzers that read Kubernetes kinds and cross-resource
selectors, in the shapes Istio's analyzer test inputs use. Each case asserts the (code, level,
resource) triples of the codes under test, and a fixed variant of the input that gives none."""

from __future__ import annotations

import base64
import copy as copy_module
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshplane.shared.analysis import analyze
from meshplane.shared.analysis.runner import Options
from meshplane.shared.testing.certs import write_self_signed


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


CASES = [
    Case(
        "IST0101 gateway selector matches no pod",
        gateway("gw", "{app: nope}", "[{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]"),
        [("IST0101", "Error", "Gateway default/gw")],
        ("{app: nope}", "{istio: ingressgateway}"),
    ),
    Case(
        "IST0101 gateway credentialName secret missing",
        gateway("gw", "{istio: ingressgateway}", TLS_SERVER),
        [("IST0101", "Error", "Gateway default/gw")],
        ("kind: Gateway", SECRET + "kind: Gateway"),
    ),
    Case(
        "IST0138 one certificate on two gateways",
        SECRET
        + gateway("gw-a", "{istio: ingressgateway}", TLS_SERVER)
        + gateway("gw-b", "{istio: ingressgateway}", TLS_SERVER.replace("'*'", "b.example.com")),
        [("IST0138", "Warning", "Gateway default/gw-a"), ("IST0138", "Warning", "Gateway default/gw-b")],
        (
            "hosts: [b.example.com], tls: {mode: SIMPLE, credentialName: my-cert",
            "hosts: [b.example.com], tls: {mode: SIMPLE, credentialName: other",
        ),
    ),
    Case(
        "IST0103 pod in an injected namespace without the proxy",
        ns("shop") + pod("cart-1", "shop", "{app: cart}", "[{name: cart}]"),
        [("IST0103", "Warning", "Pod shop/cart-1")],
        ("labels: {app: cart}", "labels: {app: cart, sidecar.istio.io/inject: 'false'}"),
    ),
    Case(
        "IST0123 namespace with both injection labels",
        ns("shop", "{istio-injection: enabled, istio.io/rev: canary}"),
        [("IST0123", "Warning", "Namespace shop")],
        ("istio-injection: enabled, ", ""),
    ),
    Case(
        "IST0102 namespace without injection label",
        ns("shop", "{team: a}"),
        [("IST0102", "Info", "Namespace shop")],
        ("{team: a}", "{istio-injection: disabled}"),
    ),
    Case(
        "IST0144 application runs as UID 1337",
        DEPLOY_1337
        + pod(
            "p",
            "default",
            "{app: p}",
            "[{name: istio-proxy}, {name: app, securityContext: {runAsUser: 1337}}]",
        ),
        [("IST0144", "Warning", "Deployment default/web"), ("IST0144", "Warning", "Pod default/p")],
        ("runAsUser: 1337", "runAsUser: 1000"),
    ),
    Case(
        "IST0101 Sidecar selector matches no pod",
        SIDECAR.format(name="s1", spec="{workloadSelector: {labels: {app: nope}}}")
        + pod("r", "default", "{app: reviews}"),
        [("IST0101", "Error", "Sidecar default/s1")],
        ("app: nope", "app: reviews"),
    ),
    two_select_one_pod(SIDECAR, "Sidecar", "IST0110", "{{workloadSelector: {{labels: {{{}}}}}}}"),
    Case(
        "IST0111 two Sidecars without selector",
        SIDECAR.format(name="s1", spec="{}") + SIDECAR.format(name="s2", spec="{}"),
        [("IST0111", "Error", "Sidecar default/s1"), ("IST0111", "Error", "Sidecar default/s2")],
        (
            "namespace: default}\nspec: {}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\n"
            "metadata: {name: s2, namespace: default}\nspec: {}\n---\n",
            "namespace: default}\nspec: {}\n---\n",
        ),
    ),
    two_select_one_pod(TELEMETRY, "Telemetry", "IST0159", "{{selector: {{matchLabels: {{{}}}}}}}"),
    Case(
        "IST0160 two Telemetries without selector",
        TELEMETRY.format(name="t1", spec="{}") + TELEMETRY.format(name="t2", spec="{}"),
        [("IST0160", "Error", "Telemetry default/t1"), ("IST0160", "Error", "Telemetry default/t2")],
        ("name: t2, namespace: default", "name: t2, namespace: other"),
    ),
    Case(
        "IST0157 access logging without providers",
        TELEMETRY.format(name="t1", spec="{accessLogging: [{filter: {expression: 'response.code >= 400'}}]}"),
        [("IST0157", "Warning", "Telemetry default/t1")],
        ("{filter:", "{providers: [{name: envoy}], filter:"),
    ),
    Case(
        "IST0127 AuthorizationPolicy selects no workload",
        AUTHZ.format(name="a", ns="default", spec="{selector: {matchLabels: {app: nope}}}")
        + pod("r", "default", "{app: r}"),
        [("IST0127", "Warning", "AuthorizationPolicy default/a")],
        ("app: nope", "app: r"),
    ),
    Case(
        "IST0101 AuthorizationPolicy source namespace does not exist",
        ns("default")
        + AUTHZ.format(name="a", ns="default", spec="{rules: [{from: [{source: {namespaces: [ghost]}}]}]}")
        + pod("r", "default", "{app: r}"),
        [("IST0101", "Error", "AuthorizationPolicy default/a")],
        ("namespaces: [ghost]", "namespaces: [def*]"),
    ),
    ef_case(
        "IST0151 relative EnvoyFilter operation without priority",
        "{applyTo: HTTP_FILTER, patch: {operation: INSERT_BEFORE, value: {name: x}}}",
        [("IST0151", "Warning")],
        ("priority: 0", "priority: 10"),
    ),
    ef_case(
        "IST0155 relative EnvoyFilter operation with proxyVersion",
        "{applyTo: HTTP_FILTER, match: {proxy: {proxyVersion: '^1\\.2.*'}}, "
        "patch: {operation: MERGE, value: {}}}",
        [("IST0155", "Warning")],
        ("priority: 0", "priority: -1"),
    ),
    ef_case(
        "IST0152 REPLACE on a cluster",
        "{applyTo: CLUSTER, patch: {operation: REPLACE, value: {}}}",
        [("IST0152", "Error")],
        ("applyTo: CLUSTER", "applyTo: NETWORK_FILTER"),
    ),
    ef_case(
        "IST0153 and IST0154 ADD and REMOVE on route configuration",
        "{applyTo: ROUTE_CONFIGURATION, patch: {operation: ADD, value: {}}}, "
        "{applyTo: HTTP_ROUTE, patch: {operation: REMOVE}}",
        [("IST0153", "Error"), ("IST0154", "Error")],
        ("ADD, value: {}}}, {applyTo: HTTP_ROUTE, patch: {operation: REMOVE}}", "MERGE, value: {}}}"),
    ),
    Case(
        "IST0173 subset selects no pod",
        SVC2
        + pod("reviews-v1", "default", "{app: reviews, version: v1}")
        + DR.format(name="reviews", spec=SUBSETS_V1_V4),
        [("IST0173", "Error", "DestinationRule default/reviews")],
        ("{name: v4, labels: {version: v4}}", "{name: v1b, labels: {version: v1}}"),
    ),
    Case(
        "IST0174 DestinationRule host matches no service",
        SVC2 + DR.format(name="reviews", spec="{host: reveiws}"),
        [("IST0174", "Warning", "DestinationRule default/reviews")],
        ("host: reveiws", "host: reviews"),
    ),
    Case(
        "IST0135 deprecated inject annotation on a pod",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, labels: {app: p}, "
        "annotations: {sidecar.istio.io/inject: 'true'}}\nspec: {containers: [{name: istio-proxy}]}\n",
        [("IST0135", "Info", "Pod default/p")],
        ("labels: {app: p}", "labels: {app: p, sidecar.istio.io/inject: 'true'}"),
    ),
    Case(
        "IST0125 invalid annotation values",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, annotations: "
        "{sidecar.istio.io/interceptionMode: MAGIC, traffic.sidecar.istio.io/excludeInboundPorts: '80,x'}}\n"
        "spec: {containers: [{name: istio-proxy}]}\n",
        [("IST0125", "Warning", "Pod default/p"), ("IST0125", "Warning", "Pod default/p")],
        (
            "MAGIC, traffic.sidecar.istio.io/excludeInboundPorts: '80,x'",
            "TPROXY, traffic.sidecar.istio.io/excludeInboundPorts: '80,81'",
        ),
    ),
    Case(
        "IST0116 one port, two protocols, one deployment",
        DEPLOY_1337.replace("1337", "1000")
        + svc("web-tcp", "[{name: tcp, port: 8080, protocol: TCP}]")
        + svc("web-udp", "[{name: udp, port: 8080, protocol: UDP}]"),
        [("IST0116", "Warning", "Deployment default/web")],
        ("port: 8080, protocol: UDP", "port: 8081, protocol: UDP"),
    ),
    Case(
        "IST0137 one targetPort behind two ports",
        DEPLOY_1337.replace("1337", "1000")
        + svc("web-a", "[{name: http, port: 80, targetPort: 8080}]")
        + svc("web-b", "[{name: http, port: 8000, targetPort: 8080}]"),
        [("IST0137", "Warning", "Deployment default/web")],
        ("port: 8000, targetPort: 8080", "port: 80, targetPort: 8080"),
    ),
    Case(
        "IST0150 tcp port on an ExternalName service",
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: default}\n"
        "spec: {type: ExternalName, externalName: db.example.com, ports: [{name: tcp, port: 5432}]}\n",
        [("IST0150", "Warning", "Service default/ext")],
        ("{name: tcp, port: 5432}", "{name: mongo, port: 5432}"),
    ),
    Case(
        "IST0149 JWT claim routing without RequestAuthentication on the gateway pods",
        gateway(
            "gw",
            "{istio: ingressgateway}",
            "[{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]",
        )
        + VS.format(
            name="vs",
            spec="{hosts: ['*'], gateways: [gw], http: [{match: [{headers: {'@request.auth.claims.group': "
            "{exact: admin}}}], route: [{destination: {host: reviews}}]}]}",
        )
        + "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: "
        "istio-system}\nspec: {selector: {matchLabels: {istio: other}}, jwtRules: [{issuer: me}]}\n",
        [("IST0149", "Error", "VirtualService default/vs")],
        ("{istio: other}", "{istio: ingressgateway}"),
    ),
    Case(
        "IST0139 two injector webhooks select the same namespaces",
        ISTIOD + injector("istio-sidecar-injector", ENABLED) + injector("istio-sidecar-injector-2", ENABLED),
        [
            ("IST0139", "Error", "MutatingWebhookConfiguration istio-sidecar-injector"),
            ("IST0139", "Error", "MutatingWebhookConfiguration istio-sidecar-injector-2"),
        ],
        (
            "injector-2.sidecar-injector.istio.io, namespaceSelector: " + ENABLED,
            "injector-2.x, namespaceSelector: {matchLabels: {istio-injection: disabled}}",
        ),
    ),
    Case(
        "IST0139 injector webhook names a missing service",
        ISTIOD + injector("istio-sidecar-injector", ENABLED, service="istiod-gone"),
        [("IST0139", "Error", "MutatingWebhookConfiguration istio-sidecar-injector")],
        ("istiod-gone", "istiod"),
    ),
    Case(
        "IST0146 and IST0147 image: auto that no injector selects",
        ISTIOD
        + injector("istio-sidecar-injector", ENABLED)
        + ns("shop", "{team: a}")
        + pod("p", "shop", "{app: p}", "[{name: istio-proxy, image: auto}]")
        + DEPLOY_1337.replace("namespace: default", "namespace: shop").replace("image: web", "image: auto"),
        [("IST0146", "Warning", "Deployment shop/web"), ("IST0147", "Error", "Pod shop/p")],
        ("{team: a}", "{istio-injection: enabled}"),
    ),
    Case(
        "IST0164 external control plane reached by IP",
        external("https://10.1.2.3:15017/validate"),
        [("IST0164", "Info", "ValidatingWebhookConfiguration istio-validator-external-istiod")],
        ("10.1.2.3", "istiod.example.com"),
    ),
    Case(
        "IST0163 external control plane webhook without a host",
        external(""),
        [("IST0163", "Warning", "ValidatingWebhookConfiguration istio-validator-external-istiod")],
        ("url: ''", "url: 'https://istiod.example.com:15017/validate'"),
    ),
    Case(
        "IST0002 deprecated fields and removed CRDs",
        VS.format(
            name="vs",
            spec="{hosts: [a.example.com], http: [{fault: {delay: {percent: 10, fixedDelay: 1s}}, "
            "route: [{destination: {host: a.example.com}}]}]}",
        )
        + SIDECAR.format(name="s", spec="{outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: e}}}")
        + "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: serviceroles.rbac.istio.io}\n"
        "spec: {group: rbac.istio.io, names: {kind: ServiceRole}}\n",
        [
            ("IST0002", "Warning", "CustomResourceDefinition serviceroles.rbac.istio.io"),
            ("IST0002", "Warning", "Sidecar default/s"),
            ("IST0002", "Warning", "VirtualService default/vs"),
        ],
        None,
    ),
    Case(
        "IST0133 schema warning (shadowed VirtualService rules stay IST0130/IST0131)",
        SIDECAR.format(name="s", spec="{egress: [{hosts: ['./a.example.com', './a.example.com']}]}")
        + VS.format(
            name="vs",
            spec="{hosts: [a.example.com], http: [{route: [{destination: {host: a.example.com}}]}, "
            "{route: [{destination: {host: a.example.com}}]}]}",
        ),
        [("IST0133", "Warning", "Sidecar default/s")],
        ("'./a.example.com', './a.example.com'", "'./a.example.com'"),
    ),
    Case(
        "IST0166 policy selector on Gateway-API gateway pods",
        pod(
            "bookinfo-gateway-istio-1",
            "default",
            "{gateway.networking.k8s.io/gateway-name: bookinfo-gateway}",
        )
        + AUTHZ.format(
            name="ap",
            ns="default",
            spec="{selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: "
            "bookinfo-gateway}}, action: DENY}",
        ),
        [("IST0166", "Warning", "AuthorizationPolicy default/ap")],
        (
            "action: DENY",
            "action: DENY, targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, "
            "name: bookinfo-gateway}]",
        ),
    ),
    Case(
        "IST0167 Sidecars in an ambient namespace",
        ns("default", "{istio.io/dataplane-mode: ambient}")
        + pod("r", "default", "{app: reviews}", "[{name: app}]")
        + SIDECAR.format(name="namespace-scoped", spec="{egress: [{hosts: ['./*']}]}")
        + SIDECAR.format(name="pod-scoped", spec="{workloadSelector: {labels: {app: reviews}}}"),
        [
            ("IST0167", "Warning", "Sidecar default/namespace-scoped"),
            ("IST0167", "Warning", "Sidecar default/pod-scoped"),
        ],
        ("{istio.io/dataplane-mode: ambient}", "{istio-injection: enabled}"),
    ),
    Case(
        "IST0148 namespace injected by default",
        ns("shop", "{team: a}") + "apiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: istio-sidecar-injector, namespace: istio-system}\n"
        'data: {values: \'{"sidecarInjectorWebhook": {"enableNamespacesByDefault": true}}\'}\n',
        [("IST0148", "Info", "Namespace shop")],
        ("true}}", "false}}"),
    ),
    Case(
        "IST0175 RequestAuthentications while istiod fetches JWKS from anywhere",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: istiod, namespace: istio-system}\n"
        "spec: {template: {spec: {containers: [{name: discovery, "
        "env: [{name: PILOT_TRACE_SAMPLING, value: '1'}]}]}}}"
        "\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        "metadata: {name: jwt-example, namespace: default}\nspec: {jwtRules: [{issuer: me, jwksUri: 'http://x/k'}]}\n",
        [("IST0175", "Warning", "Deployment istio-system/istiod")],
        ("PILOT_TRACE_SAMPLING, value: '1'", "BLOCKED_CIDRS_IN_JWKS_URIS, value: '10.0.0.0/8'"),
    ),
    Case(
        "IST0101 legacy gateway reference and mirrors destination",
        gateway(
            "gw",
            "{istio: ingressgateway}",
            "[{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]",
        )
        + SVC2
        + VS.format(
            name="vs",
            spec="{hosts: ['*'], gateways: [gw.default.svc.cluster.local], http: [{route: [{destination: "
            "{host: reviews, port: {number: 9080}}}], "
            "mirrors: [{destination: {host: ghost, port: {number: 1}}}]}]}",
        ),
        [("IST0101", "Error", "VirtualService default/vs")],
        ("host: ghost, port: {number: 1}", "host: reviews, port: {number: 9080}"),
    ),
    Case(
        "IST0177 one host and port, two protocols",
        SE.replace("name: db,", "name: db-tcp,")
        + SE.replace("name: db,", "name: db-mongo,").replace(
            "name: tcp-db, protocol: TCP", "name: mongo, protocol: MONGO"
        ),
        [
            ("IST0177", "Warning", "ServiceEntry default/db-mongo"),
            ("IST0177", "Warning", "ServiceEntry default/db-tcp"),
        ],
        ("name: mongo, protocol: MONGO", "name: tcp, protocol: TCP"),
    ),
    Case(
        "IST0134 ServiceEntry without addresses while DNS capture is on",
        SE,
        [("IST0134", "Warning", "ServiceEntry default/db")],
        ("hosts: [db.example.com]", "hosts: [db.example.com], addresses: [240.0.0.1]"),
        Options(mesh_config=DNS_MESH),
    ),
    Case(
        "IST0132 VirtualService host not in its gateway",
        gateway(
            "gw",
            "{istio: ingressgateway}",
            "[{port: {number: 80, name: http, protocol: HTTP}, hosts: [a.example.com]}]",
        )
        + "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b, namespace: default}\n"
        "spec: {hosts: [b.example.com], ports: [{number: 80, name: http, protocol: HTTP}]}\n---\n"
        + VS.format(
            name="vs",
            spec="{hosts: [b.example.com], gateways: [gw], "
            "http: [{route: [{destination: {host: b.example.com}}]}]}",
        ),
        [("IST0132", "Warning", "VirtualService default/vs")],
        ("hosts: [a.example.com]", "hosts: ['*.example.com']"),
    ),
    Case(
        "IST0112 no port towards a multi-port service",
        SVC2
        + VS.format(name="vs", spec="{hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}"),
        [("IST0112", "Error", "VirtualService default/vs")],
        ("{destination: {host: reviews}}", "{destination: {host: reviews, port: {number: 9080}}}"),
    ),
    Case(
        "IST0101 destination port the service lacks",
        SVC2
        + VS.format(
            name="vs",
            spec="{hosts: [reviews], http: [{route: [{destination: {host: reviews, port: {number: 1}}}]}]}",
        ),
        [("IST0101", "Error", "VirtualService default/vs")],
        ("number: 1}", "number: 9090}"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_table(case: Case) -> None:
    codes = {c for c, _, _ in case.expected}
    assert found(case.text, codes, case.options) == sorted(case.expected)
    if case.fix is not None:
        old, new = case.fix
        assert old in case.text
        assert found(case.text.replace(old, new), codes, case.options) == []


def test_workload_entries_count_as_selected_workloads() -> None:
    """meshplane runs workloads as WorkloadEntries: a Sidecar selecting one is not selecting nothing."""
    text = SIDECAR.format(name="s1", spec="{workloadSelector: {labels: {app: reviews}}}")
    assert found(text, {"IST0101"}) == [("IST0101", "Error", "Sidecar default/s1")]
    entry = (
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: reviews-1, namespace: default}\n"
        "spec: {address: 127.0.0.2, labels: {app: reviews}}\n"
    )
    assert found(text + entry, {"IST0101"}) == []


def test_annotations_on_istio_kinds_are_not_analyzed() -> None:
    """istioctl reads annotations of Namespaces, Services, Pods and Deployments only."""
    text = VS.format(name="vs", spec="{hosts: [a.example.com]}").replace(
        "namespace: default}", "namespace: default, annotations: {nonsense.istio.io/x: y}}"
    )
    assert "nonsense.istio.io/x" in text
    assert found(text, {"IST0107", "IST0108"}) == []
    assert found(text.replace("kind: VirtualService", "kind: Service"), {"IST0108"}) == [
        ("IST0108", "Warning", "Service default/vs")
    ]


def _pem_pair(directory: Path) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key (PEM), made by the shared test helper."""
    cert, key = write_self_signed(directory, "bookinfo.example.com")
    return cert.read_bytes(), key.read_bytes()


def _tls_secret(cert: bytes, key: bytes) -> str:
    b64 = base64.b64encode
    return (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: my-cert, namespace: istio-system}\n"
        "type: kubernetes.io/tls\n"
        f"data: {{tls.crt: {b64(cert).decode()}, tls.key: {b64(key).decode()}}}\n---\n"
    )


def test_ist0161_gateway_credential_unusable(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, key = _pem_pair(tmp_path / "a")
    _, other_key = _pem_pair(tmp_path / "b")
    gw = gateway("gw", "{istio: ingressgateway}", TLS_SERVER)
    assert found(_tls_secret(cert, key) + gw, {"IST0101", "IST0161"}) == []
    expected = [("IST0161", "Error", "Gateway default/gw")]
    assert found(_tls_secret(cert, other_key) + gw, {"IST0101", "IST0161"}) == expected  # key of another cert
    assert found(_tls_secret(b"not a certificate", key) + gw, {"IST0161"}) == expected
    objs = [(d, "") for d in yaml.safe_load_all(_tls_secret(cert, other_key) + gw) if d]
    assert (
        "The credential referenced by the Gateway gw in namespace default is invalid, which can cause the "
        "traffic not to work as expected." in [m.text for m in analyze(objs).messages]
    )


BAD_VALUES: tuple[object, ...] = (5, "x", [1, "y"], {"k": 1}, None)


def _mangled(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of ``obj`` with one field (spec, metadata, webhooks or data; two levels deep) mistyped."""
    out = []
    for section in ("spec", "metadata", "webhooks", "data"):
        value = obj.get(section)
        items = (
            value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        )
        for key, inner in list(items):
            for bad in BAD_VALUES:
                copy = copy_module.deepcopy(obj)
                copy[section][key] = bad
                out.append(copy)
            if isinstance(inner, dict):
                for key2 in inner:
                    for bad in BAD_VALUES:
                        copy = copy_module.deepcopy(obj)
                        copy[section][key][key2] = bad
                        out.append(copy)
    return out


def test_malformed_fields_never_raise() -> None:
    """Analysis runs on what the schema check rejects too: wrong types give messages, not tracebacks."""
    for case in CASES:
        docs = [d for d in yaml.safe_load_all(case.text) if isinstance(d, dict)]
        for doc in docs:
            others = [(d, "x.yaml:1") for d in docs if d is not doc]
            for bad in _mangled(doc):
                analyze([(bad, "bad.yaml:1"), *others], case.options)


def test_synthetic_ingress_gateway_gives_way_to_the_inputs_and_to_mesh_config() -> None:
    gw = gateway(
        "gw",
        "{istio: ingressgateway}",
        "[{port: {number: 8443, name: https, protocol: HTTPS}, hosts: ['*']}]",
    )
    assert found(gw, {"IST0101", "IST0162"}) == [
        ("IST0162", "Warning", "Gateway default/gw")
    ]  # not on 80/443
    own = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: istio-ingressgateway, namespace: istio-system}\n"
        "spec: {selector: {istio: ingressgateway}, ports: [{name: https, port: 8443}]}\n---\n"
    )
    assert found(own + gw, {"IST0101", "IST0162"}) == []
    off = Options(mesh_config={"ingressControllerMode": "OFF"})
    assert found(gw, {"IST0101"}, off) == [("IST0101", "Error", "Gateway default/gw")]
