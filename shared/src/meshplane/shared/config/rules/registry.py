"""Maps each Istio kind to its rule function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshplane.shared.config.issues import Issues
from meshplane.shared.config.rules.context import ObjectContext

Rule = Callable[[Any, ObjectContext, Issues], None]

RULES: dict[str, Rule] = {}
