"""Pilot's data model: proxies, push requests and the immutable push context (no I/O)."""
