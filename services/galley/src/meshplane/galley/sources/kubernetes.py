"""The Kubernetes source: Istio kinds, Services, EndpointSlices, Pods and Namespaces from the API.

One :class:`~meshplane.shared.reflector.Reflector` task per resource (under Galley's task
supervisor) mirrors it; after a short quiet period (50 ms) the whole state becomes one snapshot for
``apply``. Istio objects are validated like the webhook does and only valid ones are passed on;
invalid ones are reported in ``status()`` (``/debug/sources``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kubernetes import client as kube_client
from kubernetes import config as kube_config
from opentelemetry import trace

from meshplane.galley.sources.model import ConfigObject, ObjectRef, identity
from meshplane.shared.config import ALL_KINDS, ISTIO_GROUPS, validate_object
from meshplane.shared.reflector import Reflector, ResourceDef, Sink, WatchEvent
from meshplane.shared.tasks import TaskSupervisor

log = logging.getLogger("meshplane.galley.sources.kubernetes")
_tracer = trace.get_tracer("meshplane.galley")

CORE_RESOURCES = (
    ResourceDef("", "v1", "Service", "services"),
    ResourceDef("", "v1", "Pod", "pods"),
    ResourceDef("", "v1", "Namespace", "namespaces"),
    ResourceDef("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
)

DEBOUNCE = 0.05


def istio_resources() -> list[ResourceDef]:
    return [
        ResourceDef(k.group, k.versions[0], k.kind, k.plural) for k in ALL_KINDS if k.group in ISTIO_GROUPS
    ]


def api_client(kube_api: str) -> kube_client.ApiClient:
    """An API client: ``--kube-api`` URL, else in-cluster config, else the kubeconfig."""
    if kube_api:
        configuration = kube_client.Configuration(host=kube_api)
        return kube_client.ApiClient(configuration)
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        kube_config.load_kube_config()  # type: ignore[no-untyped-call]
    return kube_client.ApiClient()


class KubernetesSource:
    """Mirrors the API's objects and hands a validated snapshot to ``apply`` on every change."""

    def __init__(
        self,
        api: kube_client.ApiClient,
        apply: Callable[[Iterable[ConfigObject]], None],
        resources: Iterable[ResourceDef] | None = None,
        tasks: TaskSupervisor | None = None,
    ) -> None:
        self.api = api
        self._apply = apply
        self.resources = (
            list(resources) if resources is not None else istio_resources() + list(CORE_RESOURCES)
        )
        #: runs one reflector task per resource (``watch-<plural>.<group>``): logged, counted, restarted
        self.tasks = tasks or TaskSupervisor("galley")
        self._listed: set[ResourceDef] = set()
        self._synced = asyncio.Event()
        self._reflectors: list[Reflector] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._rejected: dict[str, list[str]] = {}
        self._validated: dict[tuple[str, str], list[str]] = {}
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()

    def _sink_for(self, resource: ResourceDef) -> Sink:
        async def sink(changes: Sequence[WatchEvent], listed: bool) -> None:
            if listed:
                self._listed.add(resource)
            if (
                (changes or listed)
                and len(self._listed) == len(self.resources)
                and self._flush_handle is None
            ):
                # after the reflector took the changes into its store
                self._flush_handle = asyncio.get_running_loop().call_later(DEBOUNCE, self._flush)

        return sink

    def _flush(self) -> None:
        self._flush_handle = None
        # One trace per debounced batch of API changes: validation here, publish spans after.
        try:
            with _tracer.start_as_current_span(
                "galley.config_change", attributes={"galley.source": "kubernetes"}
            ):
                self._apply_snapshot()
        except Exception as exc:  # ends run(): its supervisor logs, counts and restarts it
            self._failure = exc
            self._failed.set()

    def _apply_snapshot(self) -> None:
        objects: list[ConfigObject] = []
        rejected: dict[str, list[str]] = {}
        seen: set[tuple[str, str]] = set()
        for reflector in self._reflectors:
            resource, store = reflector.resource, reflector.store
            for key in sorted(store):
                obj = store[key]
                ident = identity(obj, default_namespace="")
                if ident is None:
                    continue
                group, version, kind, namespace, name = ident
                md = obj.get("metadata") or {}
                ref = ObjectRef("kubernetes", f"{resource.path}/{key}".replace("//", "/"))
                co = ConfigObject(
                    group, version, kind, namespace, name, obj, ref, str(md.get("resourceVersion", ""))
                )
                if group in ISTIO_GROUPS:
                    seen.add((co.key, co.resource_version))
                    errors = self._errors(co)
                    if errors:
                        rejected[co.describe()] = errors
                        continue
                objects.append(co)
        if rejected != self._rejected:
            for what, errors in rejected.items():
                log.warning("ignoring invalid %s: %s", what, "; ".join(errors))
        self._rejected = rejected
        self._validated = {k: v for k, v in self._validated.items() if k in seen}
        self._apply(objects)
        self._synced.set()

    def _errors(self, obj: ConfigObject) -> list[str]:
        """Validation errors, cached per object and resourceVersion (a flush re-reads everything)."""
        cache_key = (obj.key, obj.resource_version)
        errors = self._validated.get(cache_key)
        if errors is None:
            with _tracer.start_as_current_span(
                "galley.validate", attributes={"galley.object": obj.describe()}
            ):
                errors = [str(e) for e in validate_object(obj.obj).errors]
            self._validated[cache_key] = errors
        return errors

    async def wait_synced(self, stop: asyncio.Event) -> None:
        """Return once every resource was listed once and the first snapshot was applied (or on stop)."""
        synced = asyncio.ensure_future(self._synced.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({synced, stopped}, return_when=asyncio.FIRST_COMPLETED)
        synced.cancel()
        stopped.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Run one reflector task per resource until ``stop`` is set.

        If applying a snapshot raises, the reflectors stop and the error is raised here. Each run
        starts from nothing (lists every resource again), so the caller may simply run it again.
        """
        inner = asyncio.Event()
        self._reflectors = [Reflector(self.api, r, self._sink_for(r)) for r in self.resources]
        self._listed = set()
        self._failure = None
        self._failed.clear()
        names = []
        for reflector in self._reflectors:
            names.append(f"watch-{reflector.resource.plural}.{reflector.resource.group or 'core'}")
            self.tasks.spawn(names[-1], functools.partial(reflector.run, inner))
        try:
            stopped = asyncio.ensure_future(stop.wait())
            failed = asyncio.ensure_future(self._failed.wait())
            try:
                await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                failed.cancel()
            if self._failure is not None and not stop.is_set():
                raise RuntimeError("applying the Kubernetes snapshot failed") from self._failure
        finally:
            inner.set()
            for name in names:
                self.tasks.discard(name)
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None

    def status(self) -> dict[str, Any]:
        """``/debug/sources``: per resource its list count, version, object count and last error."""
        return {
            "source": "kubernetes",
            "resources": [r.status() for r in self._reflectors],
            "rejected": self._rejected,
        }
