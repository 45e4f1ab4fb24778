"""WasmPlugin (extensions.istio.io) and ProxyConfig (networking.istio.io), typed loosely.

WasmPlugin is modelled so that existing Istio YAML carrying it is accepted, with the fields Istio
defines. ProxyConfig is applied at injection and bootstrap (``meshplane.shared.proxyconfig``).
"""

from __future__ import annotations

from meshplane.shared.config.models.base import (
    IstioModel,
    PolicyTargetReference,
    Struct,
    WorkloadSelector,
)


class WasmPlugin(IstioModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    url: str | None = None
    sha256: str | None = None
    image_pull_policy: str | None = None
    image_pull_secret: str | None = None
    plugin_config: Struct | None = None
    plugin_name: str | None = None
    phase: str | None = None
    priority: int | None = None
    fail_strategy: str | None = None
    vm_config: Struct | None = None
    match: list[Struct] | None = None
    type: str | None = None


class ProxyImage(IstioModel):
    image_type: str | None = None


class ProxyConfig(IstioModel):
    selector: WorkloadSelector | None = None
    concurrency: int | None = None
    environment_variables: dict[str, str] | None = None
    image: ProxyImage | None = None
