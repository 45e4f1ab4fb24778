"""Validation outcomes: one ``Issue`` per finding, gathered into a ``ValidationResult``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshplane.shared.config.kinds import KindInfo


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding: the field path (``spec.http[0].route[1].weight``) and what is wrong there."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(slots=True)
class Issues:
    """Collects errors (the object is rejected) and warnings (admitted, but reported)."""

    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.errors.append(Issue(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(Issue(path, message))


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The verdict on one object.

    ``kind`` is None for objects outside Istio's API groups: those are valid and not checked.
    """

    errors: list[Issue]
    warnings: list[Issue]
    kind: KindInfo | None

    @property
    def valid(self) -> bool:
        return not self.errors
