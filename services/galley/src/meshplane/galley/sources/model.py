"""The source-neutral form of one config object, and its conversion to the bus message."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.bus.buckets import config_key


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Where an object came from: a file (path relative to the config dir) or the Kubernetes API."""

    kind: str
    path: str
    document: int = 0
    line: int = 0

    def __str__(self) -> str:
        if self.kind == "file":
            return f"{self.path}:{self.line}" if self.line else self.path
        return self.path


@dataclass(frozen=True, slots=True)
class ConfigObject:
    """One object as read from a source (any kind; Istio ones are validated before they get here)."""

    group: str
    version: str
    kind: str
    namespace: str
    name: str
    obj: dict[str, Any] = field(compare=False, hash=False)
    origin: ObjectRef = field(compare=False, hash=False)
    #: The source's resource version (Kubernetes), or "" to use the content hash.
    resource_version: str = ""

    @property
    def key(self) -> str:
        return config_key(self.group or "core", self.kind, self.namespace or "-", self.name)

    @property
    def metadata(self) -> dict[str, Any]:
        md = self.obj.get("metadata")
        return md if isinstance(md, dict) else {}

    @property
    def labels(self) -> dict[str, str]:
        return _str_map(self.metadata.get("labels"))

    @property
    def annotations(self) -> dict[str, str]:
        return _str_map(self.metadata.get("annotations"))

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.obj.get("spec")
        return spec if isinstance(spec, dict) else {}

    def describe(self) -> str:
        """``Kind namespace/name`` as messages name a resource."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def content_hash(self) -> str:
        body = json.dumps(
            {"l": self.labels, "a": self.annotations, "s": self.obj.get("spec")},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_message(self) -> config_pb2.ConfigResource:
        """The ``ConfigResource`` galley publishes for this object."""
        msg = config_pb2.ConfigResource(
            kind=self.kind,
            group=self.group,
            version=self.version,
            namespace=self.namespace,
            name=self.name,
            resource_version=self.resource_version or self.content_hash(),
            labels=self.labels,
            annotations=self.annotations,
            spec_json=json.dumps(self.obj.get("spec") or {}, separators=(",", ":"), default=str),
            source=config_pb2.SourceRef(
                kind=self.origin.kind,
                path=self.origin.path,
                document=self.origin.document,
                line=self.origin.line,
            ),
        )
        created = self.metadata.get("creationTimestamp")
        if isinstance(created, str) and created:
            try:  # RFC 3339 from the API server; Pilot orders EnvoyFilters by it
                msg.creation_timestamp.FromJsonString(created)
            except ValueError:
                msg.ClearField("creation_timestamp")
        return msg


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def identity(
    obj: dict[str, Any], default_namespace: str = "default"
) -> tuple[str, str, str, str, str] | None:
    """(group, version, kind, namespace, name) of a decoded object, or None when it lacks them."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    md = obj.get("metadata")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not isinstance(md, dict):
        return None
    name = md.get("name")
    if not isinstance(name, str) or not name:
        return None
    ns = md.get("namespace")
    group, _, version = api_version.rpartition("/")
    namespace = ns if isinstance(ns, str) and ns else default_namespace
    if kind == "Namespace":
        namespace = ""
    return group, version, kind, namespace, name
