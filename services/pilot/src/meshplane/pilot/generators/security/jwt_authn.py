"""RequestAuthentication → ``envoy.filters.http.jwt_authn`` for one workload.

One provider per jwtRule (``origins-<i>``), keys inlined as ``local_jwks``: the rule's ``jwks``,
or the document Pilot fetched from ``jwksUri`` (``PushContext.jwks``). Until that fetch succeeds
the provider gets a key nobody holds, so tokens fail closed (Istio's behaviour). The requirement
is "any provider, or no token at all": requests without a token pass authentication (an
AuthorizationPolicy with ``requestPrincipals`` decides), a presented invalid token is a 401.
The validated payload is kept in dynamic metadata (``payload``) for RBAC's requestPrincipals.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from jwt.algorithms import ECAlgorithm

from meshplane.pilot.generators.common import pack
from meshplane.pilot.generators.security.authz_rbac import JWT_FILTER, JWT_PAYLOAD
from meshplane.pilot.generators.security.selection import applicable
from meshplane.pilot.model.push_context import PushContext

log = logging.getLogger("meshplane.pilot.security")

KIND = "RequestAuthentication"
#: Key of ``PushContext.jwks`` for keys found through an issuer's OpenID discovery document.
OPENID_PREFIX = "openid:"


@functools.cache
def unusable_jwks() -> str:
    """A JWK set whose private key was thrown away: every token fails verification against it."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwk = json.loads(ECAlgorithm.to_jwk(key))
    jwk["kid"] = "meshplane-unresolved"
    return json.dumps({"keys": [jwk]})


def jwks_source(rule: dict[str, Any]) -> str:
    """Where a rule's keys come from: its ``jwksUri``, else the issuer's OpenID discovery
    document (``<issuer>/.well-known/openid-configuration``, as Istio does); "" when inline."""
    if rule.get("jwks"):
        return ""
    if rule.get("jwksUri"):
        return str(rule["jwksUri"])
    issuer = str(rule.get("issuer") or "")
    return OPENID_PREFIX + issuer if issuer.startswith(("https://", "http://")) else ""


def jwks_uris(ctx: PushContext) -> set[str]:
    """Every key source named by a RequestAuthentication without inline keys."""
    sources = {jwks_source(rule) for cfg in ctx.of_kind(KIND) for rule in cfg.spec.get("jwtRules") or []}
    return sources - {""}


def _provider(rule: dict[str, Any], ctx: PushContext) -> jwt_pb2.JwtProvider:
    p = jwt_pb2.JwtProvider(issuer=str(rule.get("issuer") or ""))
    p.audiences.extend(str(a) for a in rule.get("audiences") or [])
    keys = str(rule.get("jwks") or "") or ctx.jwks.get(jwks_source(rule), "")
    p.local_jwks.inline_string = keys or unusable_jwks()
    p.forward = bool(rule.get("forwardOriginalToken"))
    p.payload_in_metadata = JWT_PAYLOAD
    for h in rule.get("fromHeaders") or []:
        p.from_headers.add(name=str(h.get("name", "")), value_prefix=str(h.get("prefix", "")))
    p.from_params.extend(str(x) for x in rule.get("fromParams") or [])
    p.from_cookies.extend(str(x) for x in rule.get("fromCookies") or [])
    if rule.get("outputPayloadToHeader"):
        p.forward_payload_header = str(rule["outputPayloadToHeader"])
    for claim in rule.get("outputClaimToHeaders") or []:
        p.claim_to_headers.add(
            header_name=str(claim.get("header", "")), claim_name=str(claim.get("claim", ""))
        )
    return p


def jwt_filter(ctx: PushContext, namespace: str, labels: dict[str, str]) -> hcm.HttpFilter | None:
    """The jwt_authn filter for a workload, or None when no RequestAuthentication applies."""
    rules = [r for cfg in applicable(ctx, KIND, namespace, labels) for r in cfg.spec.get("jwtRules") or []]
    if not rules:
        return None
    config = jwt_pb2.JwtAuthentication()
    requirement = jwt_pb2.JwtRequirement()
    for i, rule in enumerate(rules):
        name = f"origins-{i}"
        config.providers[name].CopyFrom(_provider(rule, ctx))
        requirement.requires_any.requirements.add(provider_name=name)
    requirement.requires_any.requirements.add().allow_missing.SetInParent()
    config.rules.add(match=rc.RouteMatch(prefix="/"), requires=requirement)
    return hcm.HttpFilter(name=JWT_FILTER, typed_config=pack(config))
