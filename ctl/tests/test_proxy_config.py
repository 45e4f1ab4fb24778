"""meshctl proxy-config reads a real Envoy's admin interface and shows Istio-named config."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshplane.ctl.main import main
from meshplane.ctl.proxyconfig import route_rows, section
from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import free_port

pytestmark = pytest.mark.integration

VS_META = {
    "filter_metadata": {
        "istio": {"config": "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"}
    }
}
DR_META = {
    "filter_metadata": {
        "istio": {"config": "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"}
    }
}


def self_signed(tmp: Path) -> tuple[Path, Path, int]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    crt, pk = tmp / "cert.pem", tmp / "key.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pk.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pk.chmod(0o600)
    return crt, pk, cert.serial_number


@pytest.fixture
def envoy(tmp_path: Path) -> Iterator[tuple[EnvoyProcess, int]]:
    admin, port, upstream = free_port(), free_port(), free_port()
    crt, key, serial = self_signed(tmp_path)
    cluster = {
        "name": "outbound|9080|v1|reviews.default.svc.cluster.local",
        "type": "STATIC",
        "connect_timeout": "1s",
        "metadata": DR_META,
        "load_assignment": {
            "cluster_name": "outbound|9080|v1|reviews.default.svc.cluster.local",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": upstream}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    hcm = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "p",
            "route_config": {
                "name": "9080",
                "virtual_hosts": [
                    {
                        "name": "reviews.default.svc.cluster.local:9080",
                        "domains": ["reviews.default.svc.cluster.local", "reviews", "reviews.default"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "route": {"cluster": cluster["name"]},
                                "metadata": VS_META,
                            }
                        ],
                    }
                ],
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                }
            ],
        },
    }
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "clusters": [cluster, {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"}],
            "listeners": [
                {
                    "name": f"0.0.0.0_{port}",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{"filters": [hcm]}],
                }
            ],
            "secrets": [
                {
                    "name": "default",
                    "tls_certificate": {
                        "certificate_chain": {"filename": str(crt)},
                        "private_key": {"filename": str(key)},
                    },
                }
            ],
        },
    }
    cfg = tmp_path / "envoy.yaml"
    cfg.write_text(yaml.safe_dump(bootstrap))
    proc = EnvoyProcess(cfg, admin, log_file=tmp_path / "envoy.log").start()
    try:
        proc.wait_ready()
        yield proc, serial
    finally:
        proc.stop()


def test_tables_from_a_real_envoy(
    envoy: tuple[EnvoyProcess, int], capsys: pytest.CaptureFixture[str]
) -> None:
    proc, _ = envoy
    target = f"127.0.0.1:{proc.admin_port}"
    assert main(["proxy-config", "cluster", target, "--fqdn", "reviews"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["SERVICE", "FQDN", "PORT"]
    assert lines[1].split() == [
        "reviews.default.svc.cluster.local",
        "9080",
        "v1",
        "outbound",
        "STATIC",
        "reviews.default",
    ]
    assert len(lines) == 2  # BlackHoleCluster filtered out by --fqdn
    # Envoy lists only RDS-delivered route configs in its dump; read the inline one from the listener.
    hcm = section(proc.config_dump(), "listener")["static_listeners"][0]["listener"]["filter_chains"][0][
        "filters"
    ][0]
    rows = route_rows({"dynamic_route_configs": [{"route_config": hcm["typed_config"]["route_config"]}]})
    assert rows == [
        [
            "9080",
            "reviews.default.svc.cluster.local:9080",
            "reviews.default.svc.cluster.local, reviews + 1 more...",
            "/*",
            "reviews.default",
        ]
    ]
    assert main(["proxy-config", "endpoint", target]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[1:] == ["HEALTHY", "OK", "outbound|9080|v1|reviews.default.svc.cluster.local"]


def test_secret_and_json(envoy: tuple[EnvoyProcess, int], capsys: pytest.CaptureFixture[str]) -> None:
    proc, serial = envoy
    target = f"127.0.0.1:{proc.admin_port}"
    assert main(["proxy-config", "secret", target]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:5] == ["default", "Cert", "Chain", "STATIC", "true"] and row[5] == f"{serial:x}"
    assert main(["proxy-config", "listener", target, "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["static_listeners"][0]["listener"]["name"].startswith("0.0.0.0_")


def test_unknown_proxy_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "proxies.json").write_text(json.dumps({"a.default": "127.0.0.1:1"}))
    assert main(["proxy-config", "cluster", "b.default", "--state-dir", str(tmp_path)]) == 1
    assert "known: a.default" in capsys.readouterr().err
    assert main(["proxy-config", "cluster", f"127.0.0.1:{free_port()}"]) == 2
    assert "cannot read /config_dump" in capsys.readouterr().err


def test_route_section_is_not_the_scoped_routes_dump() -> None:
    # Envoy lists ScopedRoutesConfigDump before RoutesConfigDump once RDS is in use
    dump = {
        "configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump"},
            {
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                "dynamic_route_configs": [
                    {
                        "route_config": {
                            "name": "9080",
                            "virtual_hosts": [
                                {
                                    "name": "reviews:9080",
                                    "domains": ["reviews"],
                                    "routes": [{"match": {"prefix": "/"}}],
                                }
                            ],
                        }
                    }
                ],
            },
        ]
    }
    assert route_rows(section(dump, "route")) == [["9080", "reviews:9080", "reviews", "/*", "-"]]
