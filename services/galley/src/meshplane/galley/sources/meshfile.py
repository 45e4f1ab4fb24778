"""The MeshConfig file (``--mesh-config``), followed: each valid version is handed to ``on_change``.

The file's directory is watched (a ConfigMap volume swaps a symlink rather than writing the
file), and the file is re-read on every change there. A version that does not parse is refused
with an error naming the file and field; the last good one stays in effect (on the bus too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import watchfiles
from watchfiles._rust_notify import WatchfilesRustInternalError

from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.meshconfig import APPLIED, MeshConfig, MeshConfigError
from meshplane.shared.meshconfig_bus import mesh_config_message

log = logging.getLogger("meshplane.galley.sources.meshfile")

_WATCH_ERRORS = (OSError, WatchfilesRustInternalError)

OnChange = Callable[[MeshConfig, config_pb2.ConfigResource], None]


class MeshConfigSink:
    """Parses each new version of a MeshConfig text: a valid one goes to ``on_change`` (and is
    published), one that does not parse is refused in the log, naming the field, once per version."""

    def __init__(self, on_change: OnChange, origin_kind: str = "file") -> None:
        self.on_change = on_change
        self.origin_kind = origin_kind
        self._text: str | None = None
        #: the last refusal ("" while the version in effect is the latest one read)
        self.error = ""

    def offer(self, text: str, where: str) -> bool:
        """True when ``text`` is a new valid version (handed on)."""
        if text == self._text:
            return False
        try:
            mesh, msg = mesh_config_message(text, where, self.origin_kind)
        except MeshConfigError as exc:
            self._text = text  # refused once, not again until it changes
            return self.refuse(str(exc))
        self._text = text
        self.error = ""
        if mesh.not_applied:
            log.warning(
                "%s: fields not applied by meshplane yet (only %s are): %s",
                where,
                ", ".join(APPLIED),
                ", ".join(mesh.not_applied),
            )
        log.info(
            "MeshConfig %s: trustDomain %s, rootNamespace %s", where, mesh.trust_domain, mesh.root_namespace
        )
        self.on_change(mesh, msg)
        return True

    def forget(self) -> None:
        """Take the next text offered even if it is the last one seen."""
        self._text = None

    def refuse(self, error: str) -> bool:
        if error != self.error:
            log.error("%s; keeping the last valid MeshConfig", error)
        self.error = error
        return False


class MeshConfigFile(MeshConfigSink):
    def __init__(self, path: Path, on_change: OnChange) -> None:
        super().__init__(on_change)
        self.path = path

    def refresh(self) -> bool:
        """Re-read the file; True when a new valid version was handed on."""
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            return self.refuse(f"--mesh-config {self.path}: cannot read: {exc}")
        return self.offer(text, f"--mesh-config {self.path}")

    async def watch(self, stop: asyncio.Event) -> None:
        """Follow the file until ``stop`` is set; a failed watch is retried every second."""
        while not stop.is_set():
            try:
                async for _ in watchfiles.awatch(
                    self.path.parent,
                    stop_event=stop,
                    debounce=50,
                    step=5,
                    rust_timeout=1000,
                    yield_on_timeout=True,
                ):
                    self.refresh()
            except _WATCH_ERRORS as exc:
                log.warning("cannot watch %s (%r); retrying in 1s", self.path, exc)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                self.refresh()
