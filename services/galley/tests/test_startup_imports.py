"""Galley in directory mode does not pay for the Kubernetes client at start-up."""

from __future__ import annotations

import subprocess
import sys


def test_directory_mode_does_not_import_the_kubernetes_client() -> None:
    code = "import sys, meshplane.galley.__main__, meshplane.galley.app; print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
