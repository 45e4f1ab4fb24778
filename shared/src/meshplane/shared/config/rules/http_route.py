"""Istio's rules for one VirtualService HTTP route: actions, weights, faults, retries, headers."""

from __future__ import annotations

from meshplane.shared.config.checks.durations import check_duration
from meshplane.shared.config.checks.headers import check_header_name, is_pseudo_or_host
from meshplane.shared.config.checks.hosts import is_dns1123_label
from meshplane.shared.config.checks.ports import check_port
from meshplane.shared.config.checks.regex import check_regex
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.virtual_service import (
    CorsPolicy,
    HeaderOperations,
    Headers,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
)
from meshplane.shared.config.rules.routing import (
    check_destination,
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
CORS_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*"}
)
JWT_CLAIM_PREFIX = "@request.auth.claims"


def check_http_route(route: HTTPRoute, path: str, issues: Issues, *, gateway_bound: bool) -> None:
    actions = [
        n for n in ("route", "redirect", "direct_response", "delegate") if getattr(route, n) is not None
    ]
    if not actions:
        issues.error(path, "HTTP route must have one of route, redirect, directResponse or delegate")
    elif len(actions) > 1:
        names = ", ".join(_camel(a) for a in actions)
        issues.error(
            path, f"HTTP route may have only one of route, redirect, directResponse or delegate ({names})"
        )
    if route.redirect is not None:
        for field in ("fault", "rewrite"):
            if getattr(route, field) is not None:
                issues.error(f"{path}.{field}", f"HTTP route cannot contain both redirect and {field}")
        r = route.redirect
        if not r.uri and not r.authority and r.port is None and r.scheme is None and r.derive_port is None:
            issues.error(
                f"{path}.redirect", "redirect must specify uri, authority, port, scheme or derivePort"
            )
        if r.redirect_code is not None and not 300 <= r.redirect_code <= 399:
            issues.error(f"{path}.redirect.redirectCode", f"redirect code {r.redirect_code} must be 3xx")
        if r.port is not None and (problem := check_port(r.port)):
            issues.error(f"{path}.redirect.port", problem)
        if r.port is not None and r.derive_port is not None:
            issues.error(f"{path}.redirect", "only one of port or derivePort may be set")
    if route.direct_response is not None:
        status = route.direct_response.status
        if not 200 <= status <= 599:
            issues.error(f"{path}.directResponse.status", f"status {status} must be in the range 200..599")
        body = route.direct_response.body
        if body is not None and body.string is not None and body.bytes is not None:
            issues.error(f"{path}.directResponse.body", "only one of string or bytes may be set")
    if route.delegate is not None:
        d = route.delegate
        if not d.name or not is_dns1123_label(d.name):
            issues.error(f"{path}.delegate.name", f"delegate name {d.name!r} must be a DNS-1123 label")
        if d.namespace is not None and not is_dns1123_label(d.namespace):
            issues.error(f"{path}.delegate.namespace", f"invalid namespace {d.namespace!r}")
    if route.route is not None:
        check_route_destinations(route.route, path, issues)
    if route.rewrite is not None:
        rw = route.rewrite
        rw_path = f"{path}.rewrite"
        if not rw.uri and not rw.authority and rw.uri_regex_rewrite is None:
            issues.error(rw_path, "rewrite must specify uri, authority or uriRegexRewrite")
        if rw.uri and rw.uri_regex_rewrite is not None:
            issues.error(rw_path, "rewrite may not set both uri and uriRegexRewrite")
        if rw.uri_regex_rewrite is not None and (problem := check_regex(rw.uri_regex_rewrite.match or "")):
            issues.error(f"{rw_path}.uriRegexRewrite.match", problem)
    for i, match in enumerate(route.match or []):
        _check_match(match, f"{path}.match[{i}]", issues, gateway_bound=gateway_bound)
    if route.timeout is not None and (problem := check_duration(route.timeout)):
        issues.error(f"{path}.timeout", problem)
    if route.retries is not None:
        _check_retries(route.retries, f"{path}.retries", issues)
    if route.fault is not None:
        _check_fault(route.fault, f"{path}.fault", issues)
    _check_mirrors(route, path, issues)
    if route.cors_policy is not None:
        _check_cors(route.cors_policy, f"{path}.corsPolicy", issues)
    authority_rewritten = route.rewrite is not None and bool(route.rewrite.authority)
    if route.headers is not None:
        _check_headers(route.headers, f"{path}.headers", issues, authority_rewritten)
    for i, dest in enumerate(route.route or []):
        if dest.headers is not None:
            _check_headers(dest.headers, f"{path}.route[{i}].headers", issues, authority_rewritten)


def _camel(name: str) -> str:
    return "directResponse" if name == "direct_response" else name


def _check_match(match: HTTPMatchRequest, path: str, issues: Issues, *, gateway_bound: bool) -> None:
    for field in ("uri", "scheme", "method", "authority"):
        sm = getattr(match, field)
        if sm is not None:
            check_string_match(sm, f"{path}.{field}", issues)
    for field, alias in (("headers", "headers"), ("without_headers", "withoutHeaders")):
        for name, sm in (getattr(match, field) or {}).items():
            hpath = f"{path}.{alias}.{name}"
            if name.startswith(JWT_CLAIM_PREFIX):
                if not gateway_bound:
                    issues.error(hpath, "JWT claim based routing is only supported for gateway-bound routes")
            elif problem := check_header_name(name):
                issues.error(hpath, problem)
            check_string_match(sm, hpath, issues)
    for name, sm in (match.query_params or {}).items():
        check_string_match(sm, f"{path}.queryParams.{name}", issues)
    if match.port is not None and (problem := check_port(match.port)):
        issues.error(f"{path}.port", problem)
    if match.source_namespace is not None and not is_dns1123_label(match.source_namespace):
        issues.error(f"{path}.sourceNamespace", f"invalid namespace {match.source_namespace!r}")


def _check_retries(retries: HTTPRetry, path: str, issues: Issues) -> None:
    attempts = retries.attempts or 0
    if attempts < 0:
        issues.error(f"{path}.attempts", "attempts cannot be negative")
    if attempts == 0 and (retries.per_try_timeout is not None or retries.retry_on is not None):
        issues.error(path, "perTryTimeout and retryOn cannot be set when attempts is 0")
    if retries.per_try_timeout is not None and (problem := check_duration(retries.per_try_timeout)):
        issues.error(f"{path}.perTryTimeout", problem)
    if retries.backoff is not None and (problem := check_duration(retries.backoff)):
        issues.error(f"{path}.backoff", problem)
    for token in (retries.retry_on or "").split(","):
        token = token.strip()
        if not token or token in RETRY_POLICIES:
            continue
        if token.isdigit() and 100 <= int(token) <= 599:
            continue
        issues.error(f"{path}.retryOn", f"{token!r} is not a valid retryOn policy")


def _check_fault(fault: HTTPFaultInjection, path: str, issues: Issues) -> None:
    if fault.abort is None and fault.delay is None:
        issues.error(path, "fault must have an abort and/or a delay")
    if fault.abort is not None:
        abort = fault.abort
        kinds = [n for n in ("http_status", "grpc_status", "http2_error") if getattr(abort, n) is not None]
        if not kinds:
            issues.error(f"{path}.abort", "abort must set httpStatus, grpcStatus or http2Error")
        if abort.http2_error is not None:
            issues.error(f"{path}.abort.http2Error", "HTTP/2 abort fault injection is not supported")
        if abort.http_status is not None and not 200 <= abort.http_status <= 600:
            issues.error(f"{path}.abort.httpStatus", "http status must be in the range 200-599")
        if abort.percentage is not None and (problem := _fault_percentage(abort.percentage.value)):
            issues.error(f"{path}.abort.percentage", problem)
    if fault.delay is not None:
        delay = fault.delay
        if delay.exponential_delay is not None:
            issues.error(f"{path}.delay.exponentialDelay", "exponentialDelay is not supported")
        elif delay.fixed_delay is None:
            issues.error(f"{path}.delay", "delay must set fixedDelay")
        elif problem := check_duration(delay.fixed_delay):
            issues.error(f"{path}.delay.fixedDelay", problem)
        if delay.percentage is not None and (problem := _fault_percentage(delay.percentage.value)):
            issues.error(f"{path}.delay.percentage", problem)
        if delay.percent is not None and not 0 <= delay.percent <= 100:
            issues.error(f"{path}.delay.percent", "percentage must be in the range 0..100")


def _fault_percentage(value: float | None) -> str | None:
    if value is None or value == 0:
        return None
    if value < 0.0001 or value > 100:
        return f"percentage {value} must be 0 or in the range 0.0001..100"
    return None


def _check_mirrors(route: HTTPRoute, path: str, issues: Issues) -> None:
    if route.mirror is not None:
        check_destination(route.mirror, f"{path}.mirror", issues)
        if route.mirrors:
            issues.error(path, "only one of mirror or mirrors may be set")
    if route.mirror_percent is not None and not 0 <= route.mirror_percent <= 100:
        issues.error(f"{path}.mirrorPercent", "mirror percentage must be in the range 0..100")
    if route.mirror_percentage is not None and (problem := percentage_problem(route.mirror_percentage.value)):
        issues.error(f"{path}.mirrorPercentage", problem)
    for i, mirror in enumerate(route.mirrors or []):
        check_destination(mirror.destination, f"{path}.mirrors[{i}].destination", issues)
        if mirror.percentage is not None and (problem := percentage_problem(mirror.percentage.value)):
            issues.error(f"{path}.mirrors[{i}].percentage", problem)


def _check_cors(cors: CorsPolicy, path: str, issues: Issues) -> None:
    for i, origin in enumerate(cors.allow_origins or []):
        check_string_match(origin, f"{path}.allowOrigins[{i}]", issues)
    for i, method in enumerate(cors.allow_methods or []):
        if method not in CORS_METHODS:
            issues.error(f"{path}.allowMethods[{i}]", f"{method!r} is not a valid HTTP method")
    for field, alias in (("allow_headers", "allowHeaders"), ("expose_headers", "exposeHeaders")):
        for i, name in enumerate(getattr(cors, field) or []):
            if name != "*" and (problem := check_header_name(name)):
                issues.error(f"{path}.{alias}[{i}]", problem)
    if cors.max_age is not None:
        if problem := check_duration(cors.max_age):
            issues.error(f"{path}.maxAge", problem)
        elif cors.max_age.microseconds:
            issues.error(f"{path}.maxAge", "maxAge is accurate only to seconds precision")


def _check_headers(headers: Headers, path: str, issues: Issues, authority_rewritten: bool) -> None:
    if headers.request is not None:
        _check_header_ops(headers.request, f"{path}.request", issues, authority_rewritten, request=True)
    if headers.response is not None:
        _check_header_ops(headers.response, f"{path}.response", issues, authority_rewritten, request=False)


def _check_header_ops(
    ops: HeaderOperations, path: str, issues: Issues, authority_rewritten: bool, *, request: bool
) -> None:
    for op in ("set", "add"):
        for name in getattr(ops, op) or {}:
            hpath = f"{path}.{op}.{name}"
            if problem := check_header_name(name):
                issues.error(hpath, problem)
            elif request and name.lower() in (":authority", "host"):
                if authority_rewritten:
                    issues.error(hpath, "authority header cannot be set together with rewrite.authority")
            elif is_pseudo_or_host(name):
                issues.error(
                    hpath, f"invalid header {name!r}: pseudo-headers and Host cannot be modified here"
                )
    for i, name in enumerate(ops.remove or []):
        hpath = f"{path}.remove[{i}]"
        if problem := check_header_name(name):
            issues.error(hpath, problem)
        elif is_pseudo_or_host(name):
            issues.error(hpath, f"invalid header {name!r}: pseudo-headers and Host cannot be removed")
