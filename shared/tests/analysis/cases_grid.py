"""Table cases for the codes and behaviours added to reach istioctl's analyzer test grid (see
``benchmarks/analyzegrid``): same shape as ``cases.py``."""

from __future__ import annotations

from meshplane.shared.analysis.runner import Options

from .builders import DR, SVC2, VS, Case, gateway, ns, pod

_INGRESS_GW = gateway(
    "gw", "{istio: ingressgateway}", "[{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]"
)
_REVIEWS_V1 = DR.format(name="reviews", spec="{host: reviews, subsets: [{name: v1, labels: {version: v1}}]}")

GRID_CASES = [
    Case(
        "IST0140 subset of a mesh route has no effect on a gateway route without one",
        SVC2
        + _INGRESS_GW
        + _REVIEWS_V1
        + VS.format(
            name="mesh-vs",
            spec="{hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1, "
            "port: {number: 9080}}}]}]}",
        )
        + VS.format(
            name="edge",
            spec="{hosts: [bookinfo.example.com], gateways: [gw], "
            "http: [{route: [{destination: {host: reviews, port: {number: 9080}}}]}]}",
        ),
        [("IST0140", "Warning", "VirtualService default/edge")],
        (
            "host: reviews, port: {number: 9080}}}]}]}",
            "host: reviews, subset: v1, port: {number: 9080}}}]}]}",
        ),
    ),
    Case(
        "IST0101 destination Service not exported to the VirtualService's namespace",
        SVC2.replace(
            "namespace: default}", "namespace: default, annotations: {networking.istio.io/exportTo: .}}"
        )
        + VS.format(
            name="vs",
            spec="{hosts: [reviews.default.svc.cluster.local], http: [{route: [{destination: "
            "{host: reviews.default.svc.cluster.local, port: {number: 9080}}}]}]}",
        ).replace("namespace: default}", "namespace: shop}"),
        [("IST0101", "Error", "VirtualService shop/vs")],
        ("networking.istio.io/exportTo: .", "networking.istio.io/exportTo: 'shop,.'"),
    ),
    Case(
        "IST0101 and IST0132 gateway that does not exist",
        VS.format(name="vs", spec="{hosts: [a.example.com], gateways: [missing]}"),
        [
            ("IST0101", "Error", "VirtualService default/vs"),
            ("IST0132", "Warning", "VirtualService default/vs"),
        ],
        ("gateways: [missing]", "gateways: [mesh]"),
    ),
    Case(
        "IST0171 negative conditions: a Service's waypoint binding, an HTTPRoute's parent",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
        "spec: {ports: [{port: 80}]}\n"
        "status: {conditions: [{type: istio.io/WaypointBound, status: 'False', reason: NoWaypoint, "
        "message: waypoint not ready}, {type: example.com/Synced, status: 'False'}]}\n---\n"
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\n"
        "spec: {parentRefs: [{name: web, kind: Service, group: ''}]}\n"
        "status: {parents: [{parentRef: {name: web}, conditions: [{type: Accepted, status: 'False', "
        "reason: WaypointNotBound}]}]}\n",
        [
            ("IST0171", "Warning", "HTTPRoute default/r"),
            ("IST0171", "Warning", "Service default/web"),
        ],
        ("status: 'False', reason:", "status: 'True', reason:"),
    ),
    Case(
        "IST0171 an AuthorizationPolicy the waypoint accepted only partly",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: p, namespace: default}\n"
        "spec: {}\nstatus: {conditions: [{type: WaypointAccepted, status: 'True', reason: PartiallyInvalid, "
        "message: 'Invalid targetRefs: default/x'}]}\n",
        [("IST0171", "Warning", "AuthorizationPolicy default/p")],
        ("reason: PartiallyInvalid", "reason: Accepted"),
    ),
    Case(
        "IST0134 without DNS capture too, unless the controller allocated addresses",
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: default}\n"
        "spec: {hosts: [db.example.com], resolution: DNS, ports: [{number: 5432, name: a}]}\n",
        [("IST0134", "Warning", "ServiceEntry default/db")],
        (
            "ports: [{number: 5432, name: a}]}",
            "ports: [{number: 5432, name: a}]}\nstatus: {addresses: [{value: 240.240.0.1}]}",
        ),
    ),
    Case(
        "IST0134 TCP ports of a ServiceEntry without addresses (one message per resource and text)",
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: default}\n"
        "spec: {hosts: [db.example.com], resolution: DNS, ports: [{number: 5432, name: a, protocol: TCP}, "
        "{number: 5433, name: b}, {number: 80, name: http, protocol: HTTP}]}\n",
        [("IST0134", "Warning", "ServiceEntry default/db")],
        ("resolution: DNS, ports", "resolution: DNS, addresses: [240.0.0.1], ports"),
    ),
    Case(
        "IST0123 injection label with an ambient dataplane mode; not when injection is disabled",
        ns("both", "{istio-injection: enabled, istio.io/dataplane-mode: ambient}")
        + ns("off", "{istio-injection: disabled, istio.io/rev: canary}"),
        [("IST0123", "Warning", "Namespace both")],
        ("istio-injection: enabled, istio.io/dataplane-mode: ambient", "istio.io/dataplane-mode: ambient"),
    ),
    Case(
        "IST0139 Istio webhooks (by name) that overlap and name a missing Service",
        "".join(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n"
            f"metadata: {{name: {name}}}\nwebhooks: [{{name: sidecar-injector.istio.io, "
            f"clientConfig: {{service: {{name: {svc}, namespace: istio-system}}}}, "
            "namespaceSelector: {matchLabels: {istio-injection: enabled}}}]\n---\n"
            for name, svc in (("inj-a", "istiod"), ("inj-b", "gone"))
        )
        + "apiVersion: v1\nkind: Service\nmetadata: {name: istiod, namespace: istio-system}\nspec: {}\n",
        [
            ("IST0139", "Error", "MutatingWebhookConfiguration inj-a"),
            ("IST0139", "Error", "MutatingWebhookConfiguration inj-b"),
            ("IST0139", "Error", "MutatingWebhookConfiguration inj-b"),
        ],
        None,
    ),
    Case(
        "IST0145 gateways whose selectors differ but select the same pods (one message per server)",
        gateway(
            "a",
            "{istio: ingressgateway, tier: edge}",
            "[{port: {number: 80, name: http, protocol: HTTP}, hosts: [foo.example.com]}]",
        )
        + gateway(
            "b",
            "{istio: ingressgateway}",
            "[{port: {number: 80, name: tcp, protocol: TCP}, hosts: [foo.example.com]}]",
        )
        + pod("edge-1", "default", "{istio: ingressgateway, tier: edge}"),
        [
            ("IST0145", "Error", "Gateway default/a"),
            ("IST0145", "Error", "Gateway default/b"),
        ],
        ("number: 80, name: tcp", "number: 81, name: tcp"),
    ),
    Case(
        "IST0173 subsets on node topology labels match pods on that node",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
        "spec: {selector: {app: web}, ports: [{name: http, port: 80}]}\n---\n"
        + DR.format(
            name="web",
            spec="{host: web, subsets: [{name: west, labels: {topology.kubernetes.io/region: us-west-1}}, "
            "{name: one, labels: {kubernetes.io/hostname: node-1}}]}",
        )
        + "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: default, labels: {app: web}}\n"
        "spec: {nodeName: node-1, containers: [{name: web}]}\n---\n"
        "apiVersion: v1\nkind: Node\n"
        "metadata: {name: node-1, labels: {topology.kubernetes.io/region: eu-1}}\n",
        [("IST0173", "Error", "DestinationRule default/web")],
        ("topology.kubernetes.io/region: eu-1", "topology.kubernetes.io/region: us-west-1"),
    ),
    Case(
        "IST0109 once per VirtualService; a namespace-scoped host clashes with one exported everywhere",
        VS.format(name="a", spec="{hosts: [ratings, google.com]}")
        + VS.format(
            name="b", spec="{hosts: [ratings.default.svc.cluster.local, google.com], gateways: [mesh]}"
        )
        + VS.format(name="c", spec="{hosts: [ratings], exportTo: [.]}").replace("default}", "team1}")
        + VS.format(name="d", spec="{hosts: [ratings.team1.svc.cluster.local]}").replace(
            "default}", "team2}"
        ),
        [
            ("IST0109", "Error", "VirtualService default/a"),
            ("IST0109", "Error", "VirtualService default/b"),
            ("IST0109", "Error", "VirtualService team1/c"),
            ("IST0109", "Error", "VirtualService team2/d"),
        ],
        None,
    ),
    Case(
        "IST0176 Gateway API CRD below the minimum bundle version (pre-release ignored)",
        "".join(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            f"metadata: {{name: {name}.gateway.networking.k8s.io, "
            f"annotations: {{gateway.networking.k8s.io/bundle-version: {version}}}}}\n"
            "spec: {group: gateway.networking.k8s.io}\n---\n"
            for name, version in (
                ("tcproutes", "v1.5.9"),
                ("grpcroutes", "v1.1.0-rc1"),
                ("httproutes", "v0.1"),
            )
        ),
        [("IST0176", "Warning", "CustomResourceDefinition tcproutes.gateway.networking.k8s.io")],
        ("v1.5.9", "v1.6.0"),
    ),
    Case(
        "IST0128 a credentialName without a workloadSelector does not verify the server",
        DR.format(
            name="db",
            spec="{host: db.example.com, trafficPolicy: {tls: {mode: SIMPLE, credentialName: db-ca}}}",
        ),
        [("IST0128", "Warning", "DestinationRule default/db")],
        ("{host: db.example.com,", "{host: db.example.com, workloadSelector: {matchLabels: {app: client}},"),
    ),
    Case(
        "IST0107/IST0125/IST0135 Istio's annotation table: ingress class, whole numbers, deprecated stats",
        "apiVersion: v1\nkind: Namespace\n"
        "metadata: {name: staging, annotations: {kubernetes.io/ingress.class: x}}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, annotations: "
        "{readiness.status.sidecar.istio.io/periodSeconds: soon, gateway.istio.io/controller-version: '5', "
        "sidecar.istio.io/statsInclusionPrefixes: cluster.outbound}}\nspec: {containers: [{name: app}]}\n",
        [
            ("IST0107", "Warning", "Namespace staging"),
            ("IST0125", "Warning", "Pod default/p"),
            ("IST0135", "Info", "Pod default/p"),
        ],
        None,
    ),
    Case(
        "IST0131 a later prefix match an earlier, looser one already covers (no method = GET)",
        VS.format(
            name="api",
            spec="{hosts: [api.example.com], http: ["
            "{name: all, match: [{uri: {prefix: /api/v1/prod}}], "
            "route: [{destination: {host: a.example.com}}]}, "
            "{name: some, match: [{uri: {prefix: /api/v1/products}, method: {exact: GET}}, "
            "{uri: {prefix: /api/v1/products}, method: {exact: POST}}], "
            "route: [{destination: {host: b.example.com}}]}]}",
        ),
        [("IST0131", "Info", "VirtualService default/api")],
        ("prefix: /api/v1/prod}}]", "prefix: /api/v1/prod}, headers: {x: {exact: y}}}]"),
    ),
    Case(
        "IST0002 a Telemetry tracing to a Lightstep provider",
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"
        "metadata: {name: mesh-default, namespace: istio-system}\n"
        "spec: {tracing: [{providers: [{name: ls}]}]}\n",
        [("IST0002", "Warning", "Telemetry istio-system/mesh-default")],
        ("providers: [{name: ls}]", "providers: [{name: otel}]"),
        Options(
            mesh_config={
                "extensionProviders": [
                    {"name": "ls", "lightstep": {"service": "collector", "port": 8080}},
                    {"name": "otel", "opentelemetry": {"service": "collector", "port": 4317}},
                ]
            },
            namespace=None,
        ),
    ),
]
