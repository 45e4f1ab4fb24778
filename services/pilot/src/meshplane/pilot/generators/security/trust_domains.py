"""MeshConfig ``trustDomainAliases``: identities in an alias trust domain count as the mesh's own.

As Istio's trust domain bundle (the trust domain, then its aliases): an AuthorizationPolicy
principal (``principals``, ``notPrincipals``, ``when`` key ``source.principal``) whose trust domain
is in the bundle is expanded to the same identity in each trust domain of the bundle; a principal
in another trust domain, or one that matches any trust domain (``*``, ``*/ns/...``), is kept as
written. ISTIO_MUTUAL upstreams accept a server's SPIFFE ID in any of them (:func:`spiffe_ids`).
"""

from __future__ import annotations

import dataclasses

from meshplane.pilot.model.config import Config
from meshplane.shared.config.models import AuthorizationPolicy
from meshplane.shared.meshconfig import MeshConfig

_SPIFFE = "spiffe://"


def bundle(mesh: MeshConfig) -> tuple[str, ...]:
    """The trust domain and its aliases, without repeats."""
    return tuple(dict.fromkeys((mesh.trust_domain, *mesh.traffic.trust_domain_aliases)))


def spiffe_ids(mesh: MeshConfig, namespace: str, service_account: str) -> list[str]:
    """A service account's SPIFFE ID in each trust domain of the bundle."""
    return [f"{_SPIFFE}{td}/ns/{namespace}/sa/{service_account}" for td in bundle(mesh)]


def expand_principals(values: list[str], domains: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for value in values:
        domain, sep, rest = value.removeprefix(_SPIFFE).partition("/")
        names = [f"{d}/{rest}" for d in domains] if sep and domain in domains else [value]
        out += [n for n in names if n not in out]
    return out


def with_aliases(
    policies: list[Config[AuthorizationPolicy]], mesh: MeshConfig
) -> list[Config[AuthorizationPolicy]]:
    """The policies with their principals expanded to the trust domain aliases (as they are
    without aliases)."""
    domains = bundle(mesh)
    if len(domains) < 2:
        return policies
    return [_expanded(cfg, domains) for cfg in policies]


def _expanded(cfg: Config[AuthorizationPolicy], domains: tuple[str, ...]) -> Config[AuthorizationPolicy]:
    rules = []
    for rule in cfg.spec.rules or []:
        froms = []
        for item in rule.from_ or []:
            src = item.source
            if src is not None:
                src = src.model_copy(
                    update={
                        "principals": src.principals and expand_principals(src.principals, domains),
                        "not_principals": src.not_principals
                        and expand_principals(src.not_principals, domains),
                    }
                )
            froms.append(item.model_copy(update={"source": src}))
        whens = [
            c.model_copy(
                update={
                    "values": c.values and expand_principals(c.values, domains),
                    "not_values": c.not_values and expand_principals(c.not_values, domains),
                }
            )
            if c.key == "source.principal"
            else c
            for c in rule.when or []
        ]
        rules.append(
            rule.model_copy(
                update={
                    "from_": froms if rule.from_ else rule.from_,
                    "when": whens if rule.when else rule.when,
                }
            )
        )
    spec = cfg.spec.model_copy(update={"rules": rules if cfg.spec.rules else cfg.spec.rules})
    return dataclasses.replace(cfg, spec=spec)
