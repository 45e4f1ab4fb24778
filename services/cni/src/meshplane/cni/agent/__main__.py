"""meshplane-cni-agent: the per-node DaemonSet process (composition root).

Installs the plugin and chains it into the node's CNI config first of all (re-inserting it when
another plugin rewrites the config), serves pod metadata to the plugin on a Unix socket, repairs
pods that came up without capture, and publishes capture events to the bus.

Capture fails closed: the plugin is installed before anything else and without waiting for the
bus (which is connected in the background, retried with backoff, and only carries events), and it
stays installed when the agent stops, so pods created while the agent restarts are refused by
the plugin (it cannot reach the agent) instead of starting uncaptured. ``--remove-on-exit`` takes
the plugin out on SIGTERM, for removing meshplane from a node.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from prometheus_client import REGISTRY

from meshplane.cni.agent import metrics
from meshplane.cni.agent.events import EventLog, event_from_plugin
from meshplane.cni.agent.install import Installer
from meshplane.cni.agent.podcache import PodCache, PodsFileError, load_pods_file
from meshplane.cni.agent.repair import Repairer
from meshplane.cni.agent.server import AgentServer
from meshplane.cni.plugin.netconf import AGENT_SOCKET_NAME
from meshplane.cni.rules.pods import DEFAULT_EXCLUDED_NAMESPACES
from meshplane.shared.bus import Bus, BusOptions
from meshplane.shared.components import ComponentAnnouncer
from meshplane.shared.health import MonitoringServer
from meshplane.shared.lifecycle import parse_hostport, run_service
from meshplane.shared.tasks import TaskSupervisor
from meshplane.shared.telemetry import configure_logging, configure_metrics, configure_tracing

log = logging.getLogger("meshplane.cni.agent")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="meshplane-cni-agent", description=__doc__.splitlines()[0])
    p.add_argument("--cni-bin-dir", type=Path, default=Path(env("CNI_BIN_DIR", "/opt/cni/bin")))
    p.add_argument("--cni-conf-dir", type=Path, default=Path(env("CNI_NET_DIR", "/etc/cni/net.d")))
    p.add_argument("--cni-conf-name", default=env("CNI_CONF_NAME") or None, help="config file to chain into")
    p.add_argument("--run-dir", type=Path, default=Path(env("CNI_AGENT_RUN_DIR", "/var/run/meshplane-cni")))
    p.add_argument("--pods-file", type=Path, help="read pods from this YAML/JSON file instead of Kubernetes")
    p.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="kubeconfig (default: in-cluster)")
    p.add_argument("--node-name", default=env("NODE_NAME", ""), help="only pods on this node")
    p.add_argument(
        "--nats-url", "--bus-url", dest="bus_url", default=env("NATS_URL", ""), help="bus for capture events"
    )
    p.add_argument(
        "--host-cni-conf-dir",
        default=env("CNI_HOST_NET_DIR") or None,
        help="where --cni-conf-dir is on the host, when the agent sees it mounted elsewhere",
    )
    p.add_argument(
        "--exclude-namespaces",
        default=env("CNI_EXCLUDE_NAMESPACES", ",".join(DEFAULT_EXCLUDED_NAMESPACES)),
        help="comma-separated namespaces never captured",
    )
    p.add_argument("--repair", choices=("true", "false"), default=env("CNI_REPAIR_PODS", "true"))
    p.add_argument("--repair-interval", type=float, default=float(env("CNI_REPAIR_INTERVAL", "10")))
    p.add_argument("--cni-check-interval", type=float, default=float(env("CNI_CHECK_INTERVAL", "2")))
    p.add_argument(
        "--monitoring-addr", default=None, help="HOST:PORT serving /ready and /metrics (default: off)"
    )
    p.add_argument("--no-install", action="store_true", help="serve only; do not touch the CNI dirs")
    p.add_argument(
        "--remove-on-exit",
        action="store_true",
        help="take the plugin out of the node's CNI config on SIGTERM (default: it stays, failing closed)",
    )
    return p.parse_args(argv)


async def watch_pods_file(cache: PodCache, path: Path, stop: asyncio.Event) -> None:
    """Load the pods file now, again once the watch is in place, and whenever it changes.

    A watched directory that is removed can never report again, so that raises (FileNotFoundError)
    and the supervisor restarts the watch with backoff until the directory is back.
    """
    from watchfiles import awatch

    async def load() -> None:
        try:
            await cache.replace_all(await asyncio.to_thread(load_pods_file, path))
        except PodsFileError as exc:
            log.error("keeping the previous pods: %s", exc)

    await load()
    caught_up = False
    async for changes in awatch(
        path.parent, stop_event=stop, debounce=200, step=50, rust_timeout=1000, yield_on_timeout=True
    ):
        if not changes and caught_up:
            continue
        caught_up = True  # the first yield: the watch is in place, so reload what was written before
        await load()
        if not await asyncio.to_thread(path.parent.is_dir):
            raise FileNotFoundError(f"the pods file's directory {path.parent} was removed")


async def watch_conf_dir(installer: Installer, stop: asyncio.Event, interval: float) -> None:
    """Put our entry back whenever the node's CNI config changes without it; also re-check every
    ``interval`` seconds, which covers changes made before the watch was in place."""
    from watchfiles import awatch

    changes = awatch(
        installer.conf_dir,
        stop_event=stop,
        debounce=200,
        step=50,
        rust_timeout=int(interval * 1000),
        yield_on_timeout=True,
    )
    async for _ in changes:
        if installer.ensure_entry():
            log.info("re-inserted %s into %s", "meshplane-cni", installer.config_path)


async def publish_on_bus(
    url: str, events: EventLog, endpoints: dict[str, str], tasks: TaskSupervisor, stop: asyncio.Event
) -> None:
    """Connect to the bus (a failure is raised, so the supervisor logs, counts and retries it with
    backoff), then publish capture events and the component record until the agent stops."""
    bus = await Bus.connect(BusOptions(url=url, identity="cni-agent"))
    announcer = ComponentAnnouncer(bus, "cni-agent", endpoints, supervisor=tasks)
    try:
        await events.attach(bus)
        await announcer.announce()  # for `meshctl version`
        await stop.wait()
    finally:
        events.detach()
        await announcer.withdraw()
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    args = parse_args(argv)
    configure_logging()
    configure_tracing("meshplane-cni-agent")
    configure_metrics("meshplane-cni-agent", REGISTRY)  # process and runtime metrics
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # one line per file event is noise
    try:
        monitoring_addr = parse_hostport(args.monitoring_addr) if args.monitoring_addr else None
    except ValueError as exc:
        print(f"meshplane-cni-agent: --monitoring-addr: {exc}", file=sys.stderr)
        return 2
    excluded = [n.strip() for n in args.exclude_namespaces.split(",") if n.strip()]

    async def run(stop: asyncio.Event) -> None:
        # Every loop is supervised: a failure is logged, counted in meshplane_cni_task_failures and
        # the loop restarted with backoff; /healthz lists the tasks that are down.
        tasks = TaskSupervisor("cni-agent", metrics.TASK_FAILURES, on_fatal=stop.set, stop=stop)
        installer = Installer(args.cni_bin_dir, args.cni_conf_dir, args.run_dir, args.cni_conf_name, excluded)
        if args.host_cni_conf_dir:
            installer.host_conf_dir = Path(args.host_cni_conf_dir)
        if not args.no_install:
            installer.install()  # first: nothing else (the bus, the API) may delay capture
        events = EventLog(None)
        cache = PodCache(node=args.node_name)

        async def on_event(report: dict[str, object]) -> None:
            metrics.plugin_event(report)
            await events.record(event_from_plugin(args.node_name, report))

        repairer = Repairer(cache, events, args.node_name, excluded, repair=args.repair == "true")
        server = AgentServer(
            args.run_dir / AGENT_SOCKET_NAME,
            cache,
            on_event,
            status=lambda: {"repair_sweeps": repairer.sweeps, "tasks_down": tasks.down()},
        )

        def not_ready() -> str | None:
            down = [name for name in tasks.down() if name != "bus"]  # events only: not needed to capture
            return f"tasks down: {', '.join(down)}" if down else None

        monitoring = MonitoringServer(REGISTRY, not_ready)
        try:
            async with server.serving():
                if args.pods_file:
                    pods_file = args.pods_file
                    tasks.spawn("pods-file", lambda: watch_pods_file(cache, pods_file, stop))
                else:
                    from meshplane.cni.agent.kubewatch import api_client, pod_reflector

                    pods = pod_reflector(api_client(args.kubeconfig), cache, args.node_name)
                    tasks.spawn("pods", lambda: pods.run(stop))
                if not args.no_install:
                    interval = args.cni_check_interval
                    tasks.spawn("cni-conf", lambda: watch_conf_dir(installer, stop, interval))
                tasks.spawn("repair", lambda: repairer.run(args.repair_interval))
                tasks.spawn("plugin-events", server.dispatch_events)
                endpoints = {"node": args.node_name, "socket": str(server.socket_path)}
                if monitoring_addr is not None:
                    port = await monitoring.start(*monitoring_addr)
                    log.info("serving /ready and /metrics", extra={"port": port})
                    endpoints["monitoring"] = f"{monitoring_addr[0]}:{monitoring_addr[1]}"
                if args.bus_url:
                    tasks.spawn("bus", lambda: publish_on_bus(args.bus_url, events, endpoints, tasks, stop))
                log.info("ready", extra={"socket": str(server.socket_path)})
                await stop.wait()
                await tasks.aclose()
        finally:
            await tasks.aclose()
            await monitoring.stop()
            if args.remove_on_exit and not args.no_install:
                installer.uninstall()
        tasks.raise_if_failed()

    return run_service("meshplane-cni-agent", run)


if __name__ == "__main__":
    sys.exit(main())
