"""List+watch of one Kubernetes resource over the official client, keeping the API's own JSON.

Runs in its own thread (the client is synchronous). It lists (paged), then watches from the
list's resourceVersion with bookmarks; a watch that ends is resumed from the last version seen;
``410 Gone`` (as an HTTP status or an ERROR event) means the version is too old, so it relists.
Failures back off exponentially with jitter (0.2 s up to 30 s). A 404 (CRD not installed)
counts as an empty, synced list and is retried slowly.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient

log = logging.getLogger("meshplane.galley.sources.kubernetes")

#: (event type, object) with type ADDED / MODIFIED / DELETED, or ("REPLACE", {"items": [...]}).
EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class ResourceDef:
    group: str
    version: str
    kind: str
    plural: str

    @property
    def path(self) -> str:
        if self.group:
            return f"/apis/{self.group}/{self.version}/{self.plural}"
        return f"/api/{self.version}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class Gone(Exception):
    """The resourceVersion is too old: relist."""


class HttpStatus(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


class Reflector:
    """Keeps one resource's list+watch going until ``stop`` is set."""

    def __init__(
        self,
        api: ApiClient,
        resource: ResourceDef,
        sink: EventSink,
        stop: threading.Event,
        *,
        watch_timeout: int = 300,
        page_size: int = 500,
    ) -> None:
        self.api = api
        self.resource = resource
        self.sink = sink
        self.stop = stop
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.resource_version = ""
        self.lists = 0
        self.last_error = ""

    def _get(self, query: list[tuple[str, str]], read_timeout: float) -> Any:
        method, url, headers, _body, _post = self.api.param_serialize(
            method="GET",
            resource_path=self.resource.path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        return self.api.call_api(method, url, header_params=headers, _request_timeout=(5, read_timeout))

    def list(self) -> None:
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            query = [("limit", str(self.page_size))] + ([("continue", cont)] if cont else [])
            resp = self._get(query, 60)
            data = resp.read()
            if resp.status == 410:
                cont = ""
                items.clear()
                continue
            if resp.status != 200:
                raise HttpStatus(resp.status, data.decode(errors="replace"))
            body = json.loads(data)
            items.extend(self._complete(i) for i in body.get("items") or [])
            meta = body.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                self.resource_version = str(meta.get("resourceVersion", ""))
                break
        self.lists += 1
        self.sink("REPLACE", {"items": items})

    def _complete(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        return obj

    def watch(self) -> None:
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.watch_timeout)),
        ]
        if self.resource_version:
            query.append(("resourceVersion", self.resource_version))
        resp = self._get(query, self.watch_timeout + 30)
        if resp.status == 410:
            raise Gone()
        if resp.status != 200:
            raise HttpStatus(resp.status, resp.read().decode(errors="replace"))
        try:
            for line in _lines(resp.response):
                if self.stop.is_set():
                    return
                self._event(json.loads(line))
        finally:
            resp.response.release_conn()

    def _event(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise HttpStatus(int(obj.get("code", 0)), str(obj.get("message", "")))
        rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if kind == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.sink(kind, self._complete(obj))
            self.resource_version = rv or self.resource_version

    def run(self) -> None:
        delay = 0.2
        need_list = True
        while not self.stop.is_set():
            try:
                if need_list:
                    self.list()
                    need_list = False
                self.watch()
                delay = 0.2
                continue
            except Gone:
                log.info(
                    "%s: resource version %s expired (410 Gone); relisting",
                    self.resource.path,
                    self.resource_version,
                )
                need_list = True
                continue
            except HttpStatus as exc:
                self.last_error = str(exc)
                if exc.status == 404 and need_list:
                    self.sink("REPLACE", {"items": []})
                    delay = 30.0
                log.info("%s: %s", self.resource.path, exc)
            except Exception as exc:  # connection refused, reset, timeouts, bad JSON
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("%s: watch failed (%s); retrying", self.resource.path, self.last_error)
            self.stop.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 30.0)


def _lines(response: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(65536, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
