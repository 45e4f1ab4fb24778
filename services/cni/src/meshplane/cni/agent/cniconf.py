"""Chaining our plugin into the node's CNI config, the way Istio's install-cni does (pure JSON).

Pick the runtime's config (the first ``.conf``/``.conflist`` in name order that is valid JSON of
the right shape), then either append our entry at the end of a conflist's ``plugins`` (dropping
any older entry of ours) or wrap a single ``.conf`` into a conflist.  Removal takes out exactly
our entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLUGIN_TYPE = "meshplane-cni"
OWN_CONFLIST = "YYY-meshplane-cni.conflist"
WRAPPED_NAME = "k8s-pod-network"
WRAPPED_VERSION = "0.3.1"


def plugin_entry(agent_run_dir: str, kubeconfig: str, exclude_namespaces: list[str]) -> dict[str, Any]:
    """Our entry in the chain (the runtime fills in name/cniVersion from the list)."""
    return {
        "type": PLUGIN_TYPE,
        "name": PLUGIN_TYPE,
        "cni_agent_run_dir": agent_run_dir,
        "exclude_namespaces": list(exclude_namespaces),
        "kubernetes": {"kubeconfig": kubeconfig},
    }


def read_config(path: Path) -> dict[str, Any] | None:
    """The file's JSON when it is a usable CNI config (``.conf`` needs ``type``; ``.conflist``
    needs ``name`` and ``plugins``), else ``None``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if path.suffix == ".conflist":
        return data if isinstance(data.get("name"), str) and isinstance(data.get("plugins"), list) else None
    return data if isinstance(data.get("type"), str) else None


def select_config(conf_dir: Path, name: str | None = None) -> Path | None:
    """The config file to chain into: ``name`` if given, else the first usable one."""
    if name:
        return conf_dir / name
    for path in sorted(conf_dir.iterdir()):
        if path.suffix in (".conf", ".conflist") and read_config(path) is not None:
            return path
    return None


def is_ours(plugin: object) -> bool:
    """Whether a ``plugins`` item is our entry."""
    return isinstance(plugin, dict) and plugin.get("type") == PLUGIN_TYPE


def has_entry(config: dict[str, Any]) -> bool:
    """Whether the config already chains our plugin."""
    return any(is_ours(p) for p in config.get("plugins", []))


def insert(config: dict[str, Any], entry: dict[str, Any], is_conflist: bool) -> dict[str, Any]:
    """The config with our entry at the end of the chain (a ``.conf`` becomes a conflist)."""
    if not is_conflist:
        single = {k: v for k, v in config.items() if k != "cniVersion"}
        return {
            "name": WRAPPED_NAME,
            "cniVersion": config.get("cniVersion", WRAPPED_VERSION),
            "plugins": [single, entry],
        }
    plugins = [p for p in config.get("plugins", []) if not is_ours(p)]
    return {**config, "plugins": [*plugins, entry]}


def remove(config: dict[str, Any]) -> dict[str, Any]:
    """The config without our entry."""
    return {**config, "plugins": [p for p in config.get("plugins", []) if not is_ours(p)]}


def own_conflist(entry: dict[str, Any]) -> dict[str, Any]:
    """A conflist holding only our plugin (when the node has no CNI config yet)."""
    return {"name": WRAPPED_NAME, "cniVersion": WRAPPED_VERSION, "plugins": [entry]}
