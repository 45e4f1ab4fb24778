"""Galley's ``POST /inject`` applies ProxyConfig (issue 15 item 4): MeshConfig ``defaultConfig``
from ``--mesh-config``, the ProxyConfig resources of its config source (a change applies to the
next pod) and the pod's ``proxy.istio.io/config``; fields not applied come back as warnings."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.polling import eventually

from .process import run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NAMESPACE_WIDE = """apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: shop, namespace: shop}
spec:
  concurrency: 3
  environmentVariables: {ISTIO_META_TEAM: shop}
"""
FOR_REVIEWS = """apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  concurrency: 6
"""


def review(annotations: dict[str, str]) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "reviews-1",
            "namespace": "shop",
            "labels": {"app": "reviews"},
            "annotations": annotations,
        },
        "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]},
    }
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "shop",
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": pod,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


async def inject(port: int, annotations: dict[str, str]) -> tuple[str, dict[str, str], list[str]]:
    """(the proxy's command, its env, the answer's warnings) for a pod in namespace shop."""
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.post(f"http://127.0.0.1:{port}/inject", json=review(annotations))
    assert resp.status_code == 200, resp.text
    answer = resp.json()["response"]
    assert answer["allowed"] is True, answer
    ops = json.loads(base64.b64decode(answer["patch"]))
    (containers,) = (op["value"] for op in ops if op["path"] == "/spec/containers")
    (proxy,) = (c for c in containers if c["name"] == "istio-proxy")
    env = {e["name"]: e["value"] for e in proxy["env"] if "value" in e}
    return str(proxy["command"][2]), env, list(answer.get("warnings", []))


async def test_injection_applies_mesh_default_resources_and_annotation(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "shop.yaml").write_text(NAMESPACE_WIDE)
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("defaultConfig:\n  drainDuration: 9s\n  tracing: {sampling: 5}\n")
    with run_galley(nats_server.url, conf, tmp_path / "galley.log", "--mesh-config", str(mesh)) as galley:
        await galley.wait_ready()
        assert "defaultConfig.tracing" in galley.log_text()  # what defaultConfig has that is not applied
        annotation = {
            "proxy.istio.io/config": "proxyMetadata: {ISTIO_META_POD: one}\n"
            "proxyHeaders: {requestId: {disabled: true}, xForwardedHost: {enabled: true}}"
        }
        command, env, warnings = await inject(galley.webhook_port, annotation)
        assert "--concurrency 3 --drain-time-s 9 " in command  # the namespace's resource, defaultConfig
        assert env["ISTIO_META_TEAM"] == "shop" and env["ISTIO_META_POD"] == "one"
        assert json.loads(env["PROXY_CONFIG"])["drainDuration"] == "9s"
        not_applied = "accepted, not applied by meshplane: proxy.istio.io/config proxyHeaders.xForwardedHost"
        assert warnings == [not_applied]

        # a workload's ProxyConfig, added while Galley runs, applies to the next pod injected
        (conf / "reviews.yaml").write_text(FOR_REVIEWS)

        async def workload_config_applied() -> bool:
            return "--concurrency 6 " in (await inject(galley.webhook_port, {}))[0]

        await eventually(workload_config_applied, "the workload's ProxyConfig to apply", 30)
