"""PeerAuthentication, AuthorizationPolicy and RequestAuthentication rules: verdict and path per case."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

SEL = {"matchLabels": {"app": "httpbin"}}

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_JWKS = json.dumps({"keys": [json.loads(RSAAlgorithm.to_jwk(_KEY.public_key()))]})
PRIVATE_JWKS = json.dumps({"keys": [json.loads(RSAAlgorithm.to_jwk(_KEY))]})

PEER_CASES = [
    ("namespace strict", {"mtls": {"mode": "STRICT"}}, True, None),
    ("empty spec", {}, True, None),
    ("bad mode", {"mtls": {"mode": "ON"}}, False, "spec.mtls.mode"),
    (
        "port level with selector",
        {"selector": SEL, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        True,
        None,
    ),
    (
        "port level without selector",
        {"portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        False,
        "spec.portLevelMtls",
    ),
    ("port level empty", {"selector": SEL, "portLevelMtls": {}}, False, "spec.portLevelMtls"),
    (
        "port level port 0",
        {"selector": SEL, "portLevelMtls": {"0": {"mode": "STRICT"}}},
        False,
        "spec.portLevelMtls.0",
    ),
    (
        "port level port not number",
        {"selector": SEL, "portLevelMtls": {"http": {"mode": "STRICT"}}},
        False,
        "spec.portLevelMtls.http",
    ),
    (
        "selector wildcard",
        {"selector": {"matchLabels": {"app": "*"}}},
        False,
        "spec.selector.matchLabels.app",
    ),
    ("selector empty labels warns", {"selector": {"matchLabels": {}}}, True, "spec.selector"),
    ("selector empty key", {"selector": {"matchLabels": {"": "a"}}}, False, "spec.selector.matchLabels"),
]

AUTHZ_CASES = [
    ("allow nothing", {}, True, None),
    ("allow all", {"rules": [{}]}, True, None),
    ("deny without rules", {"action": "DENY"}, False, "spec.rules"),
    ("deny all", {"action": "DENY", "rules": [{}]}, True, None),
    ("bad action", {"action": "BLOCK", "rules": [{}]}, False, "spec.action"),
    ("custom without provider", {"action": "CUSTOM", "rules": [{}]}, False, "spec.provider.name"),
    (
        "custom",
        {
            "action": "CUSTOM",
            "provider": {"name": "ext-authz"},
            "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}],
        },
        True,
        None,
    ),
    ("provider without custom", {"provider": {"name": "ext-authz"}, "rules": [{}]}, False, "spec.provider"),
    (
        "custom with principals",
        {
            "action": "CUSTOM",
            "provider": {"name": "x"},
            "rules": [{"from": [{"source": {"principals": ["a"]}}]}],
        },
        False,
        "spec.rules[0].from[0].source.principals",
    ),
    (
        "custom with source condition",
        {
            "action": "CUSTOM",
            "provider": {"name": "x"},
            "rules": [{"when": [{"key": "source.namespace", "values": ["a"]}]}],
        },
        False,
        "spec.rules[0].when[0].key",
    ),
    (
        "selector and targetRef",
        {
            "selector": SEL,
            "targetRef": {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"},
        },
        False,
        "spec",
    ),
    (
        "targetRef gateway",
        {"targetRef": {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}},
        True,
        None,
    ),
    ("targetRef without name", {"targetRef": {"kind": "Service", "group": ""}}, False, "spec.targetRef.name"),
    (
        "targetRef with namespace",
        {"targetRef": {"kind": "Service", "group": "", "name": "a", "namespace": "b"}},
        False,
        "spec.targetRef.namespace",
    ),
    (
        "targetRef bad kind",
        {"targetRef": {"kind": "Deployment", "group": "apps", "name": "a"}},
        False,
        "spec.targetRef.kind",
    ),
    (
        "targetRefs service entry",
        {"targetRefs": [{"kind": "ServiceEntry", "group": "networking.istio.io", "name": "a"}]},
        True,
        None,
    ),
    ("empty from", {"rules": [{"from": []}]}, False, "spec.rules[0].from"),
    ("empty to", {"rules": [{"to": []}]}, False, "spec.rules[0].to"),
    ("empty source", {"rules": [{"from": [{"source": {}}]}]}, False, "spec.rules[0].from[0].source"),
    ("missing source", {"rules": [{"from": [{}]}]}, False, "spec.rules[0].from[0].source"),
    ("empty operation", {"rules": [{"to": [{"operation": {}}]}]}, False, "spec.rules[0].to[0].operation"),
    (
        "empty principal",
        {"rules": [{"from": [{"source": {"principals": [""]}}]}]},
        False,
        "spec.rules[0].from[0].source.principals[0]",
    ),
    (
        "service accounts with namespaces",
        {"rules": [{"from": [{"source": {"serviceAccounts": ["ns/sa"], "namespaces": ["ns"]}}]}]},
        False,
        "spec.rules[0].from[0].source",
    ),
    ("ip blocks", {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8", "1.2.3.4"]}}]}]}, True, None),
    (
        "bad ip block",
        {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/40"]}}]}]},
        False,
        "spec.rules[0].from[0].source.ipBlocks[0]",
    ),
    (
        "bad remote ip block",
        {"rules": [{"from": [{"source": {"notRemoteIpBlocks": ["x"]}}]}]},
        False,
        "spec.rules[0].from[0].source.notRemoteIpBlocks[0]",
    ),
    ("ports", {"rules": [{"to": [{"operation": {"ports": ["8080"]}}]}]}, True, None),
    (
        "bad port",
        {"rules": [{"to": [{"operation": {"ports": ["80000"]}}]}]},
        False,
        "spec.rules[0].to[0].operation.ports[0]",
    ),
    (
        "port not number",
        {"rules": [{"to": [{"operation": {"notPorts": ["http"]}}]}]},
        False,
        "spec.rules[0].to[0].operation.notPorts[0]",
    ),
    (
        "path template ok",
        {"rules": [{"to": [{"operation": {"paths": ["/api/{*}/items/{**}"]}}]}]},
        True,
        None,
    ),
    (
        "path template double-star middle",
        {"rules": [{"to": [{"operation": {"paths": ["/{**}/x"]}}]}]},
        False,
        "spec.rules[0].to[0].operation.paths[0]",
    ),
    (
        "braces without template are literal",
        {"rules": [{"to": [{"operation": {"paths": ["/a/{id}"]}}]}]},
        True,
        None,
    ),
    (
        "path template with named variable",
        {"rules": [{"to": [{"operation": {"paths": ["/a/{*}/{id}"]}}]}]},
        False,
        "spec.rules[0].to[0].operation.paths[0]",
    ),
    (
        "empty method",
        {"rules": [{"to": [{"operation": {"methods": [""]}}]}]},
        False,
        "spec.rules[0].to[0].operation.methods[0]",
    ),
    ("when ok", {"rules": [{"when": [{"key": "request.headers[version]", "values": ["v1"]}]}]}, True, None),
    ("when no key", {"rules": [{"when": [{"values": ["v1"]}]}]}, False, "spec.rules[0].when[0].key"),
    ("when no values", {"rules": [{"when": [{"key": "source.ip"}]}]}, False, "spec.rules[0].when[0]"),
    (
        "when not values only",
        {"rules": [{"when": [{"key": "source.namespace", "notValues": ["x"]}]}]},
        True,
        None,
    ),
    (
        "when unknown key",
        {"rules": [{"when": [{"key": "request.body", "values": ["x"]}]}]},
        False,
        "spec.rules[0].when[0].key",
    ),
    (
        "when empty bracket key",
        {"rules": [{"when": [{"key": "request.headers[]", "values": ["x"]}]}]},
        False,
        "spec.rules[0].when[0].key",
    ),
    (
        "when bad ip value",
        {"rules": [{"when": [{"key": "source.ip", "values": ["nope"]}]}]},
        False,
        "spec.rules[0].when[0].values[0]",
    ),
    (
        "when bad port value",
        {"rules": [{"when": [{"key": "destination.port", "notValues": ["0"]}]}]},
        False,
        "spec.rules[0].when[0].notValues[0]",
    ),
    (
        "when empty value",
        {"rules": [{"when": [{"key": "source.namespace", "values": [""]}]}]},
        False,
        "spec.rules[0].when[0].values[0]",
    ),
    (
        "deny http-only warns",
        {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]},
        True,
        "spec.rules[0]",
    ),
    ("rules wrong type", {"rules": {"from": []}}, False, "spec.rules"),
    (
        "unknown field in source",
        {"rules": [{"from": [{"source": {"principal": ["a"]}}]}]},
        False,
        "spec.rules[0].from[0].source.principal",
    ),
]

REQUEST_AUTHN_CASES = [
    ("issuer", {"jwtRules": [{"issuer": "https://issuer.example.com"}]}, True, None),
    ("jwksUri only", {"jwtRules": [{"jwksUri": "https://issuer.example.com/jwks"}]}, True, None),
    ("empty issuer", {"jwtRules": [{"issuer": ""}]}, False, "spec.jwtRules[0].issuer"),
    (
        "bad jwksUri",
        {"jwtRules": [{"issuer": "a", "jwksUri": "not a url"}]},
        False,
        "spec.jwtRules[0].jwksUri",
    ),
    (
        "ftp jwksUri",
        {"jwtRules": [{"issuer": "a", "jwksUri": "ftp://example.com/jwks"}]},
        False,
        "spec.jwtRules[0].jwksUri",
    ),
    ("inline jwks", {"jwtRules": [{"issuer": "a", "jwks": PUBLIC_JWKS}]}, True, None),
    (
        "inline jwks not json",
        {"jwtRules": [{"issuer": "a", "jwks": "{not json"}]},
        False,
        "spec.jwtRules[0].jwks",
    ),
    (
        "inline jwks no keys",
        {"jwtRules": [{"issuer": "a", "jwks": '{"keys": []}'}]},
        False,
        "spec.jwtRules[0].jwks",
    ),
    (
        "inline jwks unusable key",
        {"jwtRules": [{"issuer": "a", "jwks": '{"keys": [{"kty": "RSA", "e": "AQAB", "n": "x"}]}'}]},
        False,
        "spec.jwtRules[0].jwks",
    ),
    (
        "inline jwks unknown key type",
        {"jwtRules": [{"issuer": "a", "jwks": '{"keys": [{"kty": "XYZ"}]}'}]},
        False,
        "spec.jwtRules[0].jwks",
    ),
    (
        "inline jwks private warns",
        {"jwtRules": [{"issuer": "a", "jwks": PRIVATE_JWKS}]},
        True,
        "spec.jwtRules[0].jwks",
    ),
    (
        "empty audience",
        {"jwtRules": [{"issuer": "a", "audiences": [""]}]},
        False,
        "spec.jwtRules[0].audiences[0]",
    ),
    (
        "empty header name",
        {"jwtRules": [{"issuer": "a", "fromHeaders": [{"prefix": "Bearer "}]}]},
        False,
        "spec.jwtRules[0].fromHeaders[0].name",
    ),
    (
        "empty param",
        {"jwtRules": [{"issuer": "a", "fromParams": [""]}]},
        False,
        "spec.jwtRules[0].fromParams[0]",
    ),
    (
        "empty cookie",
        {"jwtRules": [{"issuer": "a", "fromCookies": [""]}]},
        False,
        "spec.jwtRules[0].fromCookies[0]",
    ),
    (
        "claim to header",
        {"jwtRules": [{"issuer": "a", "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]}]},
        True,
        None,
    ),
    (
        "claim to header no claim",
        {"jwtRules": [{"issuer": "a", "outputClaimToHeaders": [{"header": "x-sub"}]}]},
        False,
        "spec.jwtRules[0].outputClaimToHeaders[0].claim",
    ),
    (
        "claim to bad header",
        {"jwtRules": [{"issuer": "a", "outputClaimToHeaders": [{"header": "x sub", "claim": "sub"}]}]},
        False,
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
    ),
    (
        "claim to pseudo header",
        {"jwtRules": [{"issuer": "a", "outputClaimToHeaders": [{"header": ":path", "claim": "sub"}]}]},
        False,
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
    ),
    ("timeout", {"jwtRules": [{"issuer": "a", "timeout": "5s"}]}, True, None),
    ("bad timeout", {"jwtRules": [{"issuer": "a", "timeout": "0s"}]}, False, "spec.jwtRules[0].timeout"),
    (
        "selector and targetRefs",
        {"selector": SEL, "targetRefs": [{"kind": "Service", "group": "", "name": "a"}]},
        False,
        "spec",
    ),
    ("selector wildcard", {"selector": {"matchLabels": {"*": "a"}}}, False, "spec.selector.matchLabels"),
]


@pytest.mark.parametrize(
    ("spec", "valid", "path"), [c[1:] for c in PEER_CASES], ids=[c[0] for c in PEER_CASES]
)
def test_peer_authentication(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("PeerAuthentication", spec, valid, path)


@pytest.mark.parametrize(
    ("spec", "valid", "path"), [c[1:] for c in AUTHZ_CASES], ids=[c[0] for c in AUTHZ_CASES]
)
def test_authorization_policy(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("AuthorizationPolicy", spec, valid, path)


@pytest.mark.parametrize(
    ("spec", "valid", "path"), [c[1:] for c in REQUEST_AUTHN_CASES], ids=[c[0] for c in REQUEST_AUTHN_CASES]
)
def test_request_authentication(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("RequestAuthentication", spec, valid, path)
