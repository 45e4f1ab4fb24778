"""VirtualService rules: each case asserts the verdict and the field path of the finding."""

from __future__ import annotations

from typing import Any

import pytest

ROUTE = {"route": [{"destination": {"host": "reviews"}}]}


def vs(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"hosts": ["reviews"], "http": [ROUTE]}
    base.update(spec)
    return {k: v for k, v in base.items() if v is not None}


def http(**route: Any) -> dict[str, Any]:
    r: dict[str, Any] = dict(ROUTE)
    r.update(route)
    return vs(http=[{k: v for k, v in r.items() if v is not None}])


def dests(*weights: int | None) -> list[dict[str, Any]]:
    out = []
    for i, w in enumerate(weights):
        d: dict[str, Any] = {"destination": {"host": "reviews", "subset": f"v{i + 1}"}}
        if w is not None:
            d["weight"] = w
        out.append(d)
    return out


CASES = [
    # hosts
    ("minimal", vs(), True, None),
    ("missing hosts with gateway", vs(hosts=None, gateways=["ns/gw"]), False, "spec.hosts"),
    ("delegate without hosts", vs(hosts=None), True, None),
    ("missing hosts with tcp", vs(hosts=None, http=None, tcp=[{"route": dests(None)}]), False, "spec.hosts"),
    ("fqdn host", vs(hosts=["reviews.default.svc.cluster.local"]), True, None),
    ("wildcard host", vs(hosts=["*.example.com"], gateways=["ns/gw"]), True, None),
    ("ip host", vs(hosts=["10.1.2.3"]), True, None),
    ("bad host label", vs(hosts=["rev_iews"]), False, "spec.hosts[0]"),
    ("numeric tld", vs(hosts=["foo.123"]), False, "spec.hosts[0]"),
    ("wildcard in middle", vs(hosts=["foo.*.com"]), False, "spec.hosts[0]"),
    ("star host on mesh", vs(hosts=["*"]), False, "spec.hosts[0]"),
    ("star host on mesh explicit", vs(hosts=["*"], gateways=["mesh"]), False, "spec.hosts[0]"),
    ("star host on gateway", vs(hosts=["*"], gateways=["ns/gw"]), True, None),
    ("duplicate hosts", vs(hosts=["a.com", "a.com"]), False, "spec.hosts[1]"),
    ("overlapping wildcards", vs(hosts=["*.foo.com", "*.com"], gateways=["ns/gw"]), False, "spec.hosts[1]"),
    ("distinct hosts", vs(hosts=["a.com", "b.com"]), True, None),
    ("no routes", vs(http=None), False, "spec"),
    ("hosts not a list", vs(hosts="reviews"), False, "spec.hosts"),
    # gateways
    ("gateway ns/name", vs(gateways=["istio-system/ingress"]), True, None),
    ("gateway bad namespace", vs(gateways=["Bad_NS/gw"]), False, "spec.gateways[0]"),
    ("gateway bad name", vs(gateways=["ns/gw.x"]), False, "spec.gateways[0]"),
    ("short gateway name", vs(gateways=["my-gateway"]), True, None),
    ("legacy gateway warns", vs(gateways=["my-gateway.istio-system"]), True, "spec.gateways[0]"),
    ("legacy gateway bad fqdn", vs(gateways=["my_gateway"]), False, "spec.gateways[0]"),
    ("mesh gateway", vs(gateways=["mesh", "ns/gw"]), True, None),
    # http actions
    ("no action", vs(http=[{"name": "x"}]), False, "spec.http[0]"),
    ("route and redirect", http(redirect={"uri": "/x"}), False, "spec.http[0]"),
    ("redirect only", vs(http=[{"redirect": {"uri": "/new"}}]), True, None),
    ("redirect empty", vs(http=[{"redirect": {}}]), False, "spec.http[0].redirect"),
    (
        "redirect with rewrite",
        vs(http=[{"redirect": {"uri": "/a"}, "rewrite": {"uri": "/b"}}]),
        False,
        "spec.http[0].rewrite",
    ),
    (
        "redirect with fault",
        vs(http=[{"redirect": {"uri": "/a"}, "fault": {"abort": {"httpStatus": 500}}}]),
        False,
        "spec.http[0].fault",
    ),
    ("redirect code 301", vs(http=[{"redirect": {"uri": "/a", "redirectCode": 301}}]), True, None),
    (
        "redirect code 200",
        vs(http=[{"redirect": {"uri": "/a", "redirectCode": 200}}]),
        False,
        "spec.http[0].redirect.redirectCode",
    ),
    (
        "redirect port and derivePort",
        vs(http=[{"redirect": {"port": 8080, "derivePort": "FROM_REQUEST_PORT"}}]),
        False,
        "spec.http[0].redirect",
    ),
    (
        "redirect bad derivePort",
        vs(http=[{"redirect": {"derivePort": "SOMETIMES"}}]),
        False,
        "spec.http[0].redirect.derivePort",
    ),
    (
        "direct response",
        vs(http=[{"directResponse": {"status": 503, "body": {"string": "down"}}}]),
        True,
        None,
    ),
    (
        "direct response bad status",
        vs(http=[{"directResponse": {"status": 700}}]),
        False,
        "spec.http[0].directResponse.status",
    ),
    (
        "direct response no status",
        vs(http=[{"directResponse": {}}]),
        False,
        "spec.http[0].directResponse.status",
    ),
    (
        "delegate",
        vs(hosts=["reviews"], http=[{"delegate": {"name": "reviews-v1", "namespace": "team"}}]),
        True,
        None,
    ),
    ("delegate bad name", vs(http=[{"delegate": {"name": "Bad.Name"}}]), False, "spec.http[0].delegate.name"),
    # weights
    ("weights 75/25", http(route=dests(75, 25)), True, None),
    ("weights 75/15 allowed at HEAD", http(route=dests(75, 15)), True, None),
    ("negative weight", http(route=dests(-1, 101)), False, "spec.http[0].route[0].weight"),
    ("total weight zero", http(route=dests(0, 0)), False, "spec.http[0].route"),
    ("single zero weight", http(route=dests(0)), True, None),
    (
        "weight is a list",
        http(route=[{"destination": {"host": "r"}, "weight": [1]}]),
        False,
        "spec.http[0].route[0].weight",
    ),
    (
        "unknown field in destination",
        http(route=[{"destination": {"host": "r", "hots": 1}}]),
        False,
        "spec.http[0].route[0].destination.hots",
    ),
    # destinations
    (
        "destination star",
        http(route=[{"destination": {"host": "*"}}]),
        False,
        "spec.http[0].route[0].destination.host",
    ),
    (
        "destination missing host",
        http(route=[{"destination": {"subset": "v1"}}]),
        False,
        "spec.http[0].route[0].destination.host",
    ),
    (
        "destination bad subset",
        http(route=[{"destination": {"host": "r", "subset": "V_1"}}]),
        False,
        "spec.http[0].route[0].destination.subset",
    ),
    (
        "destination port 0",
        http(route=[{"destination": {"host": "r", "port": {"number": 0}}}]),
        False,
        "spec.http[0].route[0].destination.port.number",
    ),
    (
        "destination port 70000",
        http(route=[{"destination": {"host": "r", "port": {"number": 70000}}}]),
        False,
        "spec.http[0].route[0].destination.port.number",
    ),
    ("empty route list", http(route=[]), False, "spec.http[0].route"),
    # matches
    ("prefix match", http(match=[{"uri": {"prefix": "/api"}}]), True, None),
    ("empty prefix", http(match=[{"uri": {"prefix": ""}}]), False, "spec.http[0].match[0].uri.prefix"),
    (
        "two match types",
        http(match=[{"uri": {"prefix": "/a", "exact": "/a"}}]),
        False,
        "spec.http[0].match[0].uri",
    ),
    ("regex ok", http(match=[{"uri": {"regex": "/api/v[0-9]+/.*"}}]), True, None),
    ("regex lookahead", http(match=[{"uri": {"regex": "(?!x)"}}]), False, "spec.http[0].match[0].uri.regex"),
    (
        "regex empty",
        http(match=[{"authority": {"regex": ""}}]),
        False,
        "spec.http[0].match[0].authority.regex",
    ),
    (
        "regex too long",
        http(match=[{"uri": {"regex": "a" * 1025}}]),
        False,
        "spec.http[0].match[0].uri.regex",
    ),
    (
        "header regex bad",
        http(match=[{"headers": {"x-a": {"regex": "a(b"}}}]),
        False,
        "spec.http[0].match[0].headers.x-a.regex",
    ),
    (
        "bad header name",
        http(match=[{"headers": {"x a": {"exact": "1"}}}]),
        False,
        "spec.http[0].match[0].headers.x a",
    ),
    (
        "query param regex bad",
        http(match=[{"queryParams": {"q": {"regex": "[a"}}}]),
        False,
        "spec.http[0].match[0].queryParams.q.regex",
    ),
    ("match port bad", http(match=[{"port": 70000}]), False, "spec.http[0].match[0].port"),
    ("match unknown field", http(match=[{"url": {"prefix": "/"}}]), False, "spec.http[0].match[0].url"),
    (
        "jwt claim on mesh",
        http(match=[{"headers": {"@request.auth.claims.group": {"exact": "a"}}}]),
        False,
        "spec.http[0].match[0].headers.@request.auth.claims.group",
    ),
    (
        "jwt claim on gateway",
        vs(
            gateways=["ns/gw"],
            http=[{**ROUTE, "match": [{"headers": {"@request.auth.claims.group": {"exact": "a"}}}]}],
        ),
        True,
        None,
    ),
    (
        "bad source namespace",
        http(match=[{"sourceNamespace": "Bad_NS"}]),
        False,
        "spec.http[0].match[0].sourceNamespace",
    ),
    # timeout, retries
    ("timeout", http(timeout="1.5s"), True, None),
    ("timeout sub-ms", http(timeout="100us"), False, "spec.http[0].timeout"),
    ("timeout not duration", http(timeout="soon"), False, "spec.http[0].timeout"),
    ("timeout as number", http(timeout=5), False, "spec.http[0].timeout"),
    (
        "retries ok",
        http(retries={"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset,503"}),
        True,
        None,
    ),
    ("retries negative", http(retries={"attempts": -1}), False, "spec.http[0].retries.attempts"),
    (
        "retries zero with retryOn",
        http(retries={"attempts": 0, "retryOn": "5xx"}),
        False,
        "spec.http[0].retries",
    ),
    (
        "retries bad policy",
        http(retries={"attempts": 2, "retryOn": "5xx,sometimes"}),
        False,
        "spec.http[0].retries.retryOn",
    ),
    (
        "retries bad perTryTimeout",
        http(retries={"attempts": 2, "perTryTimeout": "0s"}),
        False,
        "spec.http[0].retries.perTryTimeout",
    ),
    # fault
    ("fault abort", http(fault={"abort": {"httpStatus": 503, "percentage": {"value": 50}}}), True, None),
    ("fault empty", http(fault={}), False, "spec.http[0].fault"),
    (
        "fault abort status 700",
        http(fault={"abort": {"httpStatus": 700}}),
        False,
        "spec.http[0].fault.abort.httpStatus",
    ),
    ("fault abort status 600 accepted", http(fault={"abort": {"httpStatus": 600}}), True, None),
    (
        "fault abort percentage 150",
        http(fault={"abort": {"httpStatus": 500, "percentage": {"value": 150}}}),
        False,
        "spec.http[0].fault.abort.percentage",
    ),
    (
        "fault abort tiny percentage",
        http(fault={"abort": {"httpStatus": 500, "percentage": {"value": 0.00001}}}),
        False,
        "spec.http[0].fault.abort.percentage",
    ),
    (
        "fault abort no error type warns",
        http(fault={"abort": {"percentage": {"value": 1}}}),
        True,
        "spec.http[0].fault.abort",
    ),
    (
        "fault exponential delay",
        http(fault={"delay": {"exponentialDelay": "1s"}}),
        False,
        "spec.http[0].fault.delay.exponentialDelay",
    ),
    (
        "fault delay without fixedDelay",
        http(fault={"delay": {"percentage": {"value": 5}}}),
        False,
        "spec.http[0].fault.delay",
    ),
    (
        "fault delay percent 101",
        http(fault={"delay": {"fixedDelay": "1s", "percent": 101}}),
        False,
        "spec.http[0].fault.delay.percent",
    ),
    # mirror
    ("mirror", http(mirror={"host": "mirror"}, mirrorPercentage={"value": 10}), True, None),
    (
        "mirror percentage 101",
        http(mirror={"host": "mirror"}, mirrorPercentage={"value": 101}),
        False,
        "spec.http[0].mirrorPercentage",
    ),
    (
        "mirror and mirrors",
        http(mirror={"host": "m"}, mirrors=[{"destination": {"host": "n"}}]),
        False,
        "spec.http[0]",
    ),
    (
        "mirrors bad percentage",
        http(mirrors=[{"destination": {"host": "n"}, "percentage": {"value": -1}}]),
        False,
        "spec.http[0].mirrors[0].percentage",
    ),
    ("mirror star host", http(mirror={"host": "*"}), False, "spec.http[0].mirror.host"),
    # rewrite
    ("rewrite uri", http(rewrite={"uri": "/v2"}), True, None),
    ("rewrite empty", http(rewrite={}), False, "spec.http[0].rewrite"),
    (
        "rewrite uri and regex",
        http(rewrite={"uri": "/a", "uriRegexRewrite": {"match": "a", "rewrite": "b"}}),
        False,
        "spec.http[0].rewrite",
    ),
    (
        "rewrite regex bad",
        http(rewrite={"uriRegexRewrite": {"match": "(?<=a)", "rewrite": "b"}}),
        False,
        "spec.http[0].rewrite.uriRegexRewrite.match",
    ),
    # headers
    ("set authority header", http(headers={"request": {"set": {":authority": "x"}}}), True, None),
    (
        "set host and rewrite authority",
        http(headers={"request": {"set": {"Host": "x"}}}, rewrite={"authority": "y"}),
        False,
        "spec.http[0].headers.request.set.Host",
    ),
    (
        "set pseudo header",
        http(headers={"request": {"set": {":path": "/x"}}}),
        False,
        "spec.http[0].headers.request.set.:path",
    ),
    (
        "remove host",
        http(headers={"request": {"remove": ["host"]}}),
        False,
        "spec.http[0].headers.request.remove[0]",
    ),
    (
        "response set host",
        http(headers={"response": {"set": {"Host": "x"}}}),
        False,
        "spec.http[0].headers.response.set.Host",
    ),
    (
        "destination header pseudo",
        http(route=[{"destination": {"host": "r"}, "headers": {"response": {"add": {":status": "1"}}}}]),
        False,
        "spec.http[0].route[0].headers.response.add.:status",
    ),
    # cors
    (
        "cors ok",
        http(
            corsPolicy={
                "allowOrigins": [{"exact": "https://a.com"}],
                "allowMethods": ["GET"],
                "maxAge": "24h",
            }
        ),
        True,
        None,
    ),
    (
        "cors bad method",
        http(corsPolicy={"allowMethods": ["FETCH"]}),
        False,
        "spec.http[0].corsPolicy.allowMethods[0]",
    ),
    (
        "cors maxAge sub-second",
        http(corsPolicy={"maxAge": "1500ms"}),
        False,
        "spec.http[0].corsPolicy.maxAge",
    ),
    (
        "cors bad origin regex",
        http(corsPolicy={"allowOrigins": [{"regex": "(?i"}]}),
        False,
        "spec.http[0].corsPolicy.allowOrigins[0].regex",
    ),
    # unreachable / duplicate (warnings)
    ("unreachable after catch-all", vs(http=[ROUTE, ROUTE]), True, "spec.http[1]"),
    (
        "duplicate match",
        vs(
            http=[
                {**ROUTE, "match": [{"uri": {"prefix": "/a"}}]},
                {**ROUTE, "match": [{"uri": {"prefix": "/a"}}]},
            ]
        ),
        True,
        "spec.http[1].match[0]",
    ),
    # tls / tcp
    (
        "tls route",
        vs(
            hosts=["*.example.com"],
            gateways=["ns/gw"],
            http=None,
            tls=[{"match": [{"sniHosts": ["a.example.com"]}], "route": dests(None)}],
        ),
        True,
        None,
    ),
    ("tls no match", vs(http=None, tls=[{"route": dests(None)}]), False, "spec.tls[0].match"),
    (
        "tls no sni",
        vs(http=None, tls=[{"match": [{"port": 443}], "route": dests(None)}]),
        False,
        "spec.tls[0].match[0].sniHosts",
    ),
    (
        "tls sni not in hosts",
        vs(hosts=["a.com"], http=None, tls=[{"match": [{"sniHosts": ["b.com"]}], "route": dests(None)}]),
        False,
        "spec.tls[0].match[0].sniHosts[0]",
    ),
    (
        "tls no route",
        vs(hosts=["a.com"], http=None, tls=[{"match": [{"sniHosts": ["a.com"]}]}]),
        False,
        "spec.tls[0].route",
    ),
    ("tcp route", vs(http=None, tcp=[{"match": [{"port": 3306}], "route": dests(None)}]), True, None),
    ("tcp no route", vs(http=None, tcp=[{"match": [{"port": 3306}]}]), False, "spec.tcp[0].route"),
    (
        "tcp bad subnet",
        vs(http=None, tcp=[{"match": [{"destinationSubnets": ["10.0.0.0/33"]}], "route": dests(None)}]),
        False,
        "spec.tcp[0].match[0].destinationSubnets[0]",
    ),
    (
        "tcp bad source subnet",
        vs(http=None, tcp=[{"match": [{"sourceSubnet": "nope"}], "route": dests(None)}]),
        False,
        "spec.tcp[0].match[0].sourceSubnet",
    ),
    (
        "tcp bad source labels",
        vs(http=None, tcp=[{"match": [{"sourceLabels": {"a b": "c"}}], "route": dests(None)}]),
        False,
        "spec.tcp[0].match[0].sourceLabels",
    ),
    # exportTo
    ("exportTo dot", vs(exportTo=["."]), True, None),
    ("exportTo list", vs(exportTo=["default", "other"]), True, None),
    ("exportTo duplicate dot and own ns", vs(exportTo=[".", "default"]), False, "spec.exportTo[1]"),
    ("exportTo star with others", vs(exportTo=["*", "other"]), False, "spec.exportTo[0]"),
    ("exportTo tilde", vs(exportTo=["~"]), False, "spec.exportTo[0]"),
    ("exportTo bad ns", vs(exportTo=["Bad_NS"]), False, "spec.exportTo[0]"),
    ("unknown top-level spec field", vs(hostz=["a"]), False, "spec.hostz"),
]


@pytest.mark.parametrize(("spec", "valid", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_virtual_service(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("VirtualService", spec, valid, path)
