"""The VM side of auto-registration: ``meshctl bootstrap --workload-group`` writes Istio's VM
node metadata, and ``meshctl workload-probe`` runs real probes (an HTTP server, a TCP port, a
command) with Istio's thresholds and refuses what it cannot run, naming the problem."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshplane.ctl.main import main
from meshplane.ctl.workloadprobe import HealthState, Probe, health_request, read_bootstrap
from meshplane.shared.envoyproc import find_envoy

NODE = "sidecar~10.0.0.5~vm-1.vms~vms.svc.cluster.local"


def _write_group(tmp: Path, probe: dict[str, Any] | None, namespace: str = "vms") -> Path:
    spec: dict[str, Any] = {"template": {"labels": {"app": "db"}}}
    if probe is not None:
        spec["probe"] = probe
    doc = {"kind": "WorkloadGroup", "metadata": {"name": "db", "namespace": namespace}, "spec": spec}
    path = tmp / "wg.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _bootstrap(tmp: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    out = tmp / "vm.yaml"
    code = main(
        ["bootstrap", "--node-id", NODE, "--namespace", "vms", "--xds-plaintext", *flags, "-o", str(out)]
    )
    return code, yaml.safe_load(out.read_text()) if code == 0 else {}


def test_bootstrap_with_a_workload_group_carries_istios_vm_metadata(tmp_path: Path) -> None:
    probe = {"httpGet": {"port": 8080, "path": "/ready"}, "periodSeconds": 2}
    group = _write_group(tmp_path, probe)
    code, boot = _bootstrap(tmp_path, "--workload-group", str(group), "--network", "vm-net")
    assert code == 0
    md = boot["node"]["metadata"]
    assert md["AUTO_REGISTER_GROUP"] == "db" and md["NETWORK"] == "vm-net"
    assert md["PROXY_CONFIG"] == {"readinessProbe": probe}
    vm = read_bootstrap(str(tmp_path / "vm.yaml"))
    assert vm.node["id"] == NODE and vm.probe.spec == probe and vm.pilots == ["127.0.0.1:15010"]


def test_bootstrap_refuses_a_group_of_another_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    group = _write_group(tmp_path, None, namespace="other")
    code, _ = _bootstrap(tmp_path, "--workload-group", str(group))
    assert code == 2
    assert "--workload-group: the group is in namespace 'other'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("probe", "flags", "message"),
    [
        (None, (), "has no PROXY_CONFIG.readinessProbe"),
        ({"grpc": {"port": 9000}}, (), "grpc probes are not run by meshctl workload-probe"),
        ({"tcpSocket": {"port": 9000}}, ("--pilot-san", "spiffe://x/ns/a/sa/b"), "mutual TLS"),
    ],
)
def test_workload_probe_refuses_what_it_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], probe: Any, flags: tuple[str, ...], message: str
) -> None:
    group = _write_group(tmp_path, probe)
    out = tmp_path / "vm.yaml"
    argv = ["bootstrap", "--node-id", NODE, "--namespace", "vms", "--workload-group", str(group)]
    tls = ["--sds-socket", "/tmp/sds.sock", *flags] if flags else ["--xds-plaintext"]
    assert main([*argv, *tls, "-o", str(out)]) == 0
    assert main(["workload-probe", "--bootstrap", str(out)]) == 2
    assert message in capsys.readouterr().err


class _Ready(BaseHTTPRequestHandler):
    status = 200

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(type(self).status if self.path == "/ready" else 404)
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        _Ready.status = 200


def test_http_probe_passes_on_2xx_and_names_the_failure(http_server: ThreadingHTTPServer) -> None:
    port = http_server.server_address[1]
    probe = Probe({"httpGet": {"host": "127.0.0.1", "port": port, "path": "/ready"}})
    assert asyncio.run(probe.run()) is None
    _Ready.status = 503
    assert asyncio.run(probe.run()) == f"GET http://127.0.0.1:{port}/ready: HTTP 503"


def test_tcp_probe_needs_a_listener() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        probe = Probe({"tcpSocket": {"host": "127.0.0.1", "port": port}})
        assert asyncio.run(probe.run()) is None
    failure = asyncio.run(probe.run())
    assert failure is not None and failure.startswith(f"connect 127.0.0.1:{port}:")


def test_exec_probe_and_timeout(tmp_path: Path) -> None:
    assert asyncio.run(Probe({"exec": {"command": ["true"]}}).run()) is None
    assert asyncio.run(Probe({"exec": {"command": ["false"]}}).run()) == "exec false: exit code 1"
    slow = Probe({"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 1})
    assert asyncio.run(slow.run()) == "exec probe timed out after 1s"


def test_state_flips_at_istios_thresholds() -> None:
    state = HealthState(success_threshold=2, failure_threshold=3)
    assert [state.record(None), state.record(None)] == [False, True] and state.healthy is True
    assert [state.record("down"), state.record("down"), state.record(None)] == [False, False, False]
    assert [state.record("a"), state.record("b"), state.record("c")] == [False, False, True]
    assert (state.healthy, state.message) == (False, "c")


def test_health_request_is_istios_health_information(tmp_path: Path) -> None:
    group = _write_group(tmp_path, {"tcpSocket": {"port": 9000}})
    _bootstrap(tmp_path, "--workload-group", str(group))
    vm = read_bootstrap(str(tmp_path / "vm.yaml"))
    state = HealthState(1, 1)
    state.record("connect refused")
    req = health_request(vm, state, with_node=True)
    assert req.type_url == "type.googleapis.com/istio.v1.HealthInformation"
    assert req.node.id == NODE and req.node.metadata.fields["AUTO_REGISTER_GROUP"].string_value == "db"
    assert (req.error_detail.code, req.error_detail.message) == (13, "connect refused")
    state.record(None)
    healthy = health_request(vm, state, with_node=False)
    assert not healthy.HasField("error_detail") and not healthy.HasField("node")


def test_over_mutual_tls_the_prober_goes_through_envoys_relay_socket(tmp_path: Path) -> None:
    group = _write_group(tmp_path, {"tcpSocket": {"port": 9000}})
    out, sock = tmp_path / "vm.yaml", tmp_path / "relay.sock"
    argv = ["bootstrap", "--node-id", NODE, "--namespace", "vms", "--workload-group", str(group)]
    argv += ["--sds-socket", str(tmp_path / "sds.sock"), "--xds-relay-socket", str(sock), "-o", str(out)]
    assert main(argv) == 0
    boot = yaml.safe_load(out.read_text())
    [relay] = boot["static_resources"]["listeners"]
    assert relay["address"]["pipe"] == {"path": str(sock), "mode": 0o600}
    tcp = relay["filter_chains"][0]["filters"][0]["typed_config"]
    assert tcp["cluster"] == "xds-grpc"  # Envoy's own (mutual TLS) connection to Pilot
    # Envoy itself accepts it
    checked = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(out)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert read_bootstrap(str(out)).pilots == [f"unix:{sock}"]


def test_a_relative_relay_socket_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootstrap", "--xds-plaintext", "--xds-relay-socket", "relay.sock"]) == 2
    assert "--xds-relay-socket: expected an absolute path, got 'relay.sock'" in capsys.readouterr().err
