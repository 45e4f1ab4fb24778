"""Host and name rules: DNS-1123 labels and subdomains, FQDNs, wildcard domains, IPs and CIDRs."""

from __future__ import annotations

import ipaddress
import re

from meshplane.shared.config.checks.memo import cached_text_check

_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_LOWER_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$")
_LOWER_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$")
MAX_LABEL = 63
MAX_DOMAIN = 255
MAX_SUBDOMAIN = 253


def is_dns1123_label(value: str) -> bool:
    """A Kubernetes name label: lower case alphanumerics and '-', at most 63 characters."""
    return len(value) <= MAX_LABEL and bool(_LOWER_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    """A Kubernetes object name: dot-separated DNS-1123 labels, at most 253 characters."""
    return len(value) <= MAX_SUBDOMAIN and bool(_LOWER_SUBDOMAIN.match(value))


def is_istio_label(value: str) -> bool:
    """A DNS-1123 label as Istio checks it (upper case allowed): port, subset, gateway names."""
    return len(value) <= MAX_LABEL and bool(_LABEL.match(value))


def _host_label(value: str) -> bool:
    return is_istio_label(value)


def _wildcard_label(value: str) -> bool:
    """``*``, or a label with a leading ``*`` or ``*-`` (``*foo``, ``*-foo``)."""
    if value == "*":
        return True
    if value.startswith("*-"):
        return len(value) <= MAX_LABEL and _host_label(value[2:])
    if value.startswith("*"):
        return len(value) <= MAX_LABEL and _host_label(value[1:])
    return _host_label(value)


def _check_labels(domain: str) -> str | None:
    if domain.endswith("."):
        domain = domain[:-1]
    labels = domain.split(".")
    for label in labels:
        if not _host_label(label):
            return f"domain name {domain!r} invalid (label {label!r} invalid)"
    if labels[-1].isdigit():
        return f"domain name {domain!r} invalid (top level domain {labels[-1]!r} cannot be all-numeric)"
    return None


@cached_text_check
def check_fqdn(host: str) -> str | None:
    """A fully qualified domain name: DNS-1123 labels, at most 255 characters, no wildcard."""
    if not host:
        return "empty domain name not allowed"
    if len(host) > MAX_DOMAIN:
        return f"domain name {host!r} too long (max {MAX_DOMAIN})"
    return _check_labels(host)


@cached_text_check
def check_wildcard_domain(host: str) -> str | None:
    """An FQDN whose first label may be ``*`` or ``*suffix``; ``*`` alone is allowed."""
    if not host:
        return "empty domain name not allowed"
    if len(host) > MAX_DOMAIN:
        return f"domain name {host!r} too long (max {MAX_DOMAIN})"
    first, _, rest = host.partition(".")
    if not _wildcard_label(first):
        return f"domain name {host!r} invalid (label {first!r} invalid)"
    if "*" in rest:
        return f"domain name {host!r} invalid (wildcard is only allowed in the first label)"
    if not rest:
        return None
    return _check_labels(rest)


def partial_wildcard_problem(host: str) -> str | None:
    """Istio allows ``*`` alone or a leading ``*.`` label only (``*foo.com`` is a partial wildcard)."""
    if "*" in host and host != "*" and not host.startswith("*."):
        return f"partial wildcard {host!r} not allowed"
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_cidr(value: str) -> bool:
    if "/" not in value:
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def check_ip_or_cidr(value: str) -> str | None:
    if is_ip(value) or is_cidr(value):
        return None
    return f"{value!r} is not a valid IP address or CIDR block"


def check_unix_address(address: str) -> str | None:
    """``unix://`` followed by an absolute path (or an abstract ``@name``)."""
    path = address.removeprefix("unix://")
    if not path:
        return "unix address must not be empty"
    if path.startswith("@"):
        return None
    if not path.startswith("/") or path.endswith("/"):
        return f"{address!r} is not an absolute path to a file"
    return None


def hosts_overlap(a: str, b: str) -> bool:
    """Whether two (possibly wildcard) hosts can match the same name (``*.foo.com`` vs ``*.com``)."""
    if a == b:
        return True
    if a.startswith("*"):
        suffix = a[1:]
        if b.startswith("*"):
            other = b[1:]
            return other.endswith(suffix) or suffix.endswith(other)
        return b.endswith(suffix)
    if b.startswith("*"):
        return a.endswith(b[1:])
    return False


def host_is_subset(host: str, of: str) -> bool:
    """Whether every name ``host`` matches is also matched by ``of``."""
    if host == of or of == "*":
        return True
    if of.startswith("*"):
        suffix = of[1:]
        if host.startswith("*"):
            return host[1:].endswith(suffix)
        return host.endswith(suffix)
    return False
