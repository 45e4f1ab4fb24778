"""Every verb: 0 ok, 1 a negative answer, 2 cannot run; errors as ``meshctl <verb>: ...``, no traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from meshplane.ctl.main import main
from meshplane.shared.natsserver import free_port

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
"""
BAD_VS = VS.replace("{host: reviews}", "{host: reviews}\n      weight: -1")
GATEWAY_VS = VS.replace("hosts: [reviews]", "hosts: [reviews]\n  gateways: [missing-gw]")
SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec: {ports: [{name: http, port: 8}]}\n"
POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: app, image: app}]}\n"
TOKEN = ["-n", "default", "--service-account", "reviews"]


def _files(tmp: Path) -> None:
    (tmp / "vs.yaml").write_text(VS)
    (tmp / "bad.yaml").write_text(BAD_VS)
    (tmp / "gw.yaml").write_text(GATEWAY_VS)
    (tmp / "broken.yaml").write_text("kind: [oops\n")
    (tmp / "svc.yaml").write_text(SERVICE)
    (tmp / "pod.yaml").write_text(POD)
    (tmp / "proxies.json").write_text(json.dumps({"a.default": "127.0.0.1:1"}))


Argv = Callable[[Path], list[str]]
# (verb, argv, exit code, what stderr starts with: a prefix, or None for "nothing printed").
CASES: list[tuple[str, Argv, int, str | None]] = [
    ("validate", lambda t: ["validate", "-f", f"{t}/vs.yaml", "-o", "json"], 0, None),
    ("validate", lambda t: ["validate", "-f", f"{t}/bad.yaml", "-o", "json"], 1, None),
    ("validate", lambda t: ["validate", "-f", f"{t}/missing.yaml"], 2, "meshctl validate: "),
    ("analyze", lambda t: ["analyze", f"{t}/svc.yaml"], 0, "\u2714 No validation issues"),
    ("analyze", lambda t: ["analyze", f"{t}/gw.yaml"], 79, None),
    ("analyze", lambda t: ["analyze", f"{t}/missing.yaml"], 2, "meshctl analyze: "),
    ("analyze", lambda t: ["analyze", "-o", "xml", f"{t}/vs.yaml"], 2, "meshctl analyze: "),
    ("kube-inject", lambda t: ["kube-inject", "-f", f"{t}/pod.yaml"], 0, None),
    ("kube-inject", lambda t: ["kube-inject", "-f", f"{t}/missing.yaml"], 2, "meshctl kube-inject: "),
    ("kube-inject", lambda t: ["kube-inject", "-f", f"{t}/broken.yaml"], 2, "meshctl kube-inject: "),
    (
        "kube-inject",
        lambda t: ["kube-inject", "-f", f"{t}/pod.yaml", "-o", f"{t}/no/such/dir/out.yaml"],
        2,
        "meshctl kube-inject: ",
    ),
    (
        "bootstrap",
        lambda t: ["bootstrap", "--xds-plaintext", "--node-id", "sidecar~1.2.3.4~a.default~default.svc"],
        0,
        None,
    ),
    (
        "proxy-config",
        lambda t: ["proxy-config", "cluster", "b.default", "--state-dir", str(t)],
        1,
        "meshctl proxy-config: ",
    ),
    (
        "proxy-config",
        lambda t: ["proxy-config", "cluster", f"127.0.0.1:{free_port()}"],
        2,
        "meshctl proxy-config: ",
    ),
    (
        "proxy-status",
        lambda t: ["proxy-status", "--nats-url", f"nats://127.0.0.1:{free_port()}"],
        2,
        "meshctl proxy-status: ",
    ),
    ("token", lambda t: ["token", *TOKEN, "--ttl", "0s", "--ca-dir", str(t)], 2, "meshctl token: "),
    ("token", lambda t: ["token", *TOKEN, "--ca-dir", f"{t}/no-ca"], 2, "meshctl token: "),
    ("version", lambda t: ["version", "--short"], 0, None),
]


@pytest.mark.parametrize(("verb", "argv", "code", "stderr"), CASES, ids=[c[0] for c in CASES])
def test_exit_code_and_error_prefix(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    verb: str,
    argv: Argv,
    code: int,
    stderr: str | None,
) -> None:
    _files(tmp_path)
    assert main(argv(tmp_path)) == code
    err = capsys.readouterr().err
    if stderr is None:
        assert err == ""
    else:
        assert err.startswith(stderr), err
        assert "Traceback" not in err


@pytest.mark.parametrize("verb", ["validate", "analyze", "kube-inject", "bootstrap", "version", "token"])
def test_an_unknown_flag_exits_2(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([verb, "--no-such-flag"])
    assert info.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("meshctl") and ": error: " in last, last
