"""The directory source: every YAML/JSON file under a directory, watched, as one desired state.

Files are (re)loaded by :func:`~meshplane.galley.sources.files.load_file`. The same object in two
files is a conflict: the file that held it first keeps it (files found at start-up count in path
order), the other is reported. Every change produces a fresh snapshot for ``on_change``.

At start the source can be seeded with what each file last published (read back from the bus,
see :mod:`~meshplane.galley.sources.seed`): a file broken before galley started then keeps those
objects, as a file that breaks while galley runs keeps its last good ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import watchfiles
from opentelemetry import trace
from watchfiles._rust_notify import WatchfilesRustInternalError

from meshplane.galley import metrics
from meshplane.galley.sources.files import FileState, file_stamp, load_file
from meshplane.galley.sources.model import ConfigObject
from meshplane.galley.sources.seed import Seed
from meshplane.shared.meshconfig import is_config_dir_mesh_file

log = logging.getLogger("meshplane.galley.sources.directory")
_tracer = trace.get_tracer("meshplane.galley")

SUFFIXES = (".yaml", ".yml", ".json")

Snapshot = dict[str, ConfigObject]


_WATCH_ERRORS = (OSError, WatchfilesRustInternalError)
#: The watch yields (empty) after this long without changes; its first yield means it is in place.
_FIRST_YIELD_MS = 1000


def _is_config_file(rel: Path) -> bool:
    """YAML/JSON outside hidden directories; the directory's ``mesh.yaml`` is MeshConfig, not
    Istio config (``meshctl up`` hands it to Galley as ``--mesh-config``)."""
    if is_config_dir_mesh_file(rel):
        return False
    return rel.suffix.lower() in SUFFIXES and not any(p.startswith(".") for p in rel.parts)


class DirectorySource:
    """Holds the per-file state of one config directory and the merged, conflict-free snapshot."""

    def __init__(self, root: Path, on_change: Callable[[Snapshot], None], seed: Seed | None = None) -> None:
        """``seed``: each file's objects as last published (read back from the bus at start); a
        file's first load takes them as its previous state, so a file broken at start keeps them."""
        self.root = root
        self._on_change = on_change
        self._seed: Seed = {rel: dict(objs) for rel, objs in (seed or {}).items()}
        self._files: dict[str, FileState] = {}
        self._order: dict[str, int] = {}
        self._next_order = 0
        self._conflicts: dict[str, list[str]] = {}
        self.snapshot: Snapshot = {}

    def _scan(self) -> list[str]:
        found: list[str] = []
        try:
            for path in self.root.rglob("*"):
                rel = path.relative_to(self.root)
                if _is_config_file(rel) and path.is_file():
                    found.append(rel.as_posix())
        except OSError as exc:
            log.warning("cannot list config directory %s: %s", self.root, exc)
        return sorted(found)

    def refresh(self, changed: set[str] | None = None) -> bool:
        """Re-read new, changed (or named) files and drop deleted ones; True if the snapshot changed."""
        present = self._scan()
        for rel in present:
            if rel not in self._order:
                self._order[rel] = self._next_order
                self._next_order += 1
        removed = sorted(set(self._files) - set(present))
        to_load = [rel for rel in present if self._needs_load(rel, changed)]
        # The seed is for the first load only: a file deleted before it and created again later
        # does not bring back what it held before the deletion.
        seed, self._seed = self._seed, {}
        if not removed and not to_load:
            return False
        # One trace per change: validation spans below, publish spans (via the publisher) after.
        attributes = {"galley.files": to_load + removed}
        with _tracer.start_as_current_span("galley.config_change", attributes=attributes):
            for rel in removed:
                log.info("config file %s removed", rel)
                del self._files[rel]
                self._order.pop(rel, None)
            for rel in to_load:
                self._load(rel, seed.get(rel))
            return self._merge()

    def _needs_load(self, rel: str, changed: set[str] | None) -> bool:
        previous = self._files.get(rel)
        if previous is None or (changed is not None and rel in changed):
            return True
        try:
            st = (self.root / rel).stat()
        except OSError:
            return False
        return file_stamp(st) != previous.stamp

    def _load(self, rel: str, seeded: dict[str, ConfigObject] | None = None) -> None:
        previous = self._files.get(rel)
        if previous is None and seeded:
            previous = FileState(rel, seeded)
        try:
            state = load_file(self.root, rel, previous)
        except Exception as exc:  # a rule that crashes on odd input must not stop the source
            log.exception("config file %s could not be loaded", rel)
            state = FileState(rel, dict(previous.objects) if previous else {}, [f"{rel}: {exc!r}"])
        self._files[rel] = state
        if seeded and state.errors:
            kept = sorted(o.describe() for k, o in state.objects.items() if seeded.get(k) is o)
            if kept:
                objs = ", ".join(kept)
                note = f"keeping {len(kept)} object(s) as last published before galley started: {objs}"
                state.warnings.append(f"{rel}: {note}")
                log.warning("config file %s: %s", rel, note)
        if state.errors:
            metrics.SOURCE_FILE_ERRORS.inc()
            for err in state.errors:
                log.warning("config file %s: %s", rel, err)

    def _merge(self) -> bool:
        merged: Snapshot = {}
        owner: dict[str, str] = {}
        conflicts: dict[str, list[str]] = {}
        for rel in sorted(self._files, key=lambda r: self._order.get(r, 0)):
            for key, obj in self._files[rel].objects.items():
                if key in merged:
                    conflicts.setdefault(rel, []).append(
                        f"{obj.describe()} is also defined in {owner[key]}; keeping that one"
                    )
                    continue
                merged[key] = obj
                owner[key] = rel
        if conflicts != self._conflicts:
            for rel, msgs in conflicts.items():
                for msg in msgs:
                    log.warning("config file %s: conflict: %s", rel, msg)
        self._conflicts = conflicts
        metrics.SOURCE_CONFLICTS.set(sum(len(v) for v in conflicts.values()))
        metrics.SOURCE_FILES_INVALID.set(sum(1 for f in self._files.values() if f.errors))
        changed = _fingerprint(merged) != _fingerprint(self.snapshot)
        self.snapshot = merged
        if changed:
            self._on_change(merged)
        return changed

    async def watch(self, stop: asyncio.Event) -> None:
        """Follow the directory until ``stop`` is set; reloads within a few ms of a write.

        Once the watch is in place it rescans (catching up on writes made before, also after a
        restart by the supervisor). If watching fails (the directory vanished, inotify limits), it
        rescans and retries every second, so a directory that comes back is followed again. Any
        other error (a bug while applying a change) is raised to the caller's supervisor, which
        logs, counts and restarts.
        """
        while not stop.is_set():
            try:
                await self._watch_once(stop)
            except _WATCH_ERRORS as exc:  # watchfiles raises plain OS errors, or its internal one
                log.warning("cannot watch %s (%r); rescanning and retrying in 1s", self.root, exc)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                self.refresh()  # catch up on anything missed while not watching

    async def _watch_once(self, stop: asyncio.Event) -> None:
        root = await asyncio.to_thread(self.root.resolve)
        caught_up = False
        async for changes in watchfiles.awatch(
            root,
            stop_event=stop,
            debounce=50,
            step=5,
            recursive=True,
            force_polling=False,
            rust_timeout=_FIRST_YIELD_MS,
            yield_on_timeout=True,
        ):
            if not caught_up:
                # The watch is in place now: pick up what was written before it was.
                caught_up = True
                self.refresh()
            if not changes:
                continue
            named: set[str] = set()
            for _, raw in changes:
                try:
                    named.add(Path(raw).relative_to(root).as_posix())
                except ValueError:
                    continue
            self.refresh(named)
            if not await asyncio.to_thread(self.root.is_dir):
                return  # the directory itself went away: watch it again once it is back

    def status(self) -> dict[str, Any]:
        """``/debug/sources``: each file's state, objects, errors, warnings and conflicts."""
        files = []
        for rel in sorted(self._files):
            f = self._files[rel]
            conflicts = self._conflicts.get(rel, [])
            files.append(
                {
                    "path": rel,
                    "state": "error" if f.errors else ("conflict" if conflicts else "ok"),
                    "objects": sorted(o.describe() for o in f.objects.values()),
                    "errors": f.errors,
                    "warnings": f.warnings,
                    "conflicts": conflicts,
                }
            )
        return {"source": "directory", "root": str(self.root), "objects": len(self.snapshot), "files": files}


def _fingerprint(snapshot: Snapshot) -> dict[str, tuple[str, str]]:
    return {k: (o.content_hash(), str(o.origin)) for k, o in snapshot.items()}
