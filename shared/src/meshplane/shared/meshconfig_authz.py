"""MeshConfig ``extensionProviders`` of types ``envoyExtAuthzHttp`` and ``envoyExtAuthzGrpc``: the
external authorizers an AuthorizationPolicy with ``action: CUSTOM`` names in ``provider.name``.

Fields, defaults and checks are Istio's: ``service`` (``<namespace>/<hostname>`` or a hostname),
``port``, ``timeout`` (600 s), ``failOpen``, ``clearRouteCache``, ``statusOnError`` (Envoy's 403
when unset), ``includeRequestBodyInCheck``; HTTP only: ``pathPrefix``,
``includeRequestHeadersInCheck`` (the deprecated ``includeHeadersInCheck`` when unset),
``includeAdditionalHeadersInCheck``, ``headersToUpstreamOnAllow``, ``headersToDownstreamOnDeny``,
``headersToDownstreamOnAllow``. A header name may be ``prefix*`` or ``*suffix`` but not ``*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from meshplane.shared.durations import parse_duration

KINDS = ("envoyExtAuthzHttp", "envoyExtAuthzGrpc")
DEFAULT_TIMEOUT = timedelta(seconds=600)
_HEADER_LISTS = {
    "includeRequestHeadersInCheck": "include_request_headers",
    "includeHeadersInCheck": "include_headers_deprecated",
    "headersToUpstreamOnAllow": "headers_to_upstream_on_allow",
    "headersToDownstreamOnDeny": "headers_to_downstream_on_deny",
    "headersToDownstreamOnAllow": "headers_to_downstream_on_allow",
}
_COMMON = frozenset({"service", "port", "timeout", "failOpen", "clearRouteCache", "statusOnError"})
_HTTP_ONLY = frozenset({"pathPrefix", "includeAdditionalHeadersInCheck", *_HEADER_LISTS})
_BODY = "includeRequestBodyInCheck"


class ExtAuthzError(ValueError):
    """A provider that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class RequestBody:
    """``includeRequestBodyInCheck``: buffer the body (up to ``max_request_bytes``) into the check."""

    max_request_bytes: int = 0
    allow_partial_message: bool = False
    pack_as_bytes: bool = False


@dataclass(frozen=True, slots=True)
class ExtAuthzProvider:
    """One ``envoyExtAuthzHttp`` (``grpc`` False) or ``envoyExtAuthzGrpc`` provider."""

    grpc: bool
    service: str
    port: int
    timeout: timedelta = DEFAULT_TIMEOUT
    fail_open: bool = False
    clear_route_cache: bool = False
    #: ``statusOnError`` (None: Envoy's default, 403)
    status_on_error: int | None = None
    body: RequestBody | None = None
    path_prefix: str = ""
    include_request_headers: tuple[str, ...] = ()
    include_headers_deprecated: tuple[str, ...] = ()
    include_additional_headers: tuple[tuple[str, str], ...] = ()
    headers_to_upstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_deny: tuple[str, ...] = ()
    headers_to_downstream_on_allow: tuple[str, ...] = ()

    @property
    def headers_in_check(self) -> tuple[str, ...]:
        return self.include_request_headers or self.include_headers_deprecated


def parse_ext_authz(kind: str, body: Any, at: str) -> ExtAuthzProvider:
    """One provider's body (``at`` names it in errors); raises ExtAuthzError."""
    if not isinstance(body, dict):
        raise ExtAuthzError(f"{at}: expected a mapping, got {type(body).__name__}")
    grpc = kind == "envoyExtAuthzGrpc"
    allowed = _COMMON | {_BODY} | (frozenset() if grpc else _HTTP_ONLY)
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise ExtAuthzError(f"{at}: unknown field(s) {', '.join(map(str, unknown))}")
    service = body.get("service")
    if not isinstance(service, str) or not service:
        raise ExtAuthzError(f"{at}.service: must not be empty")
    port = body.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ExtAuthzError(f"{at}.port: must be in the range [1, 65535], found: {port!r}")
    fields: dict[str, Any] = {
        "timeout": _timeout(body.get("timeout"), f"{at}.timeout"),
        "fail_open": _flag(body, "failOpen", at),
        "clear_route_cache": _flag(body, "clearRouteCache", at),
        "status_on_error": _status(body.get("statusOnError"), f"{at}.statusOnError"),
        "body": _body(body.get(_BODY), f"{at}.{_BODY}"),
    }
    if not grpc:
        prefix = body.get("pathPrefix", "")
        if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
            raise ExtAuthzError(f"{at}.pathPrefix: must begin with '/', found: {prefix!r}")
        fields["path_prefix"] = prefix
        for key, attr in _HEADER_LISTS.items():
            fields[attr] = _headers(body.get(key), f"{at}.{key}")
        extra = body.get("includeAdditionalHeadersInCheck") or {}
        if not isinstance(extra, dict):
            raise ExtAuthzError(f"{at}.includeAdditionalHeadersInCheck: expected a mapping of header: value")
        fields["include_additional_headers"] = tuple(sorted((str(k), str(v)) for k, v in extra.items()))
    return ExtAuthzProvider(grpc, service, port, **fields)


def _flag(body: dict[str, Any], key: str, at: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise ExtAuthzError(f"{at}.{key}: expected true or false, got {value!r}")
    return value


def _timeout(value: Any, at: str) -> timedelta:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        parsed = parse_duration(str(value), signed=False)
    except ValueError as exc:
        raise ExtAuthzError(f"{at}: {exc}") from None
    if parsed <= timedelta(0):
        raise ExtAuthzError(f"{at}: must be greater than 0, got {value!r}")
    return parsed


def _status(value: Any, at: str) -> int | None:
    if value is None or value == "":
        return None
    text = str(value)
    if not text.isdigit() or int(text) not in _KNOWN_STATUSES:
        raise ExtAuthzError(f"{at}: unsupported statusOnError {value!r} (an HTTP status code such as 403)")
    return int(text)


#: the codes Envoy's ``HttpStatus`` names (Python's HTTPStatus from 200, less 418, 425 and 451)
_KNOWN_STATUSES = frozenset(int(s) for s in HTTPStatus if s >= 200) - {418, 425, 451}


def _headers(value: Any, at: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ExtAuthzError(f"{at}: expected a list of header names")
    if "*" in value:
        raise ExtAuthzError(f"{at}: a single wildcard ('*') is not supported, use a prefix or suffix match")
    return tuple(value)


def _body(value: Any, at: str) -> RequestBody | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ExtAuthzError(f"{at}: expected a mapping, got {type(value).__name__}")
    size = value.get("maxRequestBytes", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ExtAuthzError(f"{at}.maxRequestBytes: expected a byte count, got {size!r}")
    return RequestBody(size, _flag(value, "allowPartialMessage", at), _flag(value, "packAsBytes", at))


def ext_authz_providers(raw: Any, where: str) -> tuple[tuple[str, ExtAuthzProvider], ...]:
    """The ext_authz providers of an ``extensionProviders`` list already checked for shape (a list
    of mappings with a name and one provider type each), by name."""
    out: list[tuple[str, ExtAuthzProvider]] = []
    for i, entry in enumerate(raw or []):
        for kind in KINDS:
            if kind in entry:
                at = f"{where}: extensionProviders[{i}] ({entry['name']}).{kind}"
                out.append((entry["name"], parse_ext_authz(kind, entry[kind] or {}, at)))
    return tuple(out)
