"""Sidecar injection as Istio's injector does it, one implementation for Galley's ``POST /inject``
webhook and ``meshctl kube-inject``: which pods are injected (:mod:`.selection`), which annotation
values are accepted (:mod:`.annotations`), what the pod gets (:mod:`.template`) and the JSON Patch
that turns the original pod into the injected one (:mod:`.patch`).
"""

from meshplane.shared.inject.config import InjectError, InjectorConfig
from meshplane.shared.inject.patch import json_patch
from meshplane.shared.inject.selection import injection_required
from meshplane.shared.inject.template import inject_pod

__all__ = ["InjectError", "InjectorConfig", "inject_pod", "injection_required", "json_patch"]
