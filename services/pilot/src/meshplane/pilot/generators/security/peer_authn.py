"""PeerAuthentication → the inbound mTLS mode of one workload port.

Istio's precedence: a workload policy (selector matching the workload's labels, in its
namespace) over the namespace policy (no selector) over the mesh policy (no selector, in the
root namespace). ``UNSET`` inherits from the next level up; the mesh default is PERMISSIVE.
A workload policy's ``portLevelMtls`` (keyed by the workload's port) overrides its own mode.
When several policies tie at one level the oldest wins in Istio; here the first by name.
"""

from __future__ import annotations

from meshplane.pilot.model.config import Config, labels_match
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models import PeerAuthentication
from meshplane.shared.config.models.security import MutualTLS

STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"
DISABLE = "DISABLE"
UNSET = "UNSET"


def _selector(cfg: Config[PeerAuthentication]) -> dict[str, str]:
    selector = cfg.spec.selector
    return dict(selector.match_labels or {}) if selector else {}


def _mode(value: MutualTLS | None) -> str:
    mode = value.mode.value if value is not None and value.mode is not None else UNSET
    return mode if mode in (STRICT, PERMISSIVE, DISABLE) else UNSET


def mtls_mode(ctx: PushContext, namespace: str, labels: dict[str, str], port: int) -> str:
    """The effective mode (STRICT, PERMISSIVE or DISABLE) for a workload's inbound port."""
    policies = ctx.of_kind(PeerAuthentication)
    mesh = [c for c in policies if c.namespace == ctx.root_namespace and not _selector(c)]
    ns_wide = [c for c in policies if c.namespace == namespace and not _selector(c)]
    workload = [
        c
        for c in policies
        if c.namespace == namespace and _selector(c) and labels_match(_selector(c), labels)
    ]
    mode = PERMISSIVE
    for level in (mesh, ns_wide):
        if level and _mode(level[0].spec.mtls) != UNSET:
            mode = _mode(level[0].spec.mtls)
    if workload:
        spec = workload[0].spec
        own = _mode(spec.mtls)
        if own != UNSET:
            mode = own
        port_mode = _mode((spec.port_level_mtls or {}).get(str(port)))
        if port_mode != UNSET:
            mode = port_mode
    return mode
