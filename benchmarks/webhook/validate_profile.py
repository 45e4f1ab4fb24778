"""In-process micro-benchmark of ``validate_object`` on the webhook benchmark's 30-route VirtualService.

Times ``validate_object`` (and, separately, the pydantic schema step and the VirtualService rules)
on the same object ``benchmarks/webhook/run.py`` sends, and prints medians over many iterations.
``--profile`` prints the top of a cProfile run instead. Usage:

    .venv/bin/python -m benchmarks.webhook.validate_profile --iterations 3000 --repeat 5
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.webhook.run import virtual_service
from meshplane.shared.config import validate_object
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.parse import SPEC_MODELS
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.registry import RULES


def _median_us(fn: Callable[[], object], iterations: int, repeat: int) -> float:
    """Median per-call time in microseconds: each repeat times ``iterations`` calls individually."""
    medians = []
    for _ in range(repeat):
        samples = []
        for _ in range(iterations):
            start = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - start)
        medians.append(statistics.median(samples) / 1000)
    return statistics.median(medians)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="print a cProfile summary instead")
    args = p.parse_args(argv)
    obj = virtual_service()
    result = validate_object(obj)
    if result.errors or result.warnings:
        raise SystemExit(f"benchmark object is expected to be clean: {result.errors} {result.warnings}")
    spec: dict[str, Any] = obj["spec"]
    model_cls = SPEC_MODELS["VirtualService"]
    model = model_cls.model_validate(spec)
    ctx = ObjectContext("VirtualService", "reviews", "default", {}, {})
    rule = RULES["VirtualService"]

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.iterations):
            validate_object(obj)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0

    total = _median_us(lambda: validate_object(obj), args.iterations, args.repeat)
    schema = _median_us(lambda: model_cls.model_validate(spec), args.iterations, args.repeat)
    rules = _median_us(lambda: rule(model, ctx, Issues()), args.iterations, args.repeat)
    print(f"validate_object (30-route VirtualService): median {total:.0f} us")
    print(f"  pydantic schema (model_validate):          median {schema:.0f} us")
    print(f"  VirtualService rules:                      median {rules:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
