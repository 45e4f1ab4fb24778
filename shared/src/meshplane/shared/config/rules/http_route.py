"""Istio's rules for one VirtualService HTTP route: actions, weights, faults, retries, headers."""

from __future__ import annotations

from http import HTTPStatus

from meshplane.shared.config.checks.durations import check_duration
from meshplane.shared.config.checks.headers import (
    check_header_name,
    check_header_value,
    is_authority_header,
    is_internal_header,
)
from meshplane.shared.config.checks.hosts import is_istio_label
from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.ports import check_port
from meshplane.shared.config.checks.regex import check_regex
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.virtual_service import (
    GRPC_CODES,
    CorsPolicy,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    StringMatch,
)
from meshplane.shared.config.rules.routing import (
    check_destination,
    check_gateway_name,
    check_route_destinations,
    check_string_match,
    percentage_problem,
)

RETRY_POLICIES = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
GRPC_STATUSES = frozenset(GRPC_CODES)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"})
JWT_CLAIM_PREFIX = "@request.auth.claims"  # then ".a.b" or "[a][b]"
DIRECT_BODY_MAX = 1024 * 1024
DIRECT_BODY_WARN = 100 * 1024
_KNOWN_STATUSES = frozenset(int(s) for s in HTTPStatus)


def check_http_route(
    route: HTTPRoute, path: str, issues: Issues, *, gateway_bound: bool, in_delegate: bool
) -> None:
    """One entry of ``spec.http``; ``in_delegate`` when the VirtualService itself is a delegate."""
    _check_actions(route, path, issues, in_delegate=in_delegate)
    if route.redirect is not None:
        _check_redirect(route.redirect, f"{path}.redirect", issues)
    if route.direct_response is not None:
        _check_direct_response(route.direct_response, f"{path}.directResponse", issues)
    if route.delegate is not None:
        d = route.delegate
        if not d.name or not is_istio_label(d.name):
            issues.error(f"{path}.delegate.name", f"delegate name {d.name!r} must be a DNS-1123 label")
        if d.namespace is not None and not is_istio_label(d.namespace):
            issues.error(f"{path}.delegate.namespace", f"invalid namespace {d.namespace!r}")
    if route.route is not None:
        check_route_destinations(route.route, path, issues)
    if route.rewrite is not None:
        _check_rewrite(route.rewrite, f"{path}.rewrite", issues)
    for i, match in enumerate(route.match or []):
        _check_match(
            match, f"{path}.match[{i}]", issues, gateway_bound=gateway_bound, in_delegate=in_delegate
        )
    if route.timeout is not None and (problem := check_duration(route.timeout)):
        issues.error(f"{path}.timeout", problem)
    if route.retries is not None:
        _check_retries(route.retries, f"{path}.retries", issues)
    if route.fault is not None:
        _check_fault(route.fault, f"{path}.fault", issues)
    _check_mirrors(route, path, issues)
    if route.cors_policy is not None:
        _check_cors(route.cors_policy, f"{path}.corsPolicy", issues)
    authority = route.rewrite.authority if route.rewrite is not None else None
    if route.headers is not None:
        _check_headers(route.headers, f"{path}.headers", issues, authority)
    for i, dest in enumerate(route.route or []):
        if dest.headers is not None:
            _check_headers(dest.headers, f"{path}.route[{i}].headers", issues, None)


def _check_actions(route: HTTPRoute, path: str, issues: Issues, *, in_delegate: bool) -> None:
    if route.delegate is not None:
        if in_delegate:
            issues.error(f"{path}.delegate", "a delegate virtual service's HTTP route cannot itself delegate")
        for field in ("route", "redirect", "direct_response"):
            if getattr(route, field) is not None:
                issues.error(path, f"HTTP route with delegate must not also set {_camel(field)}")
        return
    actions = [n for n in ("route", "redirect", "direct_response") if getattr(route, n)]
    if not actions:
        issues.error(path, "HTTP route must have one of route, redirect or directResponse")
    elif len(actions) > 1:
        names = " and ".join(_camel(a) for a in actions)
        issues.error(path, f"HTTP route cannot contain both {names}")
    if route.redirect is not None or route.direct_response is not None:
        action = "redirect" if route.redirect is not None else "directResponse"
        for field in ("fault", "rewrite"):
            if getattr(route, field) is not None:
                issues.error(f"{path}.{field}", f"HTTP route cannot contain both {action} and {field}")


def _camel(name: str) -> str:
    return "directResponse" if name == "direct_response" else name


def _check_redirect(r: HTTPRedirect, path: str, issues: Issues) -> None:
    if not r.uri and not r.authority and r.port is None and not r.scheme and r.derive_port is None:
        issues.error(path, "redirect must specify uri, authority, scheme or port")
    if r.redirect_code is not None and not 300 <= r.redirect_code <= 399:
        issues.error(f"{path}.redirectCode", f"{r.redirect_code} is not a valid redirect code, must be 3xx")
    if r.scheme and r.scheme not in ("http", "https"):
        issues.error(f"{path}.scheme", f"invalid redirect scheme {r.scheme!r}, must be 'http' or 'https'")
    if r.port is not None and (problem := check_port(r.port)):
        issues.error(f"{path}.port", problem)
    if r.port is not None and r.derive_port is not None:
        issues.error(path, "only one of port or derivePort may be set")


def _check_direct_response(dr: HTTPDirectResponse, path: str, issues: Issues) -> None:
    if not 200 <= dr.status <= 600:
        issues.error(f"{path}.status", f"HTTP status {dr.status} is not in range 200-599")
    body = dr.body
    if body is None:
        return
    if body.string is not None and body.bytes is not None:
        issues.error(f"{path}.body", "only one of string or bytes may be set")
    size = len((body.string or body.bytes or "").encode())
    if size > DIRECT_BODY_MAX:
        issues.error(f"{path}.body", "direct response body must be smaller than 1MB")
    elif size > DIRECT_BODY_WARN:
        issues.warn(f"{path}.body", "large direct response bodies may impact control plane performance")


def _check_rewrite(rw: HTTPRewrite, path: str, issues: Issues) -> None:
    if rw.uri and rw.uri_regex_rewrite is not None:
        issues.error(path, "rewrite may only contain one of uri or uriRegexRewrite")
    if not rw.uri and not rw.authority and rw.uri_regex_rewrite is None:
        issues.error(path, "rewrite must specify at least one of uri, uriRegexRewrite or authority")
    regex = rw.uri_regex_rewrite
    if regex is not None:
        if not regex.match or not regex.rewrite:
            issues.error(f"{path}.uriRegexRewrite", "uriRegexRewrite requires both match and rewrite")
        elif problem := check_regex(regex.match):
            issues.error(f"{path}.uriRegexRewrite.match", problem)


def _check_match(
    match: HTTPMatchRequest, path: str, issues: Issues, *, gateway_bound: bool, in_delegate: bool
) -> None:
    allow_regex = not in_delegate
    # Plain attribute reads in field order (this runs for every match of every route).
    if match.uri is not None:
        check_string_match(match.uri, f"{path}.uri", issues, allow_regex=allow_regex)
    if match.scheme is not None:
        check_string_match(match.scheme, f"{path}.scheme", issues, allow_regex=allow_regex)
    if match.method is not None:
        check_string_match(match.method, f"{path}.method", issues, allow_regex=allow_regex)
    if match.authority is not None:
        check_string_match(match.authority, f"{path}.authority", issues, allow_regex=allow_regex)
    if match.headers:
        _check_header_matches(match.headers, f"{path}.headers", issues, gateway_bound, allow_regex)
    if match.without_headers:
        _check_header_matches(
            match.without_headers, f"{path}.withoutHeaders", issues, gateway_bound, allow_regex
        )
    if match.query_params:
        for name, sm in match.query_params.items():
            check_string_match(sm, f"{path}.queryParams.{name}", issues, allow_regex=allow_regex)
    if match.port is not None and match.port != 0 and (problem := check_port(match.port)):
        issues.error(f"{path}.port", problem)
    if match.source_labels:
        for key, problem in label_problems(match.source_labels):
            issues.error(f"{path}.sourceLabels.{key}", problem)
    if match.gateways:
        for i, gw in enumerate(match.gateways):
            check_gateway_name(gw, f"{path}.gateways[{i}]", issues)
    if match.source_namespace and not is_istio_label(match.source_namespace):
        issues.error(
            f"{path}.sourceNamespace", f"sourceNamespace match {match.source_namespace!r} is invalid"
        )


def _check_header_matches(
    headers: dict[str, StringMatch], path: str, issues: Issues, gateway_bound: bool, allow_regex: bool
) -> None:
    for name, sm in headers.items():
        hpath = f"{path}.{name}"
        if name.startswith(JWT_CLAIM_PREFIX):
            if not gateway_bound:
                issues.error(hpath, "JWT claim based routing is only supported for gateway-bound routes")
        elif problem := check_header_name(name):
            issues.error(hpath, problem)
        check_string_match(sm, hpath, issues, allow_regex=allow_regex)


def _check_retries(retries: HTTPRetry, path: str, issues: Issues) -> None:
    attempts = retries.attempts or 0
    if attempts < 0:
        issues.error(f"{path}.attempts", "attempts cannot be negative")
    configured = (
        retries.per_try_timeout is not None or retries.retry_on or retries.retry_remote_localities is not None
    )
    if attempts == 0 and configured:
        issues.error(path, "http retry policy configured when attempts are set to 0 (disabled)")
    if retries.per_try_timeout is not None and (problem := check_duration(retries.per_try_timeout)):
        issues.error(f"{path}.perTryTimeout", problem)
    if retries.backoff is not None and (problem := check_duration(retries.backoff)):
        issues.error(f"{path}.backoff", problem)
    if retries.retry_on:
        for token in retries.retry_on.split(","):
            if token in RETRY_POLICIES or (token.isdigit() and int(token) in _KNOWN_STATUSES):
                continue
            issues.error(f"{path}.retryOn", f"{token!r} is not a valid retryOn policy")


def _check_fault(fault: HTTPFaultInjection, path: str, issues: Issues) -> None:
    if fault.abort is None and fault.delay is None:
        issues.error(path, "HTTP fault injection must have an abort and/or a delay")
    if fault.abort is not None:
        abort = fault.abort
        kinds = [n for n in ("http_status", "grpc_status", "http2_error") if getattr(abort, n) is not None]
        if not kinds:
            issues.warn(f"{path}.abort", "abort configured, but error type not set")
        if len(kinds) > 1:
            issues.error(f"{path}.abort", "only one of httpStatus, grpcStatus or http2Error may be set")
        if abort.http2_error is not None:
            issues.error(f"{path}.abort.http2Error", "HTTP/2 abort fault injection is not supported yet")
        if abort.grpc_status is not None and abort.grpc_status not in GRPC_STATUSES:
            issues.error(
                f"{path}.abort.grpcStatus",
                f"gRPC status {abort.grpc_status!r} is not supported (use a code name such as 'NOT_FOUND')",
            )
        if abort.http_status is not None and not 200 <= abort.http_status <= 600:
            issues.error(
                f"{path}.abort.httpStatus", f"HTTP status {abort.http_status} is not in range 200-599"
            )
        if abort.percentage is not None and (problem := _fault_percentage(abort.percentage.value)):
            issues.error(f"{path}.abort.percentage", problem)
    if fault.delay is not None:
        delay = fault.delay
        if delay.exponential_delay is not None:
            issues.error(f"{path}.delay.exponentialDelay", "exponentialDelay is not supported yet")
        elif delay.fixed_delay is None:
            issues.error(f"{path}.delay", "delay must set fixedDelay")
        elif problem := check_duration(delay.fixed_delay):
            issues.error(f"{path}.delay.fixedDelay", problem)
        if delay.percentage is not None and (problem := _fault_percentage(delay.percentage.value)):
            issues.error(f"{path}.delay.percentage", problem)
        if delay.percent is not None and not 0 <= delay.percent <= 100:
            issues.error(f"{path}.delay.percent", f"percentage {delay.percent} is not in range 0..100")


def _fault_percentage(value: float | None) -> str | None:
    if value is None or value == 0:
        return None
    if value < 0.0001 or value > 100:
        return f"percentage {value} is neither 0.0, nor in range [0.0001, 100.0]"
    return None


def _check_mirrors(route: HTTPRoute, path: str, issues: Issues) -> None:
    if route.mirror is not None:
        check_destination(route.mirror, f"{path}.mirror", issues)
        if route.mirrors:
            issues.error(path, "only one of mirror or mirrors may be set")
    if route.mirror_percent is not None:
        issues.warn(f"{path}.mirrorPercent", "mirrorPercent is deprecated; use mirrorPercentage")
        if not 0 <= route.mirror_percent <= 100:
            issues.error(
                f"{path}.mirrorPercent",
                f"mirrorPercent must have a max value of 100 (it has {route.mirror_percent})",
            )
    if route.mirror_percentage is not None and (problem := percentage_problem(route.mirror_percentage.value)):
        issues.error(f"{path}.mirrorPercentage", problem)
    for i, mirror in enumerate(route.mirrors or []):
        check_destination(mirror.destination, f"{path}.mirrors[{i}].destination", issues)
        if mirror.percentage is not None and (problem := percentage_problem(mirror.percentage.value)):
            issues.error(f"{path}.mirrors[{i}].percentage", problem)


def _check_cors(cors: CorsPolicy, path: str, issues: Issues) -> None:
    for i, origin in enumerate(cors.allow_origins or []):
        opath = f"{path}.allowOrigins[{i}]"
        if not (origin.exact or origin.prefix or origin.regex):
            issues.error(opath, "an empty match is not a valid CORS allow origin")
        check_string_match(origin, opath, issues, allow_regex=True)
    for i, method in enumerate(cors.allow_methods or []):
        if method not in HTTP_METHODS:
            issues.error(f"{path}.allowMethods[{i}]", f"{method!r} is not a supported HTTP method")
    for field, alias in (("allow_headers", "allowHeaders"), ("expose_headers", "exposeHeaders")):
        for i, name in enumerate(getattr(cors, field) or []):
            if name != "*" and (problem := check_header_name(name)):
                issues.error(f"{path}.{alias}[{i}]", problem)
    if cors.max_age is not None:
        if problem := check_duration(cors.max_age):
            issues.error(f"{path}.maxAge", problem)
        elif cors.max_age.microseconds:
            issues.error(f"{path}.maxAge", "maxAge duration is accurate only to seconds precision")


def _check_headers(headers: Headers, path: str, issues: Issues, rewrite_authority: str | None) -> None:
    if headers.request is not None:
        _check_header_ops(headers.request, f"{path}.request", issues, request=True)
        authority = rewrite_authority or None
        for op in ("set", "add"):
            for name, value in (getattr(headers.request, op) or {}).items():
                if not is_authority_header(name):
                    continue
                if authority is not None:
                    issues.error(
                        f"{path}.request.{op}.{name}",
                        f"authority header cannot be set multiple times: "
                        f"have {authority!r}, attempting to set {value!r}",
                    )
                authority = value
    if headers.response is not None:
        _check_header_ops(headers.response, f"{path}.response", issues, request=False)


def _check_header_ops(ops: HeaderOperations, path: str, issues: Issues, *, request: bool) -> None:
    for op in ("set", "add"):
        for name, value in (getattr(ops, op) or {}).items():
            hpath = f"{path}.{op}.{name}"
            if not name:
                issues.error(hpath, "header name cannot be empty")
            elif request and is_authority_header(name):
                pass
            elif name.lower() == "host":
                issues.error(hpath, f"invalid header {name!r}: cannot set Host header")
            elif is_internal_header(name):
                issues.error(hpath, f"invalid header {name!r}: header cannot have ':' prefix")
            if problem := check_header_value(value):
                issues.error(hpath, problem)
    for i, name in enumerate(ops.remove or []):
        hpath = f"{path}.remove[{i}]"
        if not name:
            issues.error(hpath, "header name cannot be empty")
        elif is_internal_header(name):
            issues.error(hpath, f"invalid header {name!r}: pseudo-headers and Host cannot be removed")
