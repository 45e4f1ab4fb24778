"""What the pod's effective ProxyConfig (``meshplane.shared.proxyconfig``) changes in the
injected pod, as Istio's injector applies it:

* ``PROXY_CONFIG`` (the effective ProxyConfig as JSON; ``meshctl bootstrap`` reads it: stats
  matcher, ``ISTIO_META_*`` node metadata) and every ``proxyMetadata`` entry as environment
  variables of ``istio-proxy`` (the ``istio-validation`` container gets ``proxyMetadata`` too);
* ``discoveryAddress`` as the bootstrap's ``--pilot``; ``concurrency``, ``drainDuration`` on the
  Envoy command line (:meth:`ProxySettings.envoy_args`);
* ``image.imageType`` ``debug``/``distroless`` as Istio's tag suffix (unless
  ``sidecar.istio.io/proxyImage`` names the image);
* ``holdApplicationUntilProxyStarts``: ``istio-proxy`` first and a ``postStart`` hook
  (``meshctl wait``) so the app containers start once the proxy is ready;
* ``terminationDrainDuration``: a ``preStop`` hook (``meshctl drain``) that drains inbound
  listeners and keeps serving that long.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from meshplane.shared.inject.config import ADMIN_PORT, HEALTH_PORT, Obj
from meshplane.shared.proxyconfig import ANNOTATION, ProxySettings, not_applied

NOT_APPLIED = "accepted, not applied by meshplane"

#: Envoy's worker threads when ProxyConfig sets no ``concurrency`` (the proxy's CPU limit is 2)
DEFAULT_CONCURRENCY = 2


def envoy_args(proxy: ProxySettings) -> str:
    concurrency = DEFAULT_CONCURRENCY if proxy.concurrency is None else proxy.concurrency
    # concurrency 0: every core (Envoy's default when the flag is absent)
    args = ProxySettings(concurrency=concurrency or None, drain_seconds=proxy.drain_seconds).envoy_args()
    return " ".join(args)


def image(base: str, proxy: ProxySettings) -> str:
    """Istio's image variants: ``<image>-debug``/``<image>-distroless``; ``default`` is the image."""
    if proxy.image_type == "default" or base.endswith("-" + proxy.image_type):
        return base
    return f"{base}-{proxy.image_type}"


def env(raw: Mapping[str, Any], proxy: ProxySettings) -> list[Obj]:
    out: list[Obj] = []
    if raw:
        out.append({"name": "PROXY_CONFIG", "value": json.dumps(raw, sort_keys=True, separators=(",", ":"))})
    out += [{"name": k, "value": v} for k, v in sorted(proxy.metadata.items())]
    return out


def lifecycle(proxy: ProxySettings) -> Obj:
    hooks: Obj = {}
    if proxy.hold_application:
        url = f"http://127.0.0.1:{HEALTH_PORT}/healthz/ready"
        hooks["postStart"] = {"exec": {"command": ["meshctl", "wait", "--url", url]}}
    if proxy.termination_drain_seconds is not None:
        duration = f"{proxy.termination_drain_seconds:g}s"
        command = ["meshctl", "drain", "--admin", f"127.0.0.1:{ADMIN_PORT}", "--duration", duration]
        hooks["preStop"] = {"exec": {"command": command}}
    return {"lifecycle": hooks} if hooks else {}


def warnings(annotations: Mapping[str, Any]) -> list[str]:
    """Istio-style warnings for the ``proxy.istio.io/config`` fields meshplane does not apply."""
    import yaml

    raw = annotations.get(ANNOTATION)
    try:
        doc = yaml.safe_load(raw) if isinstance(raw, str) else None
    except yaml.YAMLError:
        return []  # refused by the annotation check with its own message
    if not isinstance(doc, dict):
        return []
    return [f"{NOT_APPLIED}: {ANNOTATION} {name}" for name in not_applied(doc)]
