"""One trust across clusters: `meshctl cacerts` makes a root and an intermediate per cluster; two
Citadels plugged in with them issue workload certificates that each cluster's root verifies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from meshplane.citadel.testing import CitadelProcess
from meshplane.ctl.main import main as meshctl
from meshplane.proto.istio.v1.auth import ca_pb2_grpc

from .test_plugged_ca import issue

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def citadels(tmp_path: Path) -> Iterator[dict[str, CitadelProcess]]:
    root = tmp_path / "mesh-root"
    assert meshctl(["cacerts", "--root-dir", str(root), "--cluster", "east", "--cluster", "west"]) == 0
    procs = {c: CitadelProcess(root / c, tmp_path / f"citadel-{c}.log") for c in ("east", "west")}
    try:
        for proc in procs.values():
            proc.start()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def load(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem if isinstance(pem, bytes) else pem.encode())


def test_each_clusters_certificates_verify_against_the_other_clusters_root(
    citadels: dict[str, CitadelProcess],
    stub_factory: Callable[..., ca_pb2_grpc.IstioCertificateServiceStub],
) -> None:
    chains = {}
    for cluster, proc in citadels.items():
        stub = stub_factory(proc.target, proc.root_pem())
        chains[cluster] = [load(pem) for pem in issue(stub, proc.ca_dir)]
    for cluster, other in (("east", "west"), ("west", "east")):
        leaf, intermediate, root = chains[cluster]
        assert intermediate.subject.get_attributes_for_oid(x509.NameOID.LOCALITY_NAME)[0].value == cluster
        leaf.verify_directly_issued_by(intermediate)
        # the root the *other* cluster's Citadel distributes is the one that signed this intermediate
        other_root = load(citadels[other].root_pem())
        intermediate.verify_directly_issued_by(other_root)
        assert root == other_root
        uri = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert uri.get_values_for_type(x509.UniformResourceIdentifier) == [
            "spiffe://cluster.local/ns/default/sa/a"
        ]
    assert chains["east"][1] != chains["west"][1]
