"""meshctl's exit codes and its one error prefix, shared by every verb.

Exit codes: 0 ok; 1 the command ran and its answer is negative (invalid config, a proxy that is
not connected); 2 it could not run (bad flags, an unreadable or malformed input, an unreachable
bus or Envoy admin). ``analyze`` keeps istioctl's own codes on top: 79 findings, 65 unparsable
files. Errors go to stderr as ``meshctl <verb>: <message>``, never as a traceback.
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def error(verb: str, message: str) -> None:
    """Print ``meshctl <verb>: <message>`` to stderr."""
    print(f"meshctl {verb}: {message}", file=sys.stderr)
