"""DestinationRule rules: each case asserts the verdict and the field path of the finding."""

from __future__ import annotations

from typing import Any

import pytest


def dr(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"host": "reviews"}
    base.update(spec)
    return {k: v for k, v in base.items() if v is not None}


def tp(**policy: Any) -> dict[str, Any]:
    return dr(trafficPolicy=policy)


CASES = [
    ("minimal", dr(), True, None),
    ("no host", dr(host=None, subsets=[{"name": "v1"}]), False, "spec.host"),
    ("empty host", dr(host=""), False, "spec.host"),
    ("wildcard host", dr(host="*.example.com"), True, None),
    ("bad host", dr(host="foo..com"), False, "spec.host"),
    ("subsets", dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}]), True, None),
    ("subset bad name", dr(subsets=[{"name": "v_1"}]), False, "spec.subsets[0].name"),
    ("subset upper case name", dr(subsets=[{"name": "V1"}]), True, None),
    ("subset missing name", dr(subsets=[{"labels": {"a": "b"}}]), False, "spec.subsets[0].name"),
    ("duplicate subsets", dr(subsets=[{"name": "v1"}, {"name": "v1"}]), False, "spec.subsets[1].name"),
    (
        "subset bad label",
        dr(subsets=[{"name": "v1", "labels": {"bad key!": "x"}}]),
        False,
        "spec.subsets[0].labels",
    ),
    (
        "subset bad label value",
        dr(subsets=[{"name": "v1", "labels": {"a": "-x"}}]),
        False,
        "spec.subsets[0].labels",
    ),
    (
        "subset empty policy",
        dr(subsets=[{"name": "v1", "trafficPolicy": {}}]),
        False,
        "spec.subsets[0].trafficPolicy",
    ),
    ("empty traffic policy", dr(trafficPolicy={}), False, "spec.trafficPolicy"),
    ("lb simple", tp(loadBalancer={"simple": "ROUND_ROBIN"}), True, None),
    ("lb bad enum", tp(loadBalancer={"simple": "FASTEST"}), False, "spec.trafficPolicy.loadBalancer.simple"),
    (
        "cookie without name",
        tp(loadBalancer={"consistentHash": {"httpCookie": {"ttl": "10s"}}}),
        False,
        "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
    ),
    (
        "maglev prime",
        tp(loadBalancer={"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 65537}}}),
        True,
        None,
    ),
    (
        "maglev not prime",
        tp(loadBalancer={"consistentHash": {"maglev": {"tableSize": 1000}}}),
        False,
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
    ),
    (
        "maglev too large",
        tp(loadBalancer={"consistentHash": {"maglev": {"tableSize": 5000011}}}),
        False,
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
    ),
    ("pool empty", tp(connectionPool={}), False, "spec.trafficPolicy.connectionPool"),
    (
        "pool negative",
        tp(connectionPool={"tcp": {"maxConnections": -1}}),
        False,
        "spec.trafficPolicy.connectionPool.tcp.maxConnections",
    ),
    (
        "pool bad timeout",
        tp(connectionPool={"tcp": {"connectTimeout": "0.5ms"}}),
        False,
        "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
    ),
    (
        "pool http negative",
        tp(connectionPool={"http": {"http1MaxPendingRequests": -2}}),
        False,
        "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
    ),
    (
        "pool client protocol + upgrade",
        tp(connectionPool={"http": {"useClientProtocol": True, "h2UpgradePolicy": "UPGRADE"}}),
        False,
        "spec.trafficPolicy.connectionPool.http",
    ),
    ("pool idle timeout", tp(connectionPool={"http": {"idleTimeout": "1h"}}), True, None),
    (
        "keepalive bad",
        tp(connectionPool={"tcp": {"tcpKeepalive": {"time": "0s"}}}),
        False,
        "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time",
    ),
    (
        "outlier ok",
        tp(outlierDetection={"consecutive5xxErrors": 5, "interval": "10s", "maxEjectionPercent": 50}),
        True,
        None,
    ),
    (
        "outlier ejection 101",
        tp(outlierDetection={"maxEjectionPercent": 101}),
        False,
        "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
    ),
    (
        "outlier min health -1",
        tp(outlierDetection={"minHealthPercent": -1}),
        False,
        "spec.trafficPolicy.outlierDetection.minHealthPercent",
    ),
    (
        "outlier bad interval",
        tp(outlierDetection={"interval": "1x"}),
        False,
        "spec.trafficPolicy.outlierDetection.interval",
    ),
    (
        "outlier consecutiveErrors deprecated",
        tp(outlierDetection={"consecutiveErrors": 5}),
        True,
        "spec.trafficPolicy.outlierDetection.consecutiveErrors",
    ),
    ("tls istio mutual", tp(tls={"mode": "ISTIO_MUTUAL"}), True, None),
    (
        "tls mutual without certs",
        tp(tls={"mode": "MUTUAL"}),
        False,
        "spec.trafficPolicy.tls.clientCertificate",
    ),
    (
        "tls mutual without key",
        tp(tls={"mode": "MUTUAL", "clientCertificate": "/c.pem"}),
        False,
        "spec.trafficPolicy.tls.privateKey",
    ),
    ("tls mutual with credential", tp(tls={"mode": "MUTUAL", "credentialName": "c"}), True, None),
    (
        "tls credential + files",
        tp(tls={"mode": "SIMPLE", "credentialName": "c", "caCertificates": "/ca.pem"}),
        False,
        "spec.trafficPolicy.tls.caCertificates",
    ),
    ("tls bad mode", tp(tls={"mode": "STRICT"}), False, "spec.trafficPolicy.tls.mode"),
    (
        "port level ok",
        tp(portLevelSettings=[{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}]),
        True,
        None,
    ),
    (
        "port level no port",
        tp(portLevelSettings=[{"tls": {"mode": "DISABLE"}}]),
        False,
        "spec.trafficPolicy.portLevelSettings[0].port",
    ),
    (
        "port level no policy",
        tp(portLevelSettings=[{"port": {"number": 80}}]),
        False,
        "spec.trafficPolicy.portLevelSettings[0]",
    ),
    (
        "port level bad port",
        tp(portLevelSettings=[{"port": {"number": 0}, "tls": {"mode": "DISABLE"}}]),
        False,
        "spec.trafficPolicy.portLevelSettings[0].port.number",
    ),
    (
        "port level nested pool",
        tp(portLevelSettings=[{"port": {"number": 80}, "connectionPool": {"tcp": {"maxConnections": -5}}}]),
        False,
        "spec.trafficPolicy.portLevelSettings[0].connectionPool",
    ),
    (
        "locality distribute",
        tp(
            loadBalancer={
                "localityLbSetting": {
                    "distribute": [{"from": "r1/z1/*", "to": {"r1/z1/*": 70, "r1/z2/*": 30}}]
                }
            }
        ),
        True,
        None,
    ),
    (
        "locality distribute sum 90",
        tp(
            loadBalancer={
                "localityLbSetting": {
                    "distribute": [{"from": "r1/z1/*", "to": {"r1/z1/*": 60, "r1/z2/*": 30}}]
                }
            }
        ),
        False,
        "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
    ),
    (
        "locality both",
        tp(
            loadBalancer={
                "localityLbSetting": {
                    "distribute": [{"from": "r1", "to": {"r1": 100}}],
                    "failover": [{"from": "r1", "to": "r2"}],
                }
            }
        ),
        False,
        "spec.trafficPolicy.loadBalancer.localityLbSetting",
    ),
    (
        "locality failover same",
        tp(loadBalancer={"localityLbSetting": {"failover": [{"from": "r1", "to": "r1"}]}}),
        False,
        "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
    ),
    (
        "locality wildcard middle",
        tp(loadBalancer={"localityLbSetting": {"distribute": [{"from": "r1/*/z", "to": {"r1": 100}}]}}),
        False,
        "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute",
    ),
    (
        "tunnel",
        tp(tunnel={"protocol": "CONNECT", "targetHost": "egress.example.com", "targetPort": 443}),
        True,
        None,
    ),
    (
        "tunnel without target",
        tp(tunnel={"protocol": "CONNECT"}),
        False,
        "spec.trafficPolicy.tunnel.targetHost",
    ),
    (
        "tunnel + proxy protocol",
        tp(tunnel={"targetHost": "a", "targetPort": 1}, proxyProtocol={"version": "V1"}),
        False,
        "spec.trafficPolicy",
    ),
    (
        "workload selector own ns",
        dr(workloadSelector={"matchLabels": {"app": "a"}}, exportTo=["."]),
        True,
        None,
    ),
    (
        "workload selector export all",
        dr(workloadSelector={"matchLabels": {"app": "a"}}, exportTo=["*"]),
        False,
        "spec.exportTo",
    ),
    ("exportTo duplicate", dr(exportTo=["a", "a"]), False, "spec.exportTo[1]"),
    ("traffic policy wrong type", dr(trafficPolicy=["x"]), False, "spec.trafficPolicy"),
    *[
        (
            f"{field} not applied warns",
            tp(connectionPool={group: {key: value}}),
            True,
            f"spec.trafficPolicy.connectionPool.{field}",
        )
        for field, group, key, value in (
            ("tcp.idleTimeout", "tcp", "idleTimeout", "1h"),
            ("http.maxConcurrentStreams", "http", "maxConcurrentStreams", 10),
            ("http.h2UpgradePolicy", "http", "h2UpgradePolicy", "UPGRADE"),
            ("http.useClientProtocol", "http", "useClientProtocol", True),
        )
    ],
]


@pytest.mark.parametrize(("spec", "valid", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_destination_rule(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("DestinationRule", spec, valid, path)
