"""The bus in k8s/ and docker-compose: TLS and nkey authorization for nats-server, a patched
image, and each bus client mounting only its own credentials (made by ``meshctl bus-credentials``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .conftest import Manifests
from .test_k8s_manifests import k8s_errors

REPO = Path(__file__).resolve().parents[2]
#: Kubernetes workload -> its bus identity (meshplane.shared.bus.identities)
CLIENTS = {
    ("Deployment", "galley"): "galley",
    ("Deployment", "pilot"): "pilot",
    ("Deployment", "citadel"): "citadel",
    ("DaemonSet", "node-agent"): "node-agent",
    ("DaemonSet", "cni-agent"): "cni-agent",
}
#: nats-server 2.10.22 has published CVEs (k8s/base/nats/nats.yaml names them)
VULNERABLE = ("nats:2.10.22", "nats:2.10.2", "nats:2.11.0")


def _bus_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["containers"] if any("--nats-url" in a for a in c.get("args", []))]
    return container


def test_nats_requires_tls_and_authorization_and_runs_a_patched_image(
    base: Manifests, prod: Manifests
) -> None:
    for manifests in (base, prod):
        conf = manifests.one("ConfigMap", "nats-config")["data"]["nats.conf"]
        assert "tls {" in conf and "cert_file: /etc/nats/tls/tls.crt" in conf
        assert "include ../auth/authorization.conf" in conf
        pod = manifests.one("StatefulSet", "nats")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert not container["image"].startswith(VULNERABLE)
        assert container["args"] == ["--config", "/etc/nats/config/nats.conf"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert (mounts["tls"], secrets["tls"]) == ("/etc/nats/tls", "nats-tls")
        assert (mounts["auth"], secrets["auth"]) == ("/etc/nats/auth", "nats-auth")
    routes = prod.one("ConfigMap", "nats-config")["data"]["nats.conf"].split("cluster {")[1]
    assert "verify: true" in routes  # servers authenticate each other's routes


def test_each_bus_client_mounts_only_its_own_credentials(base: Manifests) -> None:
    for (kind, name), identity in CLIENTS.items():
        pod = base.one(kind, name)["spec"]["template"]["spec"]
        container = _bus_container(pod)
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["MESHPLANE_BUS_CREDENTIALS"] == "/etc/meshplane/bus", name
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/meshplane/bus"]
        assert mount["readOnly"] is True
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == f"meshplane-bus-{identity}", name
        # the container's user reads the group-readable files through fsGroup (or is root)
        pod_security = pod.get("securityContext", {})
        user = container.get("securityContext", {}).get("runAsUser", pod_security.get("runAsUser", 0))
        assert user == 0 or pod_security.get("fsGroup") == user, name


def test_meshctl_bus_credentials_makes_the_secrets_the_manifests_mount(
    base: Manifests, tmp_path: Path
) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshplane.ctl.main",
            "bus-credentials",
            "--out",
            str(tmp_path / "bus"),
            "--kubernetes",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    secrets = list(yaml.safe_load_all(out))
    assert k8s_errors(secrets) == []
    made = {s["metadata"]["name"]: set(s["data"]) for s in secrets}
    assert made["nats-tls"] == {"tls.crt", "tls.key", "ca.crt"}
    assert made["nats-auth"] == {"authorization.conf"}
    for identity in CLIENTS.values():
        assert made[f"meshplane-bus-{identity}"] == {"ca.crt", "nkey.seed"}
    assert "meshplane-bus-admin" not in made  # no unrestricted identity in a deployment
    # the private files are private
    assert (tmp_path / "bus" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "bus" / "pilot" / "nkey.seed").stat().st_mode & 0o777 == 0o600


def test_compose_runs_nats_with_the_bus_config_and_gives_each_client_its_directory() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert services["nats"]["command"][:2] == ["-c", "/bus/auth.conf"]
    assert not services["nats"]["image"].startswith(VULNERABLE)
    for name in ("galley", "pilot", "citadel", "node-agent"):
        assert services[name]["environment"]["MESHPLANE_BUS_CREDENTIALS"] == f"/bus/{name}"
        assert "bus-credentials:/bus:ro" in services[name]["volumes"]
