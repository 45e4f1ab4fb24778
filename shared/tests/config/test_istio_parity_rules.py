"""Further rule cases taken from how Istio's webhook treats each field (verdict and path per case)."""

from __future__ import annotations

from typing import Any

import pytest

ROUTE = {"route": [{"destination": {"host": "reviews"}}]}


def http(**route: Any) -> dict[str, Any]:
    return {"hosts": ["reviews"], "http": [{**ROUTE, **route}]}


def tp(**policy: Any) -> dict[str, Any]:
    return {"host": "reviews", "trafficPolicy": policy}


HTTPS = {"number": 443, "name": "https", "protocol": "HTTPS"}
LUA = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
HCM_MATCH = {
    "context": "SIDECAR_INBOUND",
    "listener": {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}},
}

CASES: list[tuple[str, str, Any, bool, str | None]] = [
    # VirtualService
    (
        "VirtualService",
        "header value with variable",
        http(headers={"request": {"set": {"x-host": "%HOSTNAME%"}}}),
        True,
        None,
    ),
    (
        "VirtualService",
        "header value escaped percent",
        http(headers={"request": {"set": {"x-p": "100%%"}}}),
        True,
        None,
    ),
    (
        "VirtualService",
        "header value lone percent",
        http(headers={"request": {"set": {"x-p": "100%"}}}),
        False,
        "spec.http[0].headers.request.set.x-p",
    ),
    (
        "VirtualService",
        "header value control char",
        http(headers={"response": {"add": {"x-a": "a\nb"}}}),
        False,
        "spec.http[0].headers.response.add.x-a",
    ),
    (
        "VirtualService",
        "authority set twice",
        http(headers={"request": {"set": {":authority": "a", "host": "b"}}}),
        False,
        "spec.http[0].headers.request.set.host",
    ),
    (
        "VirtualService",
        "direct response large body warns",
        {
            "hosts": ["r"],
            "http": [{"directResponse": {"status": 200, "body": {"string": "x" * (200 * 1024)}}}],
        },
        True,
        "spec.http[0].directResponse.body",
    ),
    (
        "VirtualService",
        "direct response huge body",
        {
            "hosts": ["r"],
            "http": [{"directResponse": {"status": 200, "body": {"string": "x" * (1024 * 1024 + 1)}}}],
        },
        False,
        "spec.http[0].directResponse.body",
    ),
    (
        "VirtualService",
        "direct response with fault",
        {
            "hosts": ["r"],
            "http": [{"directResponse": {"status": 503}, "fault": {"delay": {"fixedDelay": "1s"}}}],
        },
        False,
        "spec.http[0].fault",
    ),
    ("VirtualService", "grpc abort", http(fault={"abort": {"grpcStatus": "UNAVAILABLE"}}), True, None),
    (
        "VirtualService",
        "grpc abort unknown code",
        http(fault={"abort": {"grpcStatus": "BROKEN"}}),
        False,
        "spec.http[0].fault.abort.grpcStatus",
    ),
    (
        "VirtualService",
        "http2 abort unsupported",
        http(fault={"abort": {"http2Error": "REFUSED_STREAM"}}),
        False,
        "spec.http[0].fault.abort.http2Error",
    ),
    (
        "VirtualService",
        "retry remote localities with zero attempts",
        http(retries={"retryRemoteLocalities": True}),
        False,
        "spec.http[0].retries",
    ),
    (
        "VirtualService",
        "retryOn unknown status",
        http(retries={"attempts": 1, "retryOn": "599"}),
        False,
        "spec.http[0].retryOn" if False else "spec.http[0].retries.retryOn",
    ),
    (
        "VirtualService",
        "retryOn with spaces",
        http(retries={"attempts": 1, "retryOn": "5xx, reset"}),
        False,
        "spec.http[0].retries.retryOn",
    ),
    (
        "VirtualService",
        "redirect scheme ftp",
        {"hosts": ["r"], "http": [{"redirect": {"scheme": "ftp"}}]},
        False,
        "spec.http[0].redirect.scheme",
    ),
    (
        "VirtualService",
        "redirect derivePort only",
        {"hosts": ["r"], "http": [{"redirect": {"derivePort": "FROM_REQUEST_PORT"}}]},
        True,
        None,
    ),
    (
        "VirtualService",
        "uriRegexRewrite without rewrite",
        http(rewrite={"uriRegexRewrite": {"match": "^/a"}}),
        False,
        "spec.http[0].rewrite.uriRegexRewrite",
    ),
    (
        "VirtualService",
        "delegate vs regex match",
        {"http": [{**ROUTE, "match": [{"uri": {"regex": "/a.*"}}]}]},
        False,
        "spec.http[0].match[0].uri.regex",
    ),
    (
        "VirtualService",
        "delegate vs cannot delegate again",
        {"http": [{"delegate": {"name": "x"}}]},
        False,
        "spec.http[0].delegate",
    ),
    ("VirtualService", "delegate with route", http(delegate={"name": "child"}), False, "spec.http[0]"),
    (
        "VirtualService",
        "mirrorPercent deprecated",
        http(mirror={"host": "m"}, mirrorPercent=50),
        True,
        "spec.http[0].mirrorPercent",
    ),
    (
        "VirtualService",
        "match gateways checked",
        http(match=[{"gateways": ["Bad_ns/gw"]}]),
        False,
        "spec.http[0].match[0].gateways[0]",
    ),
    (
        "VirtualService",
        "match source labels checked",
        http(match=[{"sourceLabels": {"app": "a b"}}]),
        False,
        "spec.http[0].match[0].sourceLabels.app",
    ),
    (
        "VirtualService",
        "cors empty origin",
        http(corsPolicy={"allowOrigins": [{"exact": ""}]}),
        False,
        "spec.http[0].corsPolicy.allowOrigins[0]",
    ),
    (
        "VirtualService",
        "cors star method",
        http(corsPolicy={"allowMethods": ["*"]}),
        False,
        "spec.http[0].corsPolicy.allowMethods[0]",
    ),
    (
        "VirtualService",
        "sni ip warns",
        {
            "hosts": ["*"],
            "gateways": ["ns/gw"],
            "tls": [{"match": [{"sniHosts": ["10.0.0.1"]}], "route": [{"destination": {"host": "a"}}]}],
        },
        True,
        "spec.tls[0].match[0].sniHosts[0]",
    ),
    (
        "VirtualService",
        "all matches duplicated",
        {
            "hosts": ["r"],
            "http": [
                {**ROUTE, "match": [{"uri": {"exact": "/a"}}]},
                {**ROUTE, "match": [{"uri": {"exact": "/a"}}]},
            ],
        },
        True,
        "spec.http[1]",
    ),
    (
        "VirtualService",
        "two catch-all tcp routes",
        {"hosts": ["r"], "tcp": [ROUTE, ROUTE]},
        True,
        "spec.tcp[1]",
    ),
    (
        "VirtualService",
        "wildcard label with dash",
        {"hosts": ["*-api.example.com"], "gateways": ["ns/gw"], "http": [ROUTE]},
        True,
        None,
    ),
    # DestinationRule
    (
        "DestinationRule",
        "local origin failures without split",
        tp(outlierDetection={"consecutiveLocalOriginFailures": 3}),
        False,
        "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
    ),
    (
        "DestinationRule",
        "local origin failures with split",
        tp(outlierDetection={"consecutiveLocalOriginFailures": 3, "splitExternalLocalOriginErrors": True}),
        True,
        None,
    ),
    (
        "DestinationRule",
        "minimumRingSize deprecated",
        tp(loadBalancer={"consistentHash": {"useSourceIp": True, "minimumRingSize": 1024}}),
        True,
        "spec.trafficPolicy.loadBalancer.consistentHash",
    ),
    (
        "DestinationRule",
        "minimumRingSize with ringHash",
        tp(loadBalancer={"consistentHash": {"minimumRingSize": 1024, "ringHash": {"minimumRingSize": 1024}}}),
        False,
        "spec.trafficPolicy.loadBalancer.consistentHash",
    ),
    (
        "DestinationRule",
        "maglev without table size",
        tp(loadBalancer={"consistentHash": {"maglev": {}}}),
        False,
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
    ),
    (
        "DestinationRule",
        "warmup duration",
        tp(loadBalancer={"simple": "ROUND_ROBIN", "warmupDurationSecs": "0s"}),
        False,
        "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
    ),
    (
        "DestinationRule",
        "insecure skip verify with ca",
        tp(tls={"mode": "SIMPLE", "insecureSkipVerify": True, "caCertificates": "/ca.pem"}),
        False,
        "spec.trafficPolicy.tls",
    ),
    (
        "DestinationRule",
        "credentialName with crl",
        tp(tls={"mode": "SIMPLE", "credentialName": "c", "caCrl": "/crl"}),
        False,
        "spec.trafficPolicy.tls.caCrl",
    ),
    (
        "DestinationRule",
        "tunnel lower-case protocol",
        tp(tunnel={"protocol": "connect", "targetHost": "a.com", "targetPort": 8443}),
        False,
        "spec.trafficPolicy.tunnel.protocol",
    ),
    (
        "DestinationRule",
        "tunnel ip target",
        tp(tunnel={"targetHost": "10.0.0.1", "targetPort": 8443}),
        True,
        None,
    ),
    (
        "DestinationRule",
        "locality weight zero",
        tp(
            loadBalancer={
                "localityLbSetting": {"distribute": [{"from": "r1/*", "to": {"r1/z1/*": 0, "r2/*": 100}}]}
            }
        ),
        False,
        "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
    ),
    (
        "DestinationRule",
        "locality overlapping sources",
        tp(
            loadBalancer={
                "localityLbSetting": {
                    "distribute": [
                        {"from": "r1/*", "to": {"r1/*": 100}},
                        {"from": "r1/z1/*", "to": {"r1/*": 100}},
                    ]
                }
            }
        ),
        False,
        "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute",
    ),
    (
        "DestinationRule",
        "failover without outlier warns",
        tp(loadBalancer={"localityLbSetting": {"failover": [{"from": "us-east", "to": "us-west"}]}}),
        True,
        "spec.trafficPolicy.loadBalancer.localityLbSetting",
    ),
    (
        "DestinationRule",
        "failover with topology priority",
        tp(
            outlierDetection={"interval": "1s"},
            loadBalancer={
                "localityLbSetting": {
                    "failover": [{"from": "a", "to": "b"}],
                    "failoverPriority": ["topology.kubernetes.io/region"],
                }
            },
        ),
        False,
        "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]",
    ),
    (
        "DestinationRule",
        "failover wildcard",
        tp(
            outlierDetection={"interval": "1s"},
            loadBalancer={"localityLbSetting": {"failover": [{"from": "a*", "to": "b"}]}},
        ),
        False,
        "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
    ),
    (
        "DestinationRule",
        "selector without labels warns",
        {"host": "r", "workloadSelector": {}},
        True,
        "spec.workloadSelector",
    ),
    # Gateway
    (
        "Gateway",
        "unix bind with port",
        {
            "servers": [
                {
                    "port": {"number": 80, "name": "h", "protocol": "HTTP"},
                    "bind": "unix:///sock",
                    "hosts": ["*"],
                }
            ]
        },
        False,
        "spec.servers[0].port.number",
    ),
    (
        "Gateway",
        "httpsRedirect on tcp warns",
        {
            "servers": [
                {
                    "port": {"number": 443, "name": "t", "protocol": "TLS"},
                    "hosts": ["*"],
                    "tls": {"mode": "PASSTHROUGH", "httpsRedirect": True},
                }
            ]
        },
        True,
        "spec.servers[0].tls.httpsRedirect",
    ),
    (
        "Gateway",
        "passthrough with certs warns",
        {"servers": [{"port": HTTPS, "hosts": ["*"], "tls": {"mode": "PASSTHROUGH", "credentialName": "c"}}]},
        True,
        "spec.servers[0].tls",
    ),
    (
        "Gateway",
        "invalid cipher warns",
        {
            "servers": [
                {
                    "port": HTTPS,
                    "hosts": ["*"],
                    "tls": {"mode": "SIMPLE", "credentialName": "c", "cipherSuites": ["NOT-A-CIPHER"]},
                }
            ]
        },
        True,
        "spec.servers[0].tls.cipherSuites[0]",
    ),
    (
        "Gateway",
        "crl with credentialName",
        {
            "servers": [
                {
                    "port": HTTPS,
                    "hosts": ["*"],
                    "tls": {"mode": "MUTUAL", "credentialName": "c", "caCrl": "/crl"},
                }
            ]
        },
        False,
        "spec.servers[0].tls.caCrl",
    ),
    (
        "Gateway",
        "optional mutual files",
        {
            "servers": [
                {
                    "port": HTTPS,
                    "hosts": ["*"],
                    "tls": {
                        "mode": "OPTIONAL_MUTUAL",
                        "serverCertificate": "/c",
                        "privateKey": "/k",
                        "caCertificates": "/ca",
                    },
                }
            ]
        },
        True,
        None,
    ),
    (
        "Gateway",
        "empty namespace in host",
        {"servers": [{"port": HTTPS, "hosts": ["/a.com"], "tls": {"mode": "SIMPLE", "credentialName": "c"}}]},
        False,
        "spec.servers[0].hosts[0]",
    ),
    # Sidecar
    (
        "Sidecar",
        "http pool on tcp port warns",
        {
            "ingress": [
                {
                    "port": {"number": 3306, "protocol": "TCP", "name": "t"},
                    "connectionPool": {"http": {"maxRetries": 1}},
                }
            ]
        },
        True,
        "spec.ingress[0].connectionPool.http",
    ),
    (
        "Sidecar",
        "egress proxy must be fqdn",
        {
            "outboundTrafficPolicy": {
                "mode": "ALLOW_ANY",
                "egressProxy": {"host": "*.example.com", "port": {"number": 443}},
            }
        },
        False,
        "spec.outboundTrafficPolicy.egressProxy.host",
    ),
    (
        "Sidecar",
        "duplicate uds bind",
        {
            "egress": [
                {
                    "port": {"number": 0, "protocol": "HTTP", "name": "a"},
                    "bind": "unix:///s",
                    "hosts": ["./*"],
                },
                {
                    "port": {"number": 0, "protocol": "HTTP", "name": "b"},
                    "bind": "unix:///s",
                    "hosts": ["./*"],
                },
            ]
        },
        False,
        "spec.egress[1].bind",
    ),
    (
        "Sidecar",
        "egress partial wildcard",
        {"egress": [{"hosts": ["./*foo.com"]}]},
        False,
        "spec.egress[0].hosts[0]",
    ),
    (
        "Sidecar",
        "namespace wildcard covers host warns",
        {"egress": [{"hosts": ["ns/*", "ns/a.b.com"]}]},
        True,
        "spec.egress[0].hosts[1]",
    ),
    (
        "Sidecar",
        "selector wildcard value",
        {"workloadSelector": {"labels": {"app": "*"}}, "egress": [{"hosts": ["./*"]}]},
        False,
        "spec.workloadSelector.labels.app",
    ),
    # ServiceEntry
    (
        "ServiceEntry",
        "port without name",
        {"hosts": ["a.com"], "ports": [{"number": 80, "protocol": "HTTP"}], "resolution": "DNS"},
        False,
        "spec.ports[0].name",
    ),
    (
        "ServiceEntry",
        "targetPort with NONE warns",
        {
            "hosts": ["a.com"],
            "addresses": ["10.0.0.1"],
            "ports": [{"number": 80, "name": "h", "protocol": "HTTP", "targetPort": 8080}],
        },
        True,
        "spec.ports[0].targetPort",
    ),
    (
        "ServiceEntry",
        "selector with DNS warns",
        {
            "hosts": ["a.com"],
            "ports": [{"number": 80, "name": "h", "protocol": "HTTP"}],
            "resolution": "DNS",
            "workloadSelector": {"labels": {"app": "a"}},
        },
        True,
        "spec.workloadSelector",
    ),
    (
        "ServiceEntry",
        "selector without labels warns",
        {
            "hosts": ["a.com"],
            "ports": [{"number": 80, "name": "h", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "workloadSelector": {},
        },
        True,
        "spec.workloadSelector.labels",
    ),
    # WorkloadEntry / WorkloadGroup
    ("WorkloadEntry", "upper case port name", {"address": "10.0.0.1", "ports": {"HTTP": 80}}, True, None),
    (
        "WorkloadGroup",
        "probe bad scheme",
        {"template": {}, "probe": {"httpGet": {"port": 80, "scheme": "ftp"}}},
        False,
        "spec.probe.httpGet.scheme",
    ),
    (
        "WorkloadGroup",
        "probe bad header",
        {
            "template": {},
            "probe": {"httpGet": {"port": 80, "httpHeaders": [{"name": "bad header", "value": "1"}]}},
        },
        False,
        "spec.probe.httpGet.httpHeaders[0].name",
    ),
    # AuthorizationPolicy
    (
        "AuthorizationPolicy",
        "destination.labels replaced",
        {"rules": [{"when": [{"key": "destination.labels[app]", "values": ["a"]}]}]},
        False,
        "spec.rules[0].when[0].key",
    ),
    (
        "AuthorizationPolicy",
        "destination.namespace replaced",
        {"rules": [{"when": [{"key": "destination.namespace", "values": ["a"]}]}]},
        False,
        "spec.rules[0].when[0].key",
    ),
    (
        "AuthorizationPolicy",
        "claims without brackets",
        {"rules": [{"when": [{"key": "request.auth.claims", "values": ["a"]}]}]},
        False,
        "spec.rules[0].when[0].key",
    ),
    (
        "AuthorizationPolicy",
        "experimental key",
        {
            "rules": [
                {
                    "when": [
                        {
                            "key": "experimental.envoy.filters.network.mysql_proxy[db.table]",
                            "values": ["[update]"],
                        }
                    ]
                }
            ]
        },
        True,
        None,
    ),
    (
        "AuthorizationPolicy",
        "custom with source ip",
        {
            "action": "CUSTOM",
            "provider": {"name": "x"},
            "rules": [{"when": [{"key": "source.ip", "values": ["10.0.0.0/8"]}]}],
        },
        True,
        None,
    ),
    (
        "AuthorizationPolicy",
        "custom without rules",
        {"action": "CUSTOM", "provider": {"name": "x"}},
        False,
        "spec.rules",
    ),
    (
        "AuthorizationPolicy",
        "deny from principals only is fine",
        {"action": "DENY", "rules": [{"from": [{"source": {"principals": ["a"]}}]}]},
        True,
        None,
    ),
    (
        "AuthorizationPolicy",
        "deny with request principals warns",
        {"action": "DENY", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]},
        True,
        "spec.rules[0]",
    ),
    # WasmPlugin / ProxyConfig
    (
        "WasmPlugin",
        "oci url",
        {"url": "oci://ghcr.io/example/plugin:1.0", "selector": {"matchLabels": {"a": "b"}}},
        True,
        None,
    ),
    ("WasmPlugin", "ftp url", {"url": "ftp://example.com/plugin.wasm"}, False, "spec.url"),
    ("WasmPlugin", "no url", {"pluginName": "x"}, False, "spec.url"),
    ("WasmPlugin", "sha not hex", {"url": "https://a.com/p.wasm", "sha256": "xyz"}, False, "spec.sha256"),
    (
        "WasmPlugin",
        "match port out of range",
        {"url": "file:///p.wasm", "match": [{"ports": [{"number": 0}]}]},
        False,
        "spec.match[0].ports[0]",
    ),
    (
        "DestinationRule",
        "warmup minimumPercent 150",
        tp(loadBalancer={"warmup": {"duration": "300s", "minimumPercent": 150.0}}),
        False,
        "spec.trafficPolicy.loadBalancer.warmup.minimumPercent",
    ),
    (
        "DestinationRule",
        "warmup without duration",
        tp(loadBalancer={"warmup": {"minimumPercent": 5.0}}),
        False,
        "spec.trafficPolicy.loadBalancer.warmup.duration",
    ),
    (
        "DestinationRule",
        "warmup aggression below 1",
        tp(loadBalancer={"warmup": {"duration": "300s", "aggression": 0.3}}),
        False,
        "spec.trafficPolicy.loadBalancer.warmup.aggression",
    ),
    (
        "PeerAuthentication",
        "unquoted numeric port keys",
        {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {8080: {"mode": "DISABLE"}}},
        True,
        None,
    ),
    (
        "PeerAuthentication",
        "port above 65535",
        {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"42949672": {"mode": "STRICT"}}},
        False,
        "spec.portLevelMtls.42949672",
    ),
    (
        "RequestAuthentication",
        "space delimited claims",
        {"jwtRules": [{"issuer": "a", "spaceDelimitedClaims": ["roles"]}]},
        True,
        None,
    ),
    (
        "RequestAuthentication",
        "empty space delimited claim",
        {"jwtRules": [{"issuer": "a", "spaceDelimitedClaims": [""]}]},
        False,
        "spec.jwtRules[0].spaceDelimitedClaims[0]",
    ),
    ("RequestAuthentication", "null jwt rule", {"jwtRules": [None]}, False, "spec.jwtRules[0]"),
    (
        "RequestAuthentication",
        "legacy jwks_uri spelling",
        {"jwtRules": [{"issuer": "a", "jwks_uri": "https://a.com/jwks"}]},
        True,
        None,
    ),
    (
        "Telemetry",
        "formatter tag and request id sampling",
        {
            "tracing": [
                {
                    "useRequestIdForTraceSampling": True,
                    "customTags": {"path": {"formatter": {"value": "%REQ(:PATH)%"}}},
                }
            ]
        },
        True,
        None,
    ),
    # valid, but not run by meshctl workload-probe: warned
    (
        "WorkloadGroup",
        "grpc probe",
        {"template": {}, "probe": {"grpc": {"port": 8080}}},
        True,
        "spec.probe.grpc",
    ),
    ("WorkloadEntry", "uds directory", {"address": "unix:///dir/"}, False, "spec.address"),
    (
        "WorkloadEntry",
        "abstract uds with ports",
        {"address": "unix://@foo", "ports": {"http": 80}},
        False,
        "spec.ports",
    ),
    (
        "Gateway",
        "caCertCredentialName accepted",
        {
            "servers": [
                {
                    "port": HTTPS,
                    "hosts": ["*"],
                    "tls": {"mode": "MUTUAL", "credentialName": "c", "caCertCredentialName": "ca"},
                }
            ]
        },
        True,
        None,
    ),
    (
        "EnvoyFilter",
        "waypoint match outside WAYPOINT context",
        {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "context": "SIDECAR_INBOUND",
                        "waypoint": {"filter": {"name": "envoy.filters.network.http_connection_manager"}},
                    },
                    "patch": {"operation": "REMOVE"},
                }
            ]
        },
        False,
        "spec.configPatches[0].match.waypoint",
    ),
    (
        "EnvoyFilter",
        "listener match in WAYPOINT context",
        {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {"context": "WAYPOINT", "listener": {"portNumber": 80}},
                    "patch": {"operation": "REMOVE"},
                }
            ]
        },
        False,
        "spec.configPatches[0].match.listener",
    ),
    (
        "EnvoyFilter",
        "waypoint port out of range",
        {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {"context": "WAYPOINT", "waypoint": {"portNumber": 65536}},
                    "patch": {"operation": "REMOVE"},
                }
            ]
        },
        False,
        "spec.configPatches[0].match.waypoint.portNumber",
    ),
    ("ServiceEntry", "no spec hosts", {}, False, "spec.hosts"),
    (
        "ServiceEntry",
        "empty selector and endpoints",
        {"hosts": ["example.com"], "workloadSelector": {}, "endpoints": [{"address": "1.2.3.4"}]},
        False,
        "spec.workloadSelector",
    ),
    (
        "Telemetry",
        "cel filter with functions",
        {
            "accessLogging": [
                {"filter": {"expression": 'response.code >= 400 && request.url_path.startsWith("/api")'}}
            ]
        },
        True,
        None,
    ),
    (
        "Telemetry",
        "cel filter dangling operator",
        {"accessLogging": [{"filter": {"expression": "response.code >="}}]},
        False,
        "spec.accessLogging[0].filter.expression",
    ),
    ("ProxyConfig", "concurrency", {"concurrency": 2, "environmentVariables": {"A": "b"}}, True, None),
    ("ProxyConfig", "negative concurrency", {"concurrency": -1}, False, "spec.concurrency"),
    # EnvoyFilter values converted to Envoy's types
    (
        "EnvoyFilter",
        "lua filter converts",
        {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": HCM_MATCH,
                    "patch": {
                        "operation": "INSERT_BEFORE",
                        "value": {
                            "name": "envoy.filters.http.lua",
                            "typed_config": {
                                "@type": LUA,
                                "defaultSourceCode": {"inlineString": "function f() end"},
                            },
                        },
                    },
                }
            ]
        },
        True,
        "spec",
    ),
    (
        "EnvoyFilter",
        "unknown type url",
        {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "patch": {
                        "operation": "ADD",
                        "value": {"name": "x", "typed_config": {"@type": "type.googleapis.com/acme.v1.Nope"}},
                    },
                }
            ]
        },
        False,
        "spec.configPatches[0].patch.value",
    ),
    (
        "EnvoyFilter",
        "v2 type url",
        {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "patch": {
                        "operation": "ADD",
                        "value": {
                            "name": "x",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.config.filter.http.lua.v2.Lua"
                            },
                        },
                    },
                }
            ]
        },
        False,
        "spec.configPatches[0].patch.value",
    ),
    (
        "EnvoyFilter",
        "cluster field wrong type",
        {
            "configPatches": [
                {"applyTo": "CLUSTER", "patch": {"operation": "MERGE", "value": {"connect_timeout": 5}}}
            ]
        },
        False,
        "spec.configPatches[0].patch.value",
    ),
    (
        "EnvoyFilter",
        "cluster unknown field warns",
        {
            "configPatches": [
                {
                    "applyTo": "CLUSTER",
                    "patch": {
                        "operation": "MERGE",
                        "value": {"connectTimeout": "1s", "connectTimeoutz": "1s"},
                    },
                }
            ]
        },
        True,
        "spec.configPatches[0].patch.value",
    ),
    (
        "EnvoyFilter",
        "filter match on LISTENER warns",
        {"configPatches": [{"applyTo": "LISTENER", "match": HCM_MATCH, "patch": {"operation": "REMOVE"}}]},
        True,
        "spec.configPatches[0].match.listener.filterChain.filter",
    ),
    (
        "EnvoyFilter",
        "sub filter without name",
        {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "listener": {
                            "filterChain": {
                                "filter": {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "subFilter": {},
                                }
                            }
                        }
                    },
                    "patch": {"operation": "REMOVE"},
                }
            ]
        },
        False,
        "spec.configPatches[0].match.listener.filterChain.filter.subFilter.name",
    ),
]


@pytest.mark.parametrize(
    ("kind", "spec", "valid", "path"), [c[:1] + c[2:] for c in CASES], ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_istio_parity(check_case: Any, kind: str, spec: Any, valid: bool, path: str | None) -> None:
    check_case(kind, spec, valid, path)
