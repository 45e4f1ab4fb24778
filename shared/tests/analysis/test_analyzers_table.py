"""Table tests: one case per code for the analyzers that read Kubernetes kinds and cross-resource
selectors, in the shapes Istio's analyzer test inputs use. Each case asserts the (code, level,
resource) triples of the codes under test, and a fixed variant of the input that gives none."""

from __future__ import annotations

import base64
import copy as copy_module
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshplane.shared.analysis import analyze
from meshplane.shared.analysis.runner import Options
from meshplane.shared.testing.certs import write_self_signed

from .builders import SIDECAR, TELEMETRY, TLS_SERVER, VS, Case, found, gateway
from .cases import CASES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_table(case: Case) -> None:
    codes = {c for c, _, _ in case.expected}
    assert found(case.text, codes, case.options) == sorted(case.expected)
    if case.fix is not None:
        old, new = case.fix
        assert old in case.text
        assert found(case.text.replace(old, new), codes, case.options) == []


def test_workload_entries_count_as_selected_workloads() -> None:
    """meshplane runs workloads as WorkloadEntries: a Sidecar selecting one is not selecting nothing."""
    text = SIDECAR.format(name="s1", spec="{workloadSelector: {labels: {app: reviews}}}")
    assert found(text, {"IST0101"}) == [("IST0101", "Error", "Sidecar default/s1")]
    entry = (
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: reviews-1, namespace: default}\n"
        "spec: {address: 127.0.0.2, labels: {app: reviews}}\n"
    )
    assert found(text + entry, {"IST0101"}) == []


def test_annotations_on_istio_kinds_are_not_analyzed() -> None:
    """istioctl reads annotations of Namespaces, Services, Pods and Deployments only."""
    text = VS.format(name="vs", spec="{hosts: [a.example.com]}").replace(
        "namespace: default}", "namespace: default, annotations: {nonsense.istio.io/x: y}}"
    )
    assert "nonsense.istio.io/x" in text
    assert found(text, {"IST0107", "IST0108"}) == []
    assert found(text.replace("kind: VirtualService", "kind: Service"), {"IST0108"}) == [
        ("IST0108", "Warning", "Service default/vs")
    ]


def _pem_pair(directory: Path) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key (PEM), made by the shared test helper."""
    cert, key = write_self_signed(directory, "bookinfo.example.com")
    return cert.read_bytes(), key.read_bytes()


def _tls_secret(cert: bytes, key: bytes) -> str:
    b64 = base64.b64encode
    return (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: my-cert, namespace: istio-system}\n"
        "type: kubernetes.io/tls\n"
        f"data: {{tls.crt: {b64(cert).decode()}, tls.key: {b64(key).decode()}}}\n---\n"
    )


def _expired_pair() -> tuple[bytes, bytes]:
    """A self-signed certificate whose validity ended yesterday, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old.example.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now - timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_ist0161_gateway_credential_unusable(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, key = _pem_pair(tmp_path / "a")
    _, other_key = _pem_pair(tmp_path / "b")
    gw = gateway("gw", "{istio: ingressgateway}", TLS_SERVER)
    assert found(_tls_secret(cert, key) + gw, {"IST0101", "IST0161"}) == []
    # As istioctl: the key is not checked against the certificate.
    assert found(_tls_secret(cert, other_key) + gw, {"IST0101", "IST0161"}) == []
    expected = [("IST0161", "Error", "Gateway default/gw")]
    assert found(_tls_secret(b"not a certificate", key) + gw, {"IST0161"}) == expected
    assert found(_tls_secret(*_expired_pair()) + gw, {"IST0161"}) == expected
    assert found(_tls_secret(cert, b"") + gw, {"IST0161"}) == expected
    objs = [(d, "") for d in yaml.safe_load_all(_tls_secret(*_expired_pair()) + gw) if d]
    assert (
        "The credential referenced by the Gateway gw in namespace default is invalid, which can cause the "
        "traffic not to work as expected." in [m.text for m in analyze(objs).messages]
    )


BAD_VALUES: tuple[object, ...] = (5, "x", [1, "y"], {"k": 1}, None)


def _mangled(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of ``obj`` with one field (spec, metadata, webhooks or data; two levels deep) mistyped."""
    out = []
    for section in ("spec", "metadata", "webhooks", "data"):
        value = obj.get(section)
        items = (
            value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        )
        for key, inner in list(items):
            for bad in BAD_VALUES:
                copy = copy_module.deepcopy(obj)
                copy[section][key] = bad
                out.append(copy)
            if isinstance(inner, dict):
                for key2 in inner:
                    for bad in BAD_VALUES:
                        copy = copy_module.deepcopy(obj)
                        copy[section][key][key2] = bad
                        out.append(copy)
    return out


def test_malformed_fields_never_raise() -> None:
    """Analysis runs on what the schema check rejects too: wrong types give messages, not tracebacks."""
    for case in CASES:
        docs = [d for d in yaml.safe_load_all(case.text) if isinstance(d, dict)]
        for doc in docs:
            others = [(d, "x.yaml:1") for d in docs if d is not doc]
            for bad in _mangled(doc):
                analyze([(bad, "bad.yaml:1"), *others], case.options)


def test_synthetic_ingress_gateway_gives_way_to_the_inputs_and_to_mesh_config() -> None:
    gw = gateway(
        "gw",
        "{istio: ingressgateway}",
        "[{port: {number: 8443, name: https, protocol: HTTPS}, hosts: ['*']}]",
    )
    assert found(gw, {"IST0101", "IST0162"}) == [
        ("IST0162", "Warning", "Gateway default/gw")
    ]  # not on 80/443
    own = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: istio-ingressgateway, namespace: istio-system}\n"
        "spec: {selector: {istio: ingressgateway}, ports: [{name: https, port: 8443}]}\n---\n"
    )
    assert found(own + gw, {"IST0101", "IST0162"}) == []
    off = Options(mesh_config={"ingressControllerMode": "OFF"})
    assert found(gw, {"IST0101"}, off) == [("IST0101", "Error", "Gateway default/gw")]


def test_ist0157_names_telemetry_providers_meshplane_does_not_apply() -> None:
    """A zipkin tracer or an envoyHttpAls logger is accepted, not applied: named; an opentelemetry
    tracer and a file logger are applied: nothing said."""
    mesh = {
        "extensionProviders": [
            {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}},
            {"name": "otel", "opentelemetry": {"service": "otel.o.svc.cluster.local", "port": 4317}},
            {"name": "als", "envoyHttpAls": {"service": "otel.o.svc.cluster.local", "port": 4317}},
        ]
    }
    spec = (
        "{tracing: [{providers: [{name: zipkin}]}], "
        "accessLogging: [{providers: [{name: envoy}, {name: als}]}]}"
    )
    text = TELEMETRY.format(name="t1", spec=spec)
    objs = [(d, "t.yaml:1") for d in yaml.safe_load_all(text) if d]
    messages = [m for m in analyze(objs, Options(mesh_config=mesh)).messages if m.code == "IST0157"]
    assert sorted(m.text.split("meshplane: ")[1].split(" ")[0] for m in messages) == [
        "accessLogging[0].providers[als]",
        "tracing[0].providers[zipkin]",
    ]
    fixed = text.replace("name: zipkin", "name: otel").replace(", {name: als}", "")
    assert found(fixed, {"IST0157"}, Options(mesh_config=mesh)) == []
    otel_als = {"name": "als", "envoyOtelAls": {"service": "otel.o.svc.cluster.local", "port": 4317}}
    applied = {"extensionProviders": [mesh["extensionProviders"][1], otel_als]}
    assert found(text.replace("name: zipkin", "name: otel"), {"IST0157"}, Options(mesh_config=applied)) == []


def test_mesh_config_fields_not_applied_are_named() -> None:
    """IST0133 per MeshConfig field meshplane does not apply; IST0106 when Pilot would refuse it."""
    mesh = {
        "rootNamespace": "istio-system",
        "enableTracing": True,
        "defaultConfig": {"concurrency": 2, "tracing": {"sampling": 10}},
    }
    messages = [
        m for m in analyze([], Options(mesh_config=mesh)).messages if m.resource.startswith("MeshConfig")
    ]
    assert sorted((m.code, m.resource, m.text) for m in messages) == [
        (
            "IST0133",
            "MeshConfig istio-system/istio",
            f"Schema validation warning: accepted, not applied by meshplane: {field}",
        )
        for field in ("defaultConfig.tracing", "enableTracing")
    ]
    applied = {"rootNamespace": "istio-system", "accessLogFile": "/dev/stdout", "enableTracing": False}
    assert [m for m in analyze([], Options(mesh_config=applied)).messages if m.code == "IST0133"] == []
    bad = analyze([], Options(mesh_config={"trustDomain": "a/b"})).messages
    assert [(m.code, "trustDomain" in m.text) for m in bad if m.resource.startswith("MeshConfig")] == [
        ("IST0106", True)
    ]
