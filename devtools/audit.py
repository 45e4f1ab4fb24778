"""The dependency audit in ``make check``: pip-audit over every package ``uv.lock`` pins.

``uv export`` turns the lock into a requirements list (the workspace's own packages left out) and
pip-audit looks each pinned version up in PyPI's vulnerability data. Exit 1 when any package has a
known vulnerability (listed with its fix versions). When the vulnerability data cannot be reached
(a machine whose package index mirror serves no JSON API: pip-audit then skips every package),
that is said plainly and the audit does not count as passed: exit 0 with a warning, or exit 1 with
``MESHPLANE_AUDIT_STRICT=1`` (set it where the data is reachable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        req, report = Path(tmp) / "requirements.txt", Path(tmp) / "audit.json"
        subprocess.run(
            [str(BIN / "uv"), "export", "--frozen", "--all-packages", "--no-emit-workspace", "--no-hashes"]
            + ["--format", "requirements-txt", "-o", str(req), "--quiet"],
            cwd=ROOT,
            check=True,
        )
        run = subprocess.run(
            [str(BIN / "pip-audit"), "--no-deps", "--disable-pip", "-r", str(req)]
            + ["--progress-spinner", "off"]
            + ["-f", "json", "-o", str(report)],
            capture_output=True,
            text=True,
        )
        if not report.exists():
            print(f"dependency audit: pip-audit failed ({run.returncode}):\n{run.stderr}", file=sys.stderr)
            return 1
        deps = json.loads(report.read_text())["dependencies"]
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if "skip_reason" in d]
    for d in vulnerable:
        for v in d["vulns"]:
            fixes = ", ".join(v.get("fix_versions") or []) or "no fix yet"
            print(f"dependency audit: {d['name']} {d['version']}: {v['id']} (fixed in {fixes})")
    if vulnerable:
        return 1
    audited = len(deps) - len(skipped)
    print(f"dependency audit: {audited} of {len(deps)} pinned packages checked, no known vulnerability")
    if skipped:
        print(
            f"dependency audit: WARNING: {len(skipped)} packages could not be checked "
            f"(first: {skipped[0]['name']}: {skipped[0]['skip_reason']}); the vulnerability data is not "
            "reachable from this machine",
            file=sys.stderr,
        )
        return 1 if os.environ.get("MESHPLANE_AUDIT_STRICT") == "1" else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
