"""``CITADEL_SELF_SIGNED_CA_CERT_TTL`` (issue 15 item 8): the lifetime of the root a real Citadel
creates for itself; Istio's default is 10 years."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from meshplane.citadel.testing import CitadelProcess

pytestmark = pytest.mark.timeout(60)


def root_lifetime(tmp_path: Path, env: dict[str, str]) -> dt.timedelta:
    citadel = CitadelProcess(
        tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec", **env}
    )
    citadel.start()
    try:
        cert = x509.load_pem_x509_certificate(citadel.root_pem())
    finally:
        citadel.stop()
    return cert.not_valid_after_utc - cert.not_valid_before_utc


@pytest.mark.parametrize(("env", "days"), [({}, 3650), ({"CITADEL_SELF_SIGNED_CA_CERT_TTL": "48h"}, 2)])
def test_the_self_signed_root_lives_as_long_as_the_setting_says(
    tmp_path: Path, env: dict[str, str], days: int
) -> None:
    lifetime = root_lifetime(tmp_path, env)
    # the root is backdated a little for clock skew, so it lives at most that much longer
    assert dt.timedelta(days=days) <= lifetime <= dt.timedelta(days=days, hours=2), lifetime
