"""`meshctl wait` and `meshctl drain`: the istio-proxy container's lifecycle hooks, as Istio's
``pilot-agent wait`` and its drain on termination.

* ``wait`` (postStart, with ProxyConfig ``holdApplicationUntilProxyStarts``): polls the proxy's
  readiness (``/healthz/ready`` on the health port) until it answers 200, so Kubernetes starts
  the app containers only once the proxy is configured; exit 1 after ``--timeout``.
* ``drain`` (preStop, with ProxyConfig ``terminationDrainDuration``): asks Envoy to drain its
  inbound listeners gracefully (admin ``POST /drain_listeners?inboundonly&graceful``), then waits
  the duration, so the proxy keeps serving in-flight requests before Kubernetes stops it.
"""

from __future__ import annotations

import argparse
import time
import urllib.error
import urllib.request

from meshplane.ctl.errors import EXIT_FINDINGS, EXIT_USAGE, error
from meshplane.shared.durations import parse_duration


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("wait", help="wait until the proxy is ready (holdApplicationUntilProxyStarts)")
    w.add_argument("--url", default="http://127.0.0.1:15021/healthz/ready", help="the readiness URL")
    w.add_argument("--timeout", default="60s", help="give up after this long (default %(default)s)")
    w.add_argument("--period", default="500ms", help="between polls (default %(default)s)")
    w.set_defaults(func=run_wait)
    d = sub.add_parser(
        "drain", help="drain the proxy's inbound listeners, then wait (terminationDrainDuration)"
    )
    d.add_argument("--admin", default="127.0.0.1:15000", help="Envoy admin HOST:PORT")
    d.add_argument("--duration", default="5s", help="how long to keep serving while draining (Istio's 5s)")
    d.set_defaults(func=run_drain)


def _seconds(verb: str, option: str, text: str) -> float | None:
    try:
        return parse_duration(text, bare_seconds=True, signed=False).total_seconds()
    except ValueError as exc:
        error(verb, f"{option}: {exc}")
        return None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (a local proxy's address)
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def run_wait(args: argparse.Namespace) -> int:
    timeout, period = _seconds("wait", "--timeout", args.timeout), _seconds("wait", "--period", args.period)
    if timeout is None or period is None:
        return EXIT_USAGE
    deadline = time.monotonic() + timeout
    while not _ready(args.url):
        if time.monotonic() >= deadline:
            error("wait", f"the proxy was not ready within {args.timeout} ({args.url})")
            return EXIT_FINDINGS
        time.sleep(period)
    return 0


def run_drain(args: argparse.Namespace) -> int:
    duration = _seconds("drain", "--duration", args.duration)
    if duration is None:
        return EXIT_USAGE
    url = f"http://{args.admin}/drain_listeners?inboundonly&graceful"
    try:
        request = urllib.request.Request(url, method="POST")
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 (the local Envoy admin)
            pass
    except (urllib.error.URLError, OSError) as exc:
        error("drain", f"cannot ask Envoy at {args.admin} to drain: {exc}")
        return EXIT_USAGE
    time.sleep(duration)
    return 0
