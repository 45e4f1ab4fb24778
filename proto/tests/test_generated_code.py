"""The committed generated code matches proto/*.proto (run `make proto` when this fails)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from meshplane.proto.bus.v1 import config_pb2
from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc

PROTO = Path(__file__).resolve().parents[1]


def test_committed_code_is_not_stale(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    subprocess.run([str(PROTO / "gen.sh"), str(tmp_path)], check=True, env=env, capture_output=True)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*_pb2*.py*")}
    committed_root = PROTO / "src"
    committed = {
        p.relative_to(committed_root): p.read_bytes()
        for p in committed_root.rglob("*_pb2*.py*")
        if "__pycache__" not in p.parts
    }
    assert sorted(fresh) == sorted(committed), "generated files differ: run `make proto`"
    stale = [str(name) for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code: {stale}; run `make proto`"


def test_ca_api_is_wire_compatible_with_istio() -> None:
    fields = {f.name: f.number for f in ca_pb2.IstioCertificateRequest.DESCRIPTOR.fields}
    assert fields == {"csr": 1, "validity_duration": 3, "metadata": 4}
    assert ca_pb2.IstioCertificateResponse.DESCRIPTOR.fields_by_name["cert_chain"].number == 1
    service = ca_pb2.DESCRIPTOR.services_by_name["IstioCertificateService"]
    assert service.full_name == "istio.v1.auth.IstioCertificateService"
    assert hasattr(ca_pb2_grpc, "IstioCertificateServiceStub")


def test_config_envelope_roundtrip() -> None:
    msg = config_pb2.ConfigResource(
        kind="VirtualService", group="networking.istio.io", version="v1", namespace="default", name="r"
    )
    msg.labels["app"] = "reviews"
    assert config_pb2.ConfigResource.FromString(msg.SerializeToString()) == msg
