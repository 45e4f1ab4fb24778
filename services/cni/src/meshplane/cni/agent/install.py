"""Install/uninstall on the node: the plugin (``pluginbundle``) in the CNI bin dir, our entry in the CNI
config, a kubeconfig for the plugin (mode 0600); re-insert when another plugin rewrites the config.

Every file is written atomically (temp file + rename) so the runtime never reads half a config.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshplane.cni.agent import cniconf
from meshplane.cni.agent.pluginbundle import plugin_file

log = logging.getLogger(__name__)

KUBECONFIG_NAME = "ZZZ-meshplane-cni-kubeconfig"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def write_atomic(path: Path, text: str | bytes, mode: int) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory, with ``mode``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        data = memoryview(text.encode() if isinstance(text, str) else text)
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def kubeconfig_text(server: str, token: str, ca_data: str) -> str:
    """A kubeconfig for the plugin's service account (JSON is valid YAML)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    else:
        cluster["insecure-skip-tls-verify"] = True
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "meshplane-cni", "user": {"token": token}}],
        "contexts": [{"name": "meshplane-cni", "context": {"cluster": "local", "user": "meshplane-cni"}}],
        "current-context": "meshplane-cni",
    }
    return json.dumps(doc, indent=2) + "\n"


@dataclass
class Installer:
    """Owns what the agent puts on the node and takes it away again."""

    bin_dir: Path
    conf_dir: Path
    agent_run_dir: Path
    conf_name: str | None = None
    exclude_namespaces: list[str] = field(default_factory=lambda: ["istio-system", "kube-system"])
    kube_server: str = "https://kubernetes.default.svc:443"
    config_path: Path | None = None
    host_conf_dir: Path | None = None  # conf_dir as the host (and so the plugin) sees it

    @property
    def kubeconfig_path(self) -> Path:
        return self.conf_dir / KUBECONFIG_NAME

    @property
    def binary_path(self) -> Path:
        return self.bin_dir / cniconf.PLUGIN_TYPE

    def install(self) -> None:
        """Binary, kubeconfig, config entry."""
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.binary_path, plugin_file(), 0o755)
        self.write_kubeconfig()
        self.ensure_entry()

    def write_kubeconfig(self) -> None:
        """Kubeconfig from the pod's service account (empty token outside a cluster), mode 0600."""
        token = ca = ""
        if (SERVICE_ACCOUNT / "token").exists():
            import base64

            token = (SERVICE_ACCOUNT / "token").read_text().strip()
            ca = base64.b64encode((SERVICE_ACCOUNT / "ca.crt").read_bytes()).decode()
        write_atomic(self.kubeconfig_path, kubeconfig_text(self.kube_server, token, ca), 0o600)

    def entry(self) -> dict[str, Any]:
        kubeconfig = (self.host_conf_dir or self.conf_dir) / KUBECONFIG_NAME
        return cniconf.plugin_entry(str(self.agent_run_dir), str(kubeconfig), self.exclude_namespaces)

    def ensure_entry(self) -> bool:
        """Chain our plugin into the runtime's config if it is missing; True when we wrote."""
        target = cniconf.select_config(self.conf_dir, self.conf_name)
        if target is None:
            target = self.conf_dir / cniconf.OWN_CONFLIST
            write_atomic(target, json.dumps(cniconf.own_conflist(self.entry()), indent=2) + "\n", 0o600)
            self.config_path = target
            log.info("no CNI config in %s; wrote %s", self.conf_dir, target.name)
            return True
        config = cniconf.read_config(target) if target.exists() else None
        if config is None:
            log.warning("CNI config %s is not usable yet", target)
            return False
        is_conflist = target.suffix == ".conflist"
        if is_conflist and cniconf.has_entry(config) and config["plugins"][-1] == self.entry():
            self.config_path = target
            return False
        updated = cniconf.insert(config, self.entry(), is_conflist)
        new_path = target if is_conflist else target.with_suffix(".conflist")
        write_atomic(new_path, json.dumps(updated, indent=2) + "\n", 0o600)
        if new_path != target:
            target.unlink(missing_ok=True)
        if new_path.name != cniconf.OWN_CONFLIST:
            (self.conf_dir / cniconf.OWN_CONFLIST).unlink(missing_ok=True)  # a real config arrived
        self.config_path = new_path
        log.info("chained %s into %s", cniconf.PLUGIN_TYPE, new_path.name)
        return True

    def uninstall(self) -> None:
        """Take our entry, kubeconfig and binary away; leave everything else as it is."""
        for path in sorted(self.conf_dir.glob("*.conflist")):
            config = cniconf.read_config(path)
            if config is None or not cniconf.has_entry(config):
                continue
            remaining = cniconf.remove(config)
            if path.name == cniconf.OWN_CONFLIST and not remaining["plugins"]:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, json.dumps(remaining, indent=2) + "\n", 0o600)
        self.kubeconfig_path.unlink(missing_ok=True)
        self.binary_path.unlink(missing_ok=True)
        log.info("removed %s from %s", cniconf.PLUGIN_TYPE, self.conf_dir)
