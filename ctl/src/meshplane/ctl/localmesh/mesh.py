"""Bring up the local mesh's processes in order, each on free loopback ports, waiting for each.

Order: nats-server, Citadel, Galley and Pilot (control plane), then per proxy (every workload
and the ingress gateway) a node agent with its own SDS socket and a token signed by Citadel's
local issuer, the workload apps, and finally the Envoys, waited on until admin ``/ready`` is LIVE.
``<state>/proxies.json`` maps each proxy name to its Envoy admin address for ``meshctl proxy-config``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from meshplane.ctl.bootstrap import BootstrapOptions, render_bootstrap
from meshplane.ctl.localmesh.plan import EASTWEST_LABELS, GATEWAY_LABELS, Plan, Workload
from meshplane.ctl.localmesh.supervisor import Managed, StartError, Supervisor, http_status
from meshplane.ctl.token import make_token
from meshplane.shared.bus.client import BUS_CREDENTIALS_ENV, BUS_DIR_ENV
from meshplane.shared.bus.pki import BusPki
from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.proxyconfig import ProxySettings

GATEWAY = Workload(
    name="istio-ingressgateway",
    namespace="istio-system",
    address="127.0.0.1",
    labels=GATEWAY_LABELS,
    service_account="istio-ingressgateway-service-account",
    command=[],
    source=Path("."),
)
EASTWEST = Workload(
    name="istio-eastwestgateway",
    namespace="istio-system",
    address="127.0.0.1",
    labels=EASTWEST_LABELS,
    service_account="istio-eastwestgateway-service-account",
    command=[],
    source=Path("."),
)
_KIND = {"ingressgateway": "the ingress gateway", "eastwestgateway": "the east-west gateway"}
TOKEN_TTL = 7 * 24 * 3600
#: Pilot's namespace and service account, as in k8s/ (its SPIFFE ID: bootstrap.PILOT_SAN in the
#: mesh's trust domain)
PILOT_IDENTITY = ("meshplane-system", "pilot")
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, with the terminating NUL


def _accepts(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


def _is_live(url: str) -> bool:
    return http_status(url)[1].strip() == "LIVE"


def _all(probes: Sequence[Callable[[], bool]]) -> bool:
    return all(p() for p in probes)


def _ready_on(m: Managed, url: str) -> None:
    m.ready = partial(_http_ok, url)


def _http_ok(url: str) -> bool:
    return http_status(url)[0] == 200


def _envoy_options(proxy: ProxySettings) -> dict[str, Any]:
    """ProxyConfig ``concurrency`` (unset: 1 worker per local proxy; 0: every core) and
    ``drainDuration`` as Envoy's options."""
    options: dict[str, Any] = {"concurrency": 1 if proxy.concurrency is None else proxy.concurrency}
    if options["concurrency"] == 0:
        options["concurrency"] = os.cpu_count() or 1
    if proxy.drain_seconds is not None:
        options["drain_time_s"] = max(0, round(proxy.drain_seconds))
        options["extra_args"] = ["--drain-strategy", "immediate"]
    return options


def _private_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


@dataclass
class LocalMesh:
    plan: Plan
    config_dir: Path
    state: Path
    sup: Supervisor
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    nats_url: str = ""
    ca_addr: str = ""
    pilot_addr: str = ""
    admins: dict[str, str] = field(default_factory=dict)
    sds_dir: Path | None = None
    #: the bus's CA and per-component credentials (set by start_bus)
    bus: BusPki | None = None
    #: ``meshctl up --mesh-config``: given to Citadel, Galley and Pilot
    mesh_config: Path | None = None

    # hooks a cluster of a multi-cluster mesh (``localmesh.multi``) overrides
    def _name(self, name: str) -> str:
        """A component's name in the table and its log file's (``<logs>/<name>.log``)."""
        return name

    @property
    def ca_dir(self) -> Path:
        """Citadel's ``--ca-dir`` (its self-signed CA, or plugged-in cacerts) and the token issuer's."""
        return self.state / "ca"

    def _nats(self, log: Path) -> NatsServer:
        assert self.bus is not None
        return NatsServer(
            store_dir=self.state / "nats",
            log_file=log,
            die_with_parent=True,
            config_file=self.bus.server_config,
        )

    def _bus_pki(self) -> BusPki:
        root = os.environ.get(BUS_DIR_ENV)
        return BusPki.load(root) if root else BusPki.create(self.state / "bus")

    def _flags(self, component: str) -> list[str]:
        """More flags for ``meshplane-<component>`` (galley, pilot, citadel)."""
        return []

    def gateways(self) -> list[tuple[Workload, str]]:
        """The routers to run: (workload, where it listens)."""
        return [(GATEWAY, f"{self.plan.gateway_bind}:{self.plan.gateway_port}")]

    def _bootstrap(self, opts: BootstrapOptions) -> BootstrapOptions:
        return opts

    def _step(self, what: str) -> float:
        print(f"  {what} ...", end="", flush=True)
        return time.monotonic()

    def _done(self, started: float) -> None:
        print(f" ready ({time.monotonic() - started:.1f}s)", flush=True)

    def check_addresses(self) -> None:
        """Fail before starting anything when the gateway's or an app's address is taken."""
        wanted: list[tuple[str, int, str]] = []
        for gw, listens in self.gateways():
            host, _, port = listens.rpartition(":")
            selector = gw.labels["istio"]
            wanted.append(
                (
                    host,
                    int(port),
                    f"{_KIND[selector]} (the Gateway with selector istio: {selector} in {self.config_dir})",
                )
            )
        for wl in self.plan.workloads:
            for endpoint in wl.app_endpoints:
                app_host, _, app_port = endpoint.rpartition(":")
                what = f"the app of LocalWorkload {wl.namespace}/{wl.name} (its Sidecar's defaultEndpoint)"
                wanted.append((wl.address if app_host == "0.0.0.0" else app_host, int(app_port), what))
        for host, number, what in wanted:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Envoy and asyncio do
                try:
                    probe.bind((host, number))
                except OSError as exc:
                    raise StartError(
                        f"{host}:{number}, where {what} listens, is taken: {exc.strerror}"
                    ) from exc

    def start_bus(self) -> None:
        t = self._step("nats-server (the bus)")
        log = self.sup.logs / f"{self._name('nats-server')}.log"
        # the bus's CA, server certificate and one nkey per component (fresh for every run), or
        # the bus directory $MESHPLANE_BUS_DIR names (the test suite's)
        self.bus = self._bus_pki()
        nats = self._nats(log).start()
        assert nats.child is not None
        m = self.sup.adopt(self._name("nats-server"), nats.child, nats.url)  # restarts: same port and store
        m.ready = partial(_accepts, nats.host, nats.port)
        self.nats_url = nats.url
        self._done(t)

    def _bus_env(self, identity: str) -> dict[str, str]:
        """Where a component finds its own bus credentials (``ca.crt``, ``nkey.seed``)."""
        assert self.bus is not None, "start_bus first"
        return {BUS_CREDENTIALS_ENV: str(self.bus.root / identity)}

    def start_control_plane(self) -> None:
        common = ["--nats-url", self.nats_url]
        if self.mesh_config is not None:
            common += ["--mesh-config", str(self.mesh_config)]
        ca, mtls, ca_mon = free_port(), free_port(), free_port()
        self.ca_addr = f"127.0.0.1:{ca}"
        t = self._step("meshplane-citadel (CA)")
        citadel = self.sup.start(
            self._name("meshplane-citadel"),
            [str(self.bin_dir / "meshplane-citadel"), *common, "--ca-dir", str(self.ca_dir)]
            + ["--grpc-addr", self.ca_addr, "--grpc-mtls-addr", f"127.0.0.1:{mtls}"]
            + ["--monitoring-addr", f"127.0.0.1:{ca_mon}", *self._flags("citadel")],
            f"CA {self.ca_addr}, metrics :{ca_mon}",
            env={"CITADEL_CA_KEY_TYPE": "ec", **self._bus_env("citadel")},
        )
        _ready_on(citadel, f"http://127.0.0.1:{ca_mon}/ready")
        self.sup.wait_http(citadel, f"http://127.0.0.1:{ca_mon}/ready")
        self._done(t)
        hook, galley_mon, galley_debug = free_port(), free_port(), free_port()
        t = self._step("meshplane-galley" + (" and meshplane-pilot" if self.runs_pilot else ""))
        galley = self.sup.start(
            self._name("meshplane-galley"),
            [str(self.bin_dir / "meshplane-galley"), *common, "--config-dir", str(self.config_dir)]
            + ["--webhook-addr", f"127.0.0.1:{hook}", "--monitoring-addr", f"127.0.0.1:{galley_mon}"]
            + ["--debug-addr", f"127.0.0.1:{galley_debug}", *self._flags("galley")],
            f"config {self.config_dir}, webhook :{hook}, monitoring :{galley_mon}, debug :{galley_debug}",
            env=self._bus_env("galley"),
        )
        _ready_on(galley, f"http://127.0.0.1:{galley_mon}/ready")
        if self.runs_pilot:
            self._start_pilot(common)
        self.sup.wait_http(galley, f"http://127.0.0.1:{galley_mon}/ready")
        self._done(t)

    @property
    def runs_pilot(self) -> bool:
        return True

    def _start_pilot(self, common: list[str]) -> None:
        grpc, http, debug = free_port(), free_port(), free_port()
        # Pilot's identity for xDS over mutual TLS: a token Citadel turns into its certificate
        pilot_token = self.state / "pilot.token"
        _private_file(pilot_token, make_token(self.ca_dir, *PILOT_IDENTITY, "istio-ca", TOKEN_TTL))
        ca_root = str(self.ca_dir / "root-cert.pem")
        self.pilot_addr = f"127.0.0.1:{grpc}"
        pilot = self.sup.start(
            self._name("meshplane-pilot"),
            [str(self.bin_dir / "meshplane-pilot"), *common, "--grpc-addr", self.pilot_addr]
            + ["--http-addr", f"127.0.0.1:{http}", "--debug-addr", f"127.0.0.1:{debug}"]
            + ["--id", self._name("pilot-local").replace("/", "-")]
            + ["--ca-addr", self.ca_addr, "--ca-root", ca_root, "--token-file", str(pilot_token)]
            + self._flags("pilot"),
            f"xDS {self.pilot_addr} (mTLS), monitoring :{http}, debug :{debug}",
            env=self._bus_env("pilot"),
        )
        _ready_on(pilot, f"http://127.0.0.1:{http}/ready")
        self.sup.wait_http(pilot, f"http://127.0.0.1:{http}/ready")

    def sds_socket(self, wl: Workload) -> Path:
        """The proxy's SDS socket: under the state dir, or a private temp dir if that path is too long."""
        if self.sds_dir is None:
            self.sds_dir = self.state / "sds"
            longest = max(len(w.proxy) for w in [*self.plan.workloads, GATEWAY, EASTWEST])
            if len(str(self.sds_dir)) + longest + 7 > MAX_SOCKET_PATH:
                self.sds_dir = Path(tempfile.mkdtemp(prefix="meshplane-sds-"))
            self.sds_dir.mkdir(mode=0o700, exist_ok=True)
        return self.sds_dir / f"{wl.proxy}.sock"

    def _node_agent(self, wl: Workload) -> tuple[Managed, Path]:
        agents = self.state / "agents"
        agents.mkdir(mode=0o700, exist_ok=True)
        token = agents / f"{wl.proxy}.token"
        _private_file(token, make_token(self.ca_dir, wl.namespace, wl.service_account, "istio-ca", TOKEN_TTL))
        sock = self.sds_socket(wl)
        sock.unlink(missing_ok=True)
        argv = [str(self.bin_dir / "meshplane-node-agent"), "--nats-url", self.nats_url]
        argv += ["--sds-socket", str(sock), "--ca-addr", self.ca_addr]
        argv += ["--ca-root", str(self.ca_dir / "root-cert.pem"), "--token-file", str(token)]
        env = self._bus_env("node-agent")
        m = self.sup.start(self._name(f"node-agent-{wl.proxy}"), argv, f"SDS {sock.name}", env=env)
        m.ready, m.before_restart = sock.exists, partial(sock.unlink, missing_ok=True)  # no stale socket
        return m, sock

    def start_node_agents(self) -> None:
        proxies = [*self.plan.workloads, *(gw for gw, _ in self.gateways())]
        t = self._step(f"{len(proxies)} node agents (one SDS socket per proxy)")
        started = [(wl, *self._node_agent(wl)) for wl in proxies]
        for _, m, sock in started:
            self.sup.wait(m, sock.exists, f"SDS socket {sock}")
        self._done(t)

    def start_apps(self) -> None:
        t = self._step(f"{len(self.plan.workloads)} workload apps")
        started = []
        for wl in self.plan.workloads:
            argv = [sys.executable if a == "python" else a for a in wl.command]
            listens = ", ".join(wl.app_endpoints) or "?"
            where = f"app {listens}, reached at {wl.address}"
            app = self.sup.start(self._name(f"app-{wl.proxy}"), argv, where, cwd=wl.source.parent)
            started.append((wl, app))
        for wl, m in started:
            probes = []
            for endpoint in wl.app_endpoints:
                host, _, port = endpoint.rpartition(":")
                if host == "0.0.0.0":
                    host = wl.address
                probes.append(partial(_accepts, host, int(port)))
                self.sup.wait(m, probes[-1], f"the app listening on {endpoint}")
            m.ready = partial(_all, probes)
        self._done(t)

    def _envoy(self, wl: Workload, listens: str = "") -> tuple[Managed, EnvoyProcess]:
        router = bool(listens)
        admin = free_port()
        kind = "router" if router else "sidecar"
        proxy_config = self.plan.proxy_configs.effective(wl.namespace, wl.labels)
        proxy = ProxySettings.of(proxy_config, f"the ProxyConfig of {wl.proxy}")
        opts = BootstrapOptions(
            proxy_type=kind,
            node_id=f"{kind}~{wl.address}~{wl.proxy}~{wl.namespace}.svc.cluster.local",
            pilots=[self.pilot_addr],
            sds_socket=str(self.sds_socket(wl)),
            admin=f"127.0.0.1:{admin}",
            namespace=wl.namespace,
            service_account=wl.service_account,
            labels=wl.labels,
            ip=wl.address,
            interception="REDIRECT" if router else "NONE",
            xds_retry_max=1.0,  # back on a restarted Pilot within a second (6 proxies: no storm)
            # xDS over mutual TLS, Pilot verified by its SPIFFE ID (in the MeshConfig's trust domain)
            pilot_san="spiffe://{}/ns/{}/sa/{}".format(self.plan.trust_domain, *PILOT_IDENTITY),
            proxy_config=proxy_config,
        )
        opts = self._bootstrap(opts)
        envoys = self.state / "envoy"
        envoys.mkdir(exist_ok=True)
        config = envoys / f"{wl.proxy}.yaml"
        config.write_text(yaml.safe_dump(render_bootstrap(opts), sort_keys=False))
        name = self._name(f"envoy-{wl.proxy}")
        log = self.sup.logs / f"{name}.log"
        envoy = EnvoyProcess(
            config, admin, log_file=log, die_with_parent=True, **_envoy_options(proxy)
        ).start()
        assert envoy.child is not None
        where = f"admin 127.0.0.1:{admin}"
        if router:
            where += f", listens {listens}"
        else:
            where += f", workload {wl.address}"
        self.admins[wl.proxy] = f"127.0.0.1:{admin}"
        m = self.sup.adopt(name, envoy.child, where)
        m.ready = partial(_is_live, f"{envoy.admin}/ready")  # same bootstrap, admin port, dynamic base id
        return m, envoy

    def start_envoys(self) -> None:
        gateways = self.gateways()
        names = " and ".join(gw.name for gw, _ in gateways) or "no gateway"
        t = self._step(f"{len(self.plan.workloads)} sidecars and {names} (Envoy)")
        started = [self._envoy(wl) for wl in self.plan.workloads]
        started += [self._envoy(gw, listens) for gw, listens in gateways]
        for m, envoy in started:
            ready = f"{envoy.admin}/ready"
            self.sup.wait(m, partial(_is_live, ready), f"LIVE from {ready}")
        (self.state / "proxies.json").write_text(json.dumps(self.admins, indent=2, sort_keys=True) + "\n")
        self._done(t)
