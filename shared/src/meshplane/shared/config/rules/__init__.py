"""Istio's semantic validation rules, one module per kind or group of kinds.

Each module exposes ``check(spec, ctx, issues)`` for its kind(s); ``RULES`` maps kind -> check.
"""
