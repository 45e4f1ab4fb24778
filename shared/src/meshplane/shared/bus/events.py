"""What a watch yields (:mod:`meshplane.shared.bus.kv`): a put, a delete, or the end of the replay."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from google.protobuf.message import Message
from opentelemetry import context as otel_context

from meshplane.shared.bus.tracing import extract_context

M = TypeVar("M", bound=Message)


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"
    #: The current state has been delivered in full; later events are changes.
    SYNCED = "synced"


@dataclass(frozen=True, slots=True)
class WatchEvent(Generic[M]):
    """One change seen by a watch."""

    type: EventType
    key: str = ""
    value: M | None = None
    #: Stream sequence of the message (0 for SYNCED and for diff events after a resync).
    revision: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)

    def trace_context(self) -> otel_context.Context:
        """The trace context the publisher attached (for stitching spans across the bus)."""
        return extract_context(self.headers)
