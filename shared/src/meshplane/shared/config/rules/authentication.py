"""Istio's PeerAuthentication and RequestAuthentication rules."""

from __future__ import annotations

import json
from urllib.parse import urlparse

from jwt import PyJWKSet
from jwt.exceptions import PyJWTError

from meshplane.shared.config.checks.durations import check_duration
from meshplane.shared.config.checks.headers import check_header_name
from meshplane.shared.config.checks.ports import check_port
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.security import JWTRule, PeerAuthentication, RequestAuthentication
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.notapplied import NOT_APPLIED
from meshplane.shared.config.rules.selectors import check_selector, check_targets, warn_targets_not_applied

_PRIVATE_JWK_FIELDS = ("d", "p", "q", "dp", "dq", "qi", "k")


def check_peer(pa: PeerAuthentication, ctx: ObjectContext, issues: Issues) -> None:
    labels = pa.selector.match_labels if pa.selector is not None else None
    if pa.port_level_mtls is not None:
        if not labels:
            issues.error(
                "spec.portLevelMtls",
                "mesh-wide or namespace-wide policy (no selector) cannot have portLevelMtls",
            )
        if not pa.port_level_mtls:
            issues.error("spec.portLevelMtls", "portLevelMtls must have at least one entry when present")
    for port in pa.port_level_mtls or {}:
        if not port.isdigit() or check_port(int(port)):
            issues.error(f"spec.portLevelMtls.{port}", f"port {port!r} must be in the range 1..65535")
    check_selector(pa.selector, "spec.selector", issues)


def check_request(ra: RequestAuthentication, ctx: ObjectContext, issues: Issues) -> None:
    check_targets(ra.selector, ra.target_ref, ra.target_refs, issues)
    warn_targets_not_applied(ra.target_ref, ra.target_refs, issues)
    for i, rule in enumerate(ra.jwt_rules or []):
        _check_jwt_rule(rule, f"spec.jwtRules[{i}]", issues)


def _check_jwt_rule(rule: JWTRule, path: str, issues: Issues) -> None:
    if not rule.issuer and not rule.jwks_uri:
        issues.error(f"{path}.issuer", "issuer or jwksUri must be set")
    if rule.jwks_uri:
        url = urlparse(rule.jwks_uri)
        if url.scheme not in ("http", "https") or not url.hostname:
            issues.error(f"{path}.jwksUri", f"invalid jwksUri {rule.jwks_uri!r}: must be an http(s) URL")
    if rule.jwks:
        _check_jwks(rule.jwks, f"{path}.jwks", issues)
    for i, aud in enumerate(rule.audiences or []):
        if not aud:
            issues.error(f"{path}.audiences[{i}]", "audience must not be empty")
    for i, header in enumerate(rule.from_headers or []):
        if not header.name:
            issues.error(f"{path}.fromHeaders[{i}].name", "header name must not be empty")
    for field, alias in (
        ("from_params", "fromParams"),
        ("from_cookies", "fromCookies"),
        ("space_delimited_claims", "spaceDelimitedClaims"),
    ):
        for i, value in enumerate(getattr(rule, field) or []):
            if not value:
                issues.error(f"{path}.{alias}[{i}]", f"{alias} entry must not be empty")
    if rule.timeout is not None:
        issues.warn(
            f"{path}.timeout", f"{NOT_APPLIED}: jwtRules.timeout (Pilot fetches every JWKS with a 5s timeout)"
        )
    if rule.space_delimited_claims:
        issues.warn(f"{path}.spaceDelimitedClaims", f"{NOT_APPLIED}: jwtRules.spaceDelimitedClaims")
    for i, c2h in enumerate(rule.output_claim_to_headers or []):
        cpath = f"{path}.outputClaimToHeaders[{i}]"
        if not c2h.claim:
            issues.error(f"{cpath}.claim", "claim is required")
        if not c2h.header:
            issues.error(f"{cpath}.header", "header is required")
        elif (problem := check_header_name(c2h.header)) or c2h.header.startswith(":"):
            issues.error(f"{cpath}.header", problem or f"invalid header {c2h.header!r}")
    if rule.timeout is not None and (problem := check_duration(rule.timeout)):
        issues.error(f"{path}.timeout", problem)


def _check_jwks(jwks: str, path: str, issues: Issues) -> None:
    """Inline keys must form a JWK set PyJWT can load; private key material is only warned about."""
    try:
        doc = json.loads(jwks)
    except json.JSONDecodeError as exc:
        issues.error(path, f"jwks parse error: not valid JSON: {exc.msg}")
        return
    if not isinstance(doc, dict):
        issues.error(path, "jwks parse error: a JWK set must be a JSON object with a 'keys' list")
        return
    try:
        PyJWKSet.from_dict(doc)
    except PyJWTError as exc:
        reason = str(exc).split(" Perhaps", 1)[0]
        issues.error(path, f"jwks parse error: {reason}")
        return
    keys = doc.get("keys") or []
    if any(isinstance(key, dict) and f in key for key in keys for f in _PRIVATE_JWK_FIELDS):
        issues.warn(path, "jwks contains private key material; publish only public keys")
