"""EnvoyFilter analyzers: relative operations without a priority (IST0151, IST0155 with a
proxyVersion match) and operations Envoy patching ignores (IST0152, IST0153, IST0154).

In step with what Pilot applies (``APPLIED`` in the validation rules, Istio's patch code): Istio's
analyzer also flags REPLACE on LISTENER_FILTER and ADD/REMOVE on HTTP_ROUTE, which its patch
code (and meshplane's) applies, so meshplane does not report those."""

from __future__ import annotations

from collections.abc import Mapping

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, mappings
from meshplane.shared.config.models.envoy_filter import Operation
from meshplane.shared.config.rules.envoy_filter import APPLIED

RELATIVE = frozenset({"INSERT_BEFORE", "INSERT_AFTER", "REPLACE", "MERGE", "REMOVE"})
REPLACEABLE = frozenset(str(a) for a, ops in APPLIED.items() if Operation.REPLACE in ops)
ADDABLE = frozenset(str(a) for a, ops in APPLIED.items() if Operation.ADD in ops)
REMOVABLE = frozenset(str(a) for a, ops in APPLIED.items() if Operation.REMOVE in ops)
ROUTE_LEVEL = frozenset({"ROUTE_CONFIGURATION", "HTTP_ROUTE"})

_RELATIVE_TEXT = (
    "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the "
    "EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in "
    "ensuring the EnvoyFilter is applied correctly."
)
_PROXY_VERSION_TEXT = (
    "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, "
    "REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied "
    "during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in "
    "ensuring the EnvoyFilter is applied correctly."
)
_ROUTE_TEXT = "The {op} operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."


def check(ctx: Context) -> None:
    for ef in ctx.kind("EnvoyFilter"):
        prioritised = bool(ef.spec.get("priority"))
        for cp in mappings(ef.spec.get("configPatches")):
            patch = cp.get("patch")
            op = str(patch.get("operation", "")) if isinstance(patch, Mapping) else ""
            apply_to = str(cp.get("applyTo", ""))
            match = cp.get("match")
            proxy = match.get("proxy") if isinstance(match, Mapping) else None
            versioned = isinstance(proxy, Mapping) and bool(proxy.get("proxyVersion"))
            if op in RELATIVE and not prioritised:
                if versioned:
                    ctx.report(m.ENVOY_FILTER_RELATIVE_WITH_PROXY_VERSION, ef, _PROXY_VERSION_TEXT)
                else:
                    ctx.report(m.ENVOY_FILTER_RELATIVE_OPERATION, ef, _RELATIVE_TEXT)
            if op == "REPLACE" and apply_to not in REPLACEABLE:
                ctx.report(
                    m.ENVOY_FILTER_REPLACE_INCORRECT,
                    ef,
                    "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.",  # Istio's text
                )
            if op == "ADD" and apply_to in ROUTE_LEVEL - ADDABLE:
                ctx.report(m.ENVOY_FILTER_ADD_INCORRECT, ef, _ROUTE_TEXT.format(op="ADD"))
            if op == "REMOVE" and apply_to in ROUTE_LEVEL - REMOVABLE:
                ctx.report(m.ENVOY_FILTER_REMOVE_INCORRECT, ef, _ROUTE_TEXT.format(op="REMOVE"))
