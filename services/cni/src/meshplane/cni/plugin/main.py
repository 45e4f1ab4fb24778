"""meshplane-cni: the CNI plugin the container runtime executes (ADD, DEL, CHECK, VERSION).

Stdlib only on this path (it runs once per pod start): environment and stdin in, result or the
spec's error JSON out on stdout, exit code 0 or 1.  Never a traceback on stdout.
"""

from __future__ import annotations

import json
import os
import sys

from meshplane.cni.plugin.errors import INTERNAL, CNIError
from meshplane.cni.plugin.netconf import SUPPORTED_VERSIONS, load_invocation, load_netconf

RESULT_VERSION = "1.0.0"


def run(environ: dict[str, str], stdin: bytes) -> tuple[int, str]:
    """One plugin call: exit code and stdout text."""
    version = RESULT_VERSION
    try:
        invocation = load_invocation(environ)
        if invocation.command == "VERSION":
            supported = list(SUPPORTED_VERSIONS)
            return 0, json.dumps({"cniVersion": RESULT_VERSION, "supportedVersions": supported})
        conf = load_netconf(stdin)
        version = conf.cni_version
        if invocation.command == "ADD":
            from meshplane.cni.plugin.add import cmd_add

            return 0, json.dumps(cmd_add(invocation, conf))
        if invocation.command == "DEL":
            from meshplane.cni.plugin.delete import cmd_del

            cmd_del(invocation, conf)
        else:
            from meshplane.cni.plugin.check import cmd_check

            cmd_check(invocation, conf)
        return 0, ""
    except CNIError as exc:
        return 1, exc.to_json(version)
    except Exception as exc:  # the runtime must get the spec's error JSON, never a traceback
        return 1, CNIError(INTERNAL, f"internal error: {type(exc).__name__}: {exc}").to_json(version)


def main() -> int:
    """Console-script entry point."""
    stdin = b"" if os.environ.get("CNI_COMMAND") == "VERSION" else sys.stdin.buffer.read()
    code, out = run(dict(os.environ), stdin)
    if out:
        sys.stdout.write(out + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
