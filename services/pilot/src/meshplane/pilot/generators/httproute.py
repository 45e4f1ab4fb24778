"""VirtualService HTTP routes → Envoy routes: matches, destinations and every per-route policy."""

from __future__ import annotations

import base64
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from pydantic import BaseModel

from meshplane.pilot.generators.common import duration, istio_metadata, outbound, pack
from meshplane.pilot.generators.httppolicy import (
    cors_config,
    fault_config,
    fraction,
    header_matcher,
    retry_policy,
    string_matcher,
)
from meshplane.pilot.generators.security.authz_rbac import claim_matcher
from meshplane.pilot.model.config import Config, fqdn, given, labels_match
from meshplane.pilot.model.push_context import PushContext, fqdn_gateway
from meshplane.shared.config.models import (
    Destination,
    HTTPMatchRequest,
    HTTPRoute,
    L4MatchAttributes,
    Percent,
    StringMatch,
    TLSMatchAttributes,
    VirtualService,
)
from meshplane.shared.config.models.virtual_service import (
    HeaderOperations,
    HTTPMirrorPolicy,
    HTTPRedirect,
    RedirectPortSelection,
)

FAULT = "envoy.filters.http.fault"
CORS = "envoy.filters.http.cors"
#: The match of a route that has none: every request.
ANY_REQUEST = HTTPMatchRequest()
JWT_CLAIM_HEADER = "@request.auth.claims"


def jwt_claim(header: str) -> list[str] | None:
    """Istio's JWT-claim pseudo-header: ``@request.auth.claims.a.b`` or ``@request.auth.claims[a][b]``
    → the claim path ``[a, b]``; None for a real header (matched on the validated token's payload,
    which the gateway's jwt_authn filter keeps in metadata and re-routes after)."""
    if not header.lower().startswith(JWT_CLAIM_HEADER):
        return None
    rest = header[len(JWT_CLAIM_HEADER) :]
    if rest.startswith(".") and len(rest) > 1:
        return rest[1:].split(".")
    if rest.startswith("[") and rest.endswith("]") and len(rest) > 2:
        return rest[1:-1].split("][")
    return None


def route_match(m: HTTPMatchRequest) -> rc.RouteMatch:
    out = rc.RouteMatch()
    uri = m.uri or StringMatch()
    if uri.exact is not None:
        out.path = uri.exact
    elif uri.prefix is not None:
        out.prefix = uri.prefix
    elif uri.regex is not None:
        out.safe_regex.regex = uri.regex
    else:
        out.prefix = "/"
    if m.ignore_uri_case:
        out.case_sensitive.value = False
    for name, hm in (m.headers or {}).items():
        if (claim := jwt_claim(name)) is not None:
            out.dynamic_metadata.append(claim_matcher(claim, string_matcher(hm)))
        else:
            out.headers.append(header_matcher(name.lower(), hm))
    for name, hm in (m.without_headers or {}).items():
        if (claim := jwt_claim(name)) is not None:
            out.dynamic_metadata.append(claim_matcher(claim, string_matcher(hm)))
            out.dynamic_metadata[-1].invert = True
        else:
            out.headers.append(header_matcher(name.lower(), hm, invert=True))
    if given(m.method):
        out.headers.append(header_matcher(":method", m.method))
    if given(m.authority):
        out.headers.append(header_matcher(":authority", m.authority))
    if given(m.scheme):
        out.headers.append(header_matcher(":scheme", m.scheme))
    for name, qm in (m.query_params or {}).items():
        qp = rc.QueryParameterMatcher(name=name)
        sm = string_matcher(qm)
        if sm is None:
            qp.present_match = True
        else:
            qp.string_match.CopyFrom(sm)
        out.query_parameters.append(qp)
    return out


def _internal(key: str) -> bool:
    """A header Envoy does not let routes modify (Istio leaves them out): pseudo-headers and host."""
    return key.startswith(":") or key.lower() == "host"


def _headers_ops(ops: HeaderOperations | None, add: Any, remove: Any) -> str:
    """Header operations, as Istio: ``host``/``:authority`` in ``set`` (else ``add``) is returned
    as the authority to rewrite to; pseudo-headers and ``host`` are not added or removed."""
    if ops is None:
        return ""
    authority = ["", ""]  # from set, from add
    for i, (values, action) in enumerate(
        (
            (ops.set, base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
            (ops.add, base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD),
        )
    ):
        for key, value in sorted((values or {}).items()):
            if key.lower() in (":authority", "host"):
                authority[i] = value
            if not _internal(key):
                header = base_pb2.HeaderValue(key=key, value=value)
                add.append(base_pb2.HeaderValueOption(header=header, append_action=action))
    remove.extend(k for k in ops.remove or [] if not _internal(k))
    return authority[0] or authority[1]


def _cluster_for(dest: Destination, vs_ns: str, ctx: PushContext, default_port: int) -> str:
    host = fqdn(dest.host, vs_ns)
    port = (dest.port.number if dest.port else None) or 0
    if not port:
        svc = ctx.service(host)
        port = svc.ports[0].number if svc and len(svc.ports) == 1 else default_port
    return outbound(port, dest.subset or "", host)


_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


def _redirect(r: HTTPRedirect, port: int) -> rc.RedirectAction:
    """Istio's redirect: ``derivePort: FROM_REQUEST_PORT`` is the listener's port (routes are per
    port); an explicit port that is the scheme's default (http 80, https 443) is left out."""
    redirect = rc.RedirectAction()
    if r.uri:
        redirect.path_redirect = r.uri
    if r.authority:
        redirect.host_redirect = r.authority
    if r.scheme:
        redirect.scheme_redirect = r.scheme
    number = port if r.derive_port is RedirectPortSelection.FROM_REQUEST_PORT else r.port or 0
    if (number, r.scheme or "http") not in ((80, "http"), (443, "https")):
        redirect.port_redirect = number
    code = r.redirect_code if r.redirect_code is not None else 301
    redirect.response_code = _REDIRECT_CODES.get(code, rc.RedirectAction.MOVED_PERMANENTLY)
    return redirect


def translate(
    http: HTTPRoute,
    vs: Config[VirtualService],
    ctx: PushContext,
    port: int,
    match: HTTPMatchRequest | None = None,
) -> rc.Route:
    """One VirtualService HTTPRoute (with one of its matches) → one Envoy route."""
    match = match or ANY_REQUEST
    route = rc.Route(match=route_match(match))
    route.metadata.CopyFrom(istio_metadata([vs]))
    name = ".".join(n for n in (http.name, match.name) if n)  # Istio: "<route>.<match>"
    if name:
        route.name = name
    if match.stat_prefix:
        route.stat_prefix = match.stat_prefix
    authority = ""
    hdrs = http.headers
    if hdrs is not None:
        authority = _headers_ops(hdrs.request, route.request_headers_to_add, route.request_headers_to_remove)
        _headers_ops(hdrs.response, route.response_headers_to_add, route.response_headers_to_remove)
    if http.redirect is not None:
        route.redirect.CopyFrom(_redirect(http.redirect, port))
    elif http.direct_response is not None:
        d = http.direct_response
        route.direct_response.status = d.status
        if d.body is not None and d.body.string is not None:
            route.direct_response.body.inline_string = d.body.string
        elif d.body is not None and d.body.bytes is not None:
            route.direct_response.body.inline_bytes = base64.b64decode(d.body.bytes)
    else:
        _route_action(route, http, vs, ctx, port, match, authority)
    if given(http.fault):
        route.typed_per_filter_config[FAULT].CopyFrom(pack(fault_config(http.fault)))
    if given(http.cors_policy):
        route.typed_per_filter_config[CORS].CopyFrom(pack(cors_config(http.cors_policy)))
    return route


def _route_action(
    route: rc.Route,
    http: HTTPRoute,
    vs: Config[VirtualService],
    ctx: PushContext,
    port: int,
    match: HTTPMatchRequest,
    authority: str,
) -> None:
    """``authority``: from the route's header operations (a rewrite's ``authority`` wins)."""
    action = rc.RouteAction()
    dests = http.route or []
    if len(dests) == 1:
        action.cluster = _cluster_for(dests[0].destination, vs.namespace, ctx, port)
    else:
        for d in dests:
            wc = action.weighted_clusters.clusters.add()
            wc.name = _cluster_for(d.destination, vs.namespace, ctx, port)
            wc.weight.value = d.weight or 0
            if d.headers is not None:
                dh = d.headers
                own = _headers_ops(dh.request, wc.request_headers_to_add, wc.request_headers_to_remove)
                _headers_ops(dh.response, wc.response_headers_to_add, wc.response_headers_to_remove)
                if own:
                    wc.host_rewrite_literal = own
        if not any(wc.weight.value for wc in action.weighted_clusters.clusters):
            for wc in action.weighted_clusters.clusters:
                wc.weight.value = 1
    if len(dests) == 1 and dests[0].headers is not None:
        dh = dests[0].headers
        own = _headers_ops(dh.request, route.request_headers_to_add, route.request_headers_to_remove)
        _headers_ops(dh.response, route.response_headers_to_add, route.response_headers_to_remove)
        authority = authority or own
    timeout = duration(http.timeout)
    action.timeout.CopyFrom(timeout if timeout is not None else duration(0))
    rewrite = http.rewrite
    if rewrite is not None and rewrite.uri is not None:
        uri_match = match.uri
        if not given(uri_match) or uri_match.prefix is not None:
            action.prefix_rewrite = rewrite.uri
        else:
            action.regex_rewrite.pattern.regex = ".*"
            action.regex_rewrite.substitution = rewrite.uri
    elif rewrite is not None and rewrite.uri_regex_rewrite is not None:
        action.regex_rewrite.pattern.regex = rewrite.uri_regex_rewrite.match or ""
        action.regex_rewrite.substitution = rewrite.uri_regex_rewrite.rewrite or ""
    if rewrite is not None and rewrite.authority:
        authority = rewrite.authority
    if authority:
        action.host_rewrite_literal = authority
    mirrors = list(http.mirrors or [])
    if http.mirror is not None:
        percentage = http.mirror_percentage
        if percentage is None and http.mirror_percent is not None:  # the deprecated integer form
            percentage = Percent(value=float(http.mirror_percent))
        mirrors.append(HTTPMirrorPolicy.model_construct(destination=http.mirror, percentage=percentage))
    for m in mirrors:
        mp = action.request_mirror_policies.add()
        mp.cluster = _cluster_for(m.destination, vs.namespace, ctx, port)
        pct = m.percentage
        value = (pct.value if pct.value is not None else 100.0) if pct is not None else 100.0
        mp.runtime_fraction.default_value.CopyFrom(fraction(value))
    first = action.cluster or (
        action.weighted_clusters.clusters[0].name if action.weighted_clusters.clusters else ""
    )
    hash_policy = hash_policy_for(ctx, first, vs.namespace)
    if hash_policy is not None:
        action.hash_policy.append(hash_policy)
    retry = retry_policy(http.retries, consistent_hash=hash_policy is not None)
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    route.route.CopyFrom(action)


def hash_policy_for(ctx: PushContext, cluster: str, viewer_ns: str) -> rc.RouteAction.HashPolicy | None:
    """consistentHash from the destination's DestinationRule becomes the route's hash policy."""
    parts = cluster.split("|")
    if len(parts) != 4:
        return None
    dr = ctx.destination_rule(viewer_ns, parts[3])
    if dr is None:
        return None
    lb = dr.spec.traffic_policy.load_balancer if dr.spec.traffic_policy else None
    for sub in dr.spec.subsets or []:
        if sub.name == parts[2] and sub.traffic_policy and given(sub.traffic_policy.load_balancer):
            lb = sub.traffic_policy.load_balancer
    ch = lb.consistent_hash if lb else None
    if not given(ch):
        return None
    hp = rc.RouteAction.HashPolicy()
    if ch.http_header_name:
        hp.header.header_name = ch.http_header_name
    elif given(ch.http_cookie):
        cookie = ch.http_cookie
        hp.cookie.name = cookie.name or ""
        if cookie.path:
            hp.cookie.path = cookie.path
        ttl = duration(cookie.ttl)
        if ttl is not None:
            hp.cookie.ttl.CopyFrom(ttl)
    elif ch.use_source_ip:
        hp.connection_properties.source_ip = True
    elif ch.http_query_parameter_name:
        hp.query_parameter.name = ch.http_query_parameter_name
    else:
        return None
    return hp


def matches_context(
    m: HTTPMatchRequest | TLSMatchAttributes | L4MatchAttributes,
    proxy_labels: dict[str, str],
    gateway: str | None,
    port: int,
    proxy_namespace: str = "",
    vs_namespace: str = "",
) -> bool:
    """Whether a match's conditions on where the request comes from (the proxy: its labels and
    namespace, the gateway or mesh, the listener port) hold for the proxy being generated for.
    ``gateway`` is ``namespace/name`` (None: the mesh); the match's gateway names are resolved
    against the VirtualService's namespace, as its ``gateways`` are."""
    if m.port and m.port != port:
        return False
    if m.source_labels and not labels_match(m.source_labels, proxy_labels):
        return False
    if m.source_namespace and m.source_namespace != proxy_namespace:
        return False
    gws = m.gateways
    if gws:
        if gateway is None:
            return "mesh" in gws
        return any(fqdn_gateway(g, vs_namespace) == gateway for g in gws)
    return True


def _set(value: object) -> bool:
    """A match field that takes part in a delegate's merge: non-empty (as Istio's merge)."""
    return given(value) if isinstance(value, BaseModel) else bool(value)


def _merged_match(parent: HTTPMatchRequest | None, child: HTTPMatchRequest) -> HTTPMatchRequest:
    """A delegate's match inside its parent's: the parent's fields, replaced by each the child sets."""
    own = {k: v for k in child.model_fields_set if _set(v := getattr(child, k))}
    if parent is None and len(own) == len(child.model_fields_set):
        return child  # nothing to merge or drop: the child as it is
    fields = {k: getattr(parent, k) for k in parent.model_fields_set} if parent is not None else {}
    fields.update(own)
    return HTTPMatchRequest.model_construct(_fields_set=set(fields), **fields)


def routes_for(
    vs: Config[VirtualService],
    ctx: PushContext,
    port: int,
    proxy_labels: dict[str, str],
    gateway: str | None,
    parent: HTTPMatchRequest | None = None,
    proxy_namespace: str = "",
) -> list[rc.Route]:
    """All Envoy routes of one VirtualService (delegates expanded) in declaration order."""
    out: list[rc.Route] = []
    for http in vs.spec.http or []:
        matches = [
            m
            for m in (http.match or [ANY_REQUEST])
            if matches_context(m, proxy_labels, gateway, port, proxy_namespace, vs.namespace)
        ]
        if not matches:
            continue
        if given(http.delegate):
            d = http.delegate
            child = ctx.delegate(str(d.name), d.namespace or vs.namespace)
            if child is not None:
                for m in matches:
                    out.extend(routes_for(child, ctx, port, proxy_labels, gateway, m, proxy_namespace))
            continue
        for m in matches:
            out.append(translate(http, vs, ctx, port, _merged_match(parent, m)))
    return out
