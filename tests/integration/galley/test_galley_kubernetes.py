"""meshplane-galley in Kubernetes mode (no --config-dir) against recorded API responses and a real NATS.

The API server is replaced by recorded list bodies and watch events in the API's JSON shape;
everything else (galley process, bus) is real. Shows config and registry arriving on the bus,
a watch event propagating, and an invalid object from the API never being published.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from meshplane.shared.bus import Buckets, Bus
from meshplane.shared.bus.buckets import config_key, service_key, workload_key
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.certs import write_self_signed
from meshplane.shared.testing.kubeapi import RecordedAPI, serve
from meshplane.shared.testing.polling import eventually

from .process import run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DATA = Path(__file__).resolve().parents[3] / "services" / "galley" / "tests" / "testdata" / "kube"
VS = "/apis/networking.istio.io/v1/virtualservices"


def recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return body


async def test_recorded_api_config_and_registry_reach_the_bus(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    api = RecordedAPI()
    for path, name in (
        ("/api/v1/services", "services"),
        ("/apis/discovery.k8s.io/v1/endpointslices", "endpointslices"),
        ("/api/v1/pods", "pods"),
        ("/api/v1/namespaces", "namespaces"),
        (VS, "virtualservices"),
    ):
        api.add_list(path, recorded(name))
    added = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "ratings",
            "namespace": "default",
            "resourceVersion": "4900",
            "uid": "u-ratings",
        },
        "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}]}]},
    }
    api.add_watch(VS, [{"type": "ADDED", "object": added}])
    buckets = Buckets(bus)
    namespaces = recorded("namespaces")["items"]
    with (
        serve(api) as url,
        run_galley(nats_server.url, None, tmp_path / "galley.log", "--kube-api", url) as galley,
    ):
        await galley.wait_ready()
        services = await buckets.services.items()
        assert service_key("default", "reviews.default.svc.cluster.local") in services
        workloads = await buckets.workloads.items()
        assert workloads[workload_key("default", "reviews-v1-7d4c8b9f5-abcde")].address == "10.244.1.17"

        async def both_virtual_services() -> bool:
            config = await buckets.config.items()
            return set(config) == {
                config_key("networking.istio.io", "VirtualService", "default", "reviews"),
                config_key("networking.istio.io", "VirtualService", "default", "ratings"),
                *(config_key("core", "Namespace", "-", ns["metadata"]["name"]) for ns in namespaces),
            }

        await eventually(both_virtual_services, "the watched VirtualService next to the listed one")
        config = await buckets.config.items()
        assert (
            config[config_key("networking.istio.io", "VirtualService", "default", "ratings")].resource_version
            == "4900"
        )
        sources = await galley.get("/debug/sources")
        assert sources["source"] == "kubernetes"
        assert "VirtualService default/broken" in sources["rejected"]
        assert galley.stop() == 0


async def test_recorded_api_galley_publishes_ca_and_fails_closed_once_its_webhook_denies(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    name = "meshplane-validator-meshplane-system"
    config_path = f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}"
    gateways = "/apis/networking.istio.io/v1/namespaces/meshplane-system/gateways"
    api = RecordedAPI()
    for path, body in (
        ("/api/v1/services", "services"),
        ("/apis/discovery.k8s.io/v1/endpointslices", "endpointslices"),
        ("/api/v1/pods", "pods"),
        ("/api/v1/namespaces", "namespaces"),
        (config_path, "validatingwebhookconfiguration"),
    ):
        api.add_list(path, recorded(body))
    api.add_response("PATCH", config_path, recorded("validatingwebhookconfiguration"))
    not_found = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": "the server could not find the requested resource",
                 "reason": "NotFound", "code": 404}  # fmt: skip
    api.add_response("POST", gateways, not_found, 404)  # the Gateway CRD is not installed yet
    api.add_response("POST", gateways, recorded("gateway-denied"), 400)
    cert, key = write_self_signed(tmp_path, "galley")
    ca = base64.b64encode(cert.read_bytes()).decode()
    with_ca = recorded("validatingwebhookconfiguration")
    with_ca["webhooks"][0]["clientConfig"]["caBundle"] = ca
    api.add_list(config_path, with_ca)  # what the API returns after the first PATCH
    with (
        serve(api) as url,
        run_galley(
            nats_server.url,
            None,
            tmp_path / "galley.log",
            "--kube-api",
            url,
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ) as galley,  # fmt: skip
    ):
        await galley.wait_ready()

        async def failed_closed() -> bool:
            return len(api.written("PATCH", config_path)) == 2

        await eventually(failed_closed, "failurePolicy patched after the dry-run denial")
        patches = api.written("PATCH", config_path)
        assert len(patches) == 2
        assert patches[0] == [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca}]
        assert patches[-1] == [{"op": "add", "path": "/webhooks/0/failurePolicy", "value": "Fail"}]
        assert len(api.written("POST", gateways)) == 2  # 404 first (retried), then denied
        assert galley.stop() == 0
