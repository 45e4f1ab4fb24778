"""VirtualService HTTP routes → Envoy routes: matches, destinations and every per-route policy."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2

from meshplane.pilot.generators.common import duration, istio_metadata, outbound, pack, previous_hosts
from meshplane.pilot.model.config import Config, fqdn, labels_match
from meshplane.pilot.model.push_context import PushContext

Spec = dict[str, Any]
FAULT = "envoy.filters.http.fault"
CORS = "envoy.filters.http.cors"


def _string_matcher(m: Spec, ignore_case: bool = False) -> string_pb2.StringMatcher | None:
    if "exact" in m:
        return string_pb2.StringMatcher(exact=str(m["exact"]), ignore_case=ignore_case)
    if "prefix" in m:
        return string_pb2.StringMatcher(prefix=str(m["prefix"]), ignore_case=ignore_case)
    if "regex" in m:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=str(m["regex"])))
    return None


def _header(name: str, m: Spec | None, invert: bool = False) -> rc.HeaderMatcher:
    hm = rc.HeaderMatcher(name=name, invert_match=invert)
    sm = _string_matcher(m or {})
    if sm is None:
        hm.present_match = True
    else:
        hm.string_match.CopyFrom(sm)
    return hm


def route_match(m: Spec) -> rc.RouteMatch:
    out = rc.RouteMatch()
    uri = m.get("uri") or {}
    ignore = bool(m.get("ignoreUriCase"))
    if "exact" in uri:
        out.path = str(uri["exact"])
    elif "prefix" in uri:
        out.prefix = str(uri["prefix"])
    elif "regex" in uri:
        out.safe_regex.regex = str(uri["regex"])
    else:
        out.prefix = "/"
    if ignore:
        out.case_sensitive.value = False
    for name, hm in (m.get("headers") or {}).items():
        out.headers.append(_header(str(name).lower(), hm))
    for name, hm in (m.get("withoutHeaders") or {}).items():
        out.headers.append(_header(str(name).lower(), hm, invert=True))
    if m.get("method"):
        out.headers.append(_header(":method", m["method"]))
    if m.get("authority"):
        out.headers.append(_header(":authority", m["authority"]))
    if m.get("scheme"):
        out.headers.append(_header(":scheme", m["scheme"]))
    for name, qm in (m.get("queryParams") or {}).items():
        qp = rc.QueryParameterMatcher(name=str(name))
        sm = _string_matcher(qm or {})
        if sm is None:
            qp.present_match = True
        else:
            qp.string_match.CopyFrom(sm)
        out.query_parameters.append(qp)
    return out


def _percent(value: Any) -> percent_pb2.FractionalPercent:
    """Istio percentages (0-100, float) → millionths."""
    pct = float(value.get("value", 0) if isinstance(value, dict) else value)
    return percent_pb2.FractionalPercent(
        numerator=int(round(pct * 10000)), denominator=percent_pb2.FractionalPercent.MILLION
    )


def _headers_ops(ops: Spec, add: Any, remove: Any) -> None:
    for key, value in (ops.get("set") or {}).items():
        add.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=str(key), value=str(value)),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        )
    for key, value in (ops.get("add") or {}).items():
        add.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=str(key), value=str(value)),
                append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
            )
        )
    remove.extend(str(h) for h in ops.get("remove") or [])


def _cluster_for(dest: Spec, vs_ns: str, ctx: PushContext, default_port: int) -> str:
    host = fqdn(str(dest.get("host", "")), vs_ns)
    port = int((dest.get("port") or {}).get("number", 0))
    if not port:
        svc = ctx.service(host)
        port = svc.ports[0].number if svc and len(svc.ports) == 1 else default_port
    return outbound(port, str(dest.get("subset") or ""), host)


def _fault(fault: Spec) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    delay = fault.get("delay")
    if delay:
        d = duration(delay.get("fixedDelay") or delay.get("exponentialDelay"))
        if d is not None:
            out.delay.fixed_delay.CopyFrom(d)
        out.delay.percentage.CopyFrom(_percent(delay.get("percentage", delay.get("percent", 100))))
    abort = fault.get("abort")
    if abort:
        if "httpStatus" in abort:
            out.abort.http_status = int(abort["httpStatus"])
        elif "grpcStatus" in abort:
            out.abort.grpc_status = int(abort["grpcStatus"]) if str(abort["grpcStatus"]).isdigit() else 14
        out.abort.percentage.CopyFrom(_percent(abort.get("percentage", abort.get("percent", 100))))
    return out


def _cors(policy: Spec) -> cors_pb2.CorsPolicy:
    out = cors_pb2.CorsPolicy()
    for origin in policy.get("allowOrigins") or []:
        sm = _string_matcher(origin)
        if sm is not None:
            out.allow_origin_string_match.append(sm)
    for origin in policy.get("allowOrigin") or []:
        out.allow_origin_string_match.append(string_pb2.StringMatcher(exact=str(origin)))
    out.allow_methods = ",".join(policy.get("allowMethods") or [])
    out.allow_headers = ",".join(policy.get("allowHeaders") or [])
    out.expose_headers = ",".join(policy.get("exposeHeaders") or [])
    if policy.get("maxAge"):
        d = duration(policy["maxAge"])
        out.max_age = str(d.seconds) if d is not None else ""
    if "allowCredentials" in policy:
        out.allow_credentials.value = bool(policy["allowCredentials"])
    if str(policy.get("unmatchedPreflights", "")).upper() == "IGNORE":
        out.forward_not_matching_preflights.value = False  # Envoy answers them; the app never sees them
    return out


def _retry(retries: Spec | None) -> rc.RetryPolicy | None:
    """Istio's default retry policy (2 attempts) unless ``attempts: 0`` disables it."""
    retries = retries if retries is not None else {}
    attempts = int(retries.get("attempts", 2))
    if attempts == 0:
        return None
    policy = rc.RetryPolicy(
        retry_on=str(
            retries.get("retryOn")
            or "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
        )
    )
    policy.num_retries.value = attempts
    if "retriable-status-codes" in policy.retry_on:
        policy.retriable_status_codes.append(503)
    extra = [c for c in policy.retry_on.split(",") if c.isdigit()]
    if extra:
        policy.retriable_status_codes.extend(int(c) for c in extra)
        policy.retry_on = ",".join(c for c in policy.retry_on.split(",") if not c.isdigit())
        if "retriable-status-codes" not in policy.retry_on:
            policy.retry_on += ",retriable-status-codes"
    per_try = duration(retries.get("perTryTimeout"))
    if per_try is not None:
        policy.per_try_timeout.CopyFrom(per_try)
    previous_hosts(policy)
    return policy


def translate(http: Spec, vs: Config, ctx: PushContext, port: int, match: Spec | None = None) -> rc.Route:
    """One VirtualService HTTPRoute (with one of its matches) → one Envoy route."""
    route = rc.Route(match=route_match(match or {}))
    route.metadata.CopyFrom(istio_metadata([vs]))
    if http.get("name"):
        route.name = str(http["name"])
    if "redirect" in http:
        r = http["redirect"] or {}
        redirect = rc.RedirectAction()
        if r.get("uri"):
            redirect.path_redirect = str(r["uri"])
        if r.get("authority"):
            redirect.host_redirect = str(r["authority"])
        if r.get("scheme"):
            redirect.scheme_redirect = str(r["scheme"])
        if r.get("port"):
            redirect.port_redirect = int(r["port"])
        codes = {
            301: rc.RedirectAction.MOVED_PERMANENTLY,
            302: rc.RedirectAction.FOUND,
            303: rc.RedirectAction.SEE_OTHER,
            307: rc.RedirectAction.TEMPORARY_REDIRECT,
            308: rc.RedirectAction.PERMANENT_REDIRECT,
        }
        redirect.response_code = codes.get(
            int(r.get("redirectCode", 301)), rc.RedirectAction.MOVED_PERMANENTLY
        )
        route.redirect.CopyFrom(redirect)
    elif "directResponse" in http:
        d = http["directResponse"] or {}
        route.direct_response.status = int(d.get("status", 200))
        body = d.get("body") or {}
        if "string" in body:
            route.direct_response.body.inline_string = str(body["string"])
    else:
        _route_action(route, http, vs, ctx, port, match or {})
    hdrs = http.get("headers") or {}
    _headers_ops(hdrs.get("request") or {}, route.request_headers_to_add, route.request_headers_to_remove)
    _headers_ops(hdrs.get("response") or {}, route.response_headers_to_add, route.response_headers_to_remove)
    if http.get("fault"):
        route.typed_per_filter_config[FAULT].CopyFrom(pack(_fault(http["fault"])))
    if http.get("corsPolicy"):
        route.typed_per_filter_config[CORS].CopyFrom(pack(_cors(http["corsPolicy"])))
    return route


def _route_action(route: rc.Route, http: Spec, vs: Config, ctx: PushContext, port: int, match: Spec) -> None:
    action = rc.RouteAction()
    dests = http.get("route") or []
    if len(dests) == 1:
        action.cluster = _cluster_for(dests[0].get("destination") or {}, vs.namespace, ctx, port)
    else:
        for d in dests:
            wc = action.weighted_clusters.clusters.add()
            wc.name = _cluster_for(d.get("destination") or {}, vs.namespace, ctx, port)
            wc.weight.value = int(d.get("weight", 0))
            dh = d.get("headers") or {}
            _headers_ops(dh.get("request") or {}, wc.request_headers_to_add, wc.request_headers_to_remove)
            _headers_ops(dh.get("response") or {}, wc.response_headers_to_add, wc.response_headers_to_remove)
        if not any(wc.weight.value for wc in action.weighted_clusters.clusters):
            for wc in action.weighted_clusters.clusters:
                wc.weight.value = 1
    if len(dests) == 1:
        dh = dests[0].get("headers") or {}
        _headers_ops(dh.get("request") or {}, route.request_headers_to_add, route.request_headers_to_remove)
        _headers_ops(
            dh.get("response") or {}, route.response_headers_to_add, route.response_headers_to_remove
        )
    timeout = duration(http.get("timeout"))
    action.timeout.CopyFrom(timeout if timeout is not None else duration(0))
    retry = _retry(http.get("retries"))
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    rewrite = http.get("rewrite") or {}
    if rewrite.get("uri") is not None and "uri" in rewrite:
        uri_match = match.get("uri") or {}
        if "prefix" in uri_match or not uri_match:
            action.prefix_rewrite = str(rewrite["uri"])
        else:
            action.regex_rewrite.pattern.regex = ".*"
            action.regex_rewrite.substitution = str(rewrite["uri"])
    if rewrite.get("authority"):
        action.host_rewrite_literal = str(rewrite["authority"])
    mirrors = list(http.get("mirrors") or [])
    if http.get("mirror"):
        mirrors.append({"destination": http["mirror"], "percentage": http.get("mirrorPercentage")})
    for m in mirrors:
        mp = action.request_mirror_policies.add()
        mp.cluster = _cluster_for(m.get("destination") or {}, vs.namespace, ctx, port)
        pct = m.get("percentage")
        value = float(pct.get("value", 100)) if isinstance(pct, dict) else 100.0
        mp.runtime_fraction.default_value.CopyFrom(_percent(value))
    first = action.cluster or (
        action.weighted_clusters.clusters[0].name if action.weighted_clusters.clusters else ""
    )
    hash_policy = hash_policy_for(ctx, first, vs.namespace)
    if hash_policy is not None:
        action.hash_policy.append(hash_policy)
    route.route.CopyFrom(action)


def hash_policy_for(ctx: PushContext, cluster: str, viewer_ns: str) -> rc.RouteAction.HashPolicy | None:
    """consistentHash from the destination's DestinationRule becomes the route's hash policy."""
    parts = cluster.split("|")
    if len(parts) != 4:
        return None
    dr = ctx.destination_rule(viewer_ns, parts[3])
    if dr is None:
        return None
    lb = (dr.spec.get("trafficPolicy") or {}).get("loadBalancer") or {}
    for sub in dr.spec.get("subsets") or []:
        if sub.get("name") == parts[2] and (sub.get("trafficPolicy") or {}).get("loadBalancer"):
            lb = sub["trafficPolicy"]["loadBalancer"]
    ch = lb.get("consistentHash")
    if not ch:
        return None
    hp = rc.RouteAction.HashPolicy()
    if ch.get("httpHeaderName"):
        hp.header.header_name = str(ch["httpHeaderName"])
    elif ch.get("httpCookie"):
        cookie = ch["httpCookie"]
        hp.cookie.name = str(cookie.get("name", ""))
        if cookie.get("path"):
            hp.cookie.path = str(cookie["path"])
        ttl = duration(cookie.get("ttl"))
        if ttl is not None:
            hp.cookie.ttl.CopyFrom(ttl)
    elif ch.get("useSourceIp"):
        hp.connection_properties.source_ip = True
    elif ch.get("httpQueryParameterName"):
        hp.query_parameter.name = str(ch["httpQueryParameterName"])
    else:
        return None
    return hp


def matches_context(
    m: Spec, proxy_labels: dict[str, str], gateway: str | None, port: int, proxy_namespace: str = ""
) -> bool:
    """Whether a match's conditions on where the request comes from (the proxy: its labels and
    namespace, the gateway or mesh, the listener port) hold for the proxy being generated for."""
    if m.get("port") and int(m["port"]) != port:
        return False
    if m.get("sourceLabels") and not labels_match(m["sourceLabels"], proxy_labels):
        return False
    if m.get("sourceNamespace") and str(m["sourceNamespace"]) != proxy_namespace:
        return False
    gws = m.get("gateways")
    if gws:
        return (gateway or "mesh") in gws or any(
            g.endswith("/" + (gateway or "").split("/")[-1]) for g in gws
        )
    return True


def routes_for(
    vs: Config,
    ctx: PushContext,
    port: int,
    proxy_labels: dict[str, str],
    gateway: str | None,
    parent: Spec | None = None,
    proxy_namespace: str = "",
) -> list[rc.Route]:
    """All Envoy routes of one VirtualService (delegates expanded) in declaration order."""
    out: list[rc.Route] = []
    for http in vs.spec.get("http") or []:
        matches = [
            m
            for m in (http.get("match") or [{}])
            if matches_context(m, proxy_labels, gateway, port, proxy_namespace)
        ]
        if not matches:
            continue
        if http.get("delegate"):
            d = http["delegate"]
            child = ctx.delegate(str(d.get("name")), str(d.get("namespace") or vs.namespace))
            if child is not None:
                for m in matches:
                    out.extend(routes_for(child, ctx, port, proxy_labels, gateway, m, proxy_namespace))
            continue
        for m in matches:
            merged = dict(parent or {})
            merged.update({k: v for k, v in m.items() if v})
            out.append(translate(http, vs, ctx, port, merged))
    return out
