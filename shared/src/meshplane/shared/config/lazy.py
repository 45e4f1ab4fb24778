"""Import on first use: a kind -> object table and a package's names, for a fast CLI start-up.

``meshctl validate -f one.yaml`` should pay only for the kinds in the file: the models and rules
of the other kinds (and what they import, e.g. PyJWT for RequestAuthentication, the Envoy
protobufs for EnvoyFilter) are imported when a document of that kind first arrives.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


def resolve(target: str) -> object:
    """``"package.module:name"`` -> that object (the module is imported if it was not)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class LazyTable(Mapping[str, T], Generic[T]):
    """A read-only mapping whose values are ``"module:name"`` strings imported on first access."""

    def __init__(self, targets: Mapping[str, str]) -> None:
        self._targets = dict(targets)
        self._loaded: dict[str, T] = {}

    def __getitem__(self, key: str) -> T:
        try:
            return self._loaded[key]
        except KeyError:
            value: T = resolve(self._targets[key])  # type: ignore[assignment]  # trusted table
            self._loaded[key] = value
            return value

    def __contains__(self, key: object) -> bool:
        return key in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


def package_getattr(package: str, exports: Mapping[str, tuple[str, ...]]) -> Callable[[str], object]:
    """A module ``__getattr__`` (PEP 562) that imports ``package.<module>`` for the names it exports.

    ``exports`` maps a submodule name to the names the package re-exports from it; the object is
    cached in the package's namespace, so each name is looked up once.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        importlib.import_module(package).__dict__[name] = value
        return value

    return __getattr__
