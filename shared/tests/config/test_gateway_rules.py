"""Gateway rules: each case asserts the verdict and the field path of the finding."""

from __future__ import annotations

from typing import Any

import pytest

HTTP_PORT = {"number": 80, "name": "http", "protocol": "HTTP"}
HTTPS_PORT = {"number": 443, "name": "https", "protocol": "HTTPS"}


def server(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"port": HTTP_PORT, "hosts": ["example.com"]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def gw(*servers: dict[str, Any]) -> dict[str, Any]:
    return {"selector": {"istio": "ingressgateway"}, "servers": list(servers)}


CASES = [
    ("http server", gw(server()), True, None),
    ("no servers", {"selector": {"istio": "ingressgateway"}}, False, "spec.servers"),
    ("no hosts", gw(server(hosts=None)), False, "spec.servers[0].hosts"),
    ("star host", gw(server(hosts=["*"])), True, None),
    ("ns host", gw(server(hosts=["prod/example.com", "./a.example.com", "*/b.example.com"])), True, None),
    ("bad ns host", gw(server(hosts=["Bad_NS/example.com"])), False, "spec.servers[0].hosts[0]"),
    ("short name", gw(server(hosts=["reviews"])), False, "spec.servers[0].hosts[0]"),
    ("partial wildcard", gw(server(hosts=["foo*.example.com"])), False, "spec.servers[0].hosts[0]"),
    ("wildcard subdomain", gw(server(hosts=["*.example.com"])), True, None),
    ("ip host", gw(server(hosts=["10.0.0.1"])), True, None),
    ("no port", gw(server(port=None)), False, "spec.servers[0].port"),
    ("port no name", gw(server(port={"number": 80, "protocol": "HTTP"})), False, "spec.servers[0].port.name"),
    (
        "port bad number",
        gw(server(port={"number": 99999, "name": "h", "protocol": "HTTP"})),
        False,
        "spec.servers[0].port.number",
    ),
    (
        "port zero without unix",
        gw(server(port={"number": 0, "name": "h", "protocol": "HTTP"})),
        False,
        "spec.servers[0].port.number",
    ),
    (
        "port zero with unix",
        gw(server(port={"number": 0, "name": "h", "protocol": "HTTP"}, bind="unix:///sock")),
        True,
        None,
    ),
    (
        "bad protocol",
        gw(server(port={"number": 80, "name": "h", "protocol": "GOPHER"})),
        False,
        "spec.servers[0].port.protocol",
    ),
    ("lowercase protocol", gw(server(port={"number": 80, "name": "h", "protocol": "http"})), True, None),
    (
        "targetPort rejected",
        gw(server(port={**HTTP_PORT, "targetPort": 8080})),
        False,
        "spec.servers[0].port.targetPort",
    ),
    ("duplicate port names", gw(server(), server(hosts=["b.com"])), False, "spec.servers[1].port.name"),
    ("https without tls", gw(server(port=HTTPS_PORT)), False, "spec.servers[0].tls"),
    (
        "https simple credential",
        gw(server(port=HTTPS_PORT, tls={"mode": "SIMPLE", "credentialName": "c"})),
        True,
        None,
    ),
    (
        "https simple files",
        gw(server(port=HTTPS_PORT, tls={"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"})),
        True,
        None,
    ),
    (
        "simple without key",
        gw(server(port=HTTPS_PORT, tls={"mode": "SIMPLE", "serverCertificate": "/c"})),
        False,
        "spec.servers[0].tls.privateKey",
    ),
    (
        "mutual without ca",
        gw(server(port=HTTPS_PORT, tls={"mode": "MUTUAL", "serverCertificate": "/c", "privateKey": "/k"})),
        False,
        "spec.servers[0].tls.caCertificates",
    ),
    (
        "istio mutual with cert",
        gw(server(port=HTTPS_PORT, tls={"mode": "ISTIO_MUTUAL", "serverCertificate": "/c"})),
        False,
        "spec.servers[0].tls.serverCertificate",
    ),
    (
        "istio mutual with credential",
        gw(server(port=HTTPS_PORT, tls={"mode": "ISTIO_MUTUAL", "credentialName": "c"})),
        False,
        "spec.servers[0].tls.credentialName",
    ),
    (
        "two cert sources",
        gw(
            server(
                port=HTTPS_PORT,
                tls={"mode": "SIMPLE", "credentialName": "c", "serverCertificate": "/c", "privateKey": "/k"},
            )
        ),
        False,
        "spec.servers[0].tls",
    ),
    (
        "simple with crl",
        gw(server(port=HTTPS_PORT, tls={"mode": "SIMPLE", "credentialName": "c", "caCrl": "/crl"})),
        False,
        "spec.servers[0].tls.caCrl",
    ),
    (
        "passthrough tls",
        gw(server(port={"number": 443, "name": "tls", "protocol": "TLS"}, tls={"mode": "PASSTHROUGH"})),
        True,
        None,
    ),
    (
        "bad tls mode",
        gw(server(port=HTTPS_PORT, tls={"mode": "SOMETIMES"})),
        False,
        "spec.servers[0].tls.mode",
    ),
    ("http with redirect", gw(server(tls={"httpsRedirect": True})), True, None),
    (
        "http with cert",
        gw(server(tls={"mode": "SIMPLE", "credentialName": "c"})),
        False,
        "spec.servers[0].tls",
    ),
    (
        "tcp with tls",
        gw(server(port={"number": 31400, "name": "tcp", "protocol": "TCP"}, tls={"mode": "SIMPLE"})),
        False,
        "spec.servers[0].tls",
    ),
    ("bind ip", gw(server(bind="0.0.0.0")), True, None),
    ("bind bad", gw(server(bind="localhost")), False, "spec.servers[0].bind"),
    ("bind unix relative", gw(server(bind="unix://rel/sock")), False, "spec.servers[0].bind"),
    (
        "duplicate cipher warns",
        gw(
            server(
                port=HTTPS_PORT,
                tls={
                    "mode": "SIMPLE",
                    "credentialName": "c",
                    "cipherSuites": ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"],
                },
            )
        ),
        True,
        "spec.servers[0].tls.cipherSuites[1]",
    ),
    (
        "tls 1.0 without ciphers warns",
        gw(
            server(
                port=HTTPS_PORT,
                tls={"mode": "SIMPLE", "credentialName": "c", "minProtocolVersion": "TLSV1_0"},
            )
        ),
        True,
        "spec.servers[0].tls.minProtocolVersion",
    ),
    ("servers not a list", {"servers": {"port": HTTP_PORT}}, False, "spec.servers"),
    ("bad selector label", {"selector": {"a b": "c"}, "servers": [server()]}, False, "spec.selector"),
]


@pytest.mark.parametrize(("spec", "valid", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gateway(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("Gateway", spec, valid, path)


def test_gateway_name_must_be_a_label(check_case: Any) -> None:
    check_case("Gateway", gw(server()), False, "metadata.name", name="my.gateway")
    check_case(
        "VirtualService",
        {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}]}]},
        True,
        None,
        name="my.vs",
    )
