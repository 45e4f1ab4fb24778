"""Kubernetes label keys and values (the rules ``kubectl`` enforces)."""

from __future__ import annotations

import re

from meshplane.shared.config.checks.hosts import is_dns1123_subdomain

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def check_label_key(key: str) -> str | None:
    """``[prefix/]name``: prefix a DNS-1123 subdomain, name at most 63 characters."""
    prefix, sep, name = key.rpartition("/")
    if sep and not is_dns1123_subdomain(prefix):
        return f"invalid label key {key!r}: prefix must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (
            f"invalid label key {key!r}: name must be 63 characters or less, begin and end with "
            "an alphanumeric character, and contain only [-_.a-zA-Z0-9]"
        )
    return None


def check_label_value(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63 or not _NAME.match(value):
        return (
            f"invalid label value {value!r}: must be 63 characters or less, begin and end with "
            "an alphanumeric character, and contain only [-_.a-zA-Z0-9]"
        )
    return None


def label_problems(labels: dict[str, str]) -> list[tuple[str, str]]:
    """(key, message) for each bad key or value in a label map."""
    out: list[tuple[str, str]] = []
    for key, value in labels.items():
        for problem in (check_label_key(key), check_label_value(value)):
            if problem:
                out.append((key, problem))
    return out
