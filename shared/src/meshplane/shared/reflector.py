"""The one Kubernetes list+watch ("reflector") every meshplane service uses (Galley, the CNI agent,
Citadel's namespace watch, the gateway agent's Secrets, the test kubelet).

A :class:`Reflector` mirrors one resource of the API (in every namespace or in one, optionally
narrowed by field and label selectors) into :attr:`Reflector.store` and tells its sink what
changed, as client-go's reflector does:

- it lists (paged), then watches from the list's ``resourceVersion`` with bookmarks; a watch that
  ends (the server's timeout) or breaks (the API server restarted) is resumed from the last version
  seen, so nothing is listed or delivered again;
- ``410 Gone`` (an HTTP status or an ``ERROR`` event: the version was compacted away) makes it
  relist, and the new list is *diffed* against the store: only objects added, changed (another
  ``resourceVersion``) or gone since are delivered, so a relist neither loses nor repeats events;
- a watch event whose object the store already holds at that version, or a deletion of an object
  it does not hold, is dropped (no duplicates);
- a 404 on the list (a CRD that is not installed) counts as an empty list, retried slowly;
- failures of the API (unreachable, 5xx, 403, ...) are retried with backoff through
  :func:`meshplane.shared.retry.retry_unless_stopped`; anything else (a bug, a sink that raises)
  ends :meth:`Reflector.run`, which runs under a :class:`meshplane.shared.tasks.TaskSupervisor`
  that logs, counts and restarts it (the restart relists and diffs).

It talks to the API through a ``kubernetes.client.ApiClient`` (the official client, which is
synchronous: its calls run in threads) and keeps the API's own JSON. This module imports no
Kubernetes package itself, so ``meshplane-shared`` does not depend on one: the services that
watch the API declare ``kubernetes``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from meshplane.shared.retry import RetryPolicy, retry_unless_stopped, sleep_unless

log = logging.getLogger("meshplane.reflector")

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class ResourceDef:
    """One API resource: ``ResourceDef("", "v1", "Pod", "pods")``."""

    group: str
    version: str
    kind: str
    plural: str

    @property
    def path(self) -> str:
        return self.path_in("")

    def path_in(self, namespace: str) -> str:
        """The collection's path: of every namespace (``""``) or of one."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{namespace}" if namespace else ""
        return f"{base}{scope}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    #: ``namespace/name`` (``/name`` for cluster-scoped objects)
    key: str
    #: the object as the API sent it (for DELETED: its last state)
    obj: dict[str, Any]


#: Called with the changes, in order; ``listed`` is true when the batch completes a (re)list, so the
#: store now mirrors the API (the first such call means "synced").
Sink = Callable[[Sequence[WatchEvent], bool], Awaitable[None]]


class ApiClientLike(Protocol):
    """What the reflector uses of ``kubernetes.client.ApiClient``."""

    def param_serialize(self, *args: Any, **kwargs: Any) -> Any: ...
    def call_api(self, *args: Any, **kwargs: Any) -> Any: ...


class ApiError(Exception):
    """The API answered with an error status (retried with backoff)."""

    def __init__(self, path: str, status: int, body: str) -> None:
        super().__init__(f"{path}: HTTP {status}: {body[:300]}")
        self.status = status


class ApiUnreachable(Exception):
    """The request or the watch stream failed in transport: refused, reset, timed out (retried)."""


class _Gone(Exception):
    """The resourceVersion is too old (410): relist."""


#: a watch stream's lines, then None (its end) or the error that broke it
Lines = asyncio.Queue[bytes | BaseException | None]

#: 0.2 s doubling to 30 s, +-20 % jitter, never giving up (until stopped).
DEFAULT_POLICY = RetryPolicy(retry_on=(ApiError, ApiUnreachable), initial=0.2, maximum=30.0, jitter=0.2)


def object_key(obj: dict[str, Any]) -> str:
    md = obj.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


def _version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Reflector:
    """Mirrors one resource; run :meth:`run` as a supervised task."""

    def __init__(
        self,
        api: ApiClientLike,
        resource: ResourceDef,
        sink: Sink,
        *,
        namespace: str = "",
        field_selector: str = "",
        label_selector: str = "",
        watch_timeout: int = 300,
        page_size: int = 500,
        not_found_retry: float = 30.0,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.api = api
        self.resource = resource
        self.sink = sink
        #: what is listed and watched: the resource in every namespace, or in ``namespace`` only
        self.path = resource.path_in(namespace)
        self.selectors = [("fieldSelector", field_selector)] if field_selector else []
        self.selectors += [("labelSelector", label_selector)] if label_selector else []
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.not_found_retry = not_found_retry
        self.policy = policy
        #: ``namespace/name`` -> the object, as last delivered
        self.store: dict[str, dict[str, Any]] = {}
        self.resource_version = ""
        self.lists = 0
        #: relists forced by ``410 Gone``
        self.expired = 0
        self.watches = 0
        self.events: dict[EventType, int] = {"ADDED": 0, "MODIFIED": 0, "DELETED": 0}
        self.last_error = ""
        self._need_list = True

    def status(self) -> dict[str, Any]:
        """What ``/debug`` pages show: counts, version, last error."""
        return {
            "path": self.path,
            "objects": len(self.store),
            "resourceVersion": self.resource_version,
            "lists": self.lists,
            "expired": self.expired,
            "watches": self.watches,
            "events": dict(self.events),
            "lastError": self.last_error,
        }

    async def run(self, stop: asyncio.Event) -> None:
        """List, then watch, until ``stop`` is set. Each run starts with a list (diffed)."""
        self._need_list = True
        while not stop.is_set():
            await retry_unless_stopped(
                lambda: self._cycle(stop), what=f"list/watch {self.path}", policy=self.policy,
                stop=stop, on_retry=self._on_retry,
            )  # fmt: skip

    def _on_retry(self, attempt: int, error: BaseException, wait: float) -> None:
        self.last_error = str(error)
        log.info("%s (attempt %d); retrying in %.1fs", error, attempt, wait)

    async def _cycle(self, stop: asyncio.Event) -> None:
        if self._need_list:
            if not await self._list():
                await sleep_unless(stop)(self.not_found_retry)
                return
            self._need_list = False
        try:
            await self._watch(stop)
        except _Gone:
            log.info("%s: resourceVersion %s expired (410 Gone); relisting", self.path,
                     self.resource_version)  # fmt: skip
            self.expired += 1
            self._need_list = True

    # -- HTTP through the official client -------------------------------------------------------

    def _get(self, query: list[tuple[str, str]], read_timeout: float) -> Any:
        method, url, headers, _body, _post = self.api.param_serialize(
            method="GET",
            resource_path=self.path,
            query_params=query + self.selectors,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            return self.api.call_api(method, url, header_params=headers, _request_timeout=(5, read_timeout))
        except Exception as exc:  # the client's transport (urllib3) raises its own types
            raise ApiUnreachable(f"{self.path}: {type(exc).__name__}: {exc}") from exc

    def _list_pages(self) -> tuple[list[dict[str, Any]], str] | None:
        """Every item and the list's version (thread); None for 404."""
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            query = [("limit", str(self.page_size))] + ([("continue", cont)] if cont else [])
            resp = self._get(query, 60)
            try:
                data = resp.read()
            except Exception as exc:
                raise ApiUnreachable(f"{self.path}: {type(exc).__name__}: {exc}") from exc
            if resp.status == 410:  # the continue token expired: start the list again
                cont = ""
                items.clear()
                continue
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise ApiError(self.path, resp.status, data.decode(errors="replace"))
            body = json.loads(data)
            for item in body.get("items") or []:
                item.setdefault("apiVersion", self.resource.api_version)
                item.setdefault("kind", self.resource.kind)
                items.append(item)
            meta = body.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                return items, str(meta.get("resourceVersion", ""))

    async def _list(self) -> bool:
        """(Re)list and deliver the difference to the store; False when the resource is not served."""
        listed = await asyncio.to_thread(self._list_pages)
        items: list[dict[str, Any]]
        if listed is None:
            self.last_error = f"{self.path}: HTTP 404 (not served; retried every {self.not_found_retry:.0f}s)"
            items, version = [], ""
        else:
            items, version = listed
        fresh = {object_key(obj): obj for obj in items}
        changes = [WatchEvent("DELETED", key, obj) for key, obj in self.store.items() if key not in fresh]
        for key, obj in fresh.items():
            old = self.store.get(key)
            if old is None:
                changes.append(WatchEvent("ADDED", key, obj))
            elif _version(old) != _version(obj):
                changes.append(WatchEvent("MODIFIED", key, obj))
        await self.sink(changes, True)
        self.store = fresh
        self.resource_version = version
        self.lists += 1
        self._count(changes)
        return listed is not None

    def _count(self, changes: Sequence[WatchEvent]) -> None:
        for change in changes:
            self.events[change.type] += 1

    async def _watch(self, stop: asyncio.Event) -> None:
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.watch_timeout)),
        ]
        if self.resource_version:
            query.append(("resourceVersion", self.resource_version))
        resp = await asyncio.to_thread(self._get, query, self.watch_timeout + 30)
        if resp.status == 410:
            await asyncio.to_thread(resp.read)
            raise _Gone()
        if resp.status != 200:
            body = await asyncio.to_thread(resp.read)
            raise ApiError(self.path, resp.status, body.decode(errors="replace"))
        self.watches += 1
        lines: Lines = asyncio.Queue()
        loop = asyncio.get_running_loop()
        threading.Thread(target=_pump, args=(resp, loop, lines), name=f"watch-{self.resource.plural}",
                         daemon=True).start()  # fmt: skip
        closer = asyncio.create_task(_close_when(stop, resp))
        ended = False
        try:
            while (line := await lines.get()) is not None:
                if stop.is_set():
                    return
                if isinstance(line, BaseException):
                    raise ApiUnreachable(f"{self.path}: watch broke: {line!r}") from line
                await self._event(json.loads(line))
            ended = True  # the server ended it (timeoutSeconds): the connection can be reused
        finally:
            closer.cancel()
            if ended:
                resp.response.release_conn()
            else:
                _close(resp)

    async def _event(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone()
            raise ApiError(self.path, int(obj.get("code", 0)), str(obj.get("message", "")))
        version = _version(obj)
        if kind == "BOOKMARK":
            self.resource_version = version or self.resource_version
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        key = object_key(obj)
        old = self.store.get(key)
        change: WatchEvent | None = None
        if kind == "DELETED":
            if old is not None:
                change = WatchEvent("DELETED", key, obj)
        elif old is None:
            change = WatchEvent("ADDED", key, obj)
        elif _version(old) != version:
            change = WatchEvent("MODIFIED", key, obj)
        if change is not None:
            await self.sink([change], False)
            if change.type == "DELETED":
                del self.store[key]
            else:
                self.store[key] = obj
            self._count([change])
        self.resource_version = version or self.resource_version


def _pump(resp: Any, loop: asyncio.AbstractEventLoop, out: Lines) -> None:
    """Thread: the watch stream's lines onto the loop, then None (its end) or the error."""
    end: BaseException | None = None
    try:
        for line in _lines(resp.response):
            loop.call_soon_threadsafe(out.put_nowait, line)
    except Exception as exc:
        end = exc
    try:
        loop.call_soon_threadsafe(out.put_nowait, end)
    except RuntimeError:
        pass  # the loop is closed: the process is exiting


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


def _close(resp: Any) -> None:
    """End a response at once: unblocks a thread reading it, and drops its connection."""
    raw = resp.response
    try:
        raw.shutdown()
        raw.close()
    except Exception:  # already closed
        log.debug("closing a watch response failed", exc_info=True)


async def _close_when(stop: asyncio.Event, resp: Any) -> None:
    await stop.wait()
    _close(resp)
