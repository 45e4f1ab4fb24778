"""A test "kubelet" for the loopback control plane (``kubeenv``), which has no kubelet or scheduler.

It registers a Node (Ready, with an InternalIP), binds unscheduled pods of the namespaces it is
given to that node (the scheduler's job), and reports each bound pod as a kubelet would once its
containers run: phase Running, a pod IP, conditions PodScheduled/Initialized/ContainersReady/
Ready, a running container status per container. A pod being deleted is removed with grace 0
(the kubelet's final delete). No container actually runs.

Pod IPs are taken from ``pod_cidr``; by default 198.51.100.0/24 (TEST-NET-2), which is pure data:
nothing may route traffic to those addresses. Tests that send traffic to pods give the CIDR of
their own network namespaces instead.

With a ``network`` (:class:`meshplane.shared.testing.podnet.PodNetwork`, root only) pods are real
enough to take traffic: each gets a network namespace with a veth on the network's bridge, and its
address becomes ``status.podIP`` (so EndpointSlices hold it). Each container that has a
``command`` runs it (with its ``args``) as a host process inside that namespace, as a container
runtime would, with the container's literal ``env`` values plus ``POD_NAME``, ``POD_NAMESPACE``
and ``POD_IP``; the image is ignored. A deleted pod's processes are stopped and its namespace
removed. Without a ``network`` nothing runs (the default, and what ``main`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from meshplane.shared.reflector import Reflector, ResourceDef, WatchEvent
from meshplane.shared.testing.podnet import PodNetwork

log = logging.getLogger(__name__)

NODE_NAME = "meshplane-test-node"
PODS = ResourceDef("", "v1", "Pod", "pods")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TestKubelet:
    """Run with ``start()`` / ``stop()`` or as a context manager.

    Pods are followed by the shared :class:`~meshplane.shared.reflector.Reflector` on an event loop
    of the kubelet's own thread; the pods it handles are the API's JSON (``dict``)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        api_client: Any,
        namespaces: set[str],
        node_name: str = NODE_NAME,
        pod_cidr: str = "198.51.100.0/24",
        node_ip: str = "198.51.100.1",
        address_for: Callable[[dict[str, Any]], str] | None = None,
        network: PodNetwork | None = None,
    ) -> None:
        self.api_client = api_client
        self.core: Any = client.CoreV1Api(api_client)
        self.namespaces = namespaces
        self.node_name = node_name
        self.node_ip = node_ip
        self._hosts: Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address] = (
            h for h in ipaddress.ip_network(pod_cidr).hosts() if str(h) != node_ip
        )
        #: a test that runs the pod's process somewhere reachable (a network namespace of its own)
        #: returns that address for the pod; otherwise the next address of ``pod_cidr`` is used
        self.address_for = address_for
        #: pods get a network namespace on it and run their containers' commands there
        self.network = network
        self.pod_ips: dict[str, str] = {}  # pod uid -> IP
        self.errors = 0  # failures handled by the watch loop (each logged with its traceback)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_stop: asyncio.Event | None = None

    def __enter__(self) -> TestKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> TestKubelet:
        self.register_node()
        self._thread = threading.Thread(target=self._run, name=f"test-kubelet-{self.node_name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        loop, loop_stop = self._loop, self._loop_stop
        if loop is not None and loop_stop is not None:
            try:
                loop.call_soon_threadsafe(loop_stop.set)
            except RuntimeError:
                pass  # the loop has ended already
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def register_node(self) -> None:
        """Create the Node if it is missing and report it Ready."""
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {"kubernetes.io/hostname": self.node_name}},
        }
        try:
            self.core.create_node(node)
        except ApiException as err:
            if err.status != 409:
                raise
        now = _now()
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "meshplane test kubelet",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "addresses": [
                    {"type": "InternalIP", "address": self.node_ip},
                    {"type": "Hostname", "address": self.node_name},
                ],
            }
        }
        self.core.patch_node_status(self.node_name, status)

    def _run(self) -> None:
        """Follow pods until stopped; a failure is logged, counted, and following starts over."""
        while not self._stop.is_set():
            try:
                asyncio.run(self._follow())
            except Exception:
                self.errors += 1
                log.exception(
                    "test kubelet %s: pod sync failed (%d so far); retrying", self.node_name, self.errors
                )
                self._stop.wait(0.5)

    async def _follow(self) -> None:
        """List then watch pods (the shared reflector) until :meth:`stop`; a failed handling raises."""
        self._loop, self._loop_stop = asyncio.get_running_loop(), asyncio.Event()
        if self._stop.is_set():  # stopped before the loop could be told
            return

        async def sink(changes: Sequence[WatchEvent], listed: bool) -> None:
            for change in changes:
                if change.type == "DELETED":
                    self.forget(change.obj)
                else:
                    self.handle(change.obj)

        try:
            await Reflector(self.api_client, PODS, sink).run(self._loop_stop)
        finally:
            self._loop = self._loop_stop = None

    def handle(self, pod: dict[str, Any]) -> None:
        """Move one pod along: bind it, report it running, or finish its deletion."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        name, namespace, node = meta["name"], meta.get("namespace"), spec.get("nodeName")
        if namespace not in self.namespaces:
            return
        if meta.get("deletionTimestamp"):
            if node == self.node_name:
                self._ignore_gone(
                    lambda: self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
                )
                self.forget(pod)
            return
        if not node:
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
            }
            self._ignore_gone(
                lambda: self.core.create_namespaced_binding(namespace, binding, _preload_content=False)
            )
            return
        if node == self.node_name and not (pod.get("status") or {}).get("podIP"):
            self._ignore_gone(
                lambda: self.core.patch_namespaced_pod_status(name, namespace, self._running(pod))
            )

    def forget(self, pod: dict[str, Any]) -> None:
        """The pod is gone: stop its processes and remove its network namespace (with a network)."""
        uid = pod["metadata"]["uid"]
        self.pod_ips.pop(uid, None)
        if self.network is not None:
            self.network.detach(uid)

    def _start_sandbox(self, pod: dict[str, Any]) -> str:
        """A network namespace for the pod and its containers' commands running in it; its IP."""
        assert self.network is not None
        meta = pod["metadata"]
        box = self.network.attach(meta["uid"])
        base = {"POD_NAME": meta["name"], "POD_NAMESPACE": meta["namespace"], "POD_IP": box.ip}
        for container in pod["spec"]["containers"]:
            if container.get("command"):
                env = {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}
                argv = [*container["command"], *(container.get("args") or [])]
                self.network.run(box, container["name"], argv, {**env, **base})
        return box.ip

    def _running(self, pod: dict[str, Any]) -> dict[str, Any]:
        uid = pod["metadata"]["uid"]
        if uid not in self.pod_ips:
            if self.network is not None:
                address = self._start_sandbox(pod)
            elif self.address_for is not None:
                address = self.address_for(pod)
            else:
                address = str(next(self._hosts))
            self.pod_ips[uid] = address
        ip = self.pod_ips[uid]
        now = _now()
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": now}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        containers = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for c in pod["spec"]["containers"]
        ]
        return {
            "status": {
                "phase": "Running",
                "hostIP": self.node_ip,
                "hostIPs": [{"ip": self.node_ip}],
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": now,
                "conditions": conditions,
                "containerStatuses": containers,
            }
        }

    @staticmethod
    def _ignore_gone(call: Any) -> None:
        """Run an API call about a pod; a pod deleted (404) or changed (409) meanwhile is not an error."""
        try:
            call()
        except ApiException as err:
            if err.status not in (404, 409):
                raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meshplane.shared.testing.kubelet",
        description="Stand in for a kubelet and scheduler on a `make kube-up` cluster: bind the pods of the "
        "given namespaces to one Node and report them Running/Ready (no container runs).",
    )
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", ".state/kube/kubeconfig"))
    parser.add_argument("--namespace", "-n", action="append", required=True, help="repeat for several")
    parser.add_argument(
        "--pod-cidr", default="198.51.100.0/24", help="pod addresses (data only; never dialled)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    network = ipaddress.ip_network(args.pod_cidr)
    api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with TestKubelet(api, set(args.namespace), pod_cidr=str(network), node_ip=str(next(network.hosts()))):
        print(f"test kubelet running for namespaces {', '.join(args.namespace)}; Ctrl-C stops it", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
