"""The last good objects of each config file, as galley last published them: read back from the bus.

A galley that starts has no memory of the files it read before. What it last published is on the
bus, and every config object there names the file it came from (``ConfigResource.source``), so the
bus tells which objects each file last had in effect. The directory source uses that as each
file's "previous" state at its first load: a file that is broken at start keeps those objects in
effect, exactly as a file that breaks while galley runs. A file deleted meanwhile is not read at
all, so its objects are still deleted.

Objects published without a file source (by the Kubernetes source, or by a galley older than the
``source`` field) are not attributed to any file: they are reconciled as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from meshplane.galley.sources.model import ConfigObject, ObjectRef
from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.bus import TRANSIENT_ERRORS, BusError, TypedKV
from meshplane.shared.retry import RetryPolicy, retry_unless_stopped

log = logging.getLogger("meshplane.galley.sources.seed")

#: Per file (path relative to the config dir): the objects last published from it, by key.
Seed = dict[str, dict[str, ConfigObject]]

_READ_TIMEOUT = 15.0
_READ_RETRY = RetryPolicy(retry_on=(*TRANSIENT_ERRORS, BusError), initial=0.1, maximum=2.0)


def from_message(msg: config_pb2.ConfigResource) -> ConfigObject | None:
    """The object ``msg`` was published from (None when it does not name its file or is unreadable).

    ``to_message()`` of the result is ``msg`` again, so keeping it in effect writes nothing.
    """
    src = msg.source
    if src.kind != "file" or not src.path or not msg.kind or not msg.name:
        return None
    try:
        spec = json.loads(msg.spec_json) if msg.spec_json else {}
    except ValueError:
        return None
    metadata: dict[str, Any] = {"name": msg.name}
    if msg.namespace:
        metadata["namespace"] = msg.namespace
    if msg.labels:
        metadata["labels"] = dict(msg.labels)
    if msg.annotations:
        metadata["annotations"] = dict(msg.annotations)
    api_version = f"{msg.group}/{msg.version}" if msg.group else msg.version
    obj = {"apiVersion": api_version, "kind": msg.kind, "metadata": metadata, "spec": spec}
    return ConfigObject(
        msg.group,
        msg.version,
        msg.kind,
        msg.namespace,
        msg.name,
        obj,
        ObjectRef("file", src.path, src.document, src.line),
        resource_version=msg.resource_version,
    )


def seed_from(published: Mapping[str, config_pb2.ConfigResource]) -> Seed:
    """Group the published config objects by the file they came from."""
    seed: Seed = {}
    for key, msg in published.items():
        obj = from_message(msg)
        if obj is None or obj.key != key:
            continue
        seed.setdefault(obj.origin.path, {})[key] = obj
    return seed


async def read_seed(kv: TypedKV[config_pb2.ConfigResource], stop: asyncio.Event) -> Seed:
    """Read the config bucket into a :data:`Seed`, retrying with backoff until it succeeds.

    Nothing may be published before this is known (it would delete a broken file's objects), so
    a failure is retried rather than skipped. Returns an empty seed if ``stop`` is set first.
    """

    def warn(_attempt: int, exc: BaseException, wait: float) -> None:
        log.warning("cannot read %s from the bus (%r); retrying in %.1fs", kv.bucket, exc, wait)

    published = await retry_unless_stopped(
        lambda: asyncio.wait_for(kv.items(), _READ_TIMEOUT),
        what=f"read {kv.bucket}",
        policy=_READ_RETRY,
        stop=stop,
        on_retry=warn,
    )
    if published is None:
        return {}  # stopped before the bus answered
    seed = seed_from(published)
    log.info(
        "%d object(s) of %d file(s) last published by galley",
        sum(len(v) for v in seed.values()),
        len(seed),
    )
    return seed
