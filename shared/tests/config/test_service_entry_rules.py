"""ServiceEntry rules: each case asserts the verdict and the field path of the finding."""

from __future__ import annotations

from typing import Any

import pytest

HTTP = {"number": 80, "name": "http", "protocol": "HTTP"}
TCP = {"number": 3306, "name": "tcp", "protocol": "TCP"}


def se(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"hosts": ["api.example.com"], "ports": [HTTP], "resolution": "DNS"}
    base.update(spec)
    return {k: v for k, v in base.items() if v is not None}


CASES = [
    ("dns", se(), True, None),
    ("no hosts", se(hosts=None), False, "spec.hosts"),
    ("star host", se(hosts=["*"]), False, "spec.hosts[0]"),
    ("bad host", se(hosts=["bad_host.com"]), False, "spec.hosts[0]"),
    ("wildcard with NONE", se(hosts=["*.example.com"], resolution="NONE"), True, None),
    ("partial wildcard warns", se(hosts=["*example.com"], resolution="NONE"), True, "spec.hosts[0]"),
    ("wildcard dns no endpoints", se(hosts=["*.example.com"]), False, "spec.hosts[0]"),
    (
        "wildcard dns with endpoints",
        se(hosts=["*.example.com"], endpoints=[{"address": "a.example.com"}]),
        True,
        None,
    ),
    ("bad resolution", se(resolution="MAGIC"), False, "spec.resolution"),
    ("bad location", se(location="SOMEWHERE"), False, "spec.location"),
    (
        "address ip",
        se(addresses=["10.0.0.1"], resolution="STATIC", endpoints=[{"address": "1.1.1.1"}]),
        True,
        None,
    ),
    (
        "address cidr static",
        se(addresses=["10.0.0.0/24"], resolution="STATIC", endpoints=[{"address": "1.1.1.1"}]),
        True,
        None,
    ),
    ("address cidr dns", se(addresses=["10.0.0.0/24"]), False, "spec.addresses[0]"),
    ("address bad", se(addresses=["not-an-ip"]), False, "spec.addresses[0]"),
    ("port missing number", se(ports=[{"name": "http", "protocol": "HTTP"}]), False, "spec.ports[0].number"),
    (
        "port bad number",
        se(ports=[{"number": 0, "name": "http", "protocol": "HTTP"}]),
        False,
        "spec.ports[0].number",
    ),
    (
        "port bad name",
        se(ports=[{"number": 80, "name": "HTTP_Port", "protocol": "HTTP"}]),
        False,
        "spec.ports[0].name",
    ),
    (
        "port bad protocol",
        se(ports=[{"number": 80, "name": "x", "protocol": "SMTP"}]),
        False,
        "spec.ports[0].protocol",
    ),
    (
        "duplicate port names",
        se(ports=[HTTP, {"number": 81, "name": "http", "protocol": "HTTP"}]),
        False,
        "spec.ports[1].name",
    ),
    (
        "duplicate port numbers",
        se(ports=[HTTP, {"number": 80, "name": "other", "protocol": "HTTP"}]),
        False,
        "spec.ports[1].number",
    ),
    ("target port bad", se(ports=[{**HTTP, "targetPort": 70000}]), False, "spec.ports[0].targetPort"),
    (
        "none with endpoints",
        se(resolution="NONE", endpoints=[{"address": "1.1.1.1"}]),
        False,
        "spec.endpoints",
    ),
    (
        "static endpoints",
        se(resolution="STATIC", endpoints=[{"address": "1.1.1.1", "ports": {"http": 8080}}]),
        True,
        None,
    ),
    (
        "static fqdn endpoint",
        se(resolution="STATIC", endpoints=[{"address": "foo.com"}]),
        False,
        "spec.endpoints[0].address",
    ),
    (
        "static unix endpoint",
        se(resolution="STATIC", endpoints=[{"address": "unix:///var/run/a.sock"}]),
        True,
        None,
    ),
    (
        "unix endpoint with ports",
        se(resolution="STATIC", endpoints=[{"address": "unix:///a.sock", "ports": {"http": 1}}]),
        False,
        "spec.endpoints[0].ports",
    ),
    (
        "unix endpoint two service ports",
        se(
            resolution="STATIC",
            ports=[HTTP, {**HTTP, "number": 81, "name": "h2"}],
            endpoints=[{"address": "unix:///a.sock"}],
        ),
        False,
        "spec.endpoints[0].address",
    ),
    (
        "endpoint port not in service",
        se(resolution="STATIC", endpoints=[{"address": "1.1.1.1", "ports": {"grpc": 9000}}]),
        False,
        "spec.endpoints[0].ports.grpc",
    ),
    (
        "endpoint bad label",
        se(resolution="STATIC", endpoints=[{"address": "1.1.1.1", "labels": {"a": "b c"}}]),
        False,
        "spec.endpoints[0].labels",
    ),
    ("dns bad endpoint", se(endpoints=[{"address": "bad_name"}]), False, "spec.endpoints[0].address"),
    (
        "dns round robin one endpoint",
        se(resolution="DNS_ROUND_ROBIN", endpoints=[{"address": "a.com"}]),
        True,
        None,
    ),
    (
        "dns round robin two endpoints",
        se(resolution="DNS_ROUND_ROBIN", endpoints=[{"address": "a.com"}, {"address": "b.com"}]),
        False,
        "spec.endpoints",
    ),
    ("multiple hosts tcp", se(hosts=["a.com", "b.com"], ports=[TCP]), False, "spec.ports[0]"),
    ("multiple hosts http", se(hosts=["a.com", "b.com"]), True, None),
    (
        "multiple hosts tcp resolution none",
        se(hosts=["a.com", "b.com"], ports=[TCP], resolution="NONE", addresses=["10.0.0.1"]),
        True,
        None,
    ),
    ("tcp without addresses warns", se(ports=[TCP]), True, "spec.ports[0].protocol"),
    (
        "selector and endpoints",
        se(
            resolution="STATIC", workloadSelector={"labels": {"app": "a"}}, endpoints=[{"address": "1.1.1.1"}]
        ),
        False,
        "spec.workloadSelector",
    ),
    ("selector", se(resolution="STATIC", workloadSelector={"labels": {"app": "a"}}), True, None),
    ("dynamic dns", se(hosts=["*.example.com"], resolution="DYNAMIC_DNS"), True, None),
    ("dynamic dns non-wildcard", se(resolution="DYNAMIC_DNS"), False, "spec.hosts"),
    (
        "dynamic dns tcp",
        se(hosts=["*.example.com"], resolution="DYNAMIC_DNS", ports=[TCP]),
        False,
        "spec.ports[0].protocol",
    ),
    ("exportTo tilde", se(exportTo=["~"]), True, None),
    ("exportTo tilde with others", se(exportTo=["~", "a"]), False, "spec.exportTo"),
    ("ports wrong type", se(ports="80"), False, "spec.ports"),
]


@pytest.mark.parametrize(("spec", "valid", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_service_entry(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("ServiceEntry", spec, valid, path)
