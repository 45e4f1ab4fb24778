"""AuthorizationPolicy CUSTOM and AUDIT through real sidecar Envoys (inbound, bound, no iptables).

Two external authorizers run as real processes, named in MeshConfig ``extensionProviders``: an
HTTP one (``envoyExtAuthzHttp``) and a gRPC one (``envoyExtAuthzGrpc``, Envoy's
``envoy.service.auth.v3.Authorization``). Each allows a request whose ``x-authz`` header is
``allow`` and adds ``x-authz-user`` for the app; it denies the others with its own body. The
``web`` workload's CUSTOM policy uses the HTTP provider for ``/private*`` (``statusOnError: 503``),
the ``api`` workload's the gRPC provider (``failOpen: true``), which also guards its TCP port
(Envoy's network ext_authz; the HTTP provider leaves ``web``'s alone). Requests the rules do not
match never reach the authorizer. With both authorizers stopped, ``web`` answers 503 and ``api`` lets
requests through. ``web`` also has an AUDIT policy for ``/audit*``: those requests are marked
(``%DYNAMIC_METADATA(envoy.common:access_log_hint)%`` in the access log, the policy in
``istio_audit_shadow_effective_policy_id``) and counted (``rbac.istio_audit_.shadow_allowed``),
never refused; a DENY policy annotated ``istio.io/dry-run`` is counted, not enforced.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.natsserver import wait_for_port
from meshplane.shared.processes import ChildProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NS = "shop"

HTTP_AUTHZ = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Check(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(log, "a") as f:
            f.write(self.path + "\n")
        if self.headers.get("x-authz") == "allow":
            self.send_response(200)
            self.send_header("x-authz-user", "alice")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        body = b"denied by the http authorizer"
        self.send_response(403)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer((host, port), Check).serve_forever()
"""

GRPC_AUTHZ = r"""
import sys
from concurrent import futures

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as pb, external_auth_pb2_grpc as rpc

host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Authorization(rpc.AuthorizationServicer):
    def Check(self, request, context):
        http = request.attributes.request.http
        with open(log, "a") as f:
            f.write((http.path or "tcp") + "\n")
        out = pb.CheckResponse()
        if http.headers.get("x-authz") == "allow":  # a TCP check has no headers: denied
            out.ok_response.headers.add(header=base_pb2.HeaderValue(key="x-authz-user", value="bob"))
            return out
        out.status.code = 7  # PERMISSION_DENIED
        out.denied_response.status.code = 403
        out.denied_response.body = "denied by the grpc authorizer"
        return out


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
rpc.add_AuthorizationServicer_to_server(Authorization(), server)
server.add_insecure_port(f"{host}:{port}")
server.start()
server.wait_for_termination()
"""


def _authorizer(tmp: Path, name: str, script: str, host: str, port: int) -> tuple[ChildProcess, Path]:
    checks = tmp / f"{name}.checks"
    checks.touch()
    child = ChildProcess(
        [sys.executable, "-c", script, host, str(port), str(checks)], tmp / f"{name}.log", name=name
    )
    child.start()
    child.wait_ready(lambda: wait_for_port(host, port, 0.2), 20, "listening")
    return child, checks


def _svc(name: str, ip: str, port: int, protocol: int, labels: dict[str, str]) -> tuple[Any, Any]:
    host = f"{name}.{NS}.svc.cluster.local"
    svc = registry_pb2.Service(
        hostname=host,
        namespace=NS,
        ports=[registry_pb2.ServicePort(name="port", number=port, protocol=protocol)],
    )
    wl = registry_pb2.WorkloadInstance(
        name=f"{name}-1", namespace=NS, address=ip, services=[host], labels=labels, ports={"port": port}
    )
    return svc, wl


def _mesh_yaml(authz_http: int, authz_grpc: int, access_log: Path) -> str:
    return yaml.safe_dump(
        {
            "accessLogFile": str(access_log),
            "accessLogFormat": "%REQ(:PATH)% audit=%DYNAMIC_METADATA(envoy.common:access_log_hint)% "
            "by=%DYNAMIC_METADATA(envoy.filters.http.rbac:istio_audit_shadow_effective_policy_id)%\n",
            "extensionProviders": [
                {
                    "name": "http-authz",
                    "envoyExtAuthzHttp": {
                        "service": f"{NS}/authz-http.{NS}.svc.cluster.local",
                        "port": authz_http,
                        "timeout": "2s",
                        "statusOnError": "503",
                        "includeRequestHeadersInCheck": ["x-authz"],
                        "headersToUpstreamOnAllow": ["x-authz-user"],
                    },
                },
                {
                    "name": "grpc-authz",
                    "envoyExtAuthzGrpc": {
                        "service": f"authz-grpc.{NS}.svc.cluster.local",
                        "port": authz_grpc,
                        "timeout": "2s",
                        "failOpen": True,
                    },
                },
            ],
        }
    )


def _configs(kit: Any, ip: dict[str, str], ports: dict[str, int]) -> list[Any]:
    port, out_port, app_port = ports["http"], ports["out"], ports["app"]

    def sidecar(app: str) -> Any:
        tcp = {
            "port": {"number": ports["tcp"], "protocol": "TCP", "name": "tcp"},
            "bind": ip[app],
            "defaultEndpoint": f"127.0.0.1:{ports['l4']}",
        }
        return kit.vs_config(
            "Sidecar",
            NS,
            app,
            {
                "workloadSelector": {"labels": {"app": app}},
                "ingress": [
                    {
                        "port": {"number": port, "protocol": "HTTP", "name": "http"},
                        "bind": ip[app],
                        "defaultEndpoint": f"127.0.0.1:{app_port}",
                    },
                    tcp,
                ],
                "egress": [
                    {
                        "port": {"number": out_port, "protocol": "HTTP", "name": "http-out"},
                        "bind": ip[app],
                        "captureMode": "NONE",
                        "hosts": ["./*"],
                    }
                ],
            },
        )

    def policy(name: str, app: str, spec: dict[str, Any]) -> Any:
        cfg = kit.vs_config(
            "AuthorizationPolicy",
            NS,
            name,
            {"selector": {"matchLabels": {"app": app}}, **spec},
            group="security.istio.io",
        )
        return cfg

    def paths(*p: str) -> list[dict[str, Any]]:
        return [{"to": [{"operation": {"paths": list(p)}}]}]

    dry_run = policy("web-dry-deny", "web", {"action": "DENY", "rules": paths("/dry*")})
    dry_run.annotations["istio.io/dry-run"] = "true"
    plain = kit.vs_config(
        "PeerAuthentication", NS, "default", {"mtls": {"mode": "DISABLE"}}, "security.istio.io"
    )
    return [
        sidecar("web"),
        sidecar("api"),
        plain,
        policy(
            "web-ext",
            "web",
            {"action": "CUSTOM", "provider": {"name": "http-authz"}, "rules": paths("/private*")},
        ),
        policy(
            "api-ext",
            "api",
            {"action": "CUSTOM", "provider": {"name": "grpc-authz"}, "rules": paths("/private*")},
        ),
        policy("web-audit", "web", {"action": "AUDIT", "rules": paths("/audit*")}),
        dry_run,
    ]


def test_custom_ext_authz_http_and_grpc_and_audit(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    base = kit.loopback_base()
    ip = {"web": base + "10", "api": base + "11", "authz": base + "20"}
    ports = {
        k: kit.free_port_on(list(ip.values())) for k in ("http", "tcp", "out", "authz-http", "authz-grpc")
    }
    port, authz_http, authz_grpc = ports["http"], ports["authz-http"], ports["authz-grpc"]
    app = kit.App("app", "v1", "127.0.0.1", kit.free_port())
    l4 = kit.L4App("l4", "127.0.0.1", kit.free_port())
    ports["app"], ports["l4"] = app.server_address[1], l4.server_address[1]
    access_log = tmp_path / "access.log"
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(_mesh_yaml(authz_http, authz_grpc, access_log))
    http_authz, http_checks = _authorizer(tmp_path, "http-authz", HTTP_AUTHZ, ip["authz"], authz_http)
    grpc_authz, grpc_checks = _authorizer(tmp_path, "grpc-authz", GRPC_AUTHZ, ip["authz"], authz_grpc)
    registry = [
        _svc("web", ip["web"], port, registry_pb2.HTTP, {"app": "web"}),
        _svc("api", ip["api"], port, registry_pb2.HTTP, {"app": "api"}),
        _svc("authz-http", ip["authz"], authz_http, registry_pb2.HTTP, {"app": "authz"}),
        _svc("authz-grpc", ip["authz"], authz_grpc, registry_pb2.GRPC, {"app": "authz"}),
    ]
    kit.publish(
        nats_module.url,
        ([s for s, _ in registry], [w for _, w in registry]),
        _configs(kit, ip, ports),
    )
    pilot = kit.start_pilot(
        nats_module.url, tmp_path, "pilot", xds=("--xds-plaintext", "--mesh-config", str(mesh))
    )
    envoys = {}
    pilots = [f"127.0.0.1:{pilot.grpc}"]
    try:
        for name in ("web", "api"):
            opts = kit.proxy_options("sidecar", ip[name], f"{name}-1", NS, {"app": name}, pilots, False)
            envoys[name] = kit.start_envoy(tmp_path, name, opts)

        def get(workload: str, path: str, authz: str | None = None) -> httpx.Response:
            headers = {"x-authz": authz} if authz else {}
            return httpx.get(f"http://{ip[workload]}:{port}{path}", headers=headers, timeout=10)

        def tcp(workload: str) -> bytes:
            with socket.create_connection((ip[workload], ports["tcp"]), timeout=10) as conn:
                conn.sendall(b"hi")
                try:
                    return conn.recv(100)
                except OSError:
                    return b""

        for name in ("web", "api"):
            kit.wait_until(
                lambda n=name: get(n, "/private", "allow").status_code == 200, 30, f"{name} authorized"
            )

        # the rules decide what is checked: /public never reaches an authorizer
        checked = (http_checks.read_text(), grpc_checks.read_text())
        assert get("web", "/public").status_code == 200 and get("api", "/public").status_code == 200
        assert (http_checks.read_text(), grpc_checks.read_text()) == checked
        assert "/public" not in checked[0] + checked[1]

        allowed = get("web", "/private/a", "allow")
        assert allowed.status_code == 200 and allowed.json()["headers"]["x-authz-user"] == "alice"
        denied = get("web", "/private/a", "deny")
        assert (denied.status_code, denied.text) == (403, "denied by the http authorizer")
        assert http_checks.read_text().splitlines()[-2:] == ["/private/a", "/private/a"]

        allowed = get("api", "/private/b", "allow")
        assert allowed.status_code == 200 and allowed.json()["headers"]["x-authz-user"] == "bob"
        denied = get("api", "/private/b")
        assert (denied.status_code, denied.text) == (403, "denied by the grpc authorizer")
        assert grpc_checks.read_text().splitlines()[-2:] == ["/private/b", "/private/b"]

        # TCP: the gRPC provider is asked (and denies: no headers), an HTTP provider leaves TCP alone
        assert tcp("api") == b""
        assert grpc_checks.read_text().splitlines()[-1] == "tcp"
        assert tcp("web") == b"l4:hi"

        # AUDIT marks and counts, never refuses
        assert get("web", "/audit/x").status_code == 200
        lines = kit.wait_until(
            lambda: [line for line in access_log.read_text().splitlines() if line.startswith("/audit/x")],
            10,
            "the audited request's access-log line",
        )
        assert lines == ["/audit/x audit=true by=ns[shop]-policy[web-audit]-rule[0]"]
        assert "/public audit=false by=-" in access_log.read_text().splitlines()
        # a dry-run DENY policy is evaluated, reported, not enforced
        assert get("web", "/dry/y").status_code == 200
        stats = dict(
            line.split(".rbac.")[1].split(": ")
            for line in envoys["web"].admin_get("/stats?filter=rbac.istio_").splitlines()
            if line.startswith("http.")  # its TCP port has RBAC filters of its own
        )
        assert stats["istio_audit_.shadow_allowed"] == "1" and int(stats["istio_audit_.shadow_denied"]) > 0
        assert stats["istio_dry_run_deny_.shadow_denied"] == "1"

        # authorizers gone: statusOnError for web, failOpen for api
        http_authz.stop(5)
        grpc_authz.stop(5)
        assert get("web", "/private/c", "allow").status_code == 503
        assert get("api", "/private/c", "deny").status_code == 200
        assert tcp("api") == b"l4:hi"
        assert get("web", "/public").status_code == 200
        for envoy in envoys.values():
            rejected = envoy.admin_get("/stats?filter=update_rejected").splitlines()
            assert rejected and all(line.endswith(": 0") for line in rejected), rejected
    finally:
        kit.stop_all(*envoys.values(), pilot, http_authz, grpc_authz, app, l4)
