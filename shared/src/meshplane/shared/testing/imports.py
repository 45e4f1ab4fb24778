"""What a fresh interpreter has imported after running some code: for tests that keep start-up
and command-line paths free of modules they do not need."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence


def imported_after(code: str, modules: Iterable[str], argv: Sequence[str] = ()) -> list[str]:
    """Which of ``modules`` a new interpreter has in ``sys.modules`` after running ``code``
    (with ``argv`` as its ``sys.argv[1:]``), sorted; raises AssertionError if ``code`` fails."""
    wanted = sorted(modules)
    script = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {wanted!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded
