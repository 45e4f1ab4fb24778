"""Real HTTP through real Envoys configured by a real Pilot from config on a real bus.

Topology (no iptables: every app and sidecar has its own 127.x.y.z address):

    client ─▶ productpage sidecar (Sidecar egress bind, captureMode NONE)
                 ├─▶ reviews v1 / v2 / v3 apps           (subsets, VirtualService features)
                 ├─▶ ratings sidecar (Sidecar ingress) ─▶ ratings app, + a failing ratings app
                 ├─▶ details a / b / c apps               (consistent hash)
                 └─▶ external.example.org → localhost     (DNS ServiceEntry)
    client ─▶ ingress gateway (router, Gateway bind) ─▶ reviews v2

One Envoy set serves every assertion; the module runs once with SotW and once with Delta xDS.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.proto.bus.v1 import registry_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NS = "bookinfo"


def fq(name: str) -> str:
    return f"{name}.{NS}.svc.cluster.local"


@dataclass
class Mesh:
    kit: Any
    pilot: Any
    bus: Any
    port: int
    gw_port: int
    pp: str
    gw: str
    apps: dict[str, Any]
    envoys: dict[str, Any]
    delta: bool

    def get(
        self, host: str, path: str = "/", headers: dict[str, str] | None = None, via: str = ""
    ) -> httpx.Response:
        address = via or self.pp
        port = self.gw_port if via == self.gw else self.port
        return httpx.get(
            f"http://{address}:{port}{path}", headers={"host": host, **(headers or {})}, timeout=10
        )

    def body(self, resp: httpx.Response) -> dict[str, Any]:
        data: dict[str, Any] = resp.json()
        return data

    def synced(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.pilot.get("/debug/syncz")
        return rows


def _configs(kit: Any, m: dict[str, Any]) -> list[Any]:
    p = m["port"]
    http_port = {"number": p, "protocol": "HTTP", "name": "http"}
    c = kit.vs_config
    return [
        c(
            "Sidecar",
            NS,
            "productpage",
            {
                "workloadSelector": {"labels": {"app": "productpage"}},
                "egress": [{"port": http_port, "bind": m["pp"], "captureMode": "NONE", "hosts": ["*/*"]}],
                "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
            },
        ),
        c(
            "Sidecar",
            NS,
            "ratings",
            {
                "workloadSelector": {"labels": {"app": "ratings"}},
                "ingress": [
                    {
                        "port": http_port,
                        "bind": m["ratings_sc"],
                        "defaultEndpoint": f"127.0.0.1:{m['ratings_app']}",
                    }
                ],
                "egress": [
                    {
                        "port": {"number": m["gw_port"], "protocol": "HTTP", "name": "http-out"},
                        "bind": m["ratings_sc"],
                        "captureMode": "NONE",
                        "hosts": ["./*"],
                    }
                ],
            },
        ),
        c(
            "DestinationRule",
            NS,
            "reviews",
            {
                "host": "reviews",
                "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2", "v3")],
            },
        ),
        c(
            "DestinationRule",
            NS,
            "ratings",
            {
                "host": "ratings",
                "trafficPolicy": {
                    "outlierDetection": {
                        "consecutive5xxErrors": 2,
                        "interval": "0.2s",
                        "baseEjectionTime": "60s",
                        "maxEjectionPercent": 100,
                    }
                },
            },
        ),
        c(
            "DestinationRule",
            NS,
            "details",
            {
                "host": "details",
                "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
            },
        ),
        c(
            "VirtualService",
            NS,
            "reviews",
            {
                "hosts": ["reviews"],
                "http": [
                    {
                        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                        "route": [{"destination": {"host": "reviews", "subset": "v3"}}],
                    },
                    {
                        "match": [{"uri": {"prefix": "/fault/abort"}}],
                        "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
                        "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                    },
                    {
                        "match": [{"uri": {"prefix": "/fault/delay"}}],
                        "fault": {"delay": {"fixedDelay": "0.6s", "percentage": {"value": 100}}},
                        "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                    },
                    {
                        "match": [{"uri": {"prefix": "/flaky-retry"}}],
                        "retries": {"attempts": 3, "retryOn": "5xx"},
                        "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                    },
                    {
                        "match": [{"uri": {"prefix": "/flaky-noretry"}}],
                        "retries": {"attempts": 0},
                        "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                    },
                    {
                        "match": [{"uri": {"prefix": "/slow"}}],
                        "timeout": "0.5s",
                        "retries": {"attempts": 0},
                        "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                    },
                    {
                        "match": [{"uri": {"exact": "/old"}}],
                        "redirect": {"uri": "/new", "authority": "reviews.example"},
                    },
                    {
                        "match": [{"uri": {"prefix": "/rewrite"}}],
                        "rewrite": {"uri": "/rewritten", "authority": "reviews-internal"},
                        "headers": {
                            "request": {"set": {"x-mesh": "meshplane"}},
                            "response": {"add": {"x-route": "rewrite"}},
                        },
                        "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                    },
                    {
                        "match": [{"uri": {"prefix": "/mirror"}}],
                        "mirror": {"host": "shadow"},
                        "mirrorPercentage": {"value": 100},
                        "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                    },
                    {
                        "match": [{"uri": {"prefix": "/split"}}],
                        "route": [
                            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                            {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20},
                        ],
                    },
                    {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
                ],
            },
        ),
        c(
            "Gateway",
            NS,
            "bookinfo-gateway",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": m["gw_port"], "name": "http", "protocol": "HTTP"},
                        "bind": m["gw"],
                        "hosts": ["*/bookinfo.example.com"],
                    }
                ],
            },
        ),
        c(
            "VirtualService",
            NS,
            "bookinfo",
            {
                "hosts": ["bookinfo.example.com"],
                "gateways": ["bookinfo-gateway"],
                "http": [
                    {"route": [{"destination": {"host": "reviews", "subset": "v2", "port": {"number": p}}}]}
                ],
            },
        ),
        c(
            "ServiceEntry",
            NS,
            "external",
            {
                "hosts": ["external.example.org"],
                "location": "MESH_EXTERNAL",
                "resolution": "DNS",
                "ports": [http_port],
                "endpoints": [{"address": "localhost", "ports": {"http": m["ext_app"]}}],
            },
        ),
    ]


def _registry(m: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    port = registry_pb2.ServicePort(name="http", number=m["port"], protocol=registry_pb2.HTTP)
    services = [
        registry_pb2.Service(hostname=fq(n), namespace=NS, ports=[port], resolution=registry_pb2.STATIC)
        for n in ("reviews", "ratings", "details", "shadow")
    ]
    workloads = []
    for name, svc, address, labels in m["workloads"]:
        workloads.append(
            registry_pb2.WorkloadInstance(
                name=name,
                namespace=NS,
                address=address,
                labels=labels,
                services=[fq(svc)],
                health=registry_pb2.HEALTHY,
                ports={"http": m["port"]},
            )
        )
    return services, workloads


@pytest.fixture(scope="module", params=["sotw", "delta"])
def mesh(
    request: pytest.FixtureRequest, kit: Any, nats_module: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    delta = request.param == "delta"
    tmp: Path = tmp_path_factory.mktemp(f"bookinfo-{request.param}")
    base = kit.loopback_base()
    addr = {
        k: base + str(v)
        for k, v in {
            "pp": 10,
            "r1": 21,
            "r2": 22,
            "r3": 23,
            "ratings_sc": 31,
            "bad": 32,
            "d1": 41,
            "d2": 42,
            "d3": 43,
            "shadow": 51,
            "gw": 60,
        }.items()
    }
    port = kit.free_port_on(list(addr.values()))
    gw_port = kit.free_port_on(list(addr.values()))
    apps: dict[str, Any] = {}
    envoys: dict[str, Any] = {}
    pilot = None
    try:
        for key, name, version in (
            ("r1", "reviews", "v1"),
            ("r2", "reviews", "v2"),
            ("r3", "reviews", "v3"),
            ("d1", "details", "a"),
            ("d2", "details", "b"),
            ("d3", "details", "c"),
            ("shadow", "shadow", "v1"),
        ):
            apps[key] = kit.App(name, version, addr[key], port)
        apps["bad"] = kit.App("ratings", "bad", addr["bad"], port, fail_all=True)
        apps["ratings"] = kit.App("ratings", "v1", "127.0.0.1", kit.free_port())
        apps["ext"] = kit.App("external", "v1", "127.0.0.1", kit.free_port())
        m = {
            "port": port,
            "gw_port": gw_port,
            "pp": addr["pp"],
            "gw": addr["gw"],
            "ratings_sc": addr["ratings_sc"],
            "ratings_app": apps["ratings"].server_address[1],
            "ext_app": apps["ext"].server_address[1],
            "workloads": [
                ("reviews-v1", "reviews", addr["r1"], {"app": "reviews", "version": "v1"}),
                ("reviews-v2", "reviews", addr["r2"], {"app": "reviews", "version": "v2"}),
                ("reviews-v3", "reviews", addr["r3"], {"app": "reviews", "version": "v3"}),
                ("ratings-v1", "ratings", addr["ratings_sc"], {"app": "ratings", "version": "v1"}),
                ("ratings-bad", "ratings", addr["bad"], {"app": "ratings", "version": "bad"}),
                ("details-a", "details", addr["d1"], {"app": "details"}),
                ("details-b", "details", addr["d2"], {"app": "details"}),
                ("details-c", "details", addr["d3"], {"app": "details"}),
                ("shadow", "shadow", addr["shadow"], {"app": "shadow"}),
            ],
        }
        bus = kit.BusWriter(nats_module.url)
        bus.put_configs(*_configs(kit, m))
        bus.put_registry(*_registry(m))
        pilot = kit.start_pilot(nats_module.url, tmp, f"pilot-{request.param}")
        pilots = [f"127.0.0.1:{pilot.grpc}"]
        for name, kind, ip, pod, ns, labels in (
            (
                "productpage",
                "sidecar",
                addr["pp"],
                "productpage-v1",
                NS,
                {"app": "productpage", "version": "v1"},
            ),
            ("ratings", "sidecar", addr["ratings_sc"], "ratings-v1", NS, {"app": "ratings", "version": "v1"}),
            ("gateway", "router", addr["gw"], "ingress", "istio-system", {"istio": "ingressgateway"}),
        ):
            opts = kit.proxy_options(kind, ip, pod, ns, labels, pilots, delta)
            envoys[name] = kit.start_envoy(tmp, name, opts)
        mesh = Mesh(kit, pilot, bus, port, gw_port, addr["pp"], addr["gw"], apps, envoys, delta)
        kit.wait_until(lambda: mesh.get(fq("reviews")).status_code == 200, 30, "productpage sidecar routes")
        kit.wait_until(
            lambda: mesh.get("bookinfo.example.com", via=addr["gw"]).status_code == 200, 30, "gateway routes"
        )
        yield mesh
    finally:
        for e in envoys.values():
            e.stop()
        if pilot is not None:
            pilot.stop()
        for a in apps.values():
            a.stop()


def test_subset_routing_and_header_match(mesh: Mesh) -> None:
    assert mesh.body(mesh.get("reviews"))["version"] == "v1"
    assert mesh.body(mesh.get(f"reviews.{NS}:{mesh.port}", headers={"end-user": "jason"}))["version"] == "v3"
    assert mesh.body(mesh.get(fq("reviews"), headers={"end-user": "someone"}))["version"] == "v1"


def test_weighted_split_80_20(mesh: Mesh) -> None:
    total = 400  # >= 200 as required; 400 keeps a chance miss of the +-7% band under 1 in 1000
    counts = collections.Counter(mesh.body(mesh.get("reviews", "/split"))["version"] for _ in range(total))
    assert set(counts) <= {"v1", "v2"}
    assert abs(counts["v1"] / total - 0.8) <= 0.07, counts


def test_faults(mesh: Mesh) -> None:
    assert mesh.get("reviews", "/fault/abort").status_code == 418
    start = time.monotonic()
    resp = mesh.get("reviews", "/fault/delay")
    assert resp.status_code == 200
    assert time.monotonic() - start >= 0.55


def test_retries_and_timeout(mesh: Mesh) -> None:
    assert mesh.get("reviews", "/flaky-noretry").status_code == 503
    ok = mesh.get("reviews", "/flaky-retry")
    assert ok.status_code == 200
    assert ok.json()["headers"]["x-envoy-attempt-count"] == "2"
    start = time.monotonic()
    assert mesh.get("reviews", "/slow").status_code == 504
    assert time.monotonic() - start < 1.8


def test_redirect_rewrite_headers(mesh: Mesh) -> None:
    resp = mesh.get("reviews", "/old")
    assert resp.status_code == 301
    assert resp.headers["location"] == "http://reviews.example/new"
    resp = mesh.get("reviews", "/rewrite/page")
    seen = mesh.body(resp)
    assert seen["path"] == "/rewritten/page"
    assert seen["headers"]["host"] == "reviews-internal"
    assert seen["headers"]["x-mesh"] == "meshplane"
    assert resp.headers["x-route"] == "rewrite"


def test_mirror_reaches_shadow(mesh: Mesh) -> None:
    shadow = mesh.apps["shadow"]
    before = len(shadow.requests)
    assert mesh.body(mesh.get("reviews", "/mirror/x"))["version"] == "v1"
    mesh.kit.wait_until(lambda: len(shadow.requests) > before, 5, "mirrored request")
    mirrored = shadow.requests[-1]
    assert mirrored["path"] == "/mirror/x"
    assert mirrored["headers"]["host"].startswith("reviews") and mirrored["headers"]["host"].endswith(
        "-shadow"
    )


def test_consistent_hash_is_sticky(mesh: Mesh) -> None:
    chosen = {}
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        versions = {mesh.body(mesh.get("details", headers={"x-user": user}))["version"] for _ in range(8)}
        assert len(versions) == 1, (user, versions)
        chosen[user] = versions.pop()
    plain = {mesh.body(mesh.get("details"))["version"] for _ in range(30)}
    assert len(plain) > 1  # without the header requests spread over the endpoints


def test_outlier_detection_ejects_failing_endpoint(mesh: Mesh) -> None:
    statuses = [mesh.get("ratings").status_code for _ in range(30)]
    tail = statuses[-15:]
    assert all(s == 200 for s in tail), statuses
    assert statuses.count(500) <= 2, statuses
    ejected = mesh.envoys["productpage"].stat(
        f"cluster.outbound|{mesh.port}||{fq('ratings')}.outlier_detection.ejections_enforced_total"
    )
    assert ejected >= 1
    # the healthy endpoint is the ratings sidecar, which forwards to its app over Sidecar ingress
    assert mesh.body(mesh.get("ratings"))["version"] == "v1"


def test_registry_only_blocks_unknown_host(mesh: Mesh) -> None:
    assert mesh.get("unknown.example.com").status_code == 502


def test_dns_service_entry_reaches_localhost(mesh: Mesh) -> None:
    resp = mesh.get("external.example.org", "/ext")
    assert resp.status_code == 200
    assert mesh.body(resp)["name"] == "external"


def test_gateway_routes_by_host(mesh: Mesh) -> None:
    assert mesh.body(mesh.get("bookinfo.example.com", via=mesh.gw))["version"] == "v2"
    assert mesh.get("other.example.com", via=mesh.gw).status_code == 404


def _all_synced(rows: list[dict[str, Any]]) -> bool:
    types = ("cluster", "listener", "route", "endpoint")
    return len(rows) == 3 and all(r[f"{t}_status"] in ("SYNCED", "NOT SENT") for r in rows for t in types)


def test_config_change_acked_by_every_envoy_within_1s(mesh: Mesh) -> None:
    before = mesh.pilot.get("/debug/push_status").get("version")
    extra = {
        "match": [{"uri": {"exact": "/hello"}}],
        "directResponse": {"status": 203, "body": {"string": "hi"}},
    }
    vs = mesh.kit.vs_config("VirtualService", NS, "shadow-hello", {"hosts": ["shadow"], "http": [extra]})
    start = time.monotonic()
    mesh.bus.put_configs(vs)

    def converged() -> bool:
        version = mesh.pilot.get("/debug/push_status").get("version")
        rows = mesh.synced()
        pp = next(r for r in rows if r["proxy"].startswith("productpage"))
        return version != before and _all_synced(rows) and pp["route_version_acked"] == version

    mesh.kit.wait_until(converged, 5, "every proxy SYNCED with the new version", interval=0.02)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0, f"convergence took {elapsed:.2f}s"
    resp = mesh.get("shadow", "/hello")  # the ACKed config is what serves
    assert (resp.status_code, resp.text) == (203, "hi")
    mesh.kit.wait_until(
        lambda: any(
            v.proxy_id.startswith("productpage") and v.pilot_id == mesh.pilot.pilot_id
            for v in mesh.bus.proxy_status().values()
        ),
        10,
        "proxy status on the bus",
    )
    mesh.bus.delete_config("VirtualService", NS, "shadow-hello")


def test_nack_visible_in_syncz_while_envoy_keeps_serving(mesh: Mesh) -> None:
    bad = mesh.kit.vs_config(
        "VirtualService",
        NS,
        "details-bad",
        {
            "hosts": ["details"],
            "http": [
                {"match": [{"uri": {"regex": "(unclosed"}}], "route": [{"destination": {"host": "details"}}]}
            ],
        },
    )
    mesh.bus.put_configs(bad)

    def nacked() -> dict[str, Any] | None:
        pp = next(r for r in mesh.synced() if r["proxy"].startswith("productpage"))
        return pp if pp["route_nack"] else None

    row = mesh.kit.wait_until(nacked, 10, "route NACK in syncz")
    assert "unclosed" in row["route_nack"] or "missing )" in row["route_nack"]
    assert row["route_status"] == "NACKED"
    assert mesh.body(mesh.get("reviews"))["version"] == "v1"  # last good config still serves
    metrics = httpx.get(mesh.pilot.url + "/metrics", timeout=5).text
    assert 'pilot_total_xds_rejects{type="rds"}' in metrics
    mesh.bus.delete_config("VirtualService", NS, "details-bad")
    mesh.kit.wait_until(lambda: _all_synced(mesh.synced()) and not nacked(), 10, "SYNCED again after the fix")


def test_debug_endpoints_and_metrics(mesh: Mesh) -> None:
    configz = mesh.pilot.get("/debug/configz")
    # Istio's shape: the objects as Kubernetes shows them
    assert any(c["kind"] == "VirtualService" and c["metadata"]["name"] == "reviews" for c in configz)
    assert all(c["apiVersion"].count("/") == 1 and "spec" in c for c in configz)
    registry = {s["hostname"] for s in mesh.pilot.get("/debug/registryz")}
    assert {fq("reviews"), fq("ratings"), "external.example.org"} <= registry
    dump = mesh.pilot.get(f"/debug/config_dump?proxyID=productpage-v1.{NS}")
    clusters = next(c for c in dump["configs"] if c["@type"].endswith("ClustersConfigDump"))
    names = {c["cluster"]["name"] for c in clusters["dynamic_active_clusters"]}
    assert f"outbound|{mesh.port}|v3|{fq('reviews')}" in names
    missing = httpx.get(mesh.pilot.debug_url + "/debug/config_dump", timeout=5)
    assert missing.status_code == 400 and "proxyID" in missing.json()["error"]
    unknown = httpx.get(mesh.pilot.debug_url + "/debug/config_dump?proxyID=nope.nowhere", timeout=5)
    assert unknown.status_code == 404 and "not connected" in unknown.json()["error"]
    assert mesh.pilot.get("/debug/push_status")["pushes"] >= 0
    _istio_debug_endpoints(mesh)
    metrics = httpx.get(mesh.pilot.url + "/metrics", timeout=5).text
    assert "pilot_xds 3.0" in metrics
    assert "pilot_services 5.0" in metrics  # four registry services + the DNS ServiceEntry
    assert 'pilot_xds_pushes{type="cds"}' in metrics
    assert "pilot_proxy_convergence_time_bucket" in metrics


def _istio_debug_endpoints(mesh: Mesh) -> None:
    """adsz, edsz, instancesz, authorizationz and mesh, in Istio's shapes, for the connected proxies."""
    ads = mesh.pilot.get("/debug/adsz")
    assert ads["totalClients"] == 3 and len(ads["clients"]) == 3
    ids = [c["connectionId"] for c in ads["clients"]]
    assert ids == sorted(ids)
    pp = next(c for c in ads["clients"] if c["connectionId"].startswith(f"productpage-v1.{NS}"))
    assert pp["labels"] == {"app": "productpage", "version": "v1"} and pp["metadata"]["NAMESPACE"] == NS
    assert (
        f"outbound|{mesh.port}|v1|{fq('reviews')}"
        in pp["watches"]["type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"]
    )
    one = mesh.pilot.get(f"/debug/adsz?proxyID=productpage-v1.{NS}")
    assert one["totalClients"] == 1
    eds = {e["clusterName"]: e for e in mesh.pilot.get(f"/debug/edsz?proxyID=productpage-v1.{NS}")}
    reviews = eds[f"outbound|{mesh.port}||{fq('reviews')}"]
    addresses = {
        lb["endpoint"]["address"]["socketAddress"]["address"]
        for group in reviews["endpoints"]
        for lb in group["lbEndpoints"]
    }
    assert addresses == {mesh.apps[k].server_address[0] for k in ("r1", "r2", "r3")}
    for path, status, text in (
        ("/debug/edsz", 400, "You must provide a proxyID"),
        ("/debug/edsz?proxyID=nope.nowhere", 404, "Proxy not connected to this Pilot instance"),
        ("/debug/adsz?proxyID=nope.nowhere", 404, "Proxy not connected to this Pilot instance"),
    ):
        resp = httpx.get(mesh.pilot.debug_url + path, timeout=5)
        assert resp.status_code == status and resp.text.startswith(text), (path, resp.text)
    instances = mesh.pilot.get("/debug/instancesz")
    (ratings,) = instances[f"ratings-v1.{NS}"]
    assert ratings["service"]["hostname"] == fq("ratings")
    sidecar = next(c for c in ads["clients"] if c["connectionId"].startswith(f"ratings-v1.{NS}"))
    assert ratings["endpoint"]["address"] == sidecar["metadata"]["INSTANCE_IPS"]
    authz = mesh.pilot.get("/debug/authorizationz")["authorization_policies"]
    assert authz["root_namespace"] == "istio-system" and isinstance(authz["namespace_to_policies"], dict)
    assert mesh.pilot.get("/debug/mesh")["rootNamespace"] == "istio-system"
    pushes = mesh.pilot.get("/debug/push_status")["pushes"]
    pushed = httpx.get(mesh.pilot.debug_url + "/debug/adsz?push=true", timeout=5)
    assert (pushed.status_code, pushed.text) == (200, "Pushed to 3 servers\n")
    mesh.kit.wait_until(
        lambda: (
            mesh.pilot.get("/debug/push_status")["reason"] == ["debug"]
            and mesh.pilot.get("/debug/push_status")["pushes"] > pushes
        ),
        10,
        "the debug push",
    )
