"""HTTP header names and values as Istio checks them before handing them to Envoy."""

from __future__ import annotations

import re

from meshplane.shared.config.checks.memo import cached_text_check

_NAME = re.compile(r"^[-_A-Za-z0-9]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FORMAT_VAR = re.compile(r"%[A-Za-z_][A-Za-z0-9_]*(\([^%]*\))?(:[0-9]+)?%")


def check_header_name(name: str) -> str | None:
    """Header names in matches, CORS lists and claim-to-header outputs: ``[-_A-Za-z0-9]+``."""
    if not name:
        return "header name cannot be empty"
    if not _NAME.match(name):
        return f"header name {name!r} is not a valid header name"
    return None


def is_internal_header(name: str) -> bool:
    """Pseudo-headers and Host refer to values Envoy owns."""
    return name.startswith(":") or name.lower() == "host"


def is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


@cached_text_check
def check_header_value(value: str) -> str | None:
    """No control characters; ``%`` only as ``%%`` or around an Envoy variable (``%HOSTNAME%``)."""
    if _CONTROL.search(value):
        return f"header value {value!r} contains control characters"
    rest = _FORMAT_VAR.sub("", value.replace("%%", ""))
    if "%" in rest:
        return f"header value {value!r} has an unescaped '%' (use '%%' or an Envoy variable like %HOSTNAME%)"
    return None
