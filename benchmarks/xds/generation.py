"""Pilot's generation cost alone: one full push's resources and Delta differences for N proxies.

In-process and without gRPC or the bus, so it is deterministic enough to compare commits on a
busy machine (the end-to-end push in ``benchmarks.xds.run`` is not). The same services, workloads
and proxies as ``run``: a new service per push, then every type's parts for every proxy (EDS and
RDS for the names the proxy's clusters and listeners ask for) and the difference from what the
proxy held, as ``delta.send`` computes it. Pilot's collector settings.

    python -m benchmarks.xds.generation [--services 1000] [--proxies 2000] [--pushes 7] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import time

from google.protobuf import struct_pb2

from benchmarks.xds.harness import NS, service, workload
from meshplane.pilot.__main__ import GC_GEN0_THRESHOLD
from meshplane.pilot.generators.registry import REGISTRY
from meshplane.pilot.model.config import Service, Workload, service_from_bus, workload_from_bus
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.model.push_context import build_push_context
from meshplane.pilot.model.resources import EMPTY, Part
from meshplane.pilot.xds.resources import ResourceCache


class Push:
    def __init__(self, services: int, proxies: int) -> None:
        self.services: dict[str, Service] = {str(i): service_from_bus(service(i)) for i in range(services)}
        self.workloads: dict[str, Workload] = {
            f"{i}-{j}": workload_from_bus(workload(i, j)) for i in range(services) for j in range(2)
        }
        md = struct_pb2.Struct()
        md.update({"NAMESPACE": NS, "LABELS": {"app": "load"}})
        self.proxies: list[Proxy] = [
            parse_proxy(f"sidecar~10.0.{i // 256}.{i % 256}~load-{i}.{NS}~{NS}.svc.cluster.local", md, "")
            for i in range(proxies)
        ]
        self.cache = ResourceCache(REGISTRY)
        self.held: dict[tuple[str, str], tuple[Part, ...]] = {}
        self.names: dict[tuple[str, str], frozenset[str]] = {}
        #: cluster names by the CDS parts they come from (shared parts: computed once, as Envoy
        #: computes them once per proxy; not Pilot's cost)
        self.clusters: dict[tuple[Part, ...], frozenset[str]] = {}

    def run(self, k: int) -> None:
        self.services[f"new-{k}"] = service_from_bus(service(1_000_000 + k))
        ctx = build_push_context(f"v{k}", {}, self.services, self.workloads)
        self.cache.clear()
        self.clusters.clear()
        for p in self.proxies:
            for gen in REGISTRY.ordered:
                names = None if gen.wildcard else self.names.get((p.id, gen.short), frozenset())
                parts = self.cache.parts(ctx, p, gen.type_url, names)
                held = self.held.get((p.id, gen.short)) or (EMPTY,) * len(parts)
                for have, new in zip(held, parts, strict=True):
                    self.cache.diff(have, new, gen.wildcard)
                self.held[(p.id, gen.short)] = parts
                if gen.short == "cds":  # EDS follows the clusters, RDS the HTTP port's routes
                    if parts not in self.clusters:
                        self.clusters[parts] = frozenset(n for part in parts for n in part.items)
                    self.names[(p.id, "eds")] = self.clusters[parts]
                    self.names[(p.id, "rds")] = frozenset({"9080"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=2000)
    parser.add_argument("--pushes", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="print a cProfile table of one push")
    args = parser.parse_args()
    push = Push(args.services, args.proxies)
    push.run(-1)  # the proxies connect
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    gc.collect()
    gc.freeze()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(push.run, 0)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        return
    times = []
    for k in range(args.pushes):
        t = time.process_time()
        push.run(k)
        times.append(time.process_time() - t)
    each = " ".join(f"{x * 1000:.0f}" for x in times)
    print(
        f"generation + Delta differences per full push, {args.proxies} proxies: "
        f"median {statistics.median(times) * 1000:.0f} ms CPU ({each})"
    )


if __name__ == "__main__":
    main()
