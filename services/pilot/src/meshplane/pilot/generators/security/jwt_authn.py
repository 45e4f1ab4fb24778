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

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from meshplane.pilot.generators.common import pack
from meshplane.pilot.generators.security.authz_rbac import JWT_FILTER, JWT_PAYLOAD
from meshplane.pilot.generators.security.selection import applicable
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models import JWTRule, RequestAuthentication

log = logging.getLogger("meshplane.pilot.security")

#: Key of ``PushContext.jwks`` for keys found through an issuer's OpenID discovery document.
OPENID_PREFIX = "openid:"


@functools.cache
def unusable_jwks() -> str:
    """A JWK set whose private key was thrown away: every token fails verification against it."""
    # Imported here, where they are needed: most meshes never use an unresolved jwksUri, and
    # PyJWT is a twentieth of Pilot's import time.
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwk = json.loads(ECAlgorithm.to_jwk(key))
    jwk["kid"] = "meshplane-unresolved"
    return json.dumps({"keys": [jwk]})


def jwks_source(rule: JWTRule) -> str:
    """Where a rule's keys come from: its ``jwksUri``, else the issuer's OpenID discovery
    document (``<issuer>/.well-known/openid-configuration``, as Istio does); "" when inline."""
    if rule.jwks:
        return ""
    if rule.jwks_uri:
        return rule.jwks_uri
    issuer = rule.issuer or ""
    return OPENID_PREFIX + issuer if issuer.startswith(("https://", "http://")) else ""


def jwks_uris(ctx: PushContext) -> set[str]:
    """Every key source named by a RequestAuthentication without inline keys."""
    sources = {
        jwks_source(rule) for cfg in ctx.of_kind(RequestAuthentication) for rule in cfg.spec.jwt_rules or []
    }
    return sources - {""}


def _provider(rule: JWTRule, ctx: PushContext) -> jwt_pb2.JwtProvider:
    p = jwt_pb2.JwtProvider(issuer=rule.issuer or "")
    p.audiences.extend(rule.audiences or [])
    keys = rule.jwks or ctx.jwks.get(jwks_source(rule), "")
    p.local_jwks.inline_string = keys or unusable_jwks()
    p.forward = bool(rule.forward_original_token)
    p.payload_in_metadata = JWT_PAYLOAD
    for h in rule.from_headers or []:
        p.from_headers.add(name=h.name or "", value_prefix=h.prefix or "")
    p.from_params.extend(rule.from_params or [])
    p.from_cookies.extend(rule.from_cookies or [])
    if rule.output_payload_to_header:
        p.forward_payload_header = rule.output_payload_to_header
    for claim in rule.output_claim_to_headers or []:
        p.claim_to_headers.add(header_name=claim.header or "", claim_name=claim.claim or "")
    return p


def jwt_filter(
    ctx: PushContext, namespace: str, labels: dict[str, str], clear_route_cache: bool = False
) -> hcm.HttpFilter | None:
    """The jwt_authn filter for a workload, or None when no RequestAuthentication applies.
    ``clear_route_cache`` (gateways, as Istio): routes are chosen again once the token is
    validated, so VirtualService matches on ``@request.auth.claims`` see its payload."""
    configs = applicable(ctx, RequestAuthentication, namespace, labels)
    rules = [r for cfg in configs for r in cfg.spec.jwt_rules or []]
    if not rules:
        return None
    config = jwt_pb2.JwtAuthentication()
    requirement = jwt_pb2.JwtRequirement()
    for i, rule in enumerate(rules):
        name = f"origins-{i}"
        config.providers[name].CopyFrom(_provider(rule, ctx))
        config.providers[name].clear_route_cache = clear_route_cache
        requirement.requires_any.requirements.add(provider_name=name)
    requirement.requires_any.requirements.add().allow_missing.SetInParent()
    config.rules.add(match=rc.RouteMatch(prefix="/"), requires=requirement)
    return hcm.HttpFilter(name=JWT_FILTER, typed_config=pack(config))
