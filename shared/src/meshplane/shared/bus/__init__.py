"""The meshplane bus: NATS JetStream KV with typed put/delete/watch.

State lives in JetStream KV buckets, one key per object (see ``buckets``); values are the
protobuf messages from ``proto/``.
"""

from meshplane.shared.bus.buckets import Buckets
from meshplane.shared.bus.client import MAX_VALUE_BYTES, TRANSIENT_ERRORS, Bus, BusOptions
from meshplane.shared.bus.errors import BusError, BusUnavailable, InvalidKey, PermissionDenied, ValueTooLarge
from meshplane.shared.bus.events import EventType, WatchEvent
from meshplane.shared.bus.keys import escape, make_key, split_key, unescape
from meshplane.shared.bus.kv import KVWatch, TypedKV
from meshplane.shared.bus.tracing import extract_context, inject_headers

__all__ = [
    "MAX_VALUE_BYTES",
    "TRANSIENT_ERRORS",
    "Buckets",
    "Bus",
    "BusError",
    "BusOptions",
    "BusUnavailable",
    "EventType",
    "InvalidKey",
    "KVWatch",
    "PermissionDenied",
    "TypedKV",
    "ValueTooLarge",
    "WatchEvent",
    "escape",
    "extract_context",
    "inject_headers",
    "make_key",
    "split_key",
    "unescape",
]
