"""The generators Pilot serves: one ``register`` line per xDS type (and per variant).

Adding a type (NDS for DNS proxying, ECDS, ...) is one module with an ``XdsGenerator`` and one
line here; transport, status and debug read every fact about it from this registry.
"""

from __future__ import annotations

from meshplane.pilot.generators.xdstypes import cds, eds, grpc, lds, rds
from meshplane.pilot.model.generator import Registry

REGISTRY = Registry()
REGISTRY.register(cds.ClusterGenerator())
REGISTRY.register(eds.EndpointGenerator())
REGISTRY.register(lds.ListenerGenerator())
REGISTRY.register(rds.RouteGenerator())
REGISTRY.register(grpc.LISTENERS)
REGISTRY.register(grpc.ROUTES)
REGISTRY.register(grpc.CLUSTERS)
