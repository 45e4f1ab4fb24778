"""The one wording of a field meshplane accepts without applying it (Istio-style warning), kept in
a module of its own so a kind's rules can use it without importing another kind's."""

from __future__ import annotations

NOT_APPLIED = "accepted, not applied by meshplane"
