"""Find injected pods that came up without capture (the race before the agent was ready) and
repair them in place, or report them.

A pod needs a look when it should be captured (same skip rules as the plugin) and the agent has
no record of the plugin capturing it.  A pod's IP exists a moment before our plugin runs (the
network plugin before us in the chain assigns it), so a pod is acted on only when a second sweep
still finds it without rules.  Its netns is found by its IP (named netns under ``/run/netns``
and every process's ``/proc/<pid>/ns/net``, scanned once per sweep); the rules in it are
compared with what its annotations ask for; missing or wrong rules are re-applied
(``--repair``) or the pod is reported BROKEN.  Blocking iptables/nsenter work runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from meshplane.cni.agent import metrics
from meshplane.cni.agent.events import EventLog, Kind, make_event
from meshplane.cni.agent.podcache import PodCache
from meshplane.cni.netns import Netns, NetnsError
from meshplane.cni.rules.iptables import IPV4, IPV6, differences, parse_save, restore_add
from meshplane.cni.rules.pods import PodInfo, skip_reason
from meshplane.cni.rules.settings import AnnotationError, settings_from_annotations

log = logging.getLogger(__name__)

#: The plugin (or an earlier sweep) has dealt with the pod; DELETED: its sandbox is going away.
DONE = (Kind.CAPTURED, Kind.REPAIRED, Kind.DELETED)


def _candidates(proc: Path = Path("/proc"), named: Path = Path("/run/netns")) -> list[str]:
    """Paths of distinct network namespaces other than our own."""
    seen: set[tuple[int, int]] = set()
    try:
        own = os.stat("/proc/self/ns/net")
        seen.add((own.st_dev, own.st_ino))
    except OSError:
        pass
    paths = sorted(str(p) for p in named.glob("*")) if named.is_dir() else []
    paths += [f"{proc}/{pid}/ns/net" for pid in os.listdir(proc) if pid.isdigit()]
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            found.append(path)
    return found


def netns_by_address() -> dict[str, str]:
    """Every local address of every other netns → that netns's path (one ``ip`` call each)."""
    found: dict[str, str] = {}
    for path in _candidates():
        try:
            out = subprocess.run(
                ["nsenter", f"--net={path}", "ip", "-o", "addr", "show"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[1] != "lo":
                found.setdefault(fields[3].split("/")[0], path)
    return found


def check_and_repair(pod: PodInfo, netns_path: str, repair: bool) -> tuple[int, str]:
    """Compare the pod's netns rules with what it needs; fix them when ``repair``."""
    try:
        settings = settings_from_annotations(pod.annotations)
    except AnnotationError as exc:
        return Kind.BROKEN, str(exc)
    families = (IPV4, IPV6) if any(":" in ip for ip in pod.ips) else (IPV4,)
    try:
        netns = Netns(netns_path)
        states = {family: parse_save(netns.save(family)) for family in families}
        problems = [p for f in families for p in differences(settings, states[f], f)]
        if not problems:
            return Kind.CAPTURED, "capture rules found in place"
        if not repair:
            return Kind.BROKEN, "pod has no capture rules: " + "; ".join(problems)
        for family in families:
            netns.restore(family, restore_add(settings, states[family], family))
    except NetnsError as exc:
        return Kind.BROKEN, f"cannot repair: {exc}"
    return Kind.REPAIRED, "applied missing capture rules: " + "; ".join(problems)


class Repairer:
    """Sweeps the node's pods for missing capture."""

    def __init__(
        self, cache: PodCache, events: EventLog, node: str, exclude_namespaces: Iterable[str], repair: bool
    ) -> None:
        self.cache = cache
        self.events = events
        self.node = node
        self.exclude_namespaces = tuple(exclude_namespaces)
        self.repair = repair
        self.sweeps = 0
        self._suspects: set[tuple[str, str, str]] = set()

    def needs_look(self, pod: PodInfo) -> bool:
        """Should be captured and the plugin was never seen capturing it."""
        if skip_reason(pod, self.exclude_namespaces) is not None:
            return False
        latest = self.events.latest.get((pod.namespace, pod.name))
        return latest is None or latest.kind not in DONE

    async def sweep(self) -> None:
        """One pass over the pods."""
        suspects: set[tuple[str, str, str]] = set()
        addresses: dict[str, str] | None = None
        for pod in self.cache.pods():
            if not self.needs_look(pod) or not pod.ips:
                continue
            if addresses is None:  # one scan of the node's netns per sweep, only when needed
                addresses = await asyncio.to_thread(netns_by_address)
            path = next((addresses[ip] for ip in pod.ips if ip in addresses), None)
            if path is None:
                continue  # not running here (yet): nothing to repair
            if (pod.namespace, pod.name, path) not in self._suspects:
                suspects.add((pod.namespace, pod.name, path))  # the plugin may be about to run
                continue
            kind, reason = await asyncio.to_thread(check_and_repair, pod, path, self.repair)
            result = (
                "captured" if kind == Kind.CAPTURED else "repaired" if kind == Kind.REPAIRED else "broken"
            )
            metrics.REPAIRS.labels(result).inc()
            await self.events.record(
                make_event(kind, self.node, pod.namespace, pod.name, reason=reason, netns=path)
            )
        self._suspects = suspects
        self.sweeps += 1

    async def run(self, interval: float) -> None:
        """Sweep once the cache is synced, then every ``interval`` seconds (a sweep that raises is
        the supervisor's: logged, counted in meshplane_cni_task_failures, restarted with backoff)."""
        await self.cache.synced.wait()
        while True:
            await self.sweep()
            await asyncio.sleep(interval)
