"""VirtualService routing on JWT claims at a real gateway Envoy, as Istio: a header match on
``@request.auth.claims.group`` (or ``[group]``) is matched against the token the gateway's
RequestAuthentication validated (a claim holding a string or a list of strings), and the route is
chosen again after validation. No or another token: the default route."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
GW_NS = "istio-system"
ISSUER = "https://issuer.meshplane.test"
HOST = "shop.example.com"


def test_routes_on_validated_jwt_claims(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    base = kit.loopback_base()
    ip = {"gw": base + "60", "web": base + "20", "admin": base + "21"}
    port = kit.free_port_on(list(ip.values()))
    apps = [kit.App(name, "v1", ip[name], port) for name in ("web", "admin")]
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="ES256", use="sig")

    def token(**claims: Any) -> dict[str, str]:
        now = int(time.time())
        body = {"iss": ISSUER, "sub": "alice", "iat": now, "exp": now + 600, **claims}
        return {"authorization": "Bearer " + jwt.encode(body, key, algorithm="ES256", headers={"kid": "k1"})}

    def dest(name: str) -> list[dict[str, Any]]:
        return [{"destination": {"host": f"{name}.{NS}.svc.cluster.local", "port": {"number": port}}}]

    configs = [
        kit.vs_config(
            "Gateway",
            NS,
            "gw",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": port, "name": "http", "protocol": "HTTP"},
                        "bind": ip["gw"],
                        "hosts": [f"*/{HOST}"],
                    }
                ],
            },
        ),
        kit.vs_config(
            "VirtualService",
            NS,
            "shop",
            {
                "hosts": [HOST],
                "gateways": [f"{NS}/gw"],
                "http": [
                    {
                        "match": [{"headers": {"@request.auth.claims.group": {"exact": "admin"}}}],
                        "route": dest("admin"),
                    },
                    {
                        "match": [{"headers": {"@request.auth.claims[tier]": {"prefix": "gold"}}}],
                        "route": dest("admin"),
                    },
                    {"route": dest("web")},
                ],
            },
        ),
        kit.vs_config(
            "RequestAuthentication",
            GW_NS,
            "gw-jwt",
            {
                "selector": {"matchLabels": {"istio": "ingressgateway"}},
                "jwtRules": [{"issuer": ISSUER, "jwks": json.dumps({"keys": [jwk]})}],
            },
            group="security.istio.io",
        ),
    ]
    web_svc, web_wl = kit.http_service(f"web.{NS}.svc.cluster.local", NS, ip["web"], port, app="web")
    admin_svc, admin_wl = kit.http_service(
        f"admin.{NS}.svc.cluster.local", NS, ip["admin"], port, app="admin"
    )
    kit.publish(nats_module.url, (web_svc + admin_svc, web_wl + admin_wl), configs)
    pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot")
    opts = kit.proxy_options(
        "router", ip["gw"], "ingress", GW_NS, {"istio": "ingressgateway"}, [f"127.0.0.1:{pilot.grpc}"], False
    )
    envoy = kit.start_envoy(tmp_path, "gateway", opts)

    def served_by(headers: dict[str, str] | None = None) -> str:
        resp = httpx.get(f"http://{ip['gw']}:{port}/", headers={"host": HOST, **(headers or {})}, timeout=5)
        return resp.headers.get("x-served-by", str(resp.status_code))

    try:
        kit.wait_until(lambda: served_by() == "web-v1", 30, "the gateway's default route")
        assert served_by(token(group="admin")) == "admin-v1"
        assert served_by(token(group=["dev", "admin"])) == "admin-v1"  # a list claim holding the value
        assert served_by(token(tier="gold-plus")) == "admin-v1"  # the [claim] form, a prefix match
        assert served_by(token(group="dev")) == "web-v1"
        assert served_by({"authorization": "Bearer not-a-token"}) == "401"
        assert envoy.stat("listener_manager.lds.update_rejected") == 0
    finally:
        kit.stop_all(envoy, pilot, *apps)
