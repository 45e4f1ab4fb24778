"""Pilot's REDIRECT-mode sidecar config under real iptables capture, driving a real Envoy.

A pod netns gets the CNI plugin's real rules (plugin ADD through the agent). Its Envoy runs as
UID 1337, bootstrapped by ``meshctl bootstrap`` as a REDIRECT sidecar of a real Pilot; the
registry and Istio YAML come from a real Galley reading a config directory. The control plane
(nats-server, Galley, Pilot) and the upstream apps run in the "node" netns at the other end of the
pod's veth, as on a Kubernetes node. Traffic comes from an unprivileged process in the pod netns
that knows nothing of the mesh: it dials service VIPs and plain addresses; iptables sends it to
15001 (virtualOutbound) and inbound connections to 15006 (virtualInbound).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshplane.cni.testing import (
    PodNetns,
    agent,
    netconf,
    pod_netns,
    pod_object,
    prev_result,
    requires_root,
    run_plugin,
)
from meshplane.cni.testing_netns import (
    EchoServer,
    NetnsThread,
    http_get,
    netns_process,
    netns_thread,
    tcp_exchange,
    unprivileged_python,
)
from meshplane.ctl.bootstrap import BootstrapOptions, render_bootstrap
from meshplane.shared.envoyproc import find_envoy
from meshplane.shared.natsserver import find_nats_server, wait_for_port

# One worker runs the whole module so the setup (netns, control plane, Envoy) is made once.
pytestmark = [
    pytest.mark.root,
    pytest.mark.integration,
    requires_root,
    pytest.mark.timeout(180),
    pytest.mark.xdist_group("capture-redirect"),
]

BIN = Path(sys.executable).parent
NS = "capture"
NATS_PORT, PILOT_GRPC, PILOT_HTTP, GALLEY_HTTP, ADMIN = 4222, 15010, 15014, 15015, 15000
APP_PORT, EXTRA_PORT, REVIEWS_PORT, DB_PORT, UNKNOWN_PORT = 8080, 8081, 9080, 3306, 7070
V1_PORT, V2_PORT, DB_TARGET = 19081, 19082, 13306


def fq(name: str) -> str:
    return f"{name}.{NS}.svc.cluster.local"


try:
    ENVOY = find_envoy()
except FileNotFoundError:
    ENVOY = ""
PYTHON = unprivileged_python()
if not ENVOY or not PYTHON:
    pytestmark.append(pytest.mark.skip(reason="needs the envoy binary and a python any user can run"))


@dataclass
class Capture:
    kit: Any
    pod: PodNetns
    in_pod: NetnsThread
    in_node: NetnsThread
    config_dir: Path
    logs: Path
    vip: dict[str, str]
    apps: dict[str, Any]
    db: EchoServer
    #: Galley's ``--mesh-config`` file (Istio's defaults until a test writes it)
    mesh_file: Path

    def http(self, host: str, port: int, headers: dict[str, str] | None = None, inside: bool = True) -> Any:
        """GET from an unprivileged process in the pod netns (or, for inbound, the node netns)."""
        return http_get(self.pod.path if inside else self.in_node.path, host, port, headers)

    def tcp(self, host: str, port: int) -> str:
        return tcp_exchange(self.pod.path, host, port)

    def admin(self, path: str) -> str:
        return self.in_pod.call(lambda: httpx.get(f"http://127.0.0.1:{ADMIN}{path}", timeout=5).text)

    def stat(self, name: str) -> int:
        for line in self.admin(f"/stats?filter=^{name}$").splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    def write_config(self, name: str, docs: list[dict[str, Any]]) -> None:
        write_config(self.config_dir, name, docs)

    def write_mesh(self, text: str) -> None:
        """Replace the MeshConfig file in one step; Galley publishes it, Pilot pushes."""
        tmp = self.mesh_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.mesh_file)

    def log_tail(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def write_config(config_dir: Path, name: str, docs: list[dict[str, Any]]) -> None:
    """Replace ``<name>.yaml`` in Galley's directory in one step (Galley never sees half a file)."""
    tmp = config_dir / f".{name}.tmp"
    tmp.write_text(yaml.safe_dump_all(docs))
    tmp.replace(config_dir / f"{name}.yaml")


def _obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def _service_entry(name: str, vip: str, port: dict[str, Any]) -> dict[str, Any]:
    spec = {
        "hosts": [fq(name)],
        "addresses": [vip],
        "ports": [port],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "workloadSelector": {"labels": {"app": name}},
    }
    return _obj("ServiceEntry", name, spec)


def _workload(name: str, address: str, labels: dict[str, str], ports: dict[str, int]) -> dict[str, Any]:
    return _obj("WorkloadEntry", name, {"address": address, "labels": labels, "ports": ports})


def _mesh_config(pod: PodNetns, vip: dict[str, str]) -> list[dict[str, Any]]:
    http = {"name": "http", "protocol": "HTTP"}
    return [
        _service_entry("web", vip["web"], {"number": APP_PORT, **http}),
        _workload("web-1", pod.ip, {"app": "web"}, {}),
        _service_entry("reviews", vip["reviews"], {"number": REVIEWS_PORT, **http}),
        _workload("reviews-v1", pod.node_ip, {"app": "reviews", "version": "v1"}, {"http": V1_PORT}),
        _workload("reviews-v2", pod.node_ip, {"app": "reviews", "version": "v2"}, {"http": V2_PORT}),
        _service_entry("db", vip["db"], {"number": DB_PORT, "name": "tcp", "protocol": "TCP"}),
        _workload("db-1", pod.node_ip, {"app": "db"}, {"tcp": DB_TARGET}),
        _obj(
            "DestinationRule",
            "reviews",
            {"host": "reviews", "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]},
        ),
        _obj(
            "VirtualService",
            "reviews",
            {
                "hosts": ["reviews"],
                "http": [
                    {
                        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                        "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                    },
                    {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
                ],
            },
        ),
    ]


def _http_ok(thread: NetnsThread, url: str) -> bool:
    def get() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return thread.call(get)


def _control_plane(
    stack: ExitStack, kit: Any, node: NetnsThread, work: Path, config_dir: Path, mesh_file: Path
) -> None:
    """nats-server, Galley (config directory and MeshConfig file) and Pilot, all in the node netns."""
    netns = node.path
    nats_server = [find_nats_server(), "-a", "127.0.0.1", "-p", str(NATS_PORT)]
    nats_server += ["-js", "-sd", str(work / "nats")]
    stack.enter_context(netns_process(netns, nats_server, work / "nats.log"))
    assert node.call(wait_for_port, "127.0.0.1", NATS_PORT, 30), "nats-server did not start"
    nats = f"nats://127.0.0.1:{NATS_PORT}"
    galley = [str(BIN / "meshplane-galley"), "--nats-url", nats, "--config-dir", str(config_dir)]
    galley += ["--mesh-config", str(mesh_file)]
    galley += ["--webhook-addr", "127.0.0.1:15017", "--monitoring-addr", f"127.0.0.1:{GALLEY_HTTP}"]
    stack.enter_context(netns_process(netns, galley, work / "galley.log"))
    ready = f"http://127.0.0.1:{GALLEY_HTTP}/readyz"
    kit.wait_until(lambda: _http_ok(node, ready), 60, "galley ready")
    pilot = [str(BIN / "meshplane-pilot"), "--nats-url", nats, "--id", "pilot-capture", "--xds-plaintext"]
    pilot += ["--grpc-addr", f"0.0.0.0:{PILOT_GRPC}", "--http-addr", f"127.0.0.1:{PILOT_HTTP}"]
    debounce = {"PILOT_DEBOUNCE_AFTER": "50ms"}
    stack.enter_context(netns_process(netns, pilot, work / "pilot.log", env=debounce))
    kit.wait_until(lambda: _http_ok(node, f"http://127.0.0.1:{PILOT_HTTP}/ready"), 60, "pilot ready")


@pytest.fixture(scope="module")
def mesh(kit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    tmp = tmp_path_factory.mktemp("capture")
    with ExitStack() as stack:
        pod = stack.enter_context(pod_netns())
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mpcapture-")))
        work.chmod(0o755)  # the proxy user (1337) reads its bootstrap here
        in_pod = stack.enter_context(netns_thread(pod.path))
        in_node = stack.enter_context(netns_thread(f"/run/netns/{pod.node}"))
        # Service VIPs outside the pod's /24, as a cluster's service CIDR is.
        octets = pod.ip.split(".")
        prefix = "10.95" if octets[1] == "96" else "10.96"
        vip = {name: f"{prefix}.{octets[2]}.{10 + i}" for i, name in enumerate(("web", "reviews", "db"))}
        config_dir = tmp / "config"
        config_dir.mkdir()
        write_config(config_dir, "capture", _mesh_config(pod, vip))  # not mesh.yaml: the MeshConfig
        mesh_file = tmp / "mesh" / "mesh.yaml"
        mesh_file.parent.mkdir()
        mesh_file.write_text("{}\n")
        _control_plane(stack, kit, in_node, work, config_dir, mesh_file)

        def app(name: str, version: str, host: str, port: int, where: NetnsThread) -> Any:
            server = where.call(kit.App, name, version, host, port)
            stack.callback(server.stop)
            return server

        apps = {
            "v1": app("reviews", "v1", pod.node_ip, V1_PORT, in_node),
            "v2": app("reviews", "v2", pod.node_ip, V2_PORT, in_node),
            "outside": app("outside", "-", pod.node_ip, UNKNOWN_PORT, in_node),
            "outside-http": app("outside-http", "-", pod.node_ip, REVIEWS_PORT, in_node),
            "web": app("web", "v1", "0.0.0.0", APP_PORT, in_pod),
            "extra": app("web-extra", "v1", "0.0.0.0", EXTRA_PORT, in_pod),
        }
        db = in_node.call(EchoServer, "db", pod.node_ip, DB_TARGET)
        stack.callback(db.stop)
        cap = Capture(kit, pod, in_pod, in_node, config_dir, work, vip, apps, db, mesh_file)

        node_agent = stack.enter_context(agent(tmp, [pod_object("web-1", NS)], "--repair=false"))
        code, out = run_plugin(
            "ADD", netconf(node_agent.run_dir, prev_result(pod)), pod.path, pod=(NS, "web-1")
        )
        assert code == 0, out
        assert any("ISTIO_REDIRECT" in line for line in pod.save()), "the plugin ADD left no capture rules"

        opts = BootstrapOptions(
            node_id=f"sidecar~{pod.ip}~web-1.{NS}~{NS}.svc.cluster.local",
            pilots=[f"{pod.node_ip}:{PILOT_GRPC}"],
            admin=f"127.0.0.1:{ADMIN}",
            namespace=NS,
            labels={"app": "web"},
            ip=pod.ip,
            interception="REDIRECT",
        )
        bootstrap = work / "envoy.yaml"
        bootstrap.write_text(yaml.safe_dump(render_bootstrap(opts)))
        bootstrap.chmod(0o644)
        envoy = [ENVOY, "-c", str(bootstrap), "--use-dynamic-base-id", "--concurrency", "1"]
        envoy += ["-l", "warning", "--drain-time-s", "1"]
        stack.enter_context(netns_process(pod.path, envoy, work / "envoy.log", uid=1337))

        def live() -> bool:
            try:
                listeners = cap.admin("/listeners")
                wanted = ("virtualInbound", f"0.0.0.0_{REVIEWS_PORT}", f"{vip['db']}_{DB_PORT}")
                return cap.admin("/ready").strip() == "LIVE" and all(w in listeners for w in wanted)
            except httpx.HTTPError:
                return False

        try:
            kit.wait_until(live, 60, "envoy LIVE with Pilot's listeners")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nenvoy log:\n{cap.log_tail('envoy')}\npilot log:\n{cap.log_tail('pilot')}"
            ) from None
        yield cap


def test_outbound_http_to_a_service_vip_is_captured_and_routed_by_the_virtual_service(mesh: Capture) -> None:
    vip = mesh.vip["reviews"]
    # 0.0.0.0_9080 does not bind its port: it only gets connections virtualOutbound hands off.
    handed_off = mesh.stat(f"listener.0.0.0.0_{REVIEWS_PORT}.downstream_cx_total")
    v2_before = len(mesh.apps["v2"].requests)

    jason = mesh.http(vip, REVIEWS_PORT, {"end-user": "jason"})
    assert jason.get("status") == 200, (jason, mesh.log_tail("envoy"))
    assert json.loads(jason["body"])["version"] == "v2"
    seen = mesh.apps["v2"].requests[v2_before:]
    assert [r["headers"]["end-user"] for r in seen] == ["jason"]
    assert "x-request-id" in seen[0]["headers"], "the upstream got the request straight, not through Envoy"

    plain = mesh.http(vip, REVIEWS_PORT)
    assert plain.get("status") == 200, plain
    assert json.loads(plain["body"])["version"] == "v1"
    assert plain["headers"].get("x-served-by") == "reviews-v1"
    assert mesh.stat(f"listener.0.0.0.0_{REVIEWS_PORT}.downstream_cx_total") == handed_off + 2
    assert mesh.stat(f"cluster.outbound|{REVIEWS_PORT}|v2|{fq('reviews')}.upstream_rq_200") >= 1
    assert mesh.stat(f"cluster.outbound|{REVIEWS_PORT}|v1|{fq('reviews')}.upstream_rq_200") >= 1


def test_inbound_connections_to_the_pod_ip_go_through_virtual_inbound(mesh: Capture) -> None:
    inbound_cx = mesh.stat("listener.0.0.0.0_15006.downstream_cx_total")
    app_rq = mesh.stat(f"cluster.inbound|{APP_PORT}||.upstream_rq_200")
    before = len(mesh.apps["web"].requests)

    reply = mesh.http(mesh.pod.ip, APP_PORT, inside=False)
    assert reply.get("status") == 200, (reply, mesh.log_tail("envoy"))
    assert json.loads(reply["body"])["name"] == "web"
    assert reply["headers"].get("server") == "envoy"
    (seen,) = mesh.apps["web"].requests[before:]
    assert "x-request-id" in seen["headers"]
    assert mesh.stat("listener.0.0.0.0_15006.downstream_cx_total") == inbound_cx + 1
    assert mesh.stat(f"cluster.inbound|{APP_PORT}||.upstream_rq_200") == app_rq + 1

    # A port no service declares: the PassthroughFilterChain forwards it as plain TCP.
    passthrough = mesh.stat("cluster.InboundPassthroughCluster.upstream_cx_total")
    extra = mesh.http(mesh.pod.ip, EXTRA_PORT, inside=False)
    assert extra.get("status") == 200, (extra, mesh.log_tail("envoy"))
    assert json.loads(extra["body"])["name"] == "web-extra"
    assert mesh.stat("cluster.InboundPassthroughCluster.upstream_cx_total") == passthrough + 1


def _registry_only(mesh: Capture) -> bool:
    """Both unknown destinations blocked: a port with no listener, and an unknown host on 9080."""
    unknown_port = mesh.http(mesh.pod.node_ip, UNKNOWN_PORT)
    unknown_host = mesh.http(mesh.pod.node_ip, REVIEWS_PORT)
    return "error" in unknown_port and unknown_host.get("status") == 502


def _allow_any(mesh: Capture) -> bool:
    ports = (UNKNOWN_PORT, REVIEWS_PORT)
    return all(mesh.http(mesh.pod.node_ip, port).get("status") == 200 for port in ports)


def _assert_registry_only(mesh: Capture, what: str) -> None:
    """Once REGISTRY_ONLY is in force: unknown destinations go to the BlackHoleCluster and nothing
    gets out; services in the registry still work."""
    outside, outside_http = mesh.apps["outside"], mesh.apps["outside-http"]
    mesh.kit.wait_until(lambda: _registry_only(mesh), 30, what)
    blocked = mesh.stat("cluster.BlackHoleCluster.upstream_cx_none_healthy")
    seen = len(outside.requests), len(outside_http.requests)
    assert _registry_only(mesh)
    assert (len(outside.requests), len(outside_http.requests)) == seen, "a blocked request got out"
    assert mesh.stat("cluster.BlackHoleCluster.upstream_cx_none_healthy") == blocked + 1
    assert mesh.http(mesh.vip["reviews"], REVIEWS_PORT).get("status") == 200


def test_unknown_destinations_pass_through_unless_registry_only(mesh: Capture) -> None:
    outside = mesh.apps["outside"]
    passthrough = mesh.stat("cluster.PassthroughCluster.upstream_cx_total")
    before = len(outside.requests)
    # An address:port that no service has: virtualOutbound's own catch-all TCP chain.
    reply = mesh.http(mesh.pod.node_ip, UNKNOWN_PORT)
    assert reply.get("status") == 200, (reply, mesh.log_tail("envoy"))
    assert json.loads(reply["body"])["name"] == "outside"
    assert len(outside.requests) == before + 1
    assert mesh.stat("cluster.PassthroughCluster.upstream_cx_total") == passthrough + 1
    # An unknown host on a service's HTTP port: route "9080", virtual host allow_any.
    reply = mesh.http(mesh.pod.node_ip, REVIEWS_PORT)
    assert reply.get("status") == 200, reply
    assert json.loads(reply["body"])["name"] == "outside-http"
    assert mesh.stat("cluster.PassthroughCluster.upstream_rq_200") >= 1

    sidecar = _obj("Sidecar", "default", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}})
    mesh.write_config("sidecar", [sidecar])
    try:
        _assert_registry_only(mesh, "REGISTRY_ONLY to reach envoy")
    finally:
        (mesh.config_dir / "sidecar.yaml").unlink()
        mesh.kit.wait_until(lambda: _allow_any(mesh), 30, "ALLOW_ANY back")


def test_mesh_outbound_traffic_policy_is_the_default_a_sidecar_overrides(mesh: Capture) -> None:
    """MeshConfig ``outboundTrafficPolicy: {mode: REGISTRY_ONLY}`` blocks unknown destinations
    through the BlackHoleCluster with no Sidecar at all; a Sidecar's own ALLOW_ANY wins over it."""
    mesh.write_mesh("outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n")
    try:
        _assert_registry_only(mesh, "the mesh's REGISTRY_ONLY to reach envoy")

        sidecar = _obj("Sidecar", "default", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}})
        mesh.write_config("sidecar", [sidecar])
        mesh.kit.wait_until(lambda: _allow_any(mesh), 30, "the Sidecar's ALLOW_ANY over the mesh's")
        assert json.loads(mesh.http(mesh.pod.node_ip, UNKNOWN_PORT)["body"])["name"] == "outside"
    finally:
        (mesh.config_dir / "sidecar.yaml").unlink(missing_ok=True)
        mesh.write_mesh("{}\n")
        mesh.kit.wait_until(lambda: _allow_any(mesh), 30, "ALLOW_ANY back (Istio's default)")


def test_tcp_service_goes_through_its_own_tcp_proxy(mesh: Capture) -> None:
    vip = mesh.vip["db"]
    proxied = mesh.stat(f"tcp.outbound|{DB_PORT}||{fq('db')}.downstream_cx_total")
    accepted = mesh.db.count
    assert mesh.tcp(vip, DB_PORT) == "db:hello", mesh.log_tail("envoy")
    assert mesh.db.count == accepted + 1
    assert mesh.stat(f"tcp.outbound|{DB_PORT}||{fq('db')}.downstream_cx_total") == proxied + 1
    assert mesh.stat(f"listener.{vip}_{DB_PORT}.downstream_cx_total") >= 1
