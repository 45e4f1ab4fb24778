"""Galley's debug endpoints stay inside its network namespace; monitoring is for everyone.

Galley runs as a real process in a pod's network namespace on a test bridge, with its monitoring
address opened as ``k8s/`` opens it (``0.0.0.0:15014``) and its debug address left at the
default. From the node (a non-loopback address) ``/metrics`` and ``/readyz`` answer and
``/debug/*`` does not, on either port; from inside the namespace the debug port answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.kubeenv import wait_until
from meshplane.shared.testing.podnet import PodNetwork, PodSandbox, unavailable_reason

BIN = Path(sys.executable).parent
REASON = unavailable_reason()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(REASON is not None, reason=str(REASON)),
    pytest.mark.timeout(120),
]

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
"""


@dataclass
class InPod:
    box: PodSandbox

    @property
    def ip(self) -> str:
        return self.box.ip

    def get_inside(self, url: str) -> str:
        """GET ``url`` from a process inside the pod's network namespace."""
        fetch = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())"
        done = subprocess.run(
            ["nsenter", f"--net={self.box.path}", sys.executable, "-c", fetch, url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (a test pod's address)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def galley(tmp_path: Path) -> Iterator[InPod]:
    network = PodNetwork(tmp_path / "pods").start()
    nats = NatsServer(
        store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log", host=network.gateway, plaintext=True
    )
    try:
        nats.start()
        conf = tmp_path / "conf"
        conf.mkdir()
        (conf / "reviews.yaml").write_text(VS)
        box = network.attach("galley")
        argv = [str(BIN / "meshplane-galley"), "--nats-url", nats.url, "--config-dir", str(conf)]
        argv += ["--monitoring-addr", "0.0.0.0:15014"]  # as k8s/ deploys it; --debug-addr: default
        network.run(box, "galley", argv, {})
        wait_until(lambda: _get(f"http://{box.ip}:15014/readyz") == 200, "galley ready", timeout=60)
        yield InPod(box)
    finally:
        network.close()
        nats.stop()


def test_debug_answers_only_inside_the_pod(galley: InPod) -> None:
    assert _get(f"http://{galley.ip}:15014/metrics") == 200
    assert _get(f"http://{galley.ip}:15014/debug/sources") == 404
    assert _get(f"http://{galley.ip}:15014/debug/analyze") == 404
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"http://{galley.ip}:9876/debug/sources", timeout=5)  # noqa: S310
    assert isinstance(refused.value.reason, ConnectionRefusedError)

    sources = json.loads(galley.get_inside("http://127.0.0.1:9876/debug/sources"))
    assert [f["path"] for f in sources["files"]] == ["reviews.yaml"]
    analysis = json.loads(galley.get_inside("http://127.0.0.1:9876/debug/analyze"))
    assert "messages" in analysis
