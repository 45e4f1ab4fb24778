"""Galley's flags: defaults as Istio's, and bad values rejected with a message naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshplane.galley.settings import parse_args


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    s = parse_args(["--config-dir", str(tmp_path)])
    assert s.webhook_addr == ("0.0.0.0", 15017)
    assert s.monitoring_addr == ("0.0.0.0", 15014)
    assert s.nats_url == "nats://127.0.0.1:4222"
    assert not s.tls


def test_nats_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://bus:4222")
    assert parse_args([]).nats_url == "nats://bus:4222"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--webhook-addr", "nonsense"], "expected HOST:PORT"),
        (["--monitoring-addr", "127.0.0.1:99999"], "port out of range"),
        (["--tls-cert", "a.pem"], "--tls-cert and --tls-key must be given together"),
        (["--config-dir", "/nonexistent/meshplane-conf"], "not a directory"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
