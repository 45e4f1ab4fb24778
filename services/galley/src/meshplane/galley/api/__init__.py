"""Galley's HTTP surface: the admission webhook, health, metrics and debug routers, and the servers."""
