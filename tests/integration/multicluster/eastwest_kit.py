"""Two networks in real network namespaces, one Pilot, and an east-west gateway between them.

Network A and network B are two pod networks (Linux bridges); their pods have no default route, so
a pod of A cannot reach a pod of B (and the reverse) except through the east-west gateway, a
router Envoy in a namespace with a leg on each network (``istio: eastwestgateway``, NETWORK
``network-b``, Istio's ``cross-network-gateway`` AUTO_PASSTHROUGH server on 15443). MeshNetworks
(on the bus, in the MeshConfig) gives network B that gateway's A-side address.

Every workload is a real app process (it answers with its name, its network and the request
headers) and a sidecar Envoy with certificates from Citadel through a node agent, in its own
namespace. The control plane (nats-server, Citadel, node agents, Pilot) runs in the host, which
each pod reaches at its bridge's address; the workloads' registry is written to the bus with
``network`` set, as a remote cluster's would arrive.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import yaml

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.bootstrap import render_bootstrap
from meshplane.ctl.token import make_token
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.meshconfig_bus import KEY, mesh_config_message
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.podenvoy import NoSuchNameDns, PodEnvoy, run_pod_envoy
from meshplane.shared.testing.podnet import PodNetwork, PodSandbox

NS = "default"
HOST = f"web.{NS}.svc.cluster.local"
PORT = 8080
LOCALITY = {"network-a": "region-a/zone-a", "network-b": "region-b/zone-b"}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


kit = _load("_eastwest_pilot_kit", Path(__file__).resolve().parent.parent / "pilot" / "conftest.py")

APP = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name, network, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"name": name, "network": network,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@dataclass
class Pod:
    name: str
    network: str
    box: PodSandbox
    envoy: PodEnvoy
    app: ChildProcess | None = None

    @property
    def ip(self) -> str:
        return self.box.ip


@dataclass
class EastWestMesh:
    nets: dict[str, PodNetwork]
    pods: dict[str, Pod]
    gateway_ip: str
    nats_url: str
    pilot: Any
    tmp: Path
    bus: Any = field(init=False)

    def __post_init__(self) -> None:
        self.bus = kit.BusWriter(self.nats_url)

    def in_pod(self, pod: str, code: str, timeout: float = 15) -> str:
        """Run Python ``code`` inside ``pod``'s network namespace; its standard output."""
        done = subprocess.run(
            ["nsenter", f"--net={self.pods[pod].box.path}", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done.stdout.strip() or done.stderr.strip()[-300:]

    def call(self, n: int = 1) -> list[dict[str, Any]]:
        """``n`` requests from the client app (host side of network A) through the client's sidecar."""
        out = []
        with httpx.Client(timeout=10) as client:
            for _ in range(n):
                resp = client.get(f"http://{self.pods['client'].ip}:{PORT}/", headers={"host": HOST})
                out.append({"status": resp.status_code, **(resp.json() if resp.status_code == 200 else {})})
        return out

    def apply(self, kind: str, name: str, spec: dict[str, Any], group: str = "networking.istio.io") -> None:
        self.bus.put_configs(kit.vs_config(kind, NS, name, spec, group))


def _put_mesh_config(nats_url: str, mesh: dict[str, Any]) -> None:
    _, msg = mesh_config_message(yaml.safe_dump(mesh), "eastwest test")

    async def go() -> None:
        bus = await Bus.connect(BusOptions(url=nats_url, publish_deadline=10))
        try:
            await Buckets(bus).mesh_config.put(KEY, msg)
        finally:
            await bus.close()

    asyncio.run(go())


def _workload(pod: Pod) -> registry_pb2.WorkloadInstance:
    return registry_pb2.WorkloadInstance(
        name=pod.name,
        namespace=NS,
        address=pod.ip,
        labels={"app": "web", "security.istio.io/tlsMode": "istio"},
        service_account="web",
        services=[HOST],
        health=registry_pb2.HEALTHY,
        network=pod.network,
        locality=LOCALITY[pod.network],
        ports={"http": PORT},
    )


@contextmanager
def eastwest_mesh(tmp: Path, a_servers: int, b_servers: int) -> Iterator[EastWestMesh]:
    """The mesh of the module docstring with ``a_servers`` + ``b_servers`` workloads of ``web``."""
    with ExitStack() as stack:
        nets = {n: stack.enter_context(PodNetwork(tmp / n)) for n in ("network-a", "network-b")}
        dns = {n: NoSuchNameDns(net.gateway) for n, net in nets.items()}
        for d in dns.values():
            stack.callback(d.stop)
        nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log")
        nats.start()
        stack.callback(nats.stop)
        citadel = CitadelProcess(tmp / "ca", tmp / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
        citadel.start()
        stack.callback(citadel.stop)
        boxes = {"client": ("network-a", nets["network-a"].attach("client", default_route=False))}
        servers = [("network-a", f"a{i}") for i in range(1, a_servers + 1)]
        servers += [("network-b", f"b{i}") for i in range(1, b_servers + 1)]
        for net, name in servers:
            boxes[name] = (net, nets[net].attach(name, default_route=False))
        ewgw = nets["network-b"].attach("eastwestgateway", default_route=False)
        gateway_ip = nets["network-a"].join(ewgw)
        networks = {
            "network-a": {"endpoints": [{"fromCidr": str(nets["network-a"].network)}], "gateways": []},
            "network-b": {
                "endpoints": [{"fromCidr": str(nets["network-b"].network)}],
                "gateways": [{"address": gateway_ip, "port": 15443}],
            },
        }
        _put_mesh_config(nats.url, {"meshNetworks": {"networks": networks}})
        pilot = kit.start_pilot(nats.url, tmp, "pilot-eastwest", grpc_host="0.0.0.0")
        stack.callback(pilot.stop)
        agents = {}
        for sa in ("client", "web", "istio-eastwestgateway"):
            token = make_token(tmp / "ca", NS, sa, "istio-ca", 3600)
            agent = NodeAgentProcess(tmp / f"agent-{sa}", citadel.target, tmp / "ca" / "root-cert.pem", token)
            agent.start()
            stack.callback(agent.stop)
            agents[sa] = agent
        (tmp / "app.py").write_text(APP)
        pods: dict[str, Pod] = {}

        def envoy(
            name: str, net: str, box: PodSandbox, kind: str, sa: str, labels: dict[str, str]
        ) -> PodEnvoy:
            opts = kit.proxy_options(
                kind, box.ip, f"{name}-0", NS, labels, [f"{nets[net].gateway}:{pilot.grpc}"], delta=False
            )
            opts.sds_socket, opts.service_account, opts.locality = str(agents[sa].socket), sa, LOCALITY[net]
            bootstrap = render_bootstrap(opts)
            bootstrap["node"]["metadata"]["NETWORK"] = net
            proxy = run_pod_envoy(nets[net], box, bootstrap, tmp, dns[net])
            stack.callback(proxy.stop)
            return proxy

        for name, (net, box) in boxes.items():
            sa = "client" if name == "client" else "web"
            labels = (
                {"app": "client"}
                if name == "client"
                else {"app": "web", "security.istio.io/tlsMode": "istio"}
            )
            pod = pods[name] = Pod(name, net, box, envoy(name, net, box, "sidecar", sa, labels))
            if name != "client":
                pod.app = nets[net].run(
                    box, "app", [sys.executable, str(tmp / "app.py"), name, net, str(PORT)], {}
                )
        gw_labels = {"istio": "eastwestgateway", "topology.istio.io/network": "network-b"}
        pods["eastwestgateway"] = Pod(
            "eastwestgateway",
            "network-b",
            ewgw,
            envoy("eastwestgateway", "network-b", ewgw, "router", "istio-eastwestgateway", gw_labels),
        )
        mesh = EastWestMesh(nets, pods, gateway_ip, nats.url, pilot, tmp)
        svc_port = registry_pb2.ServicePort(name="http", number=PORT, protocol=registry_pb2.HTTP)
        mesh.bus.put_registry(
            [
                registry_pb2.Service(
                    hostname=HOST, namespace=NS, ports=[svc_port], resolution=registry_pb2.STATIC
                )
            ],
            [_workload(p) for p in pods.values() if p.app is not None],
        )
        mesh.apply("PeerAuthentication", "default", {"mtls": {"mode": "STRICT"}}, "security.istio.io")
        mesh.apply(
            "Gateway",
            "cross-network-gateway",
            {
                "selector": {"istio": "eastwestgateway"},
                "servers": [
                    {
                        "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                        "tls": {"mode": "AUTO_PASSTHROUGH"},
                        "hosts": ["*.local"],
                    }
                ],
            },
        )
        try:
            yield mesh
        finally:
            for pod in pods.values():
                log = tmp / f"envoy-{pod.box.key}.log"
                if log.exists():
                    print(f"--- {pod.name} envoy\n{log.read_text()[-1500:]}")
            print(f"--- pilot\n{pilot.log.read_text()[-2000:]}")


def envoy_json(pod: Pod, path: str) -> Any:
    return json.loads(pod.envoy.get(path))
