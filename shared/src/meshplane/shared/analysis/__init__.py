"""Config analysis shared by galley (on every change) and ``meshctl analyze`` (offline).

``analyze(items)`` takes decoded objects with their origin and returns Istio-coded messages
(IST0101, IST0102, ...) with Istio's levels.
"""

from meshplane.shared.analysis.messages import (
    ALL_TYPES,
    ERROR,
    INFO,
    LEVEL_RANK,
    WARNING,
    Message,
    MessageType,
)
from meshplane.shared.analysis.runner import Analysis, analyze

__all__ = [
    "ALL_TYPES",
    "ERROR",
    "INFO",
    "LEVEL_RANK",
    "WARNING",
    "Analysis",
    "Message",
    "MessageType",
    "analyze",
]
