"""The Istio config model: loading YAML/JSON, the kind registry, typed models and validation.

One implementation serves ``meshctl validate``, Galley's admission webhook and Galley's
directory source, and Pilot consumes the typed models (``parse_spec``).

The models, ``parse_spec`` and ``validate_object`` are imported on first use (they bring
pydantic), so a caller that only loads YAML or looks kinds up stays light.
"""

from typing import TYPE_CHECKING

from meshplane.shared.config.issues import Issue, ValidationResult
from meshplane.shared.config.kinds import ALL_KINDS, ISTIO_GROUPS, KindInfo, lookup_kind, split_api_version
from meshplane.shared.config.lazy import package_getattr
from meshplane.shared.config.loader import MAX_DOCUMENT_BYTES, MAX_FILE_BYTES, Document, load_path, load_text

if TYPE_CHECKING:
    from meshplane.shared.config import models
    from meshplane.shared.config.parse import SpecError, parse_spec
    from meshplane.shared.config.validate import validate_object

__getattr__ = package_getattr(
    __name__, {"parse": ("SpecError", "parse_spec"), "validate": ("validate_object",)}
)


__all__ = [
    "ALL_KINDS",
    "ISTIO_GROUPS",
    "MAX_DOCUMENT_BYTES",
    "MAX_FILE_BYTES",
    "Document",
    "Issue",
    "KindInfo",
    "SpecError",
    "ValidationResult",
    "load_path",
    "load_text",
    "lookup_kind",
    "models",
    "parse_spec",
    "split_api_version",
    "validate_object",
]
