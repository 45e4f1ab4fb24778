"""`meshctl up`: run the whole local mesh on this machine until Ctrl-C, leaving no process behind.

Reads the config directory (Istio YAML plus ``LocalWorkload`` objects saying which apps to run),
starts everything through ``localmesh.mesh.LocalMesh`` with progress lines, prints a table of
what runs where and a curl to try, then supervises the processes as kubelet does: one that exits
is restarted with backoff (``localmesh.restart``), and the rest keeps running. Only SIGINT or
SIGTERM, or a failure during start-up, stops every process group.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from meshplane.ctl.localmesh.clusters import CLUSTERS_FILE, MESH_FILE, is_multicluster, load_clusters
from meshplane.ctl.localmesh.mesh import LocalMesh
from meshplane.ctl.localmesh.multi import ClusterMesh
from meshplane.ctl.localmesh.plan import PlanError, load_plan, mesh_config_file
from meshplane.ctl.localmesh.supervisor import StartError, Supervisor
from meshplane.ctl.tables import render
from meshplane.shared.bus.client import BUS_DIR_ENV
from meshplane.shared.meshconfig import MeshConfigError, load_mesh_config


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="run the whole mesh locally until Ctrl-C")
    p.add_argument("--config-dir", default="examples/bookinfo", help="directory of Istio YAML")
    p.add_argument("--state-dir", default=".state", help="where the bus store, certificates and logs go")
    p.add_argument(
        "--mesh-config",
        type=Path,
        default=None,
        help="Istio MeshConfig YAML for Galley, Pilot and Citadel (followed live); its defaultConfig is "
        "every proxy's default ProxyConfig (default: the config directory's mesh.yaml, if any)",
    )
    p.add_argument(
        "--cluster",
        action="append",
        default=[],
        help=f"multi-cluster config dir ({CLUSTERS_FILE}): run only this cluster (repeatable; default all); "
        "clusters run by another meshctl up share its --state-dir",
    )
    p.set_defaults(func=run)


def _table(mesh: LocalMesh) -> str:
    rows = [(m.name, str(m.pid), m.where, m.log.name) for m in mesh.sup.children]
    return render(("COMPONENT", "PID", "WHERE", "LOG"), rows, right={1})


def _summary(mesh: LocalMesh, state: Path) -> str:
    gw = f"http://{mesh.plan.gateway_bind}:{mesh.plan.gateway_port}/"
    bus_dir = mesh.bus.root if mesh.bus else ""
    lines = [
        "",
        _table(mesh),
        f"(logs in {mesh.sup.logs})",
        "",
        "meshplane is up. Try:",
        f"  curl {gw}                         # through the ingress gateway",
        f"  curl -H 'end-user: jason' {gw}    # header-based routes see the header",
        f"  {BUS_DIR_ENV}={bus_dir} .venv/bin/meshctl proxy-status --nats-url {mesh.nats_url}",
        f"  .venv/bin/meshctl proxy-config route productpage-v1.bookinfo --state-dir {state}",
        f"Edit the YAML in {mesh.config_dir}: changes are live within a second.",
        "A process that exits is restarted (1s backoff, doubling to 30s). Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config_dir = Path(args.config_dir).resolve()
    if is_multicluster(config_dir):
        return run_clusters(args, config_dir)
    if args.cluster:
        print(
            f"meshctl up: --cluster: {config_dir} has no {CLUSTERS_FILE} (one cluster only)", file=sys.stderr
        )
        return 2
    try:
        mesh_file = mesh_config_file(config_dir, args.mesh_config)
        plan = load_plan(config_dir, load_mesh_config(mesh_file))
    except (PlanError, MeshConfigError) as exc:
        print(f"meshctl up: {exc}", file=sys.stderr)
        return 2
    if not plan.gateway_port:
        print(
            f"meshctl up: {config_dir}: no Gateway with selector istio: ingressgateway and an HTTP server",
            file=sys.stderr,
        )
        return 2
    state = Path(args.state_dir).resolve()
    sup = Supervisor(_logs(state))
    mesh = LocalMesh(plan, config_dir, state, sup, mesh_config=mesh_file)
    print(f"starting the local mesh from {config_dir} (state and logs in {state})", flush=True)
    if mesh_file is not None:
        print(f"MeshConfig from {mesh_file}", flush=True)
    return supervise(sup, [mesh], lambda: _summary(mesh, state))


def _logs(state: Path) -> Path:
    logs = state / "logs"
    state.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new state dir is private; tokens are 0600
    logs.mkdir(exist_ok=True)
    return logs


def supervise(sup: Supervisor, meshes: Sequence[LocalMesh], summary: Callable[[], str]) -> int:
    """Start each mesh in turn, print the summary, restart what exits until SIGINT/SIGTERM; stop all."""

    def request_stop(*_: object) -> None:
        sup.stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        for mesh in meshes:
            for step in (
                mesh.check_addresses,
                mesh.start_bus,
                mesh.start_control_plane,
                mesh.start_node_agents,
                mesh.start_apps,
                mesh.start_envoys,
            ):
                if sup.stop_requested:
                    raise StartError("interrupted")
                step()
        print(summary(), flush=True)
        while not sup.stop_requested:
            sup.tick()
            time.sleep(0.1)
    except StartError as exc:
        print(f"\nmeshctl up: {exc}", file=sys.stderr)
        code = 0 if sup.stop_requested else 1
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"\nmeshctl up: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        print("\nstopping ...", flush=True)
        restarted = [f"{m.name} {m.restarts}" for m in sup.children if m.restarts]
        if restarted:
            print(f"restarts: {', '.join(restarted)}", flush=True)
        sup.stop_all(keep_first=0 if len(meshes) > 1 else 1)
        for mesh in meshes:
            if mesh.sds_dir is not None and mesh.sds_dir.parent != mesh.state:
                shutil.rmtree(mesh.sds_dir, ignore_errors=True)
        print("stopped.", flush=True)
    return code


def run_clusters(args: argparse.Namespace, config_dir: Path) -> int:
    """A multi-cluster config dir: every cluster (or those of ``--cluster``), primaries first."""
    try:
        clusters = load_clusters(config_dir)
        if args.mesh_config:
            raise PlanError(
                f"--mesh-config: {config_dir} is multi-cluster; its {MESH_FILE} is every cluster's"
            )
        chosen = [clusters.get(name) for name in args.cluster] or list(clusters.clusters)
        mesh_config = load_mesh_config(clusters.mesh_config)
        plans = [
            (c, load_plan(c.config_dir, mesh_config, c.network))
            for c in sorted(chosen, key=lambda c: not c.primary)
        ]
    except (PlanError, MeshConfigError) as exc:
        print(f"meshctl up: {exc}", file=sys.stderr)
        return 2
    state = Path(args.state_dir).resolve()
    sup = Supervisor(_logs(state))
    meshes = [
        ClusterMesh(
            plan,
            c.config_dir,
            state / c.name,
            sup,
            mesh_config=clusters.mesh_config,
            spec=c,
            clusters=clusters,
        )
        for c, plan in plans
    ]
    names = ", ".join(f"{c.name} ({c.profile}, network {c.network or '-'})" for c, _ in plans)
    print(f"starting clusters {names} from {config_dir} (state and logs in {state})", flush=True)
    return supervise(sup, meshes, lambda: _clusters_summary(meshes, state))


def _clusters_summary(meshes: Sequence[ClusterMesh], state: Path) -> str:
    lines = ["", _table(meshes[0]), f"(logs in {meshes[0].sup.logs})", "", "meshplane is up. Try:"]
    for mesh in meshes:
        if mesh.plan.gateway_port:
            gw = f"http://{mesh.plan.gateway_bind}:{mesh.plan.gateway_port}/"
            lines.append(f"  curl {gw}    # {mesh.cluster.name}'s ingress gateway")
    lines += [
        f"  .venv/bin/meshctl proxy-status --state-dir {state}    # every cluster's proxies",
        f"  .venv/bin/meshctl proxy-config endpoint <proxy> --state-dir {state}/<cluster>"
        "    # other networks' endpoints are their east-west gateway",
        "Edit a cluster's YAML in its subdirectory: changes are live in that cluster within a second.",
        "A process that exits is restarted (1s backoff, doubling to 30s). Ctrl-C stops everything.",
    ]
    return "\n".join(lines)
