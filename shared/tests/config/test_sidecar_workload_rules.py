"""Sidecar, WorkloadEntry and WorkloadGroup rules: verdict and field path per case."""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.shared.config.validate import validate_object

EGRESS = [{"hosts": ["./*", "istio-system/*"]}]
IN_PORT = {"number": 9080, "protocol": "HTTP", "name": "http"}

SIDECAR_CASES = [
    ("egress only", {"egress": EGRESS}, True, None),
    ("empty", {"egress": []}, False, "spec"),
    ("outbound policy only", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}, True, None),
    ("ingress", {"ingress": [{"port": IN_PORT, "defaultEndpoint": "127.0.0.1:8080"}]}, True, None),
    ("ingress no default endpoint", {"ingress": [{"port": IN_PORT}]}, True, None),
    (
        "ingress unix endpoint",
        {"ingress": [{"port": IN_PORT, "defaultEndpoint": "unix:///var/run/app.sock"}]},
        True,
        None,
    ),
    (
        "ingress bad endpoint",
        {"ingress": [{"port": IN_PORT, "defaultEndpoint": "10.0.0.1:8080"}]},
        False,
        "spec.ingress[0].defaultEndpoint",
    ),
    (
        "ingress endpoint port 0",
        {"ingress": [{"port": IN_PORT, "defaultEndpoint": "0.0.0.0:0"}]},
        False,
        "spec.ingress[0].defaultEndpoint",
    ),
    ("ingress no port", {"ingress": [{"defaultEndpoint": "127.0.0.1:80"}]}, False, "spec.ingress[0].port"),
    (
        "ingress duplicate ports",
        {"ingress": [{"port": IN_PORT}, {"port": {**IN_PORT, "name": "b"}}]},
        False,
        "spec.ingress[1].port.number",
    ),
    (
        "ingress bad protocol",
        {"ingress": [{"port": {**IN_PORT, "protocol": "FTP"}}]},
        False,
        "spec.ingress[0].port.protocol",
    ),
    (
        "ingress bind hostname",
        {"ingress": [{"port": IN_PORT, "bind": "localhost"}]},
        False,
        "spec.ingress[0].bind",
    ),
    (
        "ingress tls on http",
        {
            "ingress": [
                {"port": IN_PORT, "tls": {"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"}}
            ]
        },
        False,
        "spec.ingress[0].tls",
    ),
    (
        "ingress tls istio mutual",
        {"ingress": [{"port": {**IN_PORT, "protocol": "HTTPS"}, "tls": {"mode": "ISTIO_MUTUAL"}}]},
        False,
        "spec.ingress[0].tls.mode",
    ),
    (
        "ingress tls simple",
        {
            "ingress": [
                {
                    "port": {**IN_PORT, "protocol": "HTTPS"},
                    "tls": {"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"},
                }
            ]
        },
        True,
        None,
    ),
    (
        "ingress tls credentialName",
        {
            "ingress": [
                {"port": {**IN_PORT, "protocol": "HTTPS"}, "tls": {"mode": "SIMPLE", "credentialName": "c"}}
            ]
        },
        False,
        "spec.ingress[0].tls.credentialName",
    ),
    (
        "target port",
        {"ingress": [{"port": {**IN_PORT, "targetPort": 8080}}]},
        False,
        "spec.ingress[0].port.targetPort",
    ),
    (
        "egress portless not last",
        {"egress": [{"hosts": ["./*"]}, {"port": IN_PORT, "hosts": ["./*"]}]},
        False,
        "spec.egress[0]",
    ),
    (
        "egress port 0 without unix",
        {"egress": [{"port": {"number": 0, "protocol": "HTTP", "name": "h"}, "hosts": ["./*"]}]},
        False,
        "spec.egress[0].port.number",
    ),
    (
        "egress unix bind",
        {
            "egress": [
                {
                    "port": {"number": 0, "protocol": "HTTP", "name": "h"},
                    "bind": "unix:///sock",
                    "hosts": ["./*"],
                }
            ]
        },
        True,
        None,
    ),
    (
        "egress unix iptables",
        {
            "egress": [
                {
                    "port": {"number": 0, "protocol": "HTTP", "name": "h"},
                    "bind": "unix:///sock",
                    "captureMode": "IPTABLES",
                    "hosts": ["./*"],
                }
            ]
        },
        False,
        "spec.egress[0].captureMode",
    ),
    (
        "egress duplicate ports",
        {"egress": [{"port": IN_PORT, "hosts": ["./*"]}, {"port": IN_PORT, "hosts": ["./*"]}]},
        False,
        "spec.egress[1].port",
    ),
    ("egress no hosts", {"egress": [{"port": IN_PORT}]}, False, "spec.egress[0].hosts"),
    ("egress host without ns", {"egress": [{"hosts": ["example.com"]}]}, False, "spec.egress[0].hosts[0]"),
    ("egress host short name", {"egress": [{"hosts": ["ns/reviews"]}]}, False, "spec.egress[0].hosts[0]"),
    (
        "egress host fqdn",
        {"egress": [{"hosts": ["ns/reviews.ns.svc.cluster.local", "~/*", "~other/*"]}]},
        True,
        None,
    ),
    ("egress host bad ns", {"egress": [{"hosts": ["Bad_NS/*"]}]}, False, "spec.egress[0].hosts[0]"),
    ("egress duplicate host warns", {"egress": [{"hosts": ["./*", "./*"]}]}, True, "spec.egress[0].hosts[1]"),
    (
        "egress star-star with others warns",
        {"egress": [{"hosts": ["*/*", "./*"]}]},
        True,
        "spec.egress[0].hosts",
    ),
    (
        "selector empty labels warns",
        {"workloadSelector": {"labels": {}}, "egress": EGRESS},
        True,
        "spec.workloadSelector.labels",
    ),
    (
        "allow any dynamic dns",
        {"outboundTrafficPolicy": {"mode": "ALLOW_ANY_DYNAMIC_DNS"}},
        False,
        "spec.outboundTrafficPolicy.mode",
    ),
    (
        "egress proxy needs allow any",
        {
            "outboundTrafficPolicy": {
                "mode": "REGISTRY_ONLY",
                "egressProxy": {"host": "egress.example.com", "port": {"number": 443}},
            }
        },
        False,
        "spec.outboundTrafficPolicy.egressProxy",
    ),
    (
        "egress proxy without port",
        {"outboundTrafficPolicy": {"mode": "ALLOW_ANY", "egressProxy": {"host": "egress.example.com"}}},
        False,
        "spec.outboundTrafficPolicy.egressProxy.port",
    ),
    ("inbound pool", {"inboundConnectionPool": {"http": {"http1MaxPendingRequests": 10}}}, True, None),
    (
        "inbound pool negative",
        {"inboundConnectionPool": {"tcp": {"maxConnections": -1}}},
        False,
        "spec.inboundConnectionPool.tcp.maxConnections",
    ),
]

WORKLOAD_ENTRY_CASES = [
    ("ip address", {"address": "10.0.0.1", "ports": {"http": 8080}, "labels": {"app": "a"}}, True, None),
    ("dns address", {"address": "vm1.example.com"}, True, None),
    ("empty address", {"address": ""}, False, "spec.address"),
    ("network only warns", {"network": "vpc-1"}, True, "spec.address"),
    ("unix address", {"address": "unix:///var/run/app.sock"}, True, None),
    ("unix relative", {"address": "unix://relative.sock"}, False, "spec.address"),
    ("unix with ports", {"address": "unix:///a.sock", "ports": {"http": 80}}, False, "spec.ports"),
    ("bad address", {"address": "bad_host!"}, False, "spec.address"),
    ("bad port name", {"address": "10.0.0.1", "ports": {"http_port": 80}}, False, "spec.ports.http_port"),
    ("bad port number", {"address": "10.0.0.1", "ports": {"http": 0}}, False, "spec.ports.http"),
    ("bad label", {"address": "10.0.0.1", "labels": {"app": "no spaces"}}, False, "spec.labels"),
    ("negative weight", {"address": "10.0.0.1", "weight": -1}, False, "spec.weight"),
    ("ports not a map", {"address": "10.0.0.1", "ports": [80]}, False, "spec.ports"),
]

WORKLOAD_GROUP_CASES = [
    ("template", {"template": {"ports": {"http": 80}}}, True, None),
    ("no template", {"metadata": {"labels": {"app": "a"}}}, False, "spec.template"),
    ("template address is filled per VM, not checked", {"template": {"address": "1.1.1.1"}}, True, None),
    (
        "bad metadata label",
        {"metadata": {"labels": {".": "bar"}}, "template": {}},
        False,
        "spec.metadata.labels",
    ),
    (
        "probe http",
        {"template": {}, "probe": {"periodSeconds": 5, "httpGet": {"path": "/", "port": 8080}}},
        True,
        None,
    ),
    (
        "probe negative",
        {"template": {}, "probe": {"periodSeconds": -5, "tcpSocket": {"port": 80}}},
        False,
        "spec.probe.periodSeconds",
    ),
    ("probe no handler", {"template": {}, "probe": {"periodSeconds": 5}}, False, "spec.probe"),
    (
        "probe two handlers",
        {"template": {}, "probe": {"tcpSocket": {"port": 80}, "exec": {"command": ["a"]}}},
        False,
        "spec.probe",
    ),
    (
        "probe bad port",
        {"template": {}, "probe": {"httpGet": {"path": "/", "port": 0}}},
        False,
        "spec.probe.httpGet.port",
    ),
    (
        "probe exec empty",
        {"template": {}, "probe": {"exec": {"command": []}}},
        False,
        "spec.probe.exec.command",
    ),
]


@pytest.mark.parametrize(
    ("spec", "valid", "path"), [c[1:] for c in SIDECAR_CASES], ids=[c[0] for c in SIDECAR_CASES]
)
def test_sidecar(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("Sidecar", spec, valid, path)


@pytest.mark.parametrize(
    ("spec", "valid", "path"), [c[1:] for c in WORKLOAD_ENTRY_CASES], ids=[c[0] for c in WORKLOAD_ENTRY_CASES]
)
def test_workload_entry(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("WorkloadEntry", spec, valid, path)


@pytest.mark.parametrize(
    ("spec", "valid", "path"), [c[1:] for c in WORKLOAD_GROUP_CASES], ids=[c[0] for c in WORKLOAD_GROUP_CASES]
)
def test_workload_group(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("WorkloadGroup", spec, valid, path)


def test_workload_group_probes_meshplane_runs_are_not_warned() -> None:
    for probe in ({"httpGet": {"port": 80}}, {"tcpSocket": {"port": 80}}, {"exec": {"command": ["true"]}}):
        obj = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadGroup",
            "metadata": {"name": "vm", "namespace": "default", "labels": {"app": "vm"}},
            "spec": {
                "metadata": {"labels": {"app": "vm"}},
                "template": {"ports": {"http": 80}},
                "probe": probe,
            },
        }
        result = validate_object(obj)
        assert result.valid and not result.warnings, (probe, [str(w) for w in result.warnings])
