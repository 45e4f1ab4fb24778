"""A toy xDS type, added the way a real one is: this module plus one ``register`` call.

One ``TypedExtensionConfig`` (the resource of ECDS) per service, named ``toy-<host>``, shared by
every proxy of a scope; pushed when the registry changes (no config kind concerns it).
"""

from __future__ import annotations

from envoy.config.core.v3 import extension_pb2
from google.protobuf import wrappers_pb2

from meshplane.pilot.generators.common import pack
from meshplane.pilot.model.generator import GeneratorCache, XdsGenerator
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.model.resources import Parts, named

TOY = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


class ToyGenerator(XdsGenerator):
    type_url = TOY
    short = "toy"
    debug_name = "toy"
    push_order = 50
    wildcard = True

    def parts(
        self, cache: GeneratorCache, ctx: PushContext, proxy: Proxy, names: frozenset[str] | None
    ) -> Parts:
        return (cache.part(("toy", proxy.scope_key()), lambda: named(_configs(ctx, proxy))),)


def _configs(ctx: PushContext, proxy: Proxy) -> list[extension_pb2.TypedExtensionConfig]:
    return [
        extension_pb2.TypedExtensionConfig(
            name=f"toy-{svc.hostname}", typed_config=pack(wrappers_pb2.StringValue(value=svc.hostname))
        )
        for svc in ctx.services_for(proxy)
    ]
