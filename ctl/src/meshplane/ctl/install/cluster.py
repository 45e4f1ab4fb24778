"""What install, upgrade and uninstall do to a cluster: apply, wait for readiness, prune, delete.

Objects are applied with server-side apply under one field manager (``meshplane-operator``, with
``force``: the installer owns the fields it sets, as istioctl's ``istio-operator`` does) in
component order: Base, then Cni, Citadel, Galley and Pilot, then the gateways; each component's
workloads must be ready before the next component starts. Objects are found again by their
install labels (``install.operator.istio.io/owning-resource`` and ``istio.io/rev``), which is how
an upgrade prunes what is no longer rendered and an uninstall removes exactly what was made.
Namespaces are never deleted (as istioctl, which leaves ``istio-system``); CRDs only on purge.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from meshplane.ctl.install.render import LABEL_COMPONENT, LABEL_OWNER, LABEL_REV, Manifest
from meshplane.ctl.install.spec import InstallError

FIELD_MANAGER = "meshplane-operator"
#: apply order; within a component, the rendered order (namespaces and CRDs first in Base)
COMPONENT_ORDER = ("Base", "Cni", "Citadel", "Galley", "Pilot", "IngressGateways", "EgressGateways")
_KEEP_ON_UNINSTALL = frozenset({"Namespace"})
_PURGE_ONLY = frozenset({"CustomResourceDefinition"})

Key = tuple[str, str, str | None, str]  # apiVersion, kind, namespace, name


def key(obj: Manifest) -> Key:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])


def describe(k: Key) -> str:
    return f"{k[1]} {k[2]}/{k[3]}" if k[2] else f"{k[1]} {k[3]}"


@dataclass
class Cluster:
    """A dynamic client on the cluster, and how to report progress."""

    api: Any
    say: Callable[[str], None] = print
    poll: float = 1.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        from kubernetes import dynamic

        self.dyn: Any = dynamic.DynamicClient(self.api)  # type: ignore[no-untyped-call]

    def resource(self, api_version: str, kind: str) -> Any:
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: Manifest) -> None:
        meta = obj["metadata"]
        self.resource(obj["apiVersion"], obj["kind"]).server_side_apply(
            body=obj,
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    def delete(self, k: Key) -> bool:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self.resource(k[0], k[1]).delete(name=k[3], namespace=k[2], propagation_policy="Background")
        except NotFoundError:
            return False
        return True

    def installed(
        self, kinds: Iterable[tuple[str, str]], owner: str | None, revision: str | None
    ) -> list[Manifest]:
        """Every object of ``kinds`` carrying an install's labels: of ``owner`` (else any) and
        ``revision`` (else any)."""
        selector = f"{LABEL_OWNER}={owner}" if owner else LABEL_OWNER
        if revision:
            selector += f",{LABEL_REV}={revision}"
        found: list[Manifest] = []
        for api_version, kind in sorted(set(kinds)):
            listed = self.resource(api_version, kind).get(label_selector=selector)
            found.extend(item.to_dict() for item in listed.items)
        return found

    def wait_ready(self, objects: list[Manifest], timeout: float) -> None:
        """Wait until every workload among ``objects`` is ready; InstallError names those that are not."""
        pending = [key(o) for o in objects if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]
        deadline = self.clock() + timeout
        while pending:
            pending = [k for k in pending if not self.is_ready(k)]
            if not pending:
                return
            if self.clock() >= deadline:
                names = ", ".join(describe(k) for k in pending)
                raise InstallError(f"not ready after {timeout:.0f}s: {names}")
            self.sleep(self.poll)

    def is_ready(self, k: Key) -> bool:
        """Whether the workload ``k`` has all its replicas updated and ready."""
        obj = self.resource(k[0], k[1]).get(name=k[3], namespace=k[2]).to_dict()
        spec, status = obj.get("spec", {}), obj.get("status") or {}
        if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 0):
            return False
        if k[1] == "DaemonSet":
            want = status.get("desiredNumberScheduled", 0)
            return bool(
                status.get("numberReady", 0) == want and status.get("updatedNumberScheduled", 0) == want
            )
        want = spec.get("replicas", 1)
        ready = status.get("availableReplicas" if k[1] == "Deployment" else "readyReplicas", 0) or 0
        updated = status.get("updatedReplicas", 0) or 0
        return bool(ready >= want and updated >= want)


def by_component(objects: list[Manifest]) -> list[tuple[str, list[Manifest]]]:
    groups: dict[str, list[Manifest]] = {}
    for obj in objects:
        groups.setdefault(obj["metadata"]["labels"][LABEL_COMPONENT], []).append(obj)
    unknown = sorted(set(groups) - set(COMPONENT_ORDER))
    if unknown:
        raise InstallError(f"objects of unknown components: {', '.join(unknown)}")
    return [(name, groups[name]) for name in COMPONENT_ORDER if name in groups]


def install(
    cluster: Cluster,
    objects: list[Manifest],
    kinds: set[tuple[str, str]],
    owner: str,
    revision: str,
    timeout: float,
) -> list[Key]:
    """Apply ``objects`` component by component, waiting for each; then prune the install's other
    objects of ``kinds``; return what was pruned."""
    for component, members in by_component(objects):
        for obj in members:
            cluster.apply(obj)
        cluster.say(f"- {component}: {len(members)} objects applied, waiting for its workloads")
        cluster.wait_ready(members, timeout)
        cluster.say(f"✔ {component} installed")
    return prune(cluster, objects, kinds, owner, revision)


def prune(
    cluster: Cluster, keep: list[Manifest], kinds: set[tuple[str, str]], owner: str, revision: str
) -> list[Key]:
    """Delete this install's objects that are no longer rendered (namespaces and CRDs stay)."""
    kinds = kinds - {("v1", "Namespace")}
    wanted = {key(o) for o in keep}
    pruned = []
    for obj in cluster.installed(kinds, owner, revision):
        k = key(obj)
        if k not in wanted and k[1] not in _KEEP_ON_UNINSTALL | _PURGE_ONLY and cluster.delete(k):
            cluster.say(f"  removed {describe(k)} (no longer part of the install)")
            pruned.append(k)
    return pruned


#: What a revision owns alone: its Pilot (component ``Pilot``) and its sidecar injector.
REVISION_OWN = frozenset({"Pilot", "MutatingWebhookConfiguration"})


def uninstall(
    cluster: Cluster,
    kinds: set[tuple[str, str]],
    owner: str | None,
    revision: str | None,
    *,
    purge: bool,
    only: frozenset[str] | None = None,
) -> list[Key]:
    """Delete every object of this install (CRDs too with ``purge``), gateways first, Base last;
    with ``only``, just the objects whose component or kind it names."""
    found = cluster.installed(kinds - {("v1", "Namespace")}, owner, revision)
    if only is not None:
        found = [
            o for o in found if o["kind"] in only or o["metadata"]["labels"].get(LABEL_COMPONENT) in only
        ]
    found.sort(key=lambda o: -COMPONENT_ORDER.index(o["metadata"]["labels"].get(LABEL_COMPONENT, "Base")))
    removed = []
    for obj in found:
        k = key(obj)
        if k[1] in _PURGE_ONLY and not purge:
            continue
        if cluster.delete(k):
            cluster.say(f"  removed {describe(k)}")
            removed.append(k)
    return removed
