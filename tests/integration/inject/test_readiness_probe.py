"""The injected readiness probe works (issue 13 item 5): the ``istio-proxy`` container's own
command (``meshctl bootstrap`` then ``exec envoy``, as injection writes it) runs in a pod network
namespace, and the kubelet's probe — the container's ``readinessProbe``, an HTTP GET from the node
to the pod's IP on Istio's 15021 ``/healthz/ready`` — fails while Pilot has not configured the
proxy and passes once a real Pilot (and its bus) on the node's side of the veth has."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from meshplane.cni.testing import BIN, pod_netns, requires_root, wait_until
from meshplane.cni.testing_netns import NetnsThread, netns_process, netns_thread
from meshplane.shared.bus.client import BUS_DIR_ENV
from meshplane.shared.bus.pki import BusPki
from meshplane.shared.envoyproc import find_envoy
from meshplane.shared.inject import InjectorConfig
from meshplane.shared.inject.template import proxy_container
from meshplane.shared.natsserver import find_nats_server

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root, pytest.mark.timeout(180)]


def http_status(worker: NetnsThread, url: str) -> tuple[int, str] | None:
    """(status, body) of a GET made from ``worker``'s netns; None when nothing answers."""

    def get() -> tuple[int, str] | None:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 (a test address)
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return None

    return worker.call(get)


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mp-inject-") as path:
        yield Path(path)


def test_the_injected_readiness_probe_fails_until_pilot_configures_the_proxy_then_passes(
    workdir: Path,
) -> None:
    envoy = shutil.which("envoy", path=str(BIN)) or find_envoy()
    with pod_netns() as pod, ExitStack() as stack:
        node = f"/run/netns/{pod.node}"
        proxy = proxy_container("reviews", InjectorConfig(pilot=f"{pod.node_ip}:15010"), {}, "REDIRECT")
        # The container's command, with the volumes' mount points where this test keeps them.
        (workdir / "podinfo").mkdir()
        (workdir / "podinfo" / "labels").write_text('app="reviews"\nversion="v1"\n')
        (workdir / "proxy").mkdir()
        script = (
            proxy["command"][2]
            .replace("/etc/istio/pod", str(workdir / "podinfo"))
            .replace("/etc/istio/proxy", str(workdir / "proxy"))
            .replace("meshctl bootstrap", f"{BIN / 'meshctl'} bootstrap --xds-plaintext")
            .replace("exec envoy", f"exec {envoy}")
        ) + " --use-dynamic-base-id"
        downward = {"POD_NAME": "reviews-1", "POD_NAMESPACE": "default", "INSTANCE_IP": pod.ip}
        downward["SERVICE_ACCOUNT"] = "bookinfo-reviews"
        stack.enter_context(
            netns_process(pod.path, ["/bin/sh", "-c", script], workdir / "proxy.log", env=downward)
        )
        in_pod = stack.enter_context(netns_thread(pod.path))
        on_node = stack.enter_context(netns_thread(node))
        get = proxy["readinessProbe"]["httpGet"]
        probe_url = f"http://{pod.ip}:{get['port']}{get['path']}"

        def admin(path: str) -> tuple[int, str] | None:
            return http_status(in_pod, f"http://127.0.0.1:15000{path}")

        # Envoy runs (its admin answers) but has no config from Pilot: not ready, and the probe fails.
        wait_until(lambda: admin("/ready") is not None, 60, "the proxy's Envoy admin")
        assert admin("/ready") in ((503, "PRE_INITIALIZING\n"), (503, "INITIALIZING\n"))
        assert http_status(on_node, probe_url) is None  # the health listener serves only once live

        # Pilot and its bus come up on the node: the proxy is configured and the probe passes.
        bus = BusPki.create(workdir / "bus", server_names=(pod.node_ip,))  # TLS and nkeys, as deployed
        nats = [find_nats_server(), "-c", str(bus.server_config), "-a", pod.node_ip, "-p", "4222"]
        nats += ["-js", "-sd", str(workdir / "nats")]
        stack.enter_context(netns_process(node, nats, workdir / "nats.log"))
        pilot = [str(BIN / "meshplane-pilot"), "--xds-plaintext", "--nats-url", f"nats://{pod.node_ip}:4222"]
        pilot += ["--grpc-addr", f"{pod.node_ip}:15010", "--http-addr", f"{pod.node_ip}:15014"]
        pilot_env = {"PILOT_DEBOUNCE_AFTER": "50ms", BUS_DIR_ENV: str(bus.root)}
        stack.enter_context(netns_process(node, pilot, workdir / "pilot.log", env=pilot_env))
        wait_until(
            lambda: http_status(on_node, probe_url) == (200, "LIVE\n"), 90, "the readiness probe to pass"
        )
        stats = admin("/stats?filter=^listener_manager.lds.update_success$")
        assert stats is not None and int(stats[1].split(": ")[1]) >= 1, stats
    assert os.path.exists(workdir / "proxy" / "envoy.yaml")
