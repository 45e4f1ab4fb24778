"""Fixtures for Pilot's integration tests: real nats-server, real Pilot processes, real Envoys.

Nothing here is mocked. Upstream apps are tiny stdlib HTTP servers (threads) that answer with
their name/version and echo the request; every process is started on free loopback addresses
and stopped by PID at teardown.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshplane.ctl.bootstrap import BootstrapOptions, render_bootstrap
from meshplane.proto.bus.v1 import config_pb2, registry_pb2
from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.bus.buckets import config_key, service_key, workload_key
from meshplane.shared.config.validate import validate_object
from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import NatsServer, free_port, wait_for_port
from meshplane.shared.processes import ChildExited, ChildProcess

BIN = Path(sys.executable).parent


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ---- upstream apps ----------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: App

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self) -> None:
        app = self.server
        headers = {k.lower(): v for k, v in self.headers.items()}
        app.requests.append({"path": self.path, "headers": headers, "at": time.monotonic()})
        status = 200
        attempt = int(headers.get("x-envoy-attempt-count", "1"))
        if app.fail_all:
            status = 500
        elif self.path.startswith("/slow"):
            time.sleep(2.0)
        elif self.path.startswith("/flaky") and attempt == 1:
            status = 503
        elif self.path.startswith("/fail-attempts/") and attempt <= int(self.path.split("/")[2]):
            status = 503  # /fail-attempts/N: 503 to Envoy's first N attempts
        body = json.dumps(
            {"name": app.name, "version": app.version, "path": self.path, "headers": headers}
        ).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-served-by", f"{app.name}-{app.version}")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client (Envoy) gave up, e.g. after a route timeout

    do_GET = _answer
    do_POST = _answer
    do_OPTIONS = _answer  # CORS preflights that Envoy forwards


class App(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, version: str, host: str, port: int, fail_all: bool = False) -> None:
        super().__init__((host, port), _Handler)
        self.name = name
        self.version = version
        self.fail_all = fail_all
        self.requests: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _L4Handler(socketserver.BaseRequestHandler):
    server: L4App

    def handle(self) -> None:
        app = self.server
        conn: socket.socket = self.request
        try:
            if app.tls is not None:
                conn = app.tls.wrap_socket(conn, server_side=True)
            data = conn.recv(4096)
            app.seen.append(data)
            conn.sendall(app.name.encode() + b":" + data)
        except (OSError, ssl.SSLError):
            pass  # a client that gave up or a handshake that failed: nothing to answer
        finally:
            conn.close()


class L4App(socketserver.ThreadingTCPServer):
    """A TCP (or, with ``cert``/``key``, TLS-terminating) upstream answering ``<name>:<bytes read>``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, name: str, host: str, port: int, cert: Path | None = None, key: Path | None = None
    ) -> None:
        super().__init__((host, port), _L4Handler)
        self.name = name
        self.seen: list[bytes] = []
        self.tls: ssl.SSLContext | None = None
        if cert is not None and key is not None:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(str(cert), str(key))
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


# ---- processes --------------------------------------------------------------------------
@dataclass
class PilotProc:
    grpc: int
    http: int
    debug: int
    child: ChildProcess
    log: Path
    pilot_id: str

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.popen

    @property
    def url(self) -> str:
        """Monitoring: /ready, /metrics, /debug/syncz."""
        return f"http://127.0.0.1:{self.http}"

    @property
    def debug_url(self) -> str:
        """Every /debug endpoint (--debug-addr)."""
        return f"http://127.0.0.1:{self.debug}"

    def get(self, path: str) -> Any:
        return httpx.get(self.debug_url + path, timeout=5).json()

    def stop(self) -> None:
        self.child.stop(10)


def _answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_pilot(
    nats_url: str,
    tmp: Path,
    pilot_id: str,
    env: dict[str, str] | None = None,
    xds: Sequence[str] = ("--xds-plaintext",),
    grpc_host: str = "127.0.0.1",
) -> PilotProc:
    """``xds``: how ADS is served, plaintext unless the flags of mutual TLS are given;
    ``grpc_host``: the address ADS listens on (a pod network's gateway for proxies in pods)."""
    grpc, http, debug = free_port(), free_port(), free_port()
    log = tmp / f"{pilot_id}.log"
    argv = [str(BIN / "meshplane-pilot"), "--nats-url", nats_url, "--grpc-addr", f"{grpc_host}:{grpc}"]
    argv += ["--http-addr", f"127.0.0.1:{http}", "--debug-addr", f"127.0.0.1:{debug}"]
    argv += ["--id", pilot_id, *xds]
    child = ChildProcess(argv, log, env={"PILOT_DEBOUNCE_AFTER": "50ms", **(env or {})}, name=pilot_id)
    child.start()
    p = PilotProc(grpc, http, debug, child, log, pilot_id)
    try:
        child.wait_ready(lambda: _answers_200(p.url + "/ready"), 30, "ready")
    except (ChildExited, TimeoutError) as exc:
        p.stop()
        raise AssertionError(f"pilot did not become ready ({exc}); log:\n{log.read_text()[-3000:]}") from None
    return p


@dataclass
class EnvoyProc:
    name: str
    admin: int
    envoy: EnvoyProcess
    log: Path

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.envoy.child is not None
        return self.envoy.child.popen

    def admin_get(self, path: str) -> str:
        return httpx.get(f"http://127.0.0.1:{self.admin}{path}", timeout=5).text

    def stat(self, name: str) -> int:
        text = self.admin_get(f"/stats?filter=^{name}$")
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    def stop(self) -> None:
        self.envoy.stop(10)


def start_envoy(
    tmp: Path,
    name: str,
    opts: BootstrapOptions,
    binary: str | None = None,
    metadata: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> EnvoyProc:
    """``binary``: another Envoy than the installed one; ``metadata`` replaces node metadata entries."""
    admin = free_port()
    opts.admin = f"127.0.0.1:{admin}"
    bootstrap = render_bootstrap(opts)
    bootstrap["node"]["metadata"].update(metadata or {})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    log = tmp / f"envoy-{name}.log"
    args = ["--log-path", str(log), *extra_args]
    e = EnvoyProc(name, admin, EnvoyProcess(path, admin, extra_args=args, binary=binary).start(), log)
    if not wait_for_port("127.0.0.1", admin, 20):
        e.stop()
        raise AssertionError(
            f"envoy {name} admin did not open; log:\n{log.read_text()[-3000:] if log.exists() else ''}"
        )
    return e


def _bus_run(url: str, fn: Callable[[Buckets], Any]) -> None:
    async def go() -> None:
        bus = await Bus.connect(BusOptions(url=url, publish_deadline=10))
        try:
            await fn(Buckets(bus))
        finally:
            await bus.close()

    asyncio.run(go())


def vs_config(
    kind: str, ns: str, name: str, spec: dict[str, Any], group: str = "networking.istio.io"
) -> config_pb2.ConfigResource:
    return config_pb2.ConfigResource(
        kind=kind,
        group=group,
        version="v1",
        namespace=ns,
        name=name,
        spec_json=json.dumps(spec),
        resource_version=str(time.time_ns()),
    )


def bound_client_sidecar(ns: str, port: int, bind: str, name: str = "client") -> config_pb2.ConfigResource:
    """A Sidecar whose one HTTP egress port is a listener bound to the client's own address, with
    no iptables (``captureMode: NONE``), reaching every service of its namespace."""
    egress = {
        "port": {"number": port, "protocol": "HTTP", "name": "http"},
        "bind": bind,
        "captureMode": "NONE",
        "hosts": ["./*"],
    }
    return vs_config("Sidecar", ns, name, {"egress": [egress]})


def assert_valid(*configs: config_pb2.ConfigResource) -> None:
    """Fail unless every config passes Istio's admission checks (Galley's, the one implementation)."""
    problems = []
    for c in configs:
        obj = {
            "apiVersion": f"{c.group}/{c.version}",
            "kind": c.kind,
            "metadata": {"name": c.name, "namespace": c.namespace},
            "spec": json.loads(c.spec_json),
        }
        problems += [f"{c.kind} {c.namespace}/{c.name}: {e}" for e in validate_object(obj).errors]
    assert not problems, problems


@dataclass
class BusWriter:
    url: str
    configs: list[config_pb2.ConfigResource] = field(default_factory=list)

    def put_configs(self, *configs: config_pb2.ConfigResource) -> None:
        async def go(b: Buckets) -> None:
            for c in configs:
                await b.config.put(config_key(c.group, c.kind, c.namespace, c.name), c)

        _bus_run(self.url, go)

    def delete_config(self, kind: str, ns: str, name: str, group: str = "networking.istio.io") -> None:
        async def go(b: Buckets) -> None:
            await b.config.delete(config_key(group, kind, ns, name))

        _bus_run(self.url, go)

    def put_registry(
        self, services: list[registry_pb2.Service], workloads: list[registry_pb2.WorkloadInstance]
    ) -> None:
        async def go(b: Buckets) -> None:
            for s in services:
                await b.services.put(service_key(s.namespace, s.hostname), s)
            for w in workloads:
                await b.workloads.put(workload_key(w.namespace, w.name), w)

        _bus_run(self.url, go)

    def proxy_status(self) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def go(b: Buckets) -> None:
            found.update(await b.proxy_status.items())

        _bus_run(self.url, go)
        return found

    def delete_workload(self, ns: str, name: str) -> None:
        async def go(b: Buckets) -> None:
            await b.workloads.delete(workload_key(ns, name))

        _bus_run(self.url, go)


@pytest.fixture(scope="module")
def nats_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    tmp = tmp_path_factory.mktemp("nats")
    server = NatsServer(store_dir=tmp / "store", log_file=tmp / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def loopback_base() -> str:
    """A random 127.x.y. prefix so concurrent test runs never share listener addresses."""
    return f"127.{random.randint(20, 250)}.{random.randint(0, 250)}."


def free_port_on(hosts: list[str]) -> int:
    for _ in range(50):
        port = free_port()
        if all(_bindable(h, port) for h in hosts):
            return port
    raise RuntimeError("no common free port")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def proxy_options(
    kind: str, ip: str, pod: str, ns: str, labels: dict[str, str], pilots: list[str], delta: bool
) -> BootstrapOptions:
    """Bootstrap options for a proxy with its own loopback IP and no iptables (sidecars bind it)."""
    return BootstrapOptions(
        proxy_type=kind,
        node_id=f"{kind}~{ip}~{pod}.{ns}~{ns}.svc.cluster.local",
        pilots=pilots,
        delta=delta,
        namespace=ns,
        labels=labels,
        ip=ip,
        interception="NONE" if kind == "sidecar" else "REDIRECT",
    )


def publish(
    nats_url: str,
    registry: tuple[list[registry_pb2.Service], list[registry_pb2.WorkloadInstance]],
    configs: list[config_pb2.ConfigResource],
) -> BusWriter:
    """Put a registry and configs on the bus, the configs checked by Galley's rules first (what
    users would apply must pass them)."""
    assert_valid(*configs)
    bus = BusWriter(nats_url)
    bus.put_registry(*registry)
    bus.put_configs(*configs)
    return bus


def http_service(
    host: str, ns: str, address: str, port: int, app: str = "web"
) -> tuple[list[registry_pb2.Service], list[registry_pb2.WorkloadInstance]]:
    """A registry of one HTTP service on ``port`` with one workload (``<app>-1``) at ``address``."""
    svc_port = registry_pb2.ServicePort(name="http", number=port, protocol=registry_pb2.HTTP)
    workload = registry_pb2.WorkloadInstance(
        name=f"{app}-1",
        namespace=ns,
        address=address,
        services=[host],
        labels={"app": app},
        ports={"http": port},
    )
    return [registry_pb2.Service(hostname=host, namespace=ns, ports=[svc_port])], [workload]


def stop_all(*procs: Any) -> None:
    """Stop each process in order, skipping those never started (None)."""
    for proc in procs:
        if proc is not None:
            proc.stop()


class Kit:
    """The helpers above, handed to test modules as a fixture (test files cannot import conftest)."""

    App = App
    L4App = L4App
    BusWriter = BusWriter
    BootstrapOptions = BootstrapOptions
    start_pilot = staticmethod(start_pilot)
    start_envoy = staticmethod(start_envoy)
    proxy_options = staticmethod(proxy_options)
    wait_until = staticmethod(wait_until)
    vs_config = staticmethod(vs_config)
    bound_client_sidecar = staticmethod(bound_client_sidecar)
    assert_valid = staticmethod(assert_valid)
    publish = staticmethod(publish)
    stop_all = staticmethod(stop_all)
    http_service = staticmethod(http_service)
    loopback_base = staticmethod(loopback_base)
    free_port_on = staticmethod(free_port_on)
    free_port = staticmethod(free_port)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit
