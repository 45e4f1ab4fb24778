"""The analyzer table: one case per code (code, level, resource) with a fixed variant that gives none."""

from __future__ import annotations

from .builders import (
    AUTHZ,
    DEPLOY_1337,
    DR,
    SECRET,
    SIDECAR,
    SUBSETS_V1_V4,
    SVC2,
    TELEMETRY,
    TLS_SERVER,
    Case,
    ef_case,
    gateway,
    ns,
    pod,
    two_select_one_pod,
)
from .cases_grid import GRID_CASES
from .cases_more import MORE_CASES

CASES = (
    [
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
            TELEMETRY.format(
                name="t1", spec="{accessLogging: [{filter: {expression: 'response.code >= 400'}}]}"
            ),
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
            + AUTHZ.format(
                name="a", ns="default", spec="{rules: [{from: [{source: {namespaces: [ghost]}}]}]}"
            )
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
            "IST0152 REPLACE on a cluster (not on a listener filter, which is applied)",
            "{applyTo: CLUSTER, patch: {operation: REPLACE, value: {}}}",
            [("IST0152", "Error")],
            ("applyTo: CLUSTER", "applyTo: LISTENER_FILTER"),
        ),
        ef_case(
            "IST0153 and IST0154 ADD and REMOVE on route configuration",
            "{applyTo: ROUTE_CONFIGURATION, patch: {operation: ADD, value: {}}}, "
            "{applyTo: ROUTE_CONFIGURATION, patch: {operation: REMOVE}}",
            [("IST0153", "Error"), ("IST0154", "Error")],
            # ADD and REMOVE of an HTTP_ROUTE are applied (Istio's patch code, and Pilot's)
            (
                "ROUTE_CONFIGURATION, patch: {operation: ADD, value: {}}}, {applyTo: ROUTE_CONFIGURATION",
                "HTTP_ROUTE, patch: {operation: ADD, value: {}}}, {applyTo: HTTP_ROUTE",
            ),
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
    ]
    + MORE_CASES
    + GRID_CASES
)
