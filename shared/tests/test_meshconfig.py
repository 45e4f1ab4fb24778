"""MeshConfig: rootNamespace, trustDomain and access logging applied (Istio defaults), others named."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from meshplane.shared.meshconfig import (
    FileLogProvider,
    MeshConfig,
    MeshConfigError,
    load_mesh_config,
    parse_mesh_config,
)
from meshplane.shared.meshconfig_otelals import OtelAlsProvider
from meshplane.shared.meshtracing import OtelTracingProvider


def test_defaults_are_istios() -> None:
    assert load_mesh_config(None) == MeshConfig("istio-system", "cluster.local")
    assert parse_mesh_config("", "f") == MeshConfig("istio-system", "cluster.local")


def test_fields_and_the_istio_configmap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bare = "rootNamespace: meshplane-system\ntrustDomain: example.org\nenableTracing: true\n"
    assert parse_mesh_config(bare, "f") == MeshConfig("meshplane-system", "example.org", ("enableTracing",))
    cm = "kind: ConfigMap\nmetadata: {name: istio}\ndata:\n  mesh: |\n    rootNamespace: meshplane-system\n"
    (tmp_path / "mesh.yaml").write_text(cm)
    assert load_mesh_config(tmp_path / "mesh.yaml").root_namespace == "meshplane-system"
    (tmp_path / "more.yaml").write_text(bare)
    with caplog.at_level(logging.WARNING):
        load_mesh_config(tmp_path / "more.yaml")
    assert "fields not applied by meshplane yet" in caplog.text and "enableTracing" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rootNamespace: Not_A_Namespace\n", "rootNamespace: expected a Kubernetes namespace name"),
        ("trustDomain: 'a/b'\n", "trustDomain: expected a domain"),
        ("- a\n", "expected a MeshConfig mapping, got list"),
        ("a: [\n", "not YAML"),
        ("kind: ConfigMap\ndata: {}\n", "a ConfigMap without data.mesh"),
    ],
)
def test_bad_files_name_the_field(text: str, message: str) -> None:
    with pytest.raises(MeshConfigError, match="mesh.yaml") as exc:
        parse_mesh_config(text, "mesh.yaml")
    assert message in str(exc.value)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MeshConfigError, match="--mesh-config .*missing.yaml: cannot read"):
        load_mesh_config(tmp_path / "missing.yaml")


def test_access_logging_fields_applied_and_other_providers_named() -> None:
    text = (
        "accessLogFile: /dev/stdout\naccessLogEncoding: JSON\naccessLogFormat: '{}'\n"
        "defaultProviders: {accessLogging: [envoy], tracing: [otel]}\n"
        "extensionProviders:\n"
        "- name: otel\n  opentelemetry: {service: c.ns.svc.cluster.local, port: 4317}\n"
        "- name: file\n  envoyFileAccessLog: {path: /tmp/x.log, logFormat: {text: '%RESPONSE_CODE%'}}\n"
        "- name: als\n  envoyOtelAls: {service: c.ns.svc.cluster.local, port: 4317}\n"
        "- name: prom\n  prometheus: {}\n"
    )
    mesh = parse_mesh_config(text, "f")
    assert (mesh.access_log_file, mesh.access_log_encoding, mesh.access_log_format) == (
        "/dev/stdout",
        "JSON",
        "{}",
    )
    assert mesh.default_access_log_providers == ("envoy",)
    assert mesh.file_log_provider("envoy") == FileLogProvider()  # Istio's built-in stays
    assert mesh.file_log_provider("file") == FileLogProvider("/tmp/x.log", text="%RESPONSE_CODE%")
    assert mesh.file_log_provider("otel") is None
    assert mesh.default_tracing_providers == ("otel",)
    assert mesh.tracing_provider("otel") == OtelTracingProvider("c.ns.svc.cluster.local", 4317)
    assert mesh.otel_als_provider("als") == OtelAlsProvider("c.ns.svc.cluster.local", 4317)
    assert mesh.not_applied == ("extensionProviders[prom].prometheus",)


def test_opentelemetry_tracing_providers() -> None:
    text = yaml.safe_dump(
        {
            "enableTracing": False,
            "extensionProviders": [
                {
                    "name": "http",
                    "opentelemetry": {
                        "service": "observability/otel.example.com",
                        "port": 4318,
                        "maxTagLength": 64,
                        "http": {
                            "path": "/v1/traces",
                            "timeout": "500ms",
                            "headers": [{"name": "a", "value": "b"}],
                        },
                        "resourceDetectors": {"environment": {}, "dynatrace": {}},
                    },
                },
                {
                    "name": "grpc",
                    "opentelemetry": {
                        "service": "otel.example.com",
                        "port": 4317,
                        "grpc": {"timeout": "1s", "initialMetadata": [{"name": "k", "value": "v"}]},
                        "dynatraceSampler": {"tenant": "t"},
                    },
                },
            ],
        }
    )
    mesh = parse_mesh_config(text, "f")
    http = mesh.tracing_provider("http")
    assert http is not None and http.hostname == "otel.example.com"
    assert (http.http_path, http.http_timeout, http.http_headers, http.max_tag_length) == (
        "/v1/traces",
        0.5,
        (("a", "b"),),
        64,
    )
    assert http.environment_detector and http.dynatrace_detector
    grpc = mesh.tracing_provider("grpc")
    assert grpc is not None and (grpc.http_path, grpc.grpc_timeout, grpc.grpc_metadata) == (
        None,
        1.0,
        (("k", "v"),),
    )
    # enableTracing: false is what meshplane does; the Dynatrace sampler is named
    assert mesh.not_applied == ("extensionProviders[grpc].opentelemetry.dynatraceSampler",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"port": 4317}, "opentelemetry.service: expected the collector's hostname"),
        ({"service": "a", "port": 0}, "opentelemetry.port: expected a port number"),
        (
            {"service": "a", "port": 1, "http": {"timeout": "soon"}},
            "opentelemetry.http.timeout: invalid duration",
        ),
        ({"service": "a", "port": 1, "zipkin": {}}, "unknown field(s) zipkin"),
    ],
)
def test_bad_opentelemetry_providers_are_named(body: dict[str, object], message: str) -> None:
    text = yaml.safe_dump({"extensionProviders": [{"name": "o", "opentelemetry": body}]})
    with pytest.raises(MeshConfigError) as exc:
        parse_mesh_config(text, "mesh.yaml")
    assert "mesh.yaml: extensionProviders[0] (o)." in str(exc.value) and message in str(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accessLogEncoding: XML\n", "accessLogEncoding: expected TEXT or JSON, got 'XML'"),
        ("accessLogFile: 3\n", "accessLogFile: expected a string"),
        (
            "extensionProviders: [{name: a}]\n",
            "extensionProviders[0] (a): expected exactly one provider type",
        ),
        (
            "extensionProviders: [{name: a, envoyFileAccessLog: {logFormat: {json: {}}}}]\n",
            "extensionProviders[0] (a).envoyFileAccessLog.logFormat: expected one of text or labels",
        ),
        ("defaultProviders: {accessLogging: envoy}\n", "defaultProviders.accessLogging: expected a list"),
    ],
)
def test_bad_access_logging_fields_are_named(text: str, message: str) -> None:
    with pytest.raises(MeshConfigError) as exc:
        parse_mesh_config(text, "mesh.yaml")
    assert message in str(exc.value)


def test_default_config_is_kept_and_its_unapplied_fields_named() -> None:
    text = "defaultConfig:\n  concurrency: 2\n  proxyMetadata: {A: 1}\n  tracing: {sampling: 10}\n"
    config = parse_mesh_config(text, "mesh.yaml")
    assert config.default_config == {
        "concurrency": 2,
        "proxyMetadata": {"A": "1"},
        "tracing": {"sampling": 10},
    }
    assert config.not_applied == ("defaultConfig.tracing",)
    with pytest.raises(MeshConfigError, match="^mesh.yaml: defaultConfig: drainDuration: "):
        parse_mesh_config("defaultConfig: {drainDuration: forever}\n", "mesh.yaml")
