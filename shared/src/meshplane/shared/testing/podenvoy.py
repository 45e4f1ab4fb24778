"""A real Envoy in a pod network namespace (``PodNetwork``), for tests that need a proxy to bind
Istio's ports (80, 443, 15001, ...) on every address without meeting other tests.

The pod reaches the host only through the pod network's gateway address, not the host's DNS
resolver: an Envoy with DNS clusters would wait for every lookup to time out before it finished
starting. :class:`NoSuchNameDns` answers every query at once with NXDOMAIN, and
:func:`run_pod_envoy` makes it the bootstrap's DNS resolver. The admin interface listens on the
pod's address, so the test reads it from the host.
"""

from __future__ import annotations

import json
import socketserver
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.podnet import PodNetwork, PodSandbox

CARES = "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig"


class _NoSuchName(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        query, sock = self.request
        end = 12  # the question's name: length-prefixed labels up to a zero byte
        while end < len(query) and query[end]:
            end += query[end] + 1
        question = query[12 : end + 5]  # the name, its zero byte, type and class
        header = query[:2] + b"\x81\x83" + query[4:6] + b"\x00" * 6  # response, NXDOMAIN, 1 question
        sock.sendto(header + question, self.client_address)


class NoSuchNameDns(socketserver.ThreadingUDPServer):
    """A DNS server on ``host`` (a free UDP port) answering NXDOMAIN to every query."""

    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _NoSuchName)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class PodEnvoy:
    """An Envoy running in a pod sandbox; its admin interface on the pod's address."""

    name: str
    ip: str
    admin: int
    child: ChildProcess

    def get(self, path: str) -> str:
        return httpx.get(f"http://{self.ip}:{self.admin}{path}", timeout=5).text

    def stats(self) -> dict[str, int]:
        """Counters and gauges by name (histograms and text stats left out)."""
        out = {}
        for line in self.get("/stats").splitlines():
            key, _, value = line.partition(": ")
            if value.isdigit():
                out[key] = int(value)
        return out

    def dump(self, resource: str) -> list[dict[str, Any]]:
        """The entries of one ``config_dump`` resource (``dynamic_listeners``, ...)."""
        configs: list[dict[str, Any]] = json.loads(self.get(f"/config_dump?resource={resource}"))["configs"]
        return configs

    def live(self) -> bool:
        return self.get("/ready").strip() == "LIVE"

    def stop(self) -> None:
        self.child.stop(10)


def run_pod_envoy(
    net: PodNetwork, box: PodSandbox, bootstrap: dict[str, Any], workdir: Path, dns: NoSuchNameDns
) -> PodEnvoy:
    """Start Envoy in ``box`` with ``bootstrap`` (its admin address replaced by the pod's, its DNS
    resolver by ``dns``); return once the admin interface answers."""
    admin = free_port()
    bootstrap = {
        **bootstrap,
        "admin": {"address": {"socket_address": {"address": box.ip, "port_value": admin}}},
    }
    resolver = {"socket_address": {"address": net.gateway, "port_value": dns.port, "protocol": "UDP"}}
    bootstrap["typed_dns_resolver_config"] = {
        "name": "envoy.network.dns_resolver.cares",
        "typed_config": {"@type": CARES, "resolvers": [resolver]},
    }
    path = workdir / f"envoy-{box.key}.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    log = workdir / f"envoy-{box.key}.log"
    argv = EnvoyProcess(path, admin, extra_args=["--log-path", str(log)]).argv()
    envoy = PodEnvoy(box.key, box.ip, admin, net.run(box, "envoy", argv, {}))

    def answers() -> bool:
        try:
            envoy.get("/ready")
        except httpx.HTTPError:
            return False
        return True

    envoy.child.wait_ready(answers, 30, f"admin on {box.ip}:{admin}")
    return envoy
