"""HTTP header names as Envoy accepts them (RFC 7230 tokens; pseudo-headers start with ':')."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def check_header_name(name: str) -> str | None:
    if not name:
        return "header name must not be empty"
    if not _TOKEN.match(name.removeprefix(":")):
        return f"invalid header name {name!r}"
    return None


def is_pseudo_or_host(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"
