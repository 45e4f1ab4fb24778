"""MeshConfig on the bus: Galley publishes the last valid MeshConfig, Pilot and Citadel follow it.

The value is a ``ConfigResource`` (kind ``MeshConfig``) under the one key :data:`KEY` of the
``mesh-meshconfig`` bucket; its ``spec_json`` is the MeshConfig mapping (a ConfigMap's
``data.mesh`` unwrapped) and its ``source`` names where Galley read it. Only a MeshConfig that
parses is published, so a reader can trust it; a reader still parses it with
:func:`~meshplane.shared.meshconfig.parse_mesh_config` and keeps its last one on an error.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.meshconfig import MeshConfig, MeshConfigError, configmap_mesh_text, parse_mesh_config

KEY = "mesh"
KIND = "MeshConfig"


def mesh_config_message(
    text: str, where: str, origin_kind: str = "file"
) -> tuple[MeshConfig, config_pb2.ConfigResource]:
    """Parse MeshConfig YAML (or the ``istio`` ConfigMap) read from ``where``; raise MeshConfigError.

    Returns the parsed MeshConfig and the message to publish."""
    mesh = parse_mesh_config(text, where)
    doc: Any = yaml.safe_load(text) or {}
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        doc = yaml.safe_load(configmap_mesh_text(doc, where)) or {}
    spec = json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str)
    msg = config_pb2.ConfigResource(
        kind=KIND,
        version="v1alpha1",
        name=KEY,
        resource_version=hashlib.sha256(spec.encode()).hexdigest()[:16],
        spec_json=spec,
        source=config_pb2.SourceRef(kind=origin_kind, path=where),
    )
    return mesh, msg


def mesh_config_from_bus(msg: config_pb2.ConfigResource) -> MeshConfig:
    """The MeshConfig a bus message carries; MeshConfigError (a ValueError) when it does not parse."""
    if msg.kind != KIND:
        raise MeshConfigError(f"bus {KEY}: expected kind {KIND}, got {msg.kind!r}")
    return parse_mesh_config(msg.spec_json, f"MeshConfig from {msg.source.path or 'the bus'}")
