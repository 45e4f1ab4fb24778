"""CNI errors: the spec's well-known codes plus our own (100+), printed as the spec's error JSON.

Hierarchy: :class:`CNIError` carries ``code``, ``msg`` and ``details``; the plugin's ``main``
turns it into ``{"cniVersion", "code", "msg", "details"}`` on stdout and a non-zero exit.
"""

from __future__ import annotations

import json

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
INVALID_ANNOTATION = 100
RULES_FAILED = 101
RULES_MISSING = 102
INTERNAL = 199


class CNIError(Exception):
    """A failure the runtime should see, with a message naming what is wrong and where."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> str:
        """The spec's error result."""
        return json.dumps(
            {"cniVersion": cni_version, "code": self.code, "msg": self.msg, "details": self.details}
        )
