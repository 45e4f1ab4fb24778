"""meshplane-cni: skeleton of the CNI plugin entry point (VERSION only for now)."""

from __future__ import annotations

import json
import os
import sys

SUPPORTED = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    if command == "VERSION":
        print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED}))
        return 0
    print(json.dumps({"cniVersion": "1.0.0", "code": 4, "msg": f"unsupported CNI_COMMAND {command!r}"}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
