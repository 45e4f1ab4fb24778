"""ProxyConfig reaches a real Envoy through injection (issue 15 item 4): the ``istio-proxy``
container that injection writes for a pod — effective ProxyConfig from MeshConfig
``defaultConfig``, a namespace ProxyConfig resource, a workload one and the pod's
``proxy.istio.io/config`` — runs its own command (``meshctl bootstrap``, then ``exec envoy``) with
its own environment in a pod network namespace, and Envoy's admin shows every setting."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from meshplane.cni.testing import BIN, pod_netns, requires_root, wait_until
from meshplane.cni.testing_netns import netns_process, netns_thread
from meshplane.shared.envoyproc import find_envoy
from meshplane.shared.inject import InjectorConfig, inject_pod
from meshplane.shared.proxyconfig import ProxyConfigs

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root, pytest.mark.timeout(120)]

MESH_DEFAULT = {
    "drainDuration": "7s",
    "proxyStatsMatcher": {"inclusionPrefixes": ["http.admin."]},
    "proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"},
}
RESOURCES = [
    {
        "kind": "ProxyConfig",
        "metadata": {"namespace": "shop", "name": "all", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"concurrency": 2, "environmentVariables": {"ISTIO_META_FROM_NAMESPACE": "shop"}},
    },
    {
        "kind": "ProxyConfig",
        "metadata": {"namespace": "shop", "name": "reviews", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "concurrency": 3},
    },
]


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mp-proxycfg-") as path:
        yield Path(path)


def injected_proxy() -> dict[str, Any]:
    pod = {
        "metadata": {
            "name": "reviews-1",
            "namespace": "shop",
            "labels": {"app": "reviews"},
            # the annotation is below the workload's resource (concurrency 3 wins) but adds its own
            "annotations": {
                "proxy.istio.io/config": "concurrency: 8\nproxyMetadata: {ISTIO_META_FROM_POD: pod}"
            },
        },
        "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]},
    }
    configs = ProxyConfigs.build(MESH_DEFAULT, RESOURCES, "istio-system")
    inject_pod(pod, "reviews", InjectorConfig(pilot="127.0.0.1:15010"), configs, "shop")
    (proxy,) = (c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    return dict(proxy)


def test_injected_proxy_config_shows_in_envoys_concurrency_drain_stats_and_node_metadata(
    workdir: Path,
) -> None:
    envoy = shutil.which("envoy", path=str(BIN)) or find_envoy()
    proxy = injected_proxy()
    env = {e["name"]: e["value"] for e in proxy["env"] if "value" in e}
    env |= {"POD_NAME": "reviews-1", "POD_NAMESPACE": "shop", "SERVICE_ACCOUNT": "reviews"}
    with pod_netns() as pod, ExitStack() as stack:
        env["INSTANCE_IP"] = pod.ip
        (workdir / "podinfo").mkdir()
        (workdir / "podinfo" / "labels").write_text('app="reviews"\n')
        (workdir / "proxy").mkdir()
        script = (
            proxy["command"][2]
            .replace("/etc/istio/pod", str(workdir / "podinfo"))
            .replace("/etc/istio/proxy", str(workdir / "proxy"))
            .replace("meshctl bootstrap", f"{BIN / 'meshctl'} bootstrap --xds-plaintext")
            .replace("exec envoy", f"exec {envoy}")
        ) + " --use-dynamic-base-id"
        stack.enter_context(
            netns_process(pod.path, ["/bin/sh", "-c", script], workdir / "proxy.log", env=env)
        )
        in_pod = stack.enter_context(netns_thread(pod.path))

        def admin(path: str) -> str | None:
            def get() -> str | None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:15000{path}", timeout=3) as resp:  # noqa: S310
                        return str(resp.read().decode())
                except (urllib.error.URLError, OSError):
                    return None

            return in_pod.call(get)

        wait_until(lambda: admin("/server_info") is not None, 60, "the proxy's Envoy admin")
        options = json.loads(admin("/server_info") or "{}")["command_line_options"]
        assert options["concurrency"] == 3  # the workload's ProxyConfig resource
        assert options["drain_time"] == "7s" and options["drain_strategy"] == "Immediate"  # defaultConfig

        admin("/ready")  # an admin request, counted under http.admin.
        stats = admin("/stats") or ""
        names = {line.split(":")[0] for line in stats.splitlines()}
        assert "http.admin.downstream_rq_total" in names  # the matcher's inclusion
        assert "server.live" in names  # Istio's required prefixes stay
        assert not any(n.startswith("runtime.") for n in names), sorted(names)  # everything else is out

        dump = json.loads(admin("/config_dump") or "{}")
        (boot,) = (c for c in dump["configs"] if c["@type"].endswith("BootstrapConfigDump"))
        metadata = boot["bootstrap"]["node"]["metadata"]
        assert metadata["DNS_CAPTURE"] == "true" and metadata["FROM_NAMESPACE"] == "shop"
        assert metadata["FROM_POD"] == "pod"
        assert metadata["PROXY_CONFIG"]["concurrency"] == 3
