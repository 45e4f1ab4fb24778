"""Pilot's start-up does not pay for what only some meshes use: a restarted Pilot is back sooner.

httpx (which loads its own command line, rich and pygments, where they are installed) is needed
only to fetch a RequestAuthentication's ``jwksUri``; PyJWT only for the key set that stands in for
one not fetched yet. Together they were about 15 % of Pilot's import time.
"""

from __future__ import annotations

from meshplane.shared.testing.imports import imported_after


def test_pilot_starts_without_importing_httpx_or_pyjwt() -> None:
    code = "import meshplane.pilot.__main__, meshplane.pilot.app"
    assert imported_after(code, ("httpx", "jwt", "rich")) == []
