"""``meshplane-operator``: keeps the cluster equal to the in-cluster install resources.

It watches the ``IstioOperator`` objects of its namespace and the workloads they made (by their
install labels). Any change to either, and a periodic resync (``--resync-period``), marks the
state dirty; one reconcile loop then renders, applies and prunes each install resource and writes
its status (:mod:`meshplane.ctl.operator.reconcile`). So a Deployment edited by hand is put back
within a reconcile, and an edit to the install resource is rolled out. Watches and the loop run
under the shared task supervisor: a watch that fails is restarted and relists; the operator
serves ``/ready`` and ``/metrics`` on ``--monitoring-addr``.

Istio removed its in-cluster operator in 1.24; this one keeps the design card's management layer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from meshplane.ctl.install.cluster import Cluster
from meshplane.ctl.install.load import default_manifests
from meshplane.ctl.install.render import LABEL_OWNER
from meshplane.ctl.operator.reconcile import GROUP, PLURAL, VERSION, reconcile, status_body
from meshplane.shared.health import MonitoringServer
from meshplane.shared.lifecycle import parse_hostport, run_service
from meshplane.shared.reflector import Reflector, ResourceDef, WatchEvent
from meshplane.shared.tasks import TaskSupervisor

log = logging.getLogger("meshplane.operator")

INSTALLS = ResourceDef(GROUP, VERSION, "IstioOperator", PLURAL)
WORKLOADS = (
    ResourceDef("apps", "v1", "Deployment", "deployments"),
    ResourceDef("apps", "v1", "DaemonSet", "daemonsets"),
    ResourceDef("apps", "v1", "StatefulSet", "statefulsets"),
)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="meshplane-operator", description=__doc__.splitlines()[0])
    p.add_argument("--namespace", default="meshplane-system", help="where the IstioOperator objects are")
    p.add_argument("--kubeconfig", help="out-of-cluster: a kubeconfig (default: the pod's service account)")
    p.add_argument("--manifests", type=Path, help="meshplane's k8s directory (default: the one shipped)")
    p.add_argument("--resync-period", type=float, default=60.0, help="seconds between full reconciles")
    p.add_argument("--debounce", type=float, default=0.5, help="seconds to gather changes before reconciling")
    p.add_argument("--monitoring-addr", default="0.0.0.0:15014", help="HTTP /ready and /metrics")
    return p.parse_args(argv)


class Operator:
    def __init__(self, api: Any, manifests: Path, args: argparse.Namespace) -> None:
        self.api = api
        self.cluster = Cluster(api, say=log.info)
        self.manifests = manifests
        self.args = args
        self.registry = CollectorRegistry()
        self.reconciles = Counter("meshplane_operator_reconciles", "Reconciles by outcome.", ["status"],
                                  registry=self.registry)  # fmt: skip
        self.dirty = asyncio.Event()
        self.synced = False
        self.installs = Reflector(api, INSTALLS, self._changed, namespace=args.namespace)
        self.watches = [Reflector(api, r, self._changed, label_selector=LABEL_OWNER) for r in WORKLOADS]

    async def _changed(self, changes: Sequence[WatchEvent], listed: bool) -> None:
        self.dirty.set()

    async def loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(self.args.resync_period):
                    await self.dirty.wait()
            except TimeoutError:
                pass
            await asyncio.sleep(self.args.debounce)  # gather a burst of events into one reconcile
            self.dirty.clear()
            for resource in list(self.installs.store.values()):
                await asyncio.to_thread(self._one, resource)
            self.synced = True

    def _one(self, resource: dict[str, Any]) -> None:
        meta = resource["metadata"]
        outcome = reconcile(self.cluster, self.manifests, resource)
        self.reconciles.labels(status=outcome.status).inc()
        if outcome.status == "ERROR":
            log.error("IstioOperator %s/%s: %s", meta["namespace"], meta["name"], outcome.message)
        body = {"status": status_body(outcome, meta.get("generation", 0), resource.get("status"))}
        self.cluster.resource(f"{GROUP}/{VERSION}", "IstioOperator").subresources["status"].patch(
            body=body, name=meta["name"], namespace=meta["namespace"],
            content_type="application/merge-patch+json",
        )  # fmt: skip

    def not_ready(self) -> str | None:
        return None if self.synced else "first reconcile not done"


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    from kubernetes import config

    if args.kubeconfig:
        api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        from kubernetes import client

        api = client.ApiClient()
    operator = Operator(api, args.manifests or default_manifests(), args)
    supervisor = TaskSupervisor("operator", stop=stop)
    supervisor.spawn("watch istiooperators", lambda: operator.installs.run(stop))
    for watch in operator.watches:
        supervisor.spawn(f"watch {watch.resource.plural}", lambda w=watch: w.run(stop))  # type: ignore[misc]
    supervisor.spawn("reconcile", lambda: operator.loop(stop))
    monitoring = MonitoringServer(operator.registry, operator.not_ready)
    host, port = parse_hostport(args.monitoring_addr)
    await monitoring.start(host, port)
    try:
        await stop.wait()
    finally:
        await supervisor.aclose()
        await monitoring.stop()
        api.close()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_service("meshplane-operator", lambda stop: serve(args, stop))


if __name__ == "__main__":
    sys.exit(main())
