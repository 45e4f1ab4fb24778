"""Scrape a Prometheus ``/metrics`` endpoint in tests: ``{'name{labels}': value}`` for one prefix."""

from __future__ import annotations

import httpx


def scrape(port: int, prefix: str) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
