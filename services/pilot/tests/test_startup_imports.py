"""Pilot's start-up does not pay for what only some meshes use: a restarted Pilot is back sooner.

httpx (which loads its own command line, rich and pygments, where they are installed) is needed
only to fetch a RequestAuthentication's ``jwksUri``; PyJWT only for the key set that stands in for
one not fetched yet. Together they were about 15 % of Pilot's import time.
"""

from __future__ import annotations

import subprocess
import sys


def test_pilot_starts_without_importing_httpx_or_pyjwt() -> None:
    code = (
        "import sys, meshplane.pilot.__main__, meshplane.pilot.app; "
        "print(sorted(m for m in ('httpx', 'jwt', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
