"""PeerAuthentication, AuthorizationPolicy and RequestAuthentication (security.istio.io)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from meshplane.shared.config.models.base import (
    Duration,
    IstioModel,
    NumericKey,
    PolicyTargetReference,
    WorkloadSelector,
)


class MutualTLSMode(StrEnum):
    UNSET = "UNSET"
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


class MutualTLS(IstioModel):
    mode: MutualTLSMode | None = None


class PeerAuthentication(IstioModel):
    selector: WorkloadSelector | None = None
    mtls: MutualTLS | None = None
    port_level_mtls: dict[NumericKey, MutualTLS] | None = None


class Source(IstioModel):
    principals: list[str] | None = None
    not_principals: list[str] | None = None
    request_principals: list[str] | None = None
    not_request_principals: list[str] | None = None
    namespaces: list[str] | None = None
    not_namespaces: list[str] | None = None
    service_accounts: list[str] | None = None
    not_service_accounts: list[str] | None = None
    ip_blocks: list[str] | None = None
    not_ip_blocks: list[str] | None = None
    remote_ip_blocks: list[str] | None = None
    not_remote_ip_blocks: list[str] | None = None


class Operation(IstioModel):
    hosts: list[str] | None = None
    not_hosts: list[str] | None = None
    ports: list[str] | None = None
    not_ports: list[str] | None = None
    methods: list[str] | None = None
    not_methods: list[str] | None = None
    paths: list[str] | None = None
    not_paths: list[str] | None = None


class RuleFrom(IstioModel):
    source: Source | None = None


class RuleTo(IstioModel):
    operation: Operation | None = None


class Condition(IstioModel):
    key: str | None = None
    values: list[str] | None = None
    not_values: list[str] | None = None


class Rule(IstioModel):
    from_: list[RuleFrom] | None = Field(default=None, alias="from")
    to: list[RuleTo] | None = None
    when: list[Condition] | None = None


class Action(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"
    CUSTOM = "CUSTOM"


class ExtensionProvider(IstioModel):
    name: str | None = None


class AuthorizationPolicy(IstioModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    rules: list[Rule] | None = None
    action: Action | None = None
    provider: ExtensionProvider | None = None


class JWTHeader(IstioModel):
    name: str | None = None
    prefix: str | None = None


class ClaimToHeader(IstioModel):
    header: str | None = None
    claim: str | None = None


class JWTRule(IstioModel):
    issuer: str | None = None
    audiences: list[str] | None = None
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: list[JWTHeader] | None = None
    from_params: list[str] | None = None
    from_cookies: list[str] | None = None
    output_payload_to_header: str | None = None
    forward_original_token: bool | None = None
    output_claim_to_headers: list[ClaimToHeader] | None = None
    space_delimited_claims: list[str] | None = None
    timeout: Duration | None = None


class RequestAuthentication(IstioModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    jwt_rules: list[JWTRule] | None = None
