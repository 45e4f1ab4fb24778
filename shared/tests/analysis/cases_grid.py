"""Table cases for the codes and behaviours added to reach istioctl's analyzer test grid (see
``benchmarks/analyzegrid``): same shape as ``cases.py``."""

from __future__ import annotations

from .builders import DR, SVC2, VS, Case, gateway

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
]
