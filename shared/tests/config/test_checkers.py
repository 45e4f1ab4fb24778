"""The small shared checkers: durations, hosts, labels, regexes, ports and exportTo."""

from __future__ import annotations

from datetime import timedelta

import pytest

from meshplane.shared.config.checks.durations import check_duration, format_duration, parse_duration
from meshplane.shared.config.checks.export_to import export_to_problems
from meshplane.shared.config.checks.hosts import (
    check_fqdn,
    check_wildcard_domain,
    host_is_subset,
    hosts_overlap,
    is_dns1123_label,
    is_dns1123_subdomain,
)
from meshplane.shared.config.checks.labels import check_label_key, check_label_value
from meshplane.shared.config.checks.ports import check_port, check_port_name, check_protocol
from meshplane.shared.config.checks.regex import check_regex


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", timedelta(seconds=1)),
        ("1.5s", timedelta(seconds=1.5)),
        ("100ms", timedelta(milliseconds=100)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2m3.5s", timedelta(minutes=2, seconds=3.5)),
        ("250us", timedelta(microseconds=250)),
        ("0", timedelta(0)),
        ("-1s", timedelta(seconds=-1)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "s", "1", "1d", "ten seconds", "1.5.5s", "--1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1ms", None),
        ("10s", None),
        ("0s", "greater than 1ms"),
        ("500us", "greater than 1ms"),
        ("1500us", "ms precision"),
        ("-5s", "greater than 1ms"),
    ],
)
def test_check_duration(text: str, problem: str | None) -> None:
    result = check_duration(parse_duration(text))
    assert (result is None) if problem is None else (result is not None and problem in result)


def test_format_duration_round_trips() -> None:
    for text in ("1.5s", "0.1s", "90s"):
        assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("reviews", True),
        ("reviews.default.svc.cluster.local", True),
        ("reviews.default.svc.cluster.local.", True),
        ("Reviews.Example.COM", True),
        ("", False),
        ("a..b", False),
        ("-a.com", False),
        ("a.123", False),
        ("*.example.com", False),
        ("a" * 64 + ".com", False),
        (("a" * 60 + ".") * 5, False),
    ],
)
def test_check_fqdn(host: str, ok: bool) -> None:
    assert (check_fqdn(host) is None) is ok


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("*", True),
        ("*.example.com", True),
        ("*example.com", True),
        ("*.com", True),
        ("foo.*.com", False),
        ("f*o.com", False),
        ("**.com", False),
        ("", False),
        ("example.com", True),
    ],
)
def test_check_wildcard_domain(host: str, ok: bool) -> None:
    assert (check_wildcard_domain(host) is None) is ok


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("*.foo.com", "*.com", True),
        ("a.foo.com", "*.foo.com", True),
        ("a.com", "b.com", False),
        ("*.foo.com", "*.bar.com", False),
        ("x.com", "x.com", True),
    ],
)
def test_hosts_overlap(a: str, b: str, overlap: bool) -> None:
    assert hosts_overlap(a, b) is overlap
    assert hosts_overlap(b, a) is overlap


def test_host_is_subset() -> None:
    assert host_is_subset("a.foo.com", "*.foo.com")
    assert host_is_subset("*.a.foo.com", "*.foo.com")
    assert not host_is_subset("*.com", "*.foo.com")
    assert host_is_subset("anything", "*")


def test_dns1123_names() -> None:
    assert is_dns1123_label("reviews-v1")
    assert not is_dns1123_label("reviews.v1")
    assert not is_dns1123_label("Reviews")
    assert is_dns1123_subdomain("reviews.v1")
    assert not is_dns1123_subdomain("reviews..v1")


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("app.kubernetes.io/name", True),
        ("a_b.c-d", True),
        (".", False),
        ("a/b/c", False),
        ("Bad_Prefix/x", False),
        ("x" * 64, False),
        ("-x", False),
        ("", False),
    ],
)
def test_label_keys(key: str, ok: bool) -> None:
    assert (check_label_key(key) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("", True), ("v1", True), ("a.b_c-d", True), ("-a", False), ("a b", False), ("x" * 64, False)],
)
def test_label_values(value: str, ok: bool) -> None:
    assert (check_label_value(value) is None) is ok


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("^/api/.*$", None),
        ("(?i)abc", None),
        ("(?!x)", "RE2"),
        ("(?<=a)b", "RE2"),
        (r"(a)\1", "RE2"),
        ("", "empty"),
        ("a" * 1025, "too long"),
        ("[", "RE2"),
    ],
)
def test_check_regex(pattern: str, problem: str | None) -> None:
    result = check_regex(pattern)
    assert (result is None) if problem is None else (result is not None and problem in result)


def test_ports_and_protocols() -> None:
    assert check_port(1) is None and check_port(65535) is None
    assert check_port(0) and check_port(65536)
    assert check_port_name("http-web") is None
    assert check_port_name("HTTP") is None  # Istio allows upper case in DNS labels
    assert check_port_name("http_port")
    assert check_port_name("-http")
    for proto in (
        "http",
        "HTTPS",
        "grpc",
        "grpc-web",
        "TCP",
        "tls",
        "mongo",
        "redis",
        "mysql",
        "udp",
        "http2",
    ):
        assert check_protocol(proto) is None, proto
    assert check_protocol("smtp")


@pytest.mark.parametrize(
    ("export_to", "allow_none", "bad"),
    [
        (["."], False, []),
        (["*"], False, []),
        (["a", "b"], False, []),
        ([".", "ns"], False, [1]),
        (["a", "a"], False, [1]),
        (["*", "a"], False, [0]),
        (["~"], False, [0]),
        (["~"], True, []),
        (["~", "a"], True, [0]),
        (["bad_ns"], False, [0]),
        (["Mixed-Case"], False, []),
    ],
)
def test_export_to(export_to: list[str], allow_none: bool, bad: list[int]) -> None:
    assert [i for i, _ in export_to_problems(export_to, "ns", allow_none=allow_none)] == bad
