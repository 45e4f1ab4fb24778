"""Gateway ``credentialName`` served from Kubernetes Secrets over SDS (issue 13, item 7).

A real Envoy gateway takes its listeners from a file (LDS, so warming and rejection are Envoy's
own) with the TLS contexts Pilot emits for Gateway servers: ``kubernetes://<name>`` for the
certificate and ``kubernetes://<name>-cacert`` for MUTUAL's client CA, over SDS from the
gateway's node agent. The agent runs as the gateway's ServiceAccount (a TokenRequest token in
a kubeconfig), with only the RBAC of ``k8s/gateway/rbac.yaml``, and reads the Secrets of the
gateway's namespace through the real API server.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, dynamic

from meshplane.citadel.testing import (
    CitadelProcess,
    EnvoyProcess,
    NodeAgentProcess,
    gateway_bootstrap,
    tls_listener,
)
from meshplane.ctl.token import make_token
from meshplane.shared.testing.certs import write_self_signed, write_signed
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until

from .conftest import FIELD_MANAGER, K8S

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kube,
    pytest.mark.xdist_group("kube"),
    pytest.mark.timeout(300),
]

ACCOUNT = "istio-ingressgateway"
#: listener name → (certificate resource, client CA resource or None)
LISTENERS = {
    "simple": ("kubernetes://tls-cred", None),
    "mutual": ("kubernetes://generic-cred", "kubernetes://generic-cred-cacert"),
    "elsewhere": ("kubernetes://elsewhere-cred", None),
}


@dataclass
class Gateway:
    envoy: EnvoyProcess
    ports: dict[str, int]
    namespace: str
    other_namespace: str
    core: Any
    certs: Path
    lds: Path
    listeners: list[str] = field(default_factory=list)

    def add_listener(self, name: str) -> None:
        """Add listener ``name`` (of LISTENERS) through LDS, as Pilot adds a Gateway server.

        Envoy's listeners from its first LDS answer hold back its whole initialization until
        they have warmed; those added later warm on their own, each waiting for its secrets."""
        self.listeners.append(name)
        resources = [tls_listener(n, self.ports[n], *LISTENERS[n]) for n in self.listeners]
        updates = self.stat("listener_manager.lds.update_success")
        tmp = self.lds.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resources": resources}))
        tmp.replace(self.lds)  # Envoy follows the file by its moves
        wait_until(lambda: self.stat("listener_manager.lds.update_success") > updates, f"LDS with {name}")

    def stat(self, name: str) -> int:
        for line in self.envoy.get(f"/stats?filter=^{name}$").splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    def warming(self) -> list[str]:
        """The names of the listeners Envoy holds warming (waiting for their secrets)."""
        dump = self.envoy.config_dump("?resource=dynamic_listeners")
        return [c["name"] for c in dump.get("configs", []) if "warming_state" in c]

    def put_secret(
        self, name: str, data: dict[str, bytes], kind: str = "Opaque", namespace: str = ""
    ) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": kind,
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        namespace = namespace or self.namespace
        try:
            self.core.replace_namespaced_secret(name, namespace, body)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_secret(namespace, body)

    def pair(self, name: str, issuer: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
        """A certificate and key (self-signed, a CA; or signed by ``issuer``) under ``certs/name``."""
        if issuer is None:
            return write_self_signed(self.certs / name, name)
        return write_signed(self.certs / name, issuer, name)


def _apply_gateway_rbac(kube_api: Any, namespace: str) -> None:
    """``k8s/gateway``'s ServiceAccount, Role and RoleBinding, moved into ``namespace``."""
    import runpy

    render = runpy.run_path(str(K8S / "render.py"))["render"]
    dyn = dynamic.DynamicClient(kube_api)  # type: ignore[no-untyped-call]
    for obj in render(K8S / "gateway"):
        if obj["kind"] not in ("ServiceAccount", "Role", "RoleBinding"):
            continue
        obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects", []):
            subject["namespace"] = namespace
        dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).server_side_apply(
            body=obj, name=obj["metadata"]["name"], namespace=namespace, field_manager=FIELD_MANAGER
        )


@pytest.fixture(scope="module")
def gateway(
    kube_cluster: KubeCluster, kube_api: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gateway-secrets")
    core: Any = client.CoreV1Api(kube_api)
    suffix = uuid.uuid4().hex[:8]
    namespace, other = f"gw-{suffix}", f"other-{suffix}"
    for name in (namespace, other):
        core.create_namespace({"metadata": {"name": name}})
    started: list[Any] = []
    try:
        _apply_gateway_rbac(kube_api, namespace)
        wait_until(
            lambda: any(
                sa.metadata.name == ACCOUNT for sa in core.list_namespaced_service_account(namespace).items
            ),
            f"ServiceAccount {namespace}/{ACCOUNT}",
        )
        token = core.create_namespaced_service_account_token(ACCOUNT, namespace, {"spec": {}}).status.token
        kubeconfig = kube_cluster.token_kubeconfig(tmp / "gateway.kubeconfig", token)
        citadel = CitadelProcess(tmp / "ca", tmp / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
        citadel.start()
        started.append(citadel)
        workload_token = make_token(tmp / "ca", namespace, ACCOUNT, "istio-ca", 3600)
        agent = NodeAgentProcess(
            tmp / "agent",
            citadel.target,
            tmp / "ca" / "root-cert.pem",
            workload_token,
            args=["--credential-namespace", namespace],
            env={"KUBECONFIG": str(kubeconfig)},
        )
        agent.start()
        started.append(agent)
        admin, *ports = EnvoyProcess.ports(1 + len(LISTENERS))
        by_name = dict(zip(LISTENERS, ports, strict=True))
        lds = tmp / "lds.json"
        lds.write_text(json.dumps({"resources": []}))
        envoy = EnvoyProcess(tmp / "envoy", gateway_bootstrap(admin, agent.socket, lds), admin)
        envoy.start()
        started.append(envoy)
        envoy.wait_ready()
        yield Gateway(envoy, by_name, namespace, other, core, tmp / "certs", lds)
    finally:
        for proc in reversed(started):
            proc.stop()
        for name in (namespace, other):
            core.delete_namespace(name)


def _context(ca: Path, client_cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # the test certificates name 127.0.0.1 and their CN only
    if client_cert is not None:
        ctx.load_cert_chain(*map(str, client_cert))
    return ctx


class Connection:
    """One TLS connection to the gateway, kept open for several HTTP/1.1 requests."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.tls = ctx.wrap_socket(raw, server_hostname="gateway.example.com")
        self.peer = self.tls.getpeercert(binary_form=True) or b""

    def get(self) -> str:
        self.tls.sendall(b"GET / HTTP/1.1\r\nHost: gateway.example.com\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.split(b"\r\n\r\n", 1)[1]:
            chunk = self.tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer.decode(errors="replace")

    def close(self) -> None:
        self.tls.close()


def _served_cert(port: int, ca: Path, client_cert: tuple[Path, Path] | None = None) -> bytes:
    """The certificate a fresh connection is served (verified against ``ca``), after a 200."""
    conn = Connection(port, _context(ca, client_cert))
    try:
        assert conn.get().startswith("HTTP/1.1 200")
        return conn.peer
    finally:
        conn.close()


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def _pem(pair: tuple[Path, Path]) -> tuple[bytes, bytes]:
    return pair[0].read_bytes(), pair[1].read_bytes()


def test_tls_secret_is_served_and_rotates_without_dropping_open_connections(gateway: Gateway) -> None:
    gateway.add_listener("simple")
    first = gateway.pair("first")
    cert, key = _pem(first)
    gateway.put_secret("tls-cred", {"tls.crt": cert, "tls.key": key}, kind="kubernetes.io/tls")
    wait_until(lambda: _served_cert(gateway.ports["simple"], first[0]) == _der(first[0]), "the Secret's cert")
    held = Connection(gateway.ports["simple"], _context(first[0]))
    try:
        assert held.get().startswith("HTTP/1.1 200")
        second = gateway.pair("second")
        cert, key = _pem(second)
        gateway.put_secret("tls-cred", {"tls.crt": cert, "tls.key": key}, kind="kubernetes.io/tls")
        wait_until(
            lambda: _served_cert(gateway.ports["simple"], second[0]) == _der(second[0]),
            "the updated Secret's cert on new connections",
        )
        # the connection opened before the rotation keeps working, with the old certificate
        answer = held.get()
        assert answer.startswith("HTTP/1.1 200") and answer.endswith("simple")
        assert held.peer == _der(first[0])
    finally:
        held.close()
    assert gateway.stat("listener_manager.lds.update_rejected") == 0


def test_generic_secret_verifies_clients_and_a_cacert_secret_takes_over_the_ca(gateway: Gateway) -> None:
    gateway.add_listener("mutual")
    server_ca, client_ca, other_ca = (
        gateway.pair("server-ca"),
        gateway.pair("client-ca"),
        gateway.pair("other-ca"),
    )
    server = gateway.pair("mutual-server", server_ca)
    client_a, client_b = gateway.pair("client-a", client_ca), gateway.pair("client-b", other_ca)
    cert, key = _pem(server)
    data = {"cert": cert + server_ca[0].read_bytes(), "key": key, "cacert": client_ca[0].read_bytes()}
    gateway.put_secret("generic-cred", data)
    port = gateway.ports["mutual"]
    wait_until(lambda: _served_cert(port, server_ca[0], client_a) == _der(server[0]), "MUTUAL with cacert")
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, AssertionError)):
        _served_cert(port, server_ca[0])  # no client certificate
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, AssertionError)):
        _served_cert(port, server_ca[0], client_b)  # signed by a CA the Secret does not trust

    # Istio's <name>-cacert Secret holds the client CA instead, and wins over the `cacert` key.
    gateway.put_secret("generic-cred-cacert", {"cacert": other_ca[0].read_bytes()})
    wait_until(
        lambda: _served_cert(port, server_ca[0], client_b) == _der(server[0]), "the -cacert Secret's CA"
    )
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, AssertionError)):
        _served_cert(port, server_ca[0], client_a)


def test_a_missing_secret_warms_the_listener_and_another_namespaces_secret_is_not_served(
    gateway: Gateway,
) -> None:
    pair = gateway.pair("elsewhere")
    cert, key = _pem(pair)
    secret = {"tls.crt": cert, "tls.key": key}
    gateway.put_secret("elsewhere-cred", secret, kind="kubernetes.io/tls", namespace=gateway.other_namespace)
    gateway.add_listener("elsewhere")
    # The listener waits for its certificate; nothing was rejected. Being in another namespace,
    # the Secret is never read.
    wait_until(lambda: "elsewhere" in gateway.warming(), "the listener warming")
    assert gateway.stat("listener_manager.lds.update_rejected") == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gateway.ports["elsewhere"]), timeout=2).close()

    gateway.put_secret("elsewhere-cred", secret, kind="kubernetes.io/tls")  # now in the gateway's own
    wait_until(lambda: "elsewhere" not in gateway.warming(), "the listener active")
    assert _served_cert(gateway.ports["elsewhere"], pair[0]) == _der(pair[0])
