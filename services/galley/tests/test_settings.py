"""Galley's flags: defaults as Istio's, and bad values rejected with a message naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshplane.galley.settings import parse_args


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    s = parse_args(["--config-dir", str(tmp_path)])
    assert s.webhook_addr == ("0.0.0.0", 15017)
    assert s.monitoring_addr == ("127.0.0.1", 15014)  # /ready and /metrics
    assert s.debug_addr == ("127.0.0.1", 9876)  # /debug: local-only, Istio's ControlZ port
    assert s.nats_url == "nats://127.0.0.1:4222"
    assert not s.tls
    # Kubernetes sends at most about 3 MB; 4 MiB leaves room for the review's envelope
    assert s.webhook_limits.max_body == 4 * 1024 * 1024
    assert s.webhook_limits.read_timeout == 10.0
    assert s.webhook_limits.max_concurrent == 16


def test_nats_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://bus:4222")
    assert parse_args([]).nats_url == "nats://bus:4222"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--webhook-addr", "nonsense"], "expected HOST:PORT"),
        (["--monitoring-addr", "127.0.0.1:99999"], "--monitoring-addr: port out of range"),
        (["--debug-addr", "9876"], "--debug-addr: expected HOST:PORT, got '9876'"),
        (["--tls-cert", "a.pem"], "--tls-cert and --tls-key must be given together"),
        (["--config-dir", "/nonexistent/meshplane-conf"], "not a directory"),
        (["--webhook-max-body", "0"], "--webhook-max-body 0: must be at least 1"),
        (["--webhook-max-concurrent", "0"], "--webhook-max-concurrent 0: must be at least 1"),
        (["--webhook-read-timeout", "soon"], "--webhook-read-timeout: expected a duration"),
        (["--webhook-read-timeout", "0s"], "--webhook-read-timeout 0s: must be positive"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_the_mesh_configmap_and_galley_s_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    s = parse_args([])
    assert (s.mesh_configmap, s.namespace) == ("istio", "meshplane-system")  # Istio's ConfigMap name
    monkeypatch.setenv("POD_NAMESPACE", "mesh-ns")
    assert parse_args([]).namespace == "mesh-ns"
    s = parse_args(["--namespace", "other", "--mesh-configmap", "istio-canary"])
    assert (s.mesh_configmap, s.namespace) == ("istio-canary", "other")
    assert parse_args(["--mesh-configmap", ""]).mesh_configmap == ""  # reads none


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--namespace", "Bad_NS"], "--namespace"), (["--mesh-configmap", "no/slash"], "--mesh-configmap")],
)
def test_bad_namespace_or_configmap_name_is_a_usage_error(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(args)
    assert exc.value.code == 2 and named in capsys.readouterr().err
