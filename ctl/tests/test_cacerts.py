"""`meshctl cacerts`: Istio's cacerts layout per cluster under one root; keys 0600; nothing overwritten."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from meshplane.ctl.main import main as meshctl


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_root_once_and_an_intermediate_per_cluster(tmp_path: Path) -> None:
    root_dir = tmp_path / "root"
    assert meshctl(["cacerts", "--root-dir", str(root_dir), "--cluster", "c1"]) == 0
    assert meshctl(["cacerts", "--root-dir", str(root_dir), "--cluster", "c2"]) == 0  # the same root again
    root = cert(root_dir / "root-cert.pem")
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in ("c1", "c2"):
        d = root_dir / name
        assert sorted(p.name for p in d.iterdir()) == [
            "ca-cert.pem",
            "ca-key.pem",
            "cert-chain.pem",
            "root-cert.pem",
        ]
        assert stat.S_IMODE((d / "ca-key.pem").stat().st_mode) == 0o600
        inter = cert(d / "ca-cert.pem")
        inter.verify_directly_issued_by(root)
        assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
        assert (d / "cert-chain.pem").read_bytes() == (d / "ca-cert.pem").read_bytes() + (
            d / "root-cert.pem"
        ).read_bytes()
        assert cert(d / "root-cert.pem") == root
    assert stat.S_IMODE((root_dir / "root-key.pem").stat().st_mode) == 0o600
    assert cert(root_dir / "c1" / "ca-cert.pem") != cert(root_dir / "c2" / "ca-cert.pem")


def test_kubernetes_secret_holds_the_four_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        meshctl(
            [
                "cacerts",
                "--root-dir",
                str(tmp_path),
                "--cluster",
                "east",
                "--kubernetes",
                "--namespace",
                "mesh",
            ]
        )
        == 0
    )
    (secret,) = list(yaml.safe_load_all(capsys.readouterr().out))
    assert (secret["kind"], secret["metadata"]["name"], secret["metadata"]["namespace"]) == (
        "Secret",
        "cacerts",
        "mesh",
    )
    for name, data in secret["data"].items():
        assert base64.b64decode(data) == (tmp_path / "east" / name).read_bytes()


def test_refusals_name_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert meshctl(["cacerts", "--root-dir", str(tmp_path), "--cluster", "c1"]) == 0
    key = (tmp_path / "c1" / "ca-key.pem").read_bytes()
    assert meshctl(["cacerts", "--root-dir", str(tmp_path), "--cluster", "c1"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "c1" / "ca-key.pem").read_bytes() == key  # never overwritten
    assert meshctl(["cacerts", "--root-dir", str(tmp_path), "--cluster", "Bad_Name"]) == 2
    assert "expected a DNS label" in capsys.readouterr().err
    (tmp_path / "root-key.pem").unlink()
    assert meshctl(["cacerts", "--root-dir", str(tmp_path), "--cluster", "c3"]) == 2
    assert "must both exist" in capsys.readouterr().err
