"""VM auto-registration through real Envoys (Istio's WorkloadGroup flow).

A "VM" Envoy connects with its WorkloadGroup's metadata (``meshctl bootstrap --workload-group``);
Pilot registers its WorkloadEntry on the bus, a client sidecar's requests to the group's service
reach the VM's app through the VM's Envoy, ``meshctl workload-probe`` runs the group's probe
and a failing probe takes the endpoint out of the client's EDS; once the VM's Envoy is gone the
entry is deleted after the grace period (2 s here, ``PILOT_WORKLOAD_ENTRY_GRACE_PERIOD``).
With ``PILOT_ENABLE_WORKLOAD_ENTRY=false`` nothing is registered and WorkloadEntry workloads
serve no traffic, while a ServiceEntry's own endpoints still do. With two Pilot replicas, the
one the VM moves to takes its entry over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.bootstrap import PILOT_SAN
from meshplane.ctl.token import make_token
from meshplane.ctl.vm import vm_options
from meshplane.proto.bus.v1 import registry_pb2, workload_entry_pb2
from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.bus.buckets import workload_key
from meshplane.shared.processes import ChildProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

VM_NS, CLIENT_NS = "vms", "shop"
HOST = f"vmapp.{VM_NS}.svc.cluster.local"
GRACE = 2.0


def bus_entries(url: str) -> dict[str, workload_entry_pb2.RegisteredWorkloadEntry]:
    async def go() -> dict[str, workload_entry_pb2.RegisteredWorkloadEntry]:
        bus = await Bus.connect(BusOptions(url=url, publish_deadline=10))
        try:
            return await Buckets(bus).workload_entries.items()
        finally:
            await bus.close()

    return asyncio.run(go())


@dataclass
class Vm:
    kit: Any
    nats_url: str
    tmp: Path
    port: int
    client_ip: str
    vm_ip: str
    other_ip: str
    pilot: Any
    app: Any
    healthy_file: Path

    @property
    def entry_key(self) -> str:
        return workload_key(VM_NS, f"vmapp-{self.vm_ip}")

    def get(self, client: httpx.Client) -> tuple[int, str]:
        resp = client.get(f"http://{self.client_ip}:{self.port}/", headers={"host": HOST})
        return resp.status_code, resp.headers.get("x-served-by", "")

    def entry(self) -> workload_entry_pb2.RegisteredWorkloadEntry | None:
        return bus_entries(self.nats_url).get(self.entry_key)

    def start_vm_envoy(self, *pilots: Any) -> Any:
        addresses = [f"127.0.0.1:{p.grpc}" for p in pilots or (self.pilot,)]
        opts = self.kit.proxy_options(
            "sidecar", self.vm_ip, "vm-1", VM_NS, {"app": "vmapp"}, addresses, False
        )
        opts.xds_retry_max = 0.5  # back to a Pilot within a second when its stream ends
        vm = vm_options(_vm_flags(self.tmp))
        opts.extra_metadata, opts.proxy_config = vm.metadata, vm.proxy_config({})
        return self.kit.start_envoy(self.tmp, "vm", opts)

    def start_prober(self) -> ChildProcess:
        meshctl = Path(sys.executable).parent / "meshctl"
        argv = [str(meshctl), "workload-probe", "--bootstrap", str(self.tmp / "vm.yaml")]
        child = ChildProcess(argv, self.tmp / "prober.log", name="workload-probe")
        child.start()
        return child


def _vm_flags(tmp: Path) -> argparse.Namespace:
    """``meshctl bootstrap``'s VM flags for the group in ``tmp/wg.yaml``."""
    return argparse.Namespace(
        network="", workload_group=str(tmp / "wg.yaml"), namespace=VM_NS, xds_relay_socket=""
    )


def _group(port: int, healthy_file: Path) -> dict[str, Any]:
    probe = {
        "exec": {"command": ["test", "-f", str(healthy_file)]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    return {
        "metadata": {"labels": {"tier": "backend"}},
        "template": {"labels": {"app": "vmapp"}, "ports": {"http": port}, "serviceAccount": "vmapp"},
        "probe": probe,
    }


@contextmanager
def _mesh(kit: Any, nats_url: str, tmp: Path, pilot_env: dict[str, str]) -> Iterator[Vm]:
    """Pilot, the ``vmapp`` ServiceEntry selecting ``app: vmapp`` WorkloadEntries, its
    WorkloadGroup, the VM's app on 127.0.0.1 (behind the VM's Envoy) and a client sidecar."""
    base = kit.loopback_base()
    client_ip, vm_ip, other_ip = base + "10", base + "20", base + "30"
    port = kit.free_port_on([client_ip, vm_ip, other_ip, "127.0.0.1"])
    vm_egress = kit.free_port_on([vm_ip])
    app = kit.App("vmapp", "v1", "127.0.0.1", port)
    healthy_file = tmp / "healthy"
    healthy_file.touch()
    group = _group(port, healthy_file)
    (tmp / "wg.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "WorkloadGroup",
                "metadata": {"name": "vmapp", "namespace": VM_NS},
                "spec": group,
            }
        )
    )
    service_entry = {
        "hosts": [HOST],
        "ports": [{"number": port, "name": "http", "protocol": "HTTP"}],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "workloadSelector": {"labels": {"app": "vmapp"}},
    }
    client_egress = {
        "port": {"number": port, "protocol": "HTTP", "name": "http"},
        "bind": client_ip,
        "captureMode": "NONE",
        "hosts": [f"{VM_NS}/*"],
    }
    configs = [
        kit.vs_config("ServiceEntry", VM_NS, "vmapp", service_entry),
        kit.vs_config("WorkloadGroup", VM_NS, "vmapp", group),
        kit.vs_config("Sidecar", CLIENT_NS, "client", {"egress": [client_egress]}),
        # the VM's own outbound side on a port of its own (its inbound takes vm_ip:port)
        kit.bound_client_sidecar(VM_NS, vm_egress, vm_ip, name="vm"),
        # no certificates here (no node agent): plaintext between the proxies
        kit.vs_config(
            "DestinationRule", VM_NS, "vmapp", {"host": HOST, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}
        ),
        kit.vs_config(
            "PeerAuthentication", VM_NS, "plaintext", {"mtls": {"mode": "DISABLE"}}, group="security.istio.io"
        ),
    ]
    bus = kit.publish(nats_url, ([], []), configs)
    pilot = kit.start_pilot(nats_url, tmp, "pilot", env=pilot_env)
    client = None
    try:
        client_opts = kit.proxy_options(
            "sidecar", client_ip, "client-1", CLIENT_NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], True
        )
        client = kit.start_envoy(tmp, "client", client_opts)
        listener = f"{client_ip}_{port}"
        kit.wait_until(lambda: listener in client.admin_get("/listeners"), 20, "the client's listener")
        yield Vm(kit, nats_url, tmp, port, client_ip, vm_ip, other_ip, pilot, app, healthy_file)
    finally:
        kit.stop_all(client, pilot)
        app.stop()
        for c in configs:
            bus.delete_config(c.kind, c.namespace, c.name, c.group)


def _condition(entry: workload_entry_pb2.RegisteredWorkloadEntry | None) -> tuple[str, str] | None:
    if entry is None:
        return None
    return next(((c.status, c.message) for c in entry.conditions if c.type == "Healthy"), None)


def test_vm_registers_serves_traffic_follows_its_probe_and_is_removed_after_the_grace_period(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    env = {"PILOT_WORKLOAD_ENTRY_GRACE_PERIOD": f"{GRACE:g}s"}
    with _mesh(kit, nats_module.url, tmp_path, env) as vm, httpx.Client(timeout=5) as http:
        assert vm.entry() is None
        vm_envoy = vm.start_vm_envoy()
        prober = None
        try:
            entry = kit.wait_until(vm.entry, 20, "the VM's WorkloadEntry on the bus")
            res = entry.entry
            assert (res.kind, res.namespace, res.name) == ("WorkloadEntry", VM_NS, f"vmapp-{vm.vm_ip}")
            assert res.annotations["istio.io/autoRegistrationGroup"] == "vmapp"
            assert res.annotations["istio.io/workloadController"] == "pilot"
            assert res.annotations["proxy.istio.io/health-checks-enabled"] == "true"
            assert "istio.io/connectedAt" in res.annotations
            spec = json.loads(res.spec_json)
            assert spec["address"] == vm.vm_ip and spec["ports"] == {"http": vm.port}
            assert spec["labels"] == {"app": "vmapp", "tier": "backend"}
            # health-checked: no traffic before the probe's first success
            assert _condition(entry) is None
            assert vm.get(http)[0] == 503
            prober = vm.start_prober()
            kit.wait_until(lambda: _condition(vm.entry()) == ("True", ""), 20, "Healthy=True")
            kit.wait_until(lambda: vm.get(http) == (200, "vmapp-v1"), 20, "traffic to the VM")
            seen = len(vm.app.requests)
            assert [vm.get(http) for _ in range(5)] == [(200, "vmapp-v1")] * 5
            assert len(vm.app.requests) == seen + 5
            # the probe fails: the endpoint leaves the client's EDS and traffic stops reaching the VM
            vm.healthy_file.unlink()
            kit.wait_until(lambda: (_condition(vm.entry()) or ("",))[0] == "False", 20, "Healthy=False")
            assert _condition(vm.entry()) == ("False", f"exec test -f {vm.healthy_file}: exit code 1")
            kit.wait_until(lambda: vm.get(http)[0] == 503, 20, "no healthy upstream")
            seen = len(vm.app.requests)
            assert [vm.get(http)[0] for _ in range(5)] == [503] * 5
            assert len(vm.app.requests) == seen
            vm.healthy_file.touch()
            kit.wait_until(lambda: vm.get(http) == (200, "vmapp-v1"), 20, "traffic back once healthy")
        finally:
            kit.stop_all(prober, vm_envoy)
        # disconnected: marked at once, deleted once the grace period has passed
        gone = kit.wait_until(
            lambda: (e := vm.entry()) is not None and "istio.io/disconnectedAt" in e.entry.annotations and e,
            10,
            "the entry marked disconnected",
        )
        marked = time.monotonic()
        assert "istio.io/connectedAt" not in gone.entry.annotations
        kit.wait_until(lambda: vm.entry() is None, 15, "the entry deleted after the grace period")
        assert time.monotonic() - marked >= GRACE - 0.5
        kit.wait_until(lambda: vm.get(http)[0] == 503, 20, "no endpoint once the entry is gone")


def test_workload_entries_off_registers_nothing_and_serves_no_workload_entry(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    env = {"PILOT_ENABLE_WORKLOAD_ENTRY": "false"}
    with _mesh(kit, nats_module.url, tmp_path, env) as vm, httpx.Client(timeout=5) as http:
        # a WorkloadEntry Galley published, with no proxy in front of its app
        direct = kit.App("direct", "v1", vm.other_ip, vm.port)
        bus = kit.BusWriter(vm.nats_url)
        source = registry_pb2.RegistrySource(kind="WorkloadEntry", namespace=VM_NS, name="direct")
        workload = registry_pb2.WorkloadInstance(
            name="direct",
            namespace=VM_NS,
            address=vm.other_ip,
            labels={"app": "vmapp"},
            ports={"http": vm.port},
            services=[HOST],
            source=source,
        )
        bus.put_registry([], [workload])
        vm_envoy = vm.start_vm_envoy()
        try:
            # the VM's Envoy is served (its outbound listener arrives) but not registered
            kit.wait_until(lambda: f"{vm.vm_ip}_" in vm_envoy.admin_get("/listeners"), 20, "VM config")
            assert vm.entry() is None
            assert vm.get(http)[0] == 503
            # the same workload from a ServiceEntry's own endpoints is served: only WorkloadEntries are off
            from_service_entry = registry_pb2.WorkloadInstance()
            from_service_entry.CopyFrom(workload)
            from_service_entry.source.kind = "ServiceEntry"
            bus.put_registry([], [from_service_entry])
            kit.wait_until(lambda: vm.get(http) == (200, "direct-v1"), 20, "ServiceEntry endpoint")
        finally:
            vm_envoy.stop()
            direct.stop()
            bus.delete_workload(VM_NS, "direct")


def _registrations(pilot: Any, event: str) -> float:
    text = httpx.get(f"{pilot.url}/metrics", timeout=5).text
    line = f"auto_registration_{event}_total "
    return next((float(x.removeprefix(line)) for x in text.splitlines() if x.startswith(line)), 0.0)


def test_the_replica_the_vm_moves_to_takes_its_entry_over(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    # a grace period longer than the move: the entry must survive it, owned by the new replica
    env = {"PILOT_WORKLOAD_ENTRY_GRACE_PERIOD": "30s"}
    with _mesh(kit, nats_module.url, tmp_path, env) as vm:
        other = kit.start_pilot(vm.nats_url, tmp_path, "pilot-b", env={**env, "PILOT_DEBOUNCE_AFTER": "50ms"})
        vm_envoy = None
        try:
            vm_envoy = vm.start_vm_envoy(vm.pilot, other)
            entry = kit.wait_until(vm.entry, 20, "the VM's WorkloadEntry")
            owner = entry.entry.annotations["istio.io/workloadController"]
            first, second = (vm.pilot, other) if owner == "pilot" else (other, vm.pilot)
            assert _registrations(first, "success") == 1
            first.stop()  # the VM's Pilot goes away: Envoy reconnects to the other replica
            moved = kit.wait_until(
                lambda: (
                    (e := vm.entry()) is not None
                    and e.entry.annotations.get("istio.io/workloadController") == second.pilot_id
                    and e
                ),
                20,
                f"{second.pilot_id} owning the entry",
            )
            assert "istio.io/connectedAt" in moved.entry.annotations
            assert "istio.io/disconnectedAt" not in moved.entry.annotations
            # taken over, not made again
            assert (_registrations(second, "updates"), _registrations(second, "success")) == (1, 0)
        finally:
            kit.stop_all(vm_envoy, other)


def test_over_mutual_tls_the_vm_registers_and_reports_health_with_its_certificate(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    """Pilot's ADS is mutual TLS (its certificate and the VM's from Citadel, the VM's through its
    node agent): the entry is registered for the certificate's service account, and the prober's
    reports reach Pilot through Envoy's relay socket, so with the VM's identity."""
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    citadel.start()
    started: list[Any] = []
    try:
        root = citadel.ca_dir / "root-cert.pem"
        token = tmp_path / "pilot.token"
        token.write_text(make_token(citadel.ca_dir, "meshplane-system", "pilot", "istio-ca", 3600))
        tls = ["--ca-addr", citadel.target, "--ca-root", str(root), "--token-file", str(token)]
        pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot-mtls", xds=tls)
        started.append(pilot)
        vm_token = make_token(citadel.ca_dir, VM_NS, "vmapp", "istio-ca", 3600)
        agent = NodeAgentProcess(tmp_path / "agent", citadel.target, root, vm_token)
        agent.start()
        started.append(agent)
        healthy_file = tmp_path / "healthy"
        healthy_file.touch()
        group = _group(kit.free_port(), healthy_file)
        doc = {"kind": "WorkloadGroup", "metadata": {"name": "vmapp", "namespace": VM_NS}, "spec": group}
        (tmp_path / "wg.yaml").write_text(yaml.safe_dump(doc))
        bus = kit.publish(nats_module.url, ([], []), [kit.vs_config("WorkloadGroup", VM_NS, "vmapp", group)])
        vm_ip = kit.loopback_base() + "20"
        opts = kit.BootstrapOptions(
            node_id=f"sidecar~{vm_ip}~vm-1.{VM_NS}~{VM_NS}.svc.cluster.local",
            pilots=[f"127.0.0.1:{pilot.grpc}"],
            sds_socket=str(agent.socket),
            namespace=VM_NS,
            service_account="vmapp",
            labels={"app": "vmapp"},
            ip=vm_ip,
            interception="NONE",
            pilot_san=PILOT_SAN,
            xds_retry_max=1.0,
            xds_relay_socket=str(tmp_path / "relay.sock"),
        )
        vm = vm_options(_vm_flags(tmp_path))
        opts.extra_metadata, opts.proxy_config = vm.metadata, vm.proxy_config({})
        started.append(kit.start_envoy(tmp_path, "vm", opts))
        key = workload_key(VM_NS, f"vmapp-{vm_ip}")
        entry = kit.wait_until(lambda: bus_entries(nats_module.url).get(key), 30, "the VM's entry")
        assert json.loads(entry.entry.spec_json)["serviceAccount"] == "vmapp"
        prober = ChildProcess(
            [
                str(Path(sys.executable).parent / "meshctl"),
                "workload-probe",
                "--bootstrap",
                str(tmp_path / "vm.yaml"),
            ],
            tmp_path / "prober.log",
            name="workload-probe",
        )
        prober.start()
        started.append(prober)

        def healthy() -> str:
            return (_condition(bus_entries(nats_module.url).get(key)) or ("", ""))[0]

        kit.wait_until(lambda: healthy() == "True", 30, "Healthy=True through the relay")
        healthy_file.unlink()
        kit.wait_until(lambda: healthy() == "False", 30, "Healthy=False through the relay")
        bus.delete_config("WorkloadGroup", VM_NS, "vmapp")
    finally:
        kit.stop_all(*reversed(started))
        citadel.stop()
