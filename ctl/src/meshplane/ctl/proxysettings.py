"""Where ``meshctl bootstrap`` finds the proxy's ProxyConfig and its control-plane address.

ProxyConfig: ``--proxy-config FILE`` (a mesh ProxyConfig in YAML, e.g. MeshConfig's
``defaultConfig``), then the ``PROXY_CONFIG`` environment variable on top (JSON or YAML: the
effective ProxyConfig the injector puts in every injected pod, as Istio's agent reads it).

Discovery address, first given wins: ``--pilot``, ProxyConfig ``discoveryAddress``, the
``ISTIOD_ADDR`` environment variable (the control plane of a remote proxy), then the default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from meshplane.shared.proxyconfig import (
    ProxyConfigError,
    ProxySettings,
    check_proxy_config,
    merge_with_precedence,
)

ENV_PROXY_CONFIG = "PROXY_CONFIG"
ENV_ISTIOD_ADDR = "ISTIOD_ADDR"


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--proxy-config",
        default="",
        metavar="FILE",
        help="ProxyConfig YAML (mesh form, as MeshConfig defaultConfig); env PROXY_CONFIG applies on top",
    )


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProxyConfigError(f"{where}: not valid YAML or JSON: {str(exc).splitlines()[0]}") from None


def load(path: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The ProxyConfig from ``path`` (may be "") with ``PROXY_CONFIG`` from ``env`` on top."""
    from_file: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ProxyConfigError(f"--proxy-config {path}: cannot read: {exc}") from None
        from_file = check_proxy_config(_yaml(text, f"--proxy-config {path}"), f"--proxy-config {path}")
    raw = env.get(ENV_PROXY_CONFIG, "")
    from_env = check_proxy_config(_yaml(raw, ENV_PROXY_CONFIG), ENV_PROXY_CONFIG) if raw.strip() else {}
    return merge_with_precedence(from_env, from_file)


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    return load(args.proxy_config, os.environ if env is None else env)


def discovery(
    pilots: list[str], proxy_config: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> list[str]:
    """The Pilot addresses to use, or [] for the default (see the module docstring)."""
    if pilots:
        return list(pilots)
    address = ProxySettings.of(proxy_config).discovery_address
    if address:
        return [address]
    istiod = (os.environ if env is None else env).get(ENV_ISTIOD_ADDR, "").strip()
    if not istiod:
        return []
    host, sep, port = istiod.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProxyConfigError(f"{ENV_ISTIOD_ADDR}: expected HOST:PORT of the control plane, got {istiod!r}")
    return [istiod]
