"""The second half of the analyzer table (see ``cases.py``)."""

from __future__ import annotations

from meshplane.shared.analysis.runner import Options

from .builders import (
    AUTHZ,
    DEPLOY_1337,
    DNS_MESH,
    ENABLED,
    ISTIOD,
    ROUTE_A,
    ROUTE_B,
    SE,
    SIDECAR,
    SVC2,
    VS,
    Case,
    external,
    gateway,
    injector,
    ns,
    pod,
    two_services_one_deployment,
)

MORE_CASES = [
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
        "IST0125 a proxy.istio.io/config value meshplane cannot apply",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, annotations: "
        "{proxy.istio.io/config: 'concurrency: -1'}}\nspec: {containers: [{name: istio-proxy}]}\n",
        [("IST0125", "Warning", "Pod default/p")],
        ("concurrency: -1", "concurrency: 1"),
    ),
    Case(
        "IST0133 proxy.istio.io/config fields accepted and not applied",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, annotations: "
        "{proxy.istio.io/config: 'tracing: {sampling: 5}'}}\nspec: {containers: [{name: istio-proxy}]}\n",
        [("IST0133", "Warning", "Pod default/p")],
        ("tracing: {sampling: 5}", "drainDuration: 5s"),
    ),
    two_services_one_deployment(
        "IST0116",
        ("web-tcp", "[{name: tcp, port: 8080, protocol: TCP}]"),
        ("web-udp", "[{name: udp, port: 8080, protocol: UDP}]"),
        ("port: 8080, protocol: UDP", "port: 8081, protocol: UDP"),
    ),
    two_services_one_deployment(
        "IST0137",
        ("web-a", "[{name: http, port: 80, targetPort: 8080}]"),
        ("web-b", "[{name: http, port: 8000, targetPort: 8080}]"),
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
        "IST0163 Istio webhook with neither a URL nor a Service",
        external("").replace("clientConfig: {url: ''}", "clientConfig: {}"),
        [("IST0163", "Warning", "ValidatingWebhookConfiguration istio-validator-external-istiod")],
        ("clientConfig: {}", "clientConfig: {url: 'https://istiod.example.com:15017/validate'}"),
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
        + VS.format(name="vs", spec=f"{{hosts: [a.example.com], http: [{ROUTE_A}, {ROUTE_A}]}}"),
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
        "IST0158 proxies older than the injector's image",
        ns("shop")
        + pod(
            "cart-1",
            "shop",
            "{app: cart}",
            "[{name: cart}, {name: istio-proxy, image: 'docker.io/istio/proxyv2:1.25.0'}]",
        )
        + "apiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: istio-sidecar-injector, namespace: istio-system}\n"
        'data: {values: \'{"global": {"hub": "docker.io/istio", "tag": "1.26.0"}}\'}\n',
        [("IST0158", "Warning", "Namespace shop")],
        ("proxyv2:1.25.0", "proxyv2:1.26.0"),
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
        + VS.format(name="vs", spec=f"{{hosts: [b.example.com], gateways: [gw], http: [{ROUTE_B}]}}"),
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
    Case(
        "IST0165 reference to an implementation-generated Gateway",
        VS.format(
            name="httpbin",
            spec="{hosts: [httpbin.example.com], "
            "gateways: [istio-system/gateway-istio-autogenerated-k8s-gateway-default]}",
        ),
        [("IST0165", "Warning", "VirtualService default/httpbin")],
        ("istio-system/gateway-istio-autogenerated-k8s-gateway-default", "mesh"),
    ),
]
