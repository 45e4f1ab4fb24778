"""MeshConfig over the bus, applied live: Galley follows its ``--mesh-config`` file and publishes
it, Pilot pushes every proxy again. A trustDomain change reaches the SPIFFE SANs a real Envoy's
mTLS cluster checks; a broken file is refused by Galley (naming the field) and the last good one
stays in effect."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml

from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.meshconfig_bus import KEY, mesh_config_from_bus
from tests.integration.galley.process import run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"


def _objects(
    port: int, app_ip: str, client_ip: str, labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """A mesh-internal service with one WorkloadEntry (service account ``web-sa``, ``labels`` added)
    and the client's bound Sidecar: what a user would apply."""
    meta = {"namespace": NS}
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "web", **meta},
            "spec": {
                "hosts": [HOST],
                "location": "MESH_INTERNAL",
                "resolution": "STATIC",
                "ports": [{"number": port, "name": "http", "protocol": "HTTP"}],
                "workloadSelector": {"labels": {"app": "web"}},
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": "web-1", **meta},
            "spec": {
                "address": app_ip,
                "labels": {"app": "web", **(labels or {})},
                "serviceAccount": "web-sa",
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": "client", **meta},
            "spec": {
                "egress": [
                    {
                        "port": {"number": port, "protocol": "HTTP", "name": "http"},
                        "bind": client_ip,
                        "captureMode": "NONE",
                        "hosts": ["./*"],
                    }
                ]
            },
        },
    ]


def _mtls_sans(envoy: Any, port: int) -> list[str]:
    """The URI SANs the web cluster's ISTIO_MUTUAL socket match checks (config_dump)."""
    dump: Any = envoy.envoy.config_dump("?resource=dynamic_active_clusters")
    sans: list[str] = []
    for item in dump["configs"]:
        cluster = item.get("cluster", {})
        if cluster.get("name") != f"outbound|{port}||{HOST}":
            continue
        for match in cluster.get("transport_socket_matches", []):
            if match["name"] != "tlsMode-istio":
                continue
            ctx = match["transport_socket"]["typed_config"]["common_tls_context"]
            default = ctx["combined_validation_context"]["default_validation_context"]
            sans += [m["matcher"]["exact"] for m in default["match_typed_subject_alt_names"]]
    return sans


def _socket_matches(envoy: Any, port: int) -> list[str] | None:
    """The names of the web cluster's transport socket matches (active or warming), None before
    Envoy has the cluster."""
    dumps = [envoy.envoy.config_dump(f"?resource=dynamic_{s}_clusters") for s in ("active", "warming")]
    for item in [item for dump in dumps for item in dump.get("configs", [])]:
        cluster = item.get("cluster", {})
        if cluster.get("name") == f"outbound|{port}||{HOST}":
            return [m["name"] for m in cluster.get("transport_socket_matches", [])]
    return None


@contextmanager
def _mesh(
    kit: Any, nats_url: str, tmp_path: Path, mesh_text: str, labels: dict[str, str] | None = None
) -> Iterator[SimpleNamespace]:
    """Galley following a MeshConfig file (``mesh_text`` at first) and a config directory with
    :func:`_objects`, Pilot, and the client's sidecar Envoy."""
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "shop.yaml").write_text(yaml.safe_dump_all(_objects(port, app_ip, client_ip, labels)))
    mesh_dir = tmp_path / "mesh"
    mesh_dir.mkdir()
    mesh_file = mesh_dir / "mesh.yaml"
    mesh_file.write_text(mesh_text)
    with run_galley(nats_url, config_dir, tmp_path / "galley.log", "--mesh-config", str(mesh_file)) as galley:
        asyncio.run(galley.wait_ready())
        pilot = kit.start_pilot(nats_url, tmp_path, "pilot-mesh")
        envoy = None
        try:
            opts = kit.proxy_options(
                "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
            )
            envoy = kit.start_envoy(tmp_path, "client", opts)
            yield SimpleNamespace(
                galley=galley,
                pilot=pilot,
                envoy=envoy,
                mesh_file=mesh_file,
                port=port,
                ips=(client_ip, app_ip),
            )
        finally:
            if envoy is not None:
                envoy.stop()
            pilot.stop()


def _bus_trust_domain(nats_url: str) -> str:
    async def go() -> str:
        bus = await Bus.connect(BusOptions(url=nats_url, name="test-reader"))
        try:
            msg = await Buckets(bus).mesh_config.get(KEY)
        finally:
            await bus.close()
        return mesh_config_from_bus(msg).trust_domain if msg is not None else ""

    return asyncio.run(go())


def test_trust_domain_change_reaches_envoy_sans(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    url = nats_module.url
    with _mesh(kit, url, tmp_path, "trustDomain: old.example\n") as m:
        galley, pilot, envoy, mesh_file, port = m.galley, m.pilot, m.envoy, m.mesh_file, m.port
        kit.wait_until(
            lambda: _mtls_sans(envoy, port) == [f"spiffe://old.example/ns/{NS}/sa/web-sa"],
            30,
            "the SAN in the first trust domain",
        )

        mesh_file.write_text("trustDomain: new.example\n")
        kit.wait_until(
            lambda: _mtls_sans(envoy, port) == [f"spiffe://new.example/ns/{NS}/sa/web-sa"],
            30,
            "the SAN in the new trust domain, nothing restarted",
        )

        # the old domain as an alias: workloads still holding old certificates are accepted too
        mesh_file.write_text("trustDomain: new.example\ntrustDomainAliases: [old.example]\n")
        both = [f"spiffe://{td}/ns/{NS}/sa/web-sa" for td in ("new.example", "old.example")]
        kit.wait_until(lambda: _mtls_sans(envoy, port) == both, 30, "the SANs in the domain and its alias")

        mesh_file.write_text("trustDomain: Not A Domain!\n")
        kit.wait_until(
            lambda: (
                "trustDomain: expected a domain such as cluster.local, got 'Not A Domain!'"
                in galley.log_text()
            ),
            20,
            "Galley refusing the broken MeshConfig, naming the field",
        )
        assert _bus_trust_domain(url) == "new.example"
        assert pilot.get("/debug/mesh")["trustDomain"] == "new.example"
        assert _mtls_sans(envoy, port) == both
        assert galley.proc.poll() is None and pilot.proc.poll() is None and envoy.proc.poll() is None


def test_enable_auto_mtls_false_sends_plaintext_to_sidecars(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    """The web workload has a sidecar (``security.istio.io/tlsMode: istio``): with Istio's default
    the client's Envoy would speak ISTIO_MUTUAL to it; ``enableAutoMtls: false`` in the mesh file
    makes it plaintext, so the (plaintext) app answers through the client's Envoy."""
    sidecar = {"security.istio.io/tlsMode": "istio"}
    with _mesh(kit, nats_module.url, tmp_path, "{}\n", sidecar) as m:
        envoy, port = m.envoy, m.port
        client_ip, app_ip = m.ips
        kit.wait_until(
            lambda: _socket_matches(envoy, port) == ["tlsMode-istio", "tlsMode-disabled"],
            30,
            "auto mTLS by default",
        )
        app = kit.App("web", "v1", app_ip, port)
        try:
            m.mesh_file.write_text("enableAutoMtls: false\n")
            kit.wait_until(lambda: _socket_matches(envoy, port) == [], 30, "no auto-mTLS socket match")

            def get() -> int:
                resp = httpx.get(f"http://{client_ip}:{port}/", headers={"host": HOST}, timeout=5)
                return resp.status_code

            kit.wait_until(lambda: get() == 200, 30, "plaintext answered by the app through Envoy")
            assert app.requests and app.requests[-1]["headers"]["host"] == HOST
            assert m.pilot.get("/debug/mesh")["enableAutoMtls"] is False
        finally:
            app.stop()
