"""Pilot's security I/O: fetching the JWKS documents RequestAuthentication names."""
