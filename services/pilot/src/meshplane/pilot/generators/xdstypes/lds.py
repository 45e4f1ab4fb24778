"""LDS: the outbound listeners of a proxy's scope (shared) plus its own inbound listeners."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2

from meshplane.pilot.generators import common, envoyfilter, listeners
from meshplane.pilot.generators.xdstypes.scoped import ScopeAndOwnGenerator
from meshplane.pilot.model.generator import ConfigDump
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext


class ListenerGenerator(ScopeAndOwnGenerator):
    type_url = common.LISTENER
    short = "lds"
    debug_name = "listener"
    push_order = 30
    kinds = listeners.KINDS | envoyfilter.KINDS
    dump = ConfigDump(2, "ListenersConfigDump", "dynamic_listeners", "active_state")

    def scope_key(self, proxy: Proxy) -> str:
        """Without traffic interception, outbound listeners bind the proxy's own IP."""
        return f"{proxy.scope_key()}|{proxy.ip}" if proxy.interception_none else proxy.scope_key()

    def shared(self, ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
        return envoyfilter.patch_listeners(
            ctx, proxy, listeners.outbound_listeners(ctx, proxy), inbound=False
        )

    def own(self, ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
        return envoyfilter.patch_listeners(ctx, proxy, listeners.inbound_listeners(ctx, proxy), inbound=True)
