"""Istio's MeshConfig, as far as meshplane applies it: ``rootNamespace`` and ``trustDomain``.

``--mesh-config FILE`` (Pilot, Galley, Citadel) names Istio's MeshConfig YAML: the mapping that
the ``istio`` ConfigMap holds under ``data.mesh`` (the ConfigMap itself is accepted too). The
defaults are Istio's: root namespace ``istio-system``, trust domain ``cluster.local``. The root
namespace is where mesh-wide config lives (a PeerAuthentication, Sidecar, DestinationRule,
AuthorizationPolicy or RequestAuthentication there applies to every namespace). Fields meshplane
does not apply yet are named in one warning, so a user never believes they took effect.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("meshplane.meshconfig")

DEFAULT_ROOT_NAMESPACE = "istio-system"
DEFAULT_TRUST_DOMAIN = "cluster.local"
APPLIED = ("rootNamespace", "trustDomain")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")


class MeshConfigError(ValueError):
    """A MeshConfig file that cannot be used; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class MeshConfig:
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    #: fields given that meshplane does not apply yet
    not_applied: tuple[str, ...] = ()


def parse_mesh_config(text: str, where: str) -> MeshConfig:
    """Parse MeshConfig YAML (or an ``istio`` ConfigMap holding it); raise MeshConfigError."""
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MeshConfigError(f"{where}: not YAML: {exc}") from None
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        mesh = (doc.get("data") or {}).get("mesh")
        if not isinstance(mesh, str):
            raise MeshConfigError(f"{where}: a ConfigMap without data.mesh (the MeshConfig YAML)")
        return parse_mesh_config(mesh, f"{where} (data.mesh)")
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise MeshConfigError(f"{where}: expected a MeshConfig mapping, got {type(doc).__name__}")
    root = doc.get("rootNamespace", DEFAULT_ROOT_NAMESPACE)
    if not isinstance(root, str) or not _DNS_LABEL.match(root):
        raise MeshConfigError(f"{where}: rootNamespace: expected a Kubernetes namespace name, got {root!r}")
    domain = doc.get("trustDomain", DEFAULT_TRUST_DOMAIN)
    if not isinstance(domain, str) or not _TRUST_DOMAIN.match(domain):
        raise MeshConfigError(
            f"{where}: trustDomain: expected a domain such as cluster.local, got {domain!r}"
        )
    ignored = tuple(sorted(str(k) for k in doc if k not in APPLIED))
    return MeshConfig(root, domain, ignored)


def load_mesh_config(path: Path | None) -> MeshConfig:
    """The MeshConfig in ``path`` (Istio's defaults when None); warns about fields not applied."""
    if path is None:
        return MeshConfig()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MeshConfigError(f"--mesh-config {path}: cannot read: {exc}") from None
    config = parse_mesh_config(text, f"--mesh-config {path}")
    if config.not_applied:
        log.warning(
            "%s: fields not applied by meshplane yet (only %s are): %s",
            path,
            ", ".join(APPLIED),
            ", ".join(config.not_applied),
        )
    return config


def add_mesh_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mesh-config",
        type=Path,
        default=None,
        help="Istio MeshConfig YAML (or the istio ConfigMap); rootNamespace (default istio-system) "
        "and trustDomain (default cluster.local) are applied",
    )


def mesh_config_from_args(parser: argparse.ArgumentParser, path: Path | None) -> MeshConfig:
    """:func:`load_mesh_config`, a bad file being a usage error (exit 2) naming it."""
    try:
        return load_mesh_config(path)
    except MeshConfigError as exc:
        parser.error(str(exc))
