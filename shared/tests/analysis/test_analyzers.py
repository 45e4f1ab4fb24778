"""Each analyzer on small, realistic configs: the message it must give, and silence when config is right."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshplane.shared.analysis import analyze


def objs(text: str) -> list[tuple[dict[str, Any], str]]:
    return [(doc, f"test.yaml:{i}") for i, doc in enumerate(yaml.safe_load_all(text)) if doc]


def codes(text: str) -> list[tuple[str, str, str]]:
    return [(m.code, m.level, m.resource) for m in analyze(objs(text)).messages]


def texts(text: str, code: str) -> list[str]:
    return [m.text for m in analyze(objs(text)).messages if m.code == code]


GOOD = """
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  gateways: [mesh, gw]
  http:
  - match: [{uri: {prefix: /v1}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1-1, namespace: default, labels: {app: reviews, version: v1}}
spec: {containers: [{name: reviews, image: reviews}, {name: istio-proxy, image: proxy}]}
"""


def test_consistent_config_gives_no_messages() -> None:
    assert codes(GOOD) == []


def test_ist0101_missing_gateway_host_and_subset() -> None:
    text = GOOD.replace("gateways: [mesh, gw]", "gateways: [mesh, nogw]").replace("subset: v1", "subset: v3")
    text += """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ghost, namespace: default}
spec:
  hosts: [ghost.example.com]
  http: [{route: [{destination: {host: nowhere}}]}]
"""
    found = texts(text, "IST0101")
    assert 'Referenced gateway not found: "nogw"' in found
    assert 'Referenced host+subset in destinationrule not found: "reviews+v3"' in found
    assert 'Referenced host not found: "nowhere"' in found
    levels = {m.level for m in analyze(objs(text)).messages if m.code == "IST0101"}
    assert levels == {"Error"}


def test_ist0101_subset_is_checked_even_when_the_host_is_missing() -> None:
    text = GOOD.replace("host: reviews, subset: v1", "host: ratings, subset: v1")
    assert texts(text, "IST0101") == [
        'Referenced host not found: "ratings"',
        'Referenced host+subset in destinationrule not found: "ratings+v1"',
    ]


def test_ist0101_serviceentry_hosts_count_as_services() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec: {hosts: ["*.example.com"], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  tls: [{match: [{sniHosts: [api.example.com]}], route: [{destination: {host: api.example.com}}]}]
"""
    assert texts(text, "IST0101") == []


def test_ist0102_namespace_not_injected_is_info() -> None:
    text = GOOD.replace("labels: {istio-injection: enabled}", "labels: {team: a}")
    assert ("IST0102", "Info", "Namespace default") in codes(text)
    assert "kubectl label namespace default istio-injection=enabled" in texts(text, "IST0102")[0]


def test_ist0162_gateway_port_not_on_service() -> None:
    """IST0104 is retired at Istio HEAD; the port check compares with the gateway Service (IST0162)."""
    text = (
        GOOD.replace("{istio: ingressgateway}", "{app: my-gw}")
        + """
---
apiVersion: v1
kind: Pod
metadata: {name: my-gw-1, namespace: gw-ns, labels: {app: my-gw}}
spec:
  containers: [{name: istio-proxy, image: proxy}]
---
apiVersion: v1
kind: Service
metadata: {name: my-gw, namespace: gw-ns}
spec:
  selector: {app: my-gw}
  ports: [{name: http, port: 8080}]
"""
    )
    assert ("IST0162", "Warning", "Gateway default/gw") in codes(text)
    assert texts(text, "IST0162") == [
        "The gateway is listening on a target port (port 80) that is not defined in the Service associated "
        "with its workload instances (Pod selector app=my-gw). If you need to access the gateway port "
        "through the gateway Service, it will not be available."
    ]
    assert texts(text.replace("port: 8080", "port: 80"), "IST0162") == []


def test_ist0106_schema_error() -> None:
    text = GOOD.replace("subsets: [{name: v1, labels: {version: v1}}]", "subsets: {name: v1}")
    found = texts(text, "IST0106")
    assert found and found[0].startswith("Schema validation error: spec.subsets")


def test_ist0107_and_ist0108_annotations() -> None:
    text = GOOD.replace(
        "metadata: {name: reviews, namespace: default}\nspec:\n  selector",
        "metadata:\n  name: reviews\n  namespace: default\n  annotations:\n"
        "    sidecar.istio.io/inject: 'false'\n    networking.istio.io/nonsense: x\n"
        "    example.com/other: fine\nspec:\n  selector",
    )
    assert texts(text, "IST0107") == [
        "Misplaced annotation: sidecar.istio.io/inject can only be applied to "
        "Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob"
    ]
    assert texts(text, "IST0108") == ["Unknown annotation: networking.istio.io/nonsense"]


#: A second mesh VirtualService for the reviews host (fill ``ns`` and ``export``).
REVIEWS_2 = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews-2, namespace: {ns}}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  exportTo: [{export}]
  http: [{{route: [{{destination: {{host: reviews.default.svc.cluster.local}}}}]}}]
"""


def test_ist0109_two_mesh_virtualservices_for_one_host() -> None:
    text = GOOD + REVIEWS_2.format(ns="default", export='"*"')
    found = [c for c in codes(text) if c[0] == "IST0109"]
    assert found == [
        ("IST0109", "Error", "VirtualService default/reviews"),
        ("IST0109", "Error", "VirtualService default/reviews-2"),
    ]


def test_ist0109_not_when_exported_to_different_namespaces() -> None:
    second = REVIEWS_2.format(ns="other", export='"."')
    text = (
        GOOD.replace("  hosts: [reviews]\n  gateways", '  hosts: [reviews]\n  exportTo: ["."]\n  gateways')
        + second
    )
    assert texts(text, "IST0109") == []
    assert len(texts(text.replace('exportTo: ["."]\n  http', "exportTo: [default]\n  http"), "IST0109")) == 2


def test_ist0113_mtls_conflict() -> None:
    text = (
        GOOD.replace("  host: reviews\n", "  host: reviews\n  trafficPolicy: {tls: {mode: DISABLE}}\n")
        + """
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""
    )
    assert ("IST0113", "Error", "DestinationRule default/reviews") in codes(text)


def test_ist0118_port_name_convention() -> None:
    text = GOOD.replace(
        "ports: [{name: http, port: 9080}]",
        "ports: [{name: web, port: 9080}, {name: x, port: 1, appProtocol: http}]",
    )
    assert texts(text, "IST0118") == [
        "Port name web (port: 9080, targetPort: 9080) doesn't follow the naming convention of Istio port."
    ]


@pytest.mark.parametrize(("level", "code"), [("trafficPolicy", "IST0128"), ("port", "IST0129")])
def test_ist0128_ist0129_tls_without_ca(level: str, code: str) -> None:
    tls = "{tls: {mode: SIMPLE}}"
    policy = (
        tls
        if level == "trafficPolicy"
        else "{portLevelSettings: [{port: {number: 9080}, tls: {mode: SIMPLE}}]}"
    )
    text = GOOD.replace("  host: reviews\n", f"  host: reviews\n  trafficPolicy: {policy}\n")
    assert (code, "Warning", "DestinationRule default/reviews") in codes(text)
    fixed = text.replace("mode: SIMPLE}", "mode: SIMPLE, caCertificates: /etc/ca.pem}")
    assert [c for c in codes(fixed) if c[0] == code] == []


def test_ist0130_and_ist0131_unreachable_and_duplicate_matches() -> None:
    text = GOOD.replace(
        "  - route: [{destination: {host: reviews, subset: v1}}]\n",
        "  - match: [{uri: {prefix: /v1}}, {uri: {prefix: /v2}}]\n"
        "    route: [{destination: {host: reviews}}]\n"
        "  - match: [{uri: {prefix: /v2}}]\n"
        "    route: [{destination: {host: reviews}}]\n"
        "  - route: [{destination: {host: reviews}}]\n"
        "  - name: second-catch-all\n"
        "    route: [{destination: {host: reviews}}]\n",
    )
    # Istio's labels: "#index", or the rule's quoted name (istio.io's IST0130/IST0131 examples).
    unreachable = texts(text, "IST0130")
    assert unreachable == [
        'VirtualService rule "second-catch-all" not used (only the last rule can have no matches).',
        "VirtualService rule #2 not used (all matches used by prior rules).",
    ]
    assert texts(text, "IST0131") == [
        "VirtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0).",
        "VirtualService rule #2 match #0 is not used (duplicate/overlapping match in rule #1).",
    ]
    assert {m.level for m in analyze(objs(text)).messages if m.code == "IST0131"} == {"Info"}
    assert {m.level for m in analyze(objs(text)).messages if m.code == "IST0130"} == {"Warning"}


def test_ist0145_conflicting_gateways() -> None:
    text = (
        GOOD
        + """
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw2, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http2, protocol: HTTP}, hosts: ["*"]}]
"""
    )
    assert ("IST0145", "Error", "Gateway default/gw") in codes(text)
    assert ("IST0145", "Error", "Gateway default/gw2") in codes(text)
    assert texts(text.replace("number: 80, name: http2", "number: 8080, name: http2"), "IST0145") == []


def test_suppress_annotation_hides_a_code() -> None:
    text = GOOD.replace(
        "metadata: {name: reviews, namespace: default}\nspec:\n  hosts",
        "metadata:\n  name: reviews\n  namespace: default\n"
        "  annotations: {galley.istio.io/analyze-suppress: IST0101}\n"
        "spec:\n  hosts",
    ).replace("gateways: [mesh, gw]", "gateways: [mesh, nogw]")
    assert texts(text, "IST0101") == []


def test_messages_print_like_istioctl() -> None:
    text = GOOD.replace("gateways: [mesh, gw]", "gateways: [mesh, nogw]")
    line = str(next(m for m in analyze(objs(text)).messages if m.code == "IST0101"))
    assert (
        line
        == 'Error [IST0101] (VirtualService default/reviews test.yaml:4) Referenced gateway not found: "nogw"'
    )
