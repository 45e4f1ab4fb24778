"""The Istio corpus through real processes: configs with the shapes of Istio's own test configs and
bookinfo samples (``testdata/istio_corpus``, written for meshplane) go through a real Galley (its
config directory) and Pilot to a real sidecar, an ingress gateway and an egress gateway, plus a
sidecar without traffic capture in the ``none`` namespace. Envoy must reject no update and Pilot
must count no reject; requests through both gateways reach the apps the configs name.

Each Envoy runs in a pod network namespace of its own (``PodNetwork``), so gateways bind
Istio's ports (80, 443, ...) on every address without meeting other tests. The apps, Galley,
Pilot, Citadel and the node agent run on the host; the pods reach Pilot and the apps through the
pod network's gateway address. Certificates named by files are served over SDS by the node agent.
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.bootstrap import render_bootstrap
from meshplane.ctl.token import make_token
from meshplane.shared.config.validate import validate_object
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.certs import write_self_signed, write_signed
from meshplane.shared.testing.podenvoy import NoSuchNameDns, PodEnvoy, run_pod_envoy
from meshplane.shared.testing.podnet import PodNetwork, unavailable_reason
from meshplane.shared.testing.scrape import scrape
from meshplane.shared.testing.sockets import tcp_exchange, tls_exchange

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.xdist_group("istio-corpus"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

CORPUS = Path(__file__).parent / "testdata" / "istio_corpus"
BOOKINFO = ("productpage-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1", "details-v1")
APPS = (*BOOKINFO, "service3", "outside")
L4_APPS = ("mongo", "legacy-db")
TLS_APPS = ("tls-a", "tls-b")
#: pod → (namespace, labels, proxy type, interception)
PODS = {
    "sleep": ("bookinfo", {"app": "sleep"}, "sidecar", "REDIRECT"),
    "none": ("none", {"app": "none-client"}, "sidecar", "NONE"),
    "ingress": ("istio-system", {"istio": "ingressgateway"}, "router", "REDIRECT"),
    "egress": ("istio-system", {"istio": "egressgateway"}, "router", "REDIRECT"),
}
BIN = Path(sys.executable).parent
PLAIN_HTTP = ("http/1.0", "http/1.1", "h2c")
HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
SERVER_HOSTS = (
    "uk.bookinfo.com",
    "eu.bookinfo.com",
    "mutual.bookinfo.com",
    *(f"{a}.none.mesh" for a in TLS_APPS),
)


@dataclass
class Corpus:
    kit: Any
    pilot: Any
    envoys: dict[str, PodEnvoy]
    rendered: Path
    certs: Path
    uds: Path
    values: dict[str, str]

    def rejects(self) -> dict[str, int]:
        """Every ``*.update_rejected`` stat above 0, on every Envoy."""
        return {
            f"{name}:{key}": value
            for name, envoy in self.envoys.items()
            for key, value in envoy.stats().items()
            if key.endswith("update_rejected") and value
        }

    def pilot_rejects(self) -> float:
        counted = scrape(self.pilot.http, "pilot_total_xds_rejects")
        return sum(value for name, value in counted.items() if "_created" not in name)


def render(source: Path, out: Path, values: dict[str, str]) -> Path:
    """The YAML files of ``source`` with their ``{{NAME}}`` placeholders filled (every placeholder
    must be known), written to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted(source.glob("*.yaml")):
        text = src.read_text()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        left = re.findall(r"\{\{\w+\}\}", text)
        assert not left, f"{src.name}: unknown placeholders {left}"
        (out / src.name).write_text(text)
    return out


def documents(directory: Path) -> list[dict[str, Any]]:
    return [d for f in sorted(directory.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def _certs(tmp: Path) -> Path:
    out = tmp / "certs"
    out.mkdir()
    ca = write_self_signed(tmp / "ca", "corpus-ca")
    server = write_signed(tmp / "server", ca, SERVER_HOSTS[0], SERVER_HOSTS)
    client = write_signed(tmp / "client", ca, "client", ("client.example.com",))
    for name, (cert, key) in {"ca": ca, "server": server, "client": client}.items():
        shutil.copy(cert, out / f"{name}.pem")
        shutil.copy(key, out / f"{name}.key")
    return out


def _galley(tmp: Path, nats: str, config_dir: Path) -> ChildProcess:
    """Galley reading ``config_dir`` (its config source), publishing to the bus at ``nats``."""
    monitoring = free_port()
    argv = [str(BIN / "meshplane-galley"), "--nats-url", nats, "--config-dir", str(config_dir)]
    argv += ["--webhook-addr", f"127.0.0.1:{free_port()}", "--monitoring-addr", f"127.0.0.1:{monitoring}"]
    argv += ["--debug-addr", "127.0.0.1:0"]
    child = ChildProcess(argv, tmp / "galley.log", name="galley")
    child.start()
    ready = f"http://127.0.0.1:{monitoring}/readyz"
    child.wait_ready(lambda: _ok(ready), 60, "galley ready")
    return child


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start_envoy(
    kit: Any, net: PodNetwork, tmp: Path, name: str, pilot: str, sds: str, dns: NoSuchNameDns
) -> PodEnvoy:
    ns, labels, kind, interception = PODS[name]
    box = net.attach(name)
    opts = kit.proxy_options(kind, box.ip, f"{name}-1", ns, labels, [pilot], False)
    opts.interception = interception
    opts.sds_socket = sds
    return run_pod_envoy(net, box, render_bootstrap(opts), tmp, dns)


@pytest.fixture(scope="module")
def corpus(kit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    tmp = tmp_path_factory.mktemp("istio-corpus")
    procs: list[Any] = []
    net = PodNetwork(tmp / "pods").start()
    try:
        host = net.gateway
        ports = {name: free_port() for name in (*APPS, *L4_APPS, *TLS_APPS)}
        apps: dict[str, Any] = {}
        for name in APPS:
            app, _, version = name.partition("-")
            apps[name] = kit.App(app, version or "-", host, ports[name])
        for name in L4_APPS:
            apps[name] = kit.L4App(name, host, ports[name])
        certs = _certs(tmp)
        for name in TLS_APPS:
            apps[name] = kit.L4App(name, host, ports[name], certs / "server.pem", certs / "server.key")
        procs += apps.values()
        uds = tmp / "uds.sock"  # the path a unix-socket ServiceEntry names (a pipe in EDS)
        dns = NoSuchNameDns(host)
        procs.append(dns)
        boxes = {name: net.attach(name) for name in PODS}
        values = {
            "APP_IP": host,
            "SLEEP_IP": boxes["sleep"].ip,
            "EGRESS_IP": boxes["egress"].ip,
            "CERTS": str(certs),
            "UDS": str(uds),
            **{f"PORT_{n.upper().replace('-', '_')}": str(p) for n, p in ports.items()},
        }
        rendered = render(CORPUS, tmp / "config", values)
        nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log")
        nats.start()
        procs.append(nats)
        citadel = CitadelProcess(tmp / "citadel", tmp / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
        citadel.start()
        procs.append(citadel)
        token = make_token(tmp / "citadel", "bookinfo", "sleep", "istio-ca", 3600)
        agent = NodeAgentProcess(tmp / "agent", citadel.target, tmp / "citadel" / "root-cert.pem", token)
        agent.start()
        procs.append(agent)
        procs.append(_galley(tmp, nats.url, rendered))
        pilot = kit.start_pilot(nats.url, tmp, "pilot-corpus", grpc_host=host)
        procs.append(pilot)
        expected = len(documents(rendered))
        kit.wait_until(lambda: len(pilot.get("/debug/configz")) == expected, 60, "every config at Pilot")
        envoys = {}
        for name in PODS:
            envoys[name] = _start_envoy(kit, net, tmp, name, f"{host}:{pilot.grpc}", str(agent.socket), dns)
            procs.append(envoys[name])
        yield Corpus(kit, pilot, envoys, rendered, certs, uds, values)
    finally:
        kit.stop_all(*reversed(procs))
        net.close()


def _synced(corpus: Corpus) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = corpus.pilot.get("/debug/syncz")
    ids = {r["proxy"].split(".")[0] for r in rows}
    if ids != {f"{name}-1" for name in PODS}:
        return []
    statuses = {k: v for r in rows for k, v in r.items() if k.endswith("_status") and v != "NOT SENT"}
    return rows if statuses and set(statuses.values()) == {"SYNCED"} else []


def test_the_corpus_is_valid_and_says_what_is_not_applied(corpus: Corpus) -> None:
    errors, not_applied = [], []
    for doc in documents(corpus.rendered):
        result = validate_object(doc)
        where = f"{doc['kind']} {doc['metadata'].get('namespace')}/{doc['metadata']['name']}"
        errors += [f"{where}: {e}" for e in result.errors]
        not_applied += [f"{where}: {w}" for w in result.warnings if "not applied" in str(w)]
    assert errors == []
    # what meshplane does not apply is said, never silently ignored (nor sent to Envoy to reject)
    assert not_applied == [
        "DestinationRule testns/destall: spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: "
        "accepted, not applied by meshplane: http.h2UpgradePolicy"
    ]


def test_every_proxy_takes_every_update(corpus: Corpus) -> None:
    rows = corpus.kit.wait_until(lambda: _synced(corpus), 60, "every proxy SYNCED on every type")
    corpus.kit.wait_until(lambda: all(e.live() for e in corpus.envoys.values()), 30, "every Envoy LIVE")
    assert {k: r[k] for r in rows for k in r if k.endswith("_nacks") and r[k]} == {}
    assert corpus.rejects() == {}
    assert corpus.pilot_rejects() == 0
    for name, envoy in corpus.envoys.items():
        stats = envoy.stats()
        assert stats["listener_manager.lds.update_success"] >= 1, name
        assert stats["cluster_manager.cds.update_success"] >= 1, name


def test_ingress_gateway_routes_bookinfo_to_productpage(corpus: Corpus) -> None:
    url = f"http://{corpus.envoys['ingress'].ip}/productpage"
    answer = corpus.kit.wait_until(
        lambda: httpx.get(url, timeout=5).status_code == 200 and httpx.get(url), 30, "productpage"
    )
    assert answer.json()["name"] == "productpage"
    assert httpx.get(f"http://{corpus.envoys['ingress'].ip}/not-bookinfo", timeout=5).status_code == 404


def _warming(envoy: PodEnvoy) -> list[str]:
    return [
        e["warming_state"]["listener"]["name"]
        for e in envoy.dump("dynamic_listeners")
        if "warming_state" in e
    ]


def test_gateway_file_certificates_serve_tls_and_absent_files_warm(corpus: Corpus) -> None:
    ingress, kit = corpus.envoys["ingress"], corpus.kit
    request = b"GET / HTTP/1.1\r\nHost: uk.bookinfo.com\r\nConnection: close\r\n\r\n"
    https = lambda: tls_exchange(ingress.ip, 443, "uk.bookinfo.com", corpus.certs / "ca.pem", request)  # noqa: E731
    peer, answer = kit.wait_until(https, 30, "HTTPS from the mounted files")
    assert peer == ssl.PEM_cert_to_DER_cert((corpus.certs / "server.pem").read_text())
    assert answer.startswith(b"HTTP/1.1 200") and b'"name": "service3"' in answer, answer
    # a Gateway naming files that do not exist: its listener waits for them, nothing is rejected
    kit.wait_until(lambda: ingress.live(), 30, "the ingress gateway live")
    render(CORPUS / "later", corpus.rendered, corpus.values)
    kit.wait_until(lambda: "0.0.0.0_8443" in _warming(ingress), 30, "the listener with absent files warming")
    assert corpus.rejects() == {} and corpus.pilot_rejects() == 0
    assert kit.wait_until(https, 10, "the other servers still served")[0] == peer


def test_egress_gateway_carries_mesh_traffic_out(corpus: Corpus) -> None:
    egress = corpus.envoys["egress"]
    url = f"http://{egress.ip}/out"

    def get() -> httpx.Response | None:
        answer = httpx.get(url, headers={"host": "outside.corpus.example"}, timeout=5)
        return answer if answer.status_code == 200 else None

    answer = corpus.kit.wait_until(get, 30, "through the egress gateway")
    assert answer.json()["name"] == "outside"
    # the sidecar sends edition.cnn.com and outside.corpus.example to the egress gateway
    routes = json.dumps(corpus.envoys["sleep"].dump("dynamic_route_configs"))
    assert "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local" in routes


def test_sidecar_gets_cidr_chains_pipes_logical_dns_and_service_entry_sans(corpus: Corpus) -> None:
    sleep = corpus.envoys["sleep"]
    listeners = {
        e["active_state"]["listener"]["name"]: e["active_state"]["listener"]
        for e in sleep.dump("dynamic_listeners")
        if "active_state" in e
    }
    assert not any("/" in name for name in listeners), sorted(listeners)
    ranges = json.dumps(listeners["0.0.0.0_27018"]["filter_chains"])
    assert '"address_prefix": "192.192.192.0"' in ranges and '"prefix_len": 24' in ranges
    wiki = json.dumps(listeners["0.0.0.0_443"]["filter_chains"])
    assert '"address_prefix": "91.198.174.192"' in wiki
    eds = sleep.get("/config_dump?include_eds=true")
    assert str(corpus.uds) in eds
    clusters = {e["cluster"]["name"]: e["cluster"] for e in sleep.dump("dynamic_active_clusters")}
    destall = clusters["outbound|81||destall.default.svc.cluster.local"]
    keepalive = destall["upstream_connection_options"]["tcp_keepalive"]
    assert keepalive == {"keepalive_probes": 9, "keepalive_time": 7200, "keepalive_interval": 75}
    assert destall["common_http_protocol_options"]["max_connection_duration"] == "3600s"
    assert clusters["outbound|8003||rr.foo.bar.com"]["type"] == "LOGICAL_DNS"
    assert clusters["outbound|8003|all|rr.foo.bar.com"]["type"] == "LOGICAL_DNS"
    assert "outbound|8003|v1|rr.foo.bar.com" not in clusters  # no address has its labels
    # the ServiceEntry's subjectAltNames are the identities its mTLS servers must present
    vm = json.dumps(clusters["outbound|8005||vm.seexamples.mesh"]["transport_socket_matches"])
    assert '"exact": "spiffe://cluster.local/ns/seexamples/sa/vm"' in vm


def _listener(envoy: PodEnvoy, name: str) -> dict[str, Any]:
    for entry in envoy.dump("dynamic_listeners"):
        if entry["name"] == name and "active_state" in entry:
            listener: dict[str, Any] = entry["active_state"]["listener"]
            return listener
    raise KeyError(name)


def _chains(listener: dict[str, Any]) -> list[tuple[list[str], list[str]]]:
    """(application protocols matched, network filter names) of each filter chain."""
    return [
        (c.get("filter_chain_match", {}).get("application_protocols", []), [f["name"] for f in c["filters"]])
        for c in listener["filter_chains"]
    ]


def test_ports_without_a_protocol_detect_http_and_carry_the_rest_as_tcp(corpus: Corpus) -> None:
    """A port named ``db`` (no protocol): HTTP only where the http_inspector saw HTTP, raw TCP
    through unchanged; the same on the inbound side of a Sidecar ingress port without protocol."""
    none = corpus.envoys["none"]
    db = corpus.kit.wait_until(lambda: _listener(none, f"{none.ip}_3306"), 30, "the db listener")
    assert [f["name"] for f in db["listener_filters"]] == [
        "envoy.filters.listener.tls_inspector",
        "envoy.filters.listener.http_inspector",
    ]
    assert _chains(db) == [(list(PLAIN_HTTP), [HCM]), ([], [TCP_PROXY]), ([], [TCP_PROXY])]
    assert tcp_exchange(none.ip, 3306, b"SELECT 1;\r\n") == b"legacy-db:SELECT 1;\r\n"
    answer = httpx.get(f"http://{none.ip}:8088/sniffed", headers={"host": "sniffed.none.mesh"}, timeout=5)
    assert answer.status_code == 200 and answer.json()["name"] == "service3"
    assert "x-envoy-upstream-service-time" in answer.headers  # through the HTTP connection manager
    inbound = _chains(_listener(none, f"{none.ip}_7072"))
    assert (list(PLAIN_HTTP), [HCM]) in inbound and ([], [TCP_PROXY]) in inbound
    # the captured sidecar: its wildcard listener for the port never puts HTTP on raw TCP
    sleep_db = _chains(_listener(corpus.envoys["sleep"], "0.0.0.0_3306"))
    assert all(protocols for protocols, filters in sleep_db if HCM in filters), sleep_db


def test_tls_services_on_one_port_are_chosen_by_sni(corpus: Corpus) -> None:
    none = corpus.envoys["none"]
    for app in TLS_APPS:

        def reach(app: str = app) -> tuple[bytes, bytes]:
            return tls_exchange(none.ip, 2444, f"{app}.none.mesh", corpus.certs / "ca.pem", b"hi")

        _, answer = corpus.kit.wait_until(reach, 30, f"{app} by its SNI")
        assert answer == f"{app}:hi".encode()
