"""PeerAuthentication precedence: workload > namespace > mesh, UNSET inherits, port level last."""

from __future__ import annotations

from typing import Any

from meshplane.pilot.generators.security.peer_authn import mtls_mode

from .helpers import NS, cfg, context

LABELS = {"app": "cart"}


def pa(name: str, spec: dict[str, Any], ns: str = NS) -> Any:
    return cfg("PeerAuthentication", name, spec, ns)


def test_default_is_permissive() -> None:
    assert mtls_mode(context(), NS, LABELS, 8080) == "PERMISSIVE"


def test_mesh_policy_in_root_namespace_applies_everywhere() -> None:
    ctx = context(pa("default", {"mtls": {"mode": "STRICT"}}, ns="istio-system"))
    assert mtls_mode(ctx, NS, LABELS, 8080) == "STRICT"
    assert mtls_mode(ctx, "other", {}, 80) == "STRICT"


def test_namespace_overrides_mesh_and_unset_inherits() -> None:
    mesh = pa("default", {"mtls": {"mode": "STRICT"}}, ns="istio-system")
    assert mtls_mode(context(mesh, pa("ns", {"mtls": {"mode": "DISABLE"}})), NS, LABELS, 8080) == "DISABLE"
    assert mtls_mode(context(mesh, pa("ns", {"mtls": {"mode": "UNSET"}})), NS, LABELS, 8080) == "STRICT"
    # a policy in another namespace does not apply
    assert (
        mtls_mode(context(pa("ns", {"mtls": {"mode": "DISABLE"}}, ns="other")), NS, LABELS, 8080)
        == "PERMISSIVE"
    )


def test_workload_selector_and_port_level() -> None:
    ns_wide = pa("ns", {"mtls": {"mode": "STRICT"}})
    workload = pa(
        "cart",
        {
            "selector": {"matchLabels": {"app": "cart"}},
            "mtls": {"mode": "UNSET"},
            "portLevelMtls": {"8081": {"mode": "DISABLE"}},
        },
    )
    ctx = context(ns_wide, workload)
    assert mtls_mode(ctx, NS, LABELS, 8080) == "STRICT"  # UNSET inherits the namespace
    assert mtls_mode(ctx, NS, LABELS, 8081) == "DISABLE"
    assert mtls_mode(ctx, NS, {"app": "web"}, 8081) == "STRICT"  # selector does not match
