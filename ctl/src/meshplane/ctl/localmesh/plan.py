"""Read a config directory into the plan of what ``meshctl up`` runs.

Workloads come from ``LocalWorkload`` objects (``apiVersion: meshplane.io/v1alpha1``, a kind
Galley and ``meshctl validate`` pass over as non-Istio): each names its WorkloadEntry, which
gives the address, labels and service account, and carries the ``command`` that runs the app.
The ingress gateway's port and address come from the Gateway that selects
``istio: ingressgateway``. Each proxy's ProxyConfig comes from the ProxyConfig resources
and the ``defaultConfig`` of the mesh's MeshConfig (Istio's precedence): ``--mesh-config``, else
the directory's own ``mesh.yaml`` (:func:`mesh_config_file`). Problems raise ``PlanError`` naming
the file and object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from meshplane.shared.meshconfig import (
    CONFIG_DIR_FILE,
    DEFAULT_TRUST_DOMAIN,
    MeshConfig,
    is_config_dir_mesh_file,
)
from meshplane.shared.proxyconfig import ProxyConfigs

LOCAL_API = "meshplane.io/v1alpha1"
GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
NETWORK_LABEL = "topology.istio.io/network"
#: Istio's east-west gateway labels (samples/multicluster): a router with an AUTO_PASSTHROUGH server
EASTWEST_LABELS = {"istio": "eastwestgateway", "app": "istio-eastwestgateway"}


class PlanError(ValueError):
    """The config directory cannot be run; the message names the file and object."""


@dataclass(frozen=True)
class Workload:
    name: str
    namespace: str
    address: str
    labels: dict[str, str]
    service_account: str
    command: list[str]
    source: Path
    app_endpoints: tuple[str, ...] = ()

    @property
    def proxy(self) -> str:
        """The proxy name Istio tools use: ``<pod>.<namespace>``."""
        return f"{self.name}.{self.namespace}"


@dataclass
class Plan:
    workloads: list[Workload] = field(default_factory=list)
    gateway_bind: str = "127.0.0.1"
    gateway_port: int = 0
    #: the east-west gateway (a Gateway selecting ``istio: eastwestgateway`` with a TLS server);
    #: port 0: none
    eastwest_bind: str = ""
    eastwest_port: int = 0
    #: MeshConfig ``defaultConfig`` and the ProxyConfig resources: each proxy's ProxyConfig
    proxy_configs: ProxyConfigs = field(default_factory=ProxyConfigs)
    #: MeshConfig ``trustDomain`` at start: the SPIFFE IDs proxies expect of Pilot
    trust_domain: str = DEFAULT_TRUST_DOMAIN


@dataclass(frozen=True)
class _Doc:
    path: Path
    index: int
    obj: dict[str, Any]

    @property
    def where(self) -> str:
        meta = self.obj.get("metadata") or {}
        ns, name = meta.get("namespace", "default"), meta.get("name", "")
        return f"{self.path.name}#{self.index} ({self.obj.get('kind')} {ns}/{name})"


def _documents(config_dir: Path) -> list[_Doc]:
    if not config_dir.is_dir():
        raise PlanError(f"--config-dir {config_dir}: not a directory")
    docs: list[_Doc] = []
    for path in sorted([*config_dir.rglob("*.yaml"), *config_dir.rglob("*.yml")]):
        if is_config_dir_mesh_file(path.relative_to(config_dir)):
            continue  # MeshConfig, not Istio config
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise PlanError(f"{path}: cannot read YAML: {exc}") from exc
        docs += [_Doc(path, i, d) for i, d in enumerate(loaded) if isinstance(d, dict)]
    return docs


def _name(doc: _Doc) -> tuple[str, str]:
    meta = doc.obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _workload(doc: _Doc, entries: dict[tuple[str, str], _Doc]) -> Workload:
    ns, name = _name(doc)
    spec = doc.obj.get("spec") or {}
    command = spec.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(c, str | int) for c in command):
        raise PlanError(f"{doc.where}: spec.command must be a non-empty list of strings")
    entry = entries.get((ns, name))
    if entry is None:
        raise PlanError(f"{doc.where}: no WorkloadEntry {ns}/{name} gives its address and labels")
    we = entry.obj.get("spec") or {}
    address = str(we.get("address") or "")
    if not address.startswith("127."):
        raise PlanError(
            f"{entry.where}: spec.address must be a loopback address (127.x.y.z), got {address!r}"
        )
    labels = {str(k): str(v) for k, v in (we.get("labels") or {}).items()}
    return Workload(
        name=name,
        namespace=ns,
        address=address,
        labels=labels,
        service_account=str(we.get("serviceAccount") or "default"),
        command=[str(c) for c in command],
        source=doc.path,
    )


def _app_endpoints(docs: list[_Doc], ns: str, labels: dict[str, str]) -> tuple[str, ...]:
    """Where the workload's Sidecar ingress forwards to (``defaultEndpoint`` HOST:PORT): its app."""
    found: list[str] = []
    for doc in docs:
        if doc.obj.get("kind") != "Sidecar" or _name(doc)[0] != ns:
            continue
        spec = doc.obj.get("spec") or {}
        selector = (spec.get("workloadSelector") or {}).get("labels") or {}
        if selector and all(labels.get(str(k)) == str(v) for k, v in selector.items()):
            for ing in spec.get("ingress") or []:
                target = str(ing.get("defaultEndpoint") or "")
                if target and not target.startswith("unix://"):
                    found.append(target)
    return tuple(found)


def _gateway_server(
    docs: list[_Doc], selector: str, protocols: tuple[str, ...], network: str = ""
) -> tuple[str, int]:
    """(bind, port) of the first ``protocols`` server of a Gateway selecting ``istio: <selector>``."""
    for doc in docs:
        if doc.obj.get("kind") != "Gateway":
            continue
        spec = doc.obj.get("spec") or {}
        labels = spec.get("selector") or {}
        if labels.get("istio") != selector or labels.get(NETWORK_LABEL, network) != network:
            continue
        for server in spec.get("servers") or []:
            port = server.get("port") or {}
            if str(port.get("protocol", "")).upper() in protocols and port.get("number"):
                return str(server.get("bind") or "127.0.0.1"), int(port["number"])
    return "", 0


def _gateway(docs: list[_Doc], plan: Plan, network: str) -> None:
    bind, port = _gateway_server(docs, "ingressgateway", ("HTTP", "HTTP2"))
    if port:
        plan.gateway_bind, plan.gateway_port = bind, port
    plan.eastwest_bind, plan.eastwest_port = _gateway_server(docs, "eastwestgateway", ("TLS",), network)


def mesh_config_file(config_dir: Path, flag: Path | None) -> Path | None:
    """The MeshConfig file of a mesh run from ``config_dir``: ``--mesh-config`` (``flag``) when
    given, else ``<config_dir>/mesh.yaml`` when it exists, else None (Istio's defaults)."""
    if flag is not None:
        return flag.resolve()
    own = config_dir / CONFIG_DIR_FILE
    return own.resolve() if own.is_file() else None


def load_plan(config_dir: Path, mesh: MeshConfig | None = None, network: str = "") -> Plan:
    """The workloads and gateways of ``config_dir``; raises PlanError. ``network``: the cluster's
    (an east-west Gateway whose selector names another ``topology.istio.io/network`` is not its)."""
    docs = _documents(config_dir)
    entries = {_name(d): d for d in docs if d.obj.get("kind") == "WorkloadEntry"}
    plan = Plan()
    seen: set[str] = set()
    for doc in docs:
        if doc.obj.get("kind") == "LocalWorkload" and doc.obj.get("apiVersion") == LOCAL_API:
            wl = _workload(doc, entries)
            wl = replace(wl, app_endpoints=_app_endpoints(docs, wl.namespace, wl.labels))
            if wl.proxy in seen:
                raise PlanError(f"{doc.where}: a second LocalWorkload {wl.namespace}/{wl.name}")
            seen.add(wl.proxy)
            plan.workloads.append(wl)
    _gateway(docs, plan, network)
    mesh = mesh or MeshConfig()
    objects = [d.obj for d in docs if d.obj.get("kind") == "ProxyConfig"]
    plan.proxy_configs = ProxyConfigs.build(mesh.default_config, objects, mesh.root_namespace)
    plan.trust_domain = mesh.trust_domain
    return plan
