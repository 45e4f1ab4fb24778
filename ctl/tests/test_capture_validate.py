"""``meshctl capture-validate`` refuses to run where its answer would mean nothing (the real check,
in a pod network namespace, is ``tests/integration/cni/test_capture_validation.py``)."""

from __future__ import annotations

import os

import pytest

from meshplane.ctl.main import main


def test_it_must_run_as_the_proxys_user(capsys: pytest.CaptureFixture[str]) -> None:
    uid = os.getuid()
    assert main(["capture-validate", "-u", str(uid + 1)]) == 2
    assert capsys.readouterr().err == (
        f"meshctl capture-validate: must run as the proxy's uid {uid + 1}, runs as {uid}\n"
    )


def test_a_bad_port_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capture-validate", "-z", "0"]) == 2
    assert capsys.readouterr().err == "meshctl capture-validate: --inbound-capture-port: expected 1..65535\n"
