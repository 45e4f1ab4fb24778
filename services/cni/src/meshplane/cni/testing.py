"""Test support for the CNI tests: root/iptables skip helper, pod netns with a veth, plugin runs
the way a runtime does them, and the agent as a subprocess.  Everything made is torn down.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meshplane.shared.processes import ChildExited, ChildProcess

BIN = Path(sys.executable).parent
TOOLS = ("ip", "nsenter", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore")


def root_skip_reason() -> str | None:
    """Why root-only tests cannot run here, or ``None``."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    missing = [
        t for t in TOOLS if shutil.which(t) is None and shutil.which(t, path="/usr/sbin:/sbin") is None
    ]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install iptables iproute2)"
    return None


requires_root = pytest.mark.skipif(root_skip_reason() is not None, reason=root_skip_reason() or "")


def sh(*argv: str, check: bool = True, stdin: str | None = None) -> str:
    """Run a command and return stdout; raise with stderr on failure."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class PodNetns:
    """A pod netns wired by a veth pair to a "node" netns (the host netns is never touched)."""

    name: str
    node: str
    ip: str
    node_ip: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def exec(self, *argv: str, check: bool = True, stdin: str | None = None) -> str:
        return sh("ip", "netns", "exec", self.name, *argv, check=check, stdin=stdin)

    def save(self, table: str = "nat", v6: bool = False) -> list[str]:
        """``iptables-save`` rule lines (``-A ...``) and chain lines of a table."""
        out = self.exec("ip6tables-save" if v6 else "iptables-save", "-t", table)
        return [line for line in out.splitlines() if line.startswith(("-A", ":"))]


@contextmanager
def pod_netns(ipv6: bool = False) -> Iterator[PodNetns]:
    """Create a pod netns + node netns + veth with random names and addresses; delete them after."""
    suffix = secrets.token_hex(3)
    octets = f"{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
    pod = PodNetns(f"mpcni-pod-{suffix}", f"mpcni-node-{suffix}", f"10.{octets}.2", f"10.{octets}.1")
    try:
        for ns in (pod.name, pod.node):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh(
            "ip",
            "-n",
            pod.node,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.name,
        )
        sh("ip", "-n", pod.name, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
        sh("ip", "-n", pod.node, "addr", "add", f"{pod.node_ip}/24", "dev", "eth0")
        if ipv6:
            sh("ip", "-n", pod.name, "addr", "add", "fd00:10::2/64", "dev", "eth0", "nodad")
            sh("ip", "-n", pod.node, "addr", "add", "fd00:10::1/64", "dev", "eth0", "nodad")
        for ns in (pod.name, pod.node):
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", pod.name, "route", "add", "default", "via", pod.node_ip)
        yield pod
    finally:
        for ns in (pod.name, pod.node):
            sh("ip", "netns", "del", ns, check=False)


def prev_result(pod: PodNetns, ipv6: bool = False) -> dict[str, Any]:
    """A real chained result as ptp/bridge would hand it on (1.0.0 shape)."""
    ips = [{"address": f"{pod.ip}/24", "gateway": pod.node_ip, "interface": 1}]
    if ipv6:
        ips.append({"address": "fd00:10::2/64", "gateway": "fd00:10::1", "interface": 1})
    return {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "vethnode", "mac": "aa:bb:cc:00:00:01"},
            {"name": "eth0", "mac": "aa:bb:cc:00:00:02", "sandbox": pod.path},
        ],
        "ips": ips,
        "routes": [{"dst": "0.0.0.0/0", "gw": pod.node_ip}],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]},
    }


def netconf(
    run_dir: Path, prev: Mapping[str, Any] | None, version: str = "1.0.0", **extra: Any
) -> dict[str, Any]:
    """Our plugin's NetConf as the runtime passes it (name/cniVersion from the list)."""
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": "k8s-pod-network",
        "type": "meshplane-cni",
        "cni_agent_run_dir": str(run_dir),
        **extra,
    }
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def run_plugin(
    command: str,
    conf: Mapping[str, Any] | str,
    netns: str = "",
    pod: tuple[str, str] | None = ("default", "web"),
    container_id: str = "c0ffee",
    plugin: Path | None = None,
) -> tuple[int, Any]:
    """Exec the plugin like a runtime: CNI_* env, NetConf on stdin; (exit code, parsed stdout)."""
    args = "IgnoreUnknown=1"
    if pod is not None:
        args += f";K8S_POD_NAMESPACE={pod[0]};K8S_POD_NAME={pod[1]};K8S_POD_INFRA_CONTAINER_ID={container_id}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": args,
        "CNI_PATH": str(BIN),
    }
    stdin = conf if isinstance(conf, str) else json.dumps(conf)
    done = subprocess.run(
        [str(plugin or BIN / "meshplane-cni")],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


def pod_object(
    name: str,
    namespace: str = "default",
    annotations: Mapping[str, str] | None = None,
    ip: str = "",
    **spec: Any,
) -> dict[str, Any]:
    """An injected Pod in the Kubernetes API's shape (two containers, status annotation)."""
    meta_annotations = {"sidecar.istio.io/status": '{"containers":["istio-proxy"]}', **(annotations or {})}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": meta_annotations},
        "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}], **spec},
        "status": {"podIP": ip} if ip else {},
    }
    return pod


@dataclass
class AgentProcess:
    """A running ``meshplane-cni-agent``."""

    child: ChildProcess
    run_dir: Path
    bin_dir: Path
    conf_dir: Path
    pods_file: Path
    log: Path

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.popen

    def write_pods(self, pods: list[dict[str, Any]]) -> None:
        tmp = self.pods_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
        tmp.replace(self.pods_file)

    def stop(self, timeout: float = 20.0) -> int | None:
        return self.child.stop(timeout)


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def agent(base: Path, pods: list[dict[str, Any]], *extra: str) -> Iterator[AgentProcess]:
    """Start the agent on temp dirs with a pods file; SIGTERM it (by PID) afterwards."""
    pods_dir = base / "pods"
    pods_dir.mkdir(parents=True, exist_ok=True)
    run_dir, bin_dir, conf_dir, pods_file = base / "run", base / "bin", base / "net.d", pods_dir / "pods.json"
    argv = [
        str(BIN / "meshplane-cni-agent"),
        f"--pods-file={pods_file}",
        f"--run-dir={run_dir}",
        f"--cni-bin-dir={bin_dir}",
        f"--cni-conf-dir={conf_dir}",
        *extra,
    ]
    log = base / "agent.log"
    a = AgentProcess(ChildProcess(argv, log), run_dir, bin_dir, conf_dir, pods_file, log)
    a.conf_dir.mkdir(parents=True, exist_ok=True)
    a.write_pods(pods)
    a.child.start()
    try:
        try:
            a.child.wait_ready((a.run_dir / "agent.sock").exists, 30, "agent socket")
        except (ChildExited, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{a.child.log_text()}") from None
        yield a
    finally:
        a.stop()
