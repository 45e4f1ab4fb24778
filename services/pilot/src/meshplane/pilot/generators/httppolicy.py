"""Per-route policies of a VirtualService HTTPRoute as Envoy configs: string and header matchers,
percentages, fault injection, CORS and retries."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2 as prio
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2

from meshplane.pilot.generators.common import duration, pack, previous_hosts
from meshplane.pilot.model.config import given
from meshplane.shared.config.models import CorsPolicy, HTTPFaultInjection, HTTPRetry, Percent, StringMatch
from meshplane.shared.config.models.virtual_service import GRPC_CODES, UnmatchedPreflights

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"


def string_matcher(m: StringMatch, ignore_case: bool = False) -> string_pb2.StringMatcher | None:
    if m.exact is not None:
        return string_pb2.StringMatcher(exact=m.exact, ignore_case=ignore_case)
    if m.prefix is not None:
        return string_pb2.StringMatcher(prefix=m.prefix, ignore_case=ignore_case)
    if m.regex is not None:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=m.regex))
    return None


def header_matcher(name: str, m: StringMatch | None, invert: bool = False) -> rc.HeaderMatcher:
    hm = rc.HeaderMatcher(name=name, invert_match=invert)
    sm = string_matcher(m) if m is not None else None
    if sm is None:
        hm.present_match = True
    else:
        hm.string_match.CopyFrom(sm)
    return hm


def fraction(value: Percent | float) -> percent_pb2.FractionalPercent:
    """Istio percentages (0-100, float) → millionths."""
    pct = (value.value or 0.0) if isinstance(value, Percent) else float(value)
    return percent_pb2.FractionalPercent(
        numerator=int(round(pct * 10000)), denominator=percent_pb2.FractionalPercent.MILLION
    )


def fault_config(fault: HTTPFaultInjection) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    delay = fault.delay
    if given(delay):
        d = duration(delay.fixed_delay if delay.fixed_delay is not None else delay.exponential_delay)
        if d is not None:
            out.delay.fixed_delay.CopyFrom(d)
        percent = delay.percent if delay.percent is not None else 100
        out.delay.percentage.CopyFrom(fraction(delay.percentage if delay.percentage is not None else percent))
    abort = fault.abort
    if given(abort):
        if abort.http_status is not None:
            out.abort.http_status = abort.http_status
        elif abort.grpc_status is not None:
            out.abort.grpc_status = GRPC_CODES[abort.grpc_status]  # the validator accepts names only
        out.abort.percentage.CopyFrom(fraction(abort.percentage if abort.percentage is not None else 100))
    return out


def cors_config(policy: CorsPolicy) -> cors_pb2.CorsPolicy:
    out = cors_pb2.CorsPolicy()
    for origin in policy.allow_origins or []:
        sm = string_matcher(origin)
        if sm is not None:
            out.allow_origin_string_match.append(sm)
    for exact in policy.allow_origin or []:
        out.allow_origin_string_match.append(string_pb2.StringMatcher(exact=exact))
    out.allow_methods = ",".join(policy.allow_methods or [])
    out.allow_headers = ",".join(policy.allow_headers or [])
    out.expose_headers = ",".join(policy.expose_headers or [])
    max_age = duration(policy.max_age)
    if max_age is not None:
        out.max_age = str(max_age.seconds)
    if policy.allow_credentials is not None:
        out.allow_credentials.value = policy.allow_credentials
    if policy.unmatched_preflights is UnmatchedPreflights.IGNORE:
        out.forward_not_matching_preflights.value = False  # Envoy answers them; the app never sees them
    return out


def retry_policy(retries: HTTPRetry | None, consistent_hash: bool = False) -> rc.RetryPolicy | None:
    """Istio's conversion: its default policy (2 retries on connect failures, refused streams and
    503) overridden field by field; ``attempts: 0`` disables retries. With a consistent-hash load
    balancer the default keeps the same host (no previous-hosts predicate)."""
    retries = retries if retries is not None else HTTPRetry()
    attempts = retries.attempts if retries.attempts is not None else 2
    if attempts == 0:
        return None
    policy = rc.RetryPolicy(retry_on=DEFAULT_RETRY_ON, retriable_status_codes=[503])
    policy.num_retries.value = attempts
    if retries.retry_on:
        tokens = [t.strip() for t in retries.retry_on.split(",") if t.strip()]
        codes = [int(t) for t in tokens if t.isdigit()]
        policy.retry_on = ",".join(t for t in tokens if not t.isdigit())
        del policy.retriable_status_codes[:]
        policy.retriable_status_codes.extend(codes)
        if codes and "retriable-status-codes" not in policy.retry_on:
            policy.retry_on += ",retriable-status-codes"
    per_try = duration(retries.per_try_timeout)
    if per_try is not None:
        policy.per_try_timeout.CopyFrom(per_try)
    policy.host_selection_retry_max_attempts = 5
    ignore_previous = retries.retry_ignore_previous_hosts
    if ignore_previous if ignore_previous is not None else not consistent_hash:
        previous_hosts(policy)
    if retries.retry_remote_localities:
        policy.retry_priority.name = PREVIOUS_PRIORITIES
        policy.retry_priority.typed_config.CopyFrom(pack(prio.PreviousPrioritiesConfig(update_frequency=2)))
    backoff = duration(retries.backoff)
    if backoff is not None:
        policy.retry_back_off.base_interval.CopyFrom(backoff)
    return policy
