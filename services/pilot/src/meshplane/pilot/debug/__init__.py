"""Pilot's HTTP side: readiness, Prometheus metrics and the Istio-shaped debug endpoints."""
