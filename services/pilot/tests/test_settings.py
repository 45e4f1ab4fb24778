"""Pilot's flags: debug HTTP local-only by default, ADS mutual TLS unless plaintext is asked for."""

from __future__ import annotations

import pytest

from meshplane.pilot.settings import parse_args


def test_defaults_keep_debug_local_and_take_the_certificate_from_citadel() -> None:
    s = parse_args(["--ca-addr", "citadel:8060"], {})
    assert (s.http_host, s.http_port) == ("127.0.0.1", 15014)  # serves /debug: local-only
    assert (s.grpc_host, s.grpc_port) == ("0.0.0.0", 15010)
    assert not s.xds_plaintext
    assert (s.ca_addr, s.ca_root) == ("citadel:8060", "/var/run/secrets/istio/root-cert.pem")
    assert s.token_file == "/var/run/secrets/tokens/istio-token"


def test_plaintext_only_when_asked() -> None:
    assert parse_args(["--xds-plaintext"], {}).xds_plaintext
    files = parse_args(["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem"], {})
    assert not files.xds_plaintext and files.tls_cert == "c.pem"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "ADS is served over mutual TLS: give --ca-addr"),
        (["--xds-plaintext", "--ca-addr", "c:1"], "--xds-plaintext and --ca-addr: give one, not several"),
        (["--tls-cert", "c.pem"], "--tls-cert needs --tls-key and --tls-client-ca"),
    ],
)
def test_bad_flags_exit_2_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, {})
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
