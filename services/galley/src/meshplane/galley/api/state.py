"""What the HTTP routers read from the running galley: readiness and the debug views."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from meshplane.shared.inject import InjectorConfig
from meshplane.shared.proxyconfig import ProxyConfigs


def _empty() -> dict[str, Any]:
    return {}


def _none_down() -> bool:
    return True


async def _any_revision(_revision: str) -> bool:
    return True


@dataclass(slots=True)
class GalleyState:
    """Shared, mutable view of galley for the routers (set by the composition root)."""

    #: True once the initial load is published; false again while shutting down.
    ready: bool = False
    #: False while a task galley cannot serve without (publisher, source watch) is down.
    tasks_running: Callable[[], bool] = field(default=_none_down)
    #: ``GET /debug/sources``: each file's state and errors.
    sources: Callable[[], dict[str, Any]] = field(default=_empty)
    #: ``GET /debug/analyze``: the latest analyzer messages.
    analysis: Callable[[], dict[str, Any]] = field(default=_empty)
    #: ``POST /inject``: the injector's settings (from galley's ``--inject-*`` flags).
    injector: InjectorConfig = field(default_factory=InjectorConfig)
    #: ``POST /inject``: MeshConfig ``defaultConfig`` and the ProxyConfig resources of the config
    proxy_configs: ProxyConfigs = field(default_factory=ProxyConfigs)
    #: ``POST /inject/rev/<r>``: whether revision ``r`` is installed (Kubernetes mode: it has a
    #: sidecar injector configuration); without a cluster to ask, every revision is
    revision_installed: Callable[[str], Awaitable[bool]] = field(default=_any_revision)
