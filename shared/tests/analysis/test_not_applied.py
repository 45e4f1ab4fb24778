"""Fields meshplane accepts but does not apply: one Istio-style warning per field, from validation
(``meshctl validate`` and Galley's webhook) and as IST0133 from ``meshctl analyze``."""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.shared.analysis import analyze
from meshplane.shared.config import validate_object

NET = "networking.istio.io/v1"
SEC = "security.istio.io/v1"
TLS_FILES = {
    "mode": "MUTUAL",
    "serverCertificate": "/c.pem",
    "privateKey": "/k.pem",
    "caCertificates": "/ca.pem",
}

# (kind, apiVersion, spec, the warned field as the warning names it)
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "DestinationRule",
        NET,
        {"host": "a", "trafficPolicy": {"tunnel": {"targetHost": "b", "targetPort": 80}}},
        "tunnel",
    ),
    (
        "DestinationRule",
        NET,
        {"host": "a", "trafficPolicy": {"proxyProtocol": {"version": "V1"}}},
        "proxyProtocol",
    ),
    ("DestinationRule", NET, {"host": "a", "trafficPolicy": {"retryBudget": {"percent": 20}}}, "retryBudget"),
    (
        "DestinationRule",
        NET,
        {
            "host": "a",
            "trafficPolicy": {"loadBalancer": {"simple": "RANDOM", "warmup": {"duration": "30s"}}},
        },
        "loadBalancer.warmup",
    ),
    (
        "DestinationRule",
        NET,
        {
            "host": "a",
            "subsets": [
                {
                    "name": "v1",
                    "trafficPolicy": {
                        "loadBalancer": {
                            "consistentHash": {"httpHeaderName": "x"},
                            "warmupDurationSecs": "9s",
                        }
                    },
                }
            ],
        },
        "loadBalancer.warmupDurationSecs",
    ),
    (
        "DestinationRule",
        NET,
        {
            "host": "a",
            "trafficPolicy": {"tls": {"mode": "SIMPLE", "caCertificates": "/ca.pem", "caCrl": "/crl.pem"}},
        },
        "tls.caCrl",
    ),
    *[
        (
            "Gateway",
            NET,
            {
                "servers": [
                    {
                        "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                        "hosts": ["*"],
                        "tls": tls,
                    }
                ]
            },
            f"tls.{field}",
        )
        for tls, field in [
            ({"mode": "SIMPLE", "credentialNames": ["a", "b"]}, "credentialNames"),
            (
                {"mode": "SIMPLE", "tlsCertificates": [{"serverCertificate": "/c", "privateKey": "/k"}]},
                "tlsCertificates",
            ),
            ({**TLS_FILES, "caCrl": "/crl.pem"}, "caCrl"),
            ({"mode": "MUTUAL", "credentialName": "c", "caCertCredentialName": "ca"}, "caCertCredentialName"),
            ({**TLS_FILES, "verifyCertificateSpki": ["abc="]}, "verifyCertificateSpki"),
            ({**TLS_FILES, "verifyCertificateHash": ["ab:cd"]}, "verifyCertificateHash"),
        ]
    ],
    ("Sidecar", NET, {"inboundConnectionPool": {"tcp": {"maxConnections": 5}}}, "inboundConnectionPool"),
    (
        "Sidecar",
        NET,
        {"ingress": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "captureMode": "NONE"}]},
        "ingress[0].captureMode",
    ),
    (
        "Sidecar",
        NET,
        {
            "ingress": [
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "tls": {"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"},
                }
            ]
        },
        "ingress[0].tls",
    ),
    (
        "Sidecar",
        NET,
        {
            "ingress": [
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "connectionPool": {"tcp": {"maxConnections": 5}},
                }
            ]
        },
        "ingress[0].connectionPool",
    ),
    ("Sidecar", NET, {"egress": [{"hosts": ["./*"], "captureMode": "IPTABLES"}]}, "egress[0].captureMode"),
    (
        "EnvoyFilter",
        NET.replace("v1", "v1alpha3"),
        {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "patch": {"operation": "ADD", "filterClass": "AUTHZ", "value": {"name": "x"}},
                }
            ]
        },
        "patch.filterClass",
    ),
    (
        "AuthorizationPolicy",
        SEC,
        {
            "targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
            "action": "DENY",
            "rules": [{}],
        },
        "targetRef",
    ),
    (
        "RequestAuthentication",
        SEC,
        {
            "targetRefs": [{"kind": "Service", "name": "web"}],
            "jwtRules": [{"issuer": "i", "jwksUri": "https://i/jwks"}],
        },
        "targetRefs",
    ),
    (
        "RequestAuthentication",
        SEC,
        {"jwtRules": [{"issuer": "i", "jwksUri": "https://i/jwks", "spaceDelimitedClaims": ["scope"]}]},
        "jwtRules.spaceDelimitedClaims",
    ),
    (
        "RequestAuthentication",
        SEC,
        {"jwtRules": [{"issuer": "i", "jwksUri": "https://i/jwks", "timeout": "10s"}]},
        "jwtRules.timeout",
    ),
    (
        "VirtualService",
        NET,
        {
            "hosts": ["a"],
            "tcp": [{"match": [{"sourceSubnet": "10.0.0.0/8"}], "route": [{"destination": {"host": "a"}}]}],
        },
        "sourceSubnet",
    ),
]


def _obj(kind: str, version: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default"},
        "spec": spec,
    }


@pytest.mark.parametrize(("kind", "version", "spec", "field"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_validate_and_analyze_name_the_field(
    kind: str, version: str, spec: dict[str, Any], field: str
) -> None:
    text = f"accepted, not applied by meshplane: {field}"
    result = validate_object(_obj(kind, version, spec))
    assert result.valid, result.errors
    assert [str(w) for w in result.warnings if text in str(w)], [str(w) for w in result.warnings]
    messages = analyze([(_obj(kind, version, spec), "x.yaml")]).messages
    found = [m for m in messages if m.code == "IST0133" and m.resource == f"{kind} default/x"]
    assert any(text in m.text for m in found), [(m.code, m.text) for m in messages]


@pytest.mark.parametrize(
    ("kind", "version", "spec"),
    [
        (
            "DestinationRule",
            NET,
            {
                "host": "a",
                "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN", "warmup": {"duration": "30s"}}},
                "subsets": [{"name": "v1", "trafficPolicy": {"loadBalancer": {"warmupDurationSecs": "9s"}}}],
            },
        ),
        (
            "DestinationRule",
            NET,
            {
                "host": "a",
                "trafficPolicy": {
                    "outlierDetection": {
                        "splitExternalLocalOriginErrors": True,
                        "consecutiveLocalOriginFailures": 3,
                    },
                    "loadBalancer": {"consistentHash": {"maglev": {"tableSize": 65537}}},
                },
            },
        ),
        (
            "Sidecar",
            NET,
            {
                "ingress": [
                    {
                        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                        "defaultEndpoint": "127.0.0.1:8080",
                    }
                ],
                "egress": [
                    {
                        "hosts": ["./*"],
                        "port": {"number": 81, "name": "http", "protocol": "HTTP"},
                        "captureMode": "NONE",
                    }
                ],
            },
        ),
        (
            "Gateway",
            NET,
            {
                "servers": [
                    {
                        "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                        "hosts": ["*"],
                        "tls": {"mode": "SIMPLE", "credentialName": "c"},
                    }
                ]
            },
        ),
        ("AuthorizationPolicy", SEC, {"rules": [{"from": [{"source": {"serviceAccounts": ["shop/web"]}}]}]}),
    ],
)
def test_applied_fields_are_not_warned(kind: str, version: str, spec: dict[str, Any]) -> None:
    result = validate_object(_obj(kind, version, spec))
    assert result.valid, result.errors
    assert not [w for w in result.warnings if "not applied" in str(w)], result.warnings


def test_service_accounts_must_name_namespace_and_account() -> None:
    spec = {"rules": [{"from": [{"source": {"serviceAccounts": ["web"]}}]}]}
    result = validate_object(_obj("AuthorizationPolicy", SEC, spec))
    assert [str(e) for e in result.errors] == [
        "spec.rules[0].from[0].source.serviceAccounts[0]: service account 'web' must be <namespace>/<name>"
    ]
