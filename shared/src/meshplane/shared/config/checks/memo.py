"""Memoising the pure string checkers the webhook calls on every request for the same text.

An object is validated again on every update, and a route table repeats its hosts, durations and
header values, so checking each distinct text once pays. Only short texts are remembered (the
cache's memory stays bounded whatever a request carries); longer ones are checked every time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Texts longer than this are checked without being remembered.
MAX_CACHED_TEXT = 256


def cached_text_check(fn: Callable[[str], T]) -> Callable[[str], T]:
    """``fn`` with its results for texts up to ``MAX_CACHED_TEXT`` characters cached (LRU, 4096).

    ``fn`` must be pure and its result immutable; exceptions it raises are not cached.
    """
    cached = functools.lru_cache(maxsize=4096)(fn)

    @functools.wraps(fn)
    def check(text: str) -> T:
        if len(text) <= MAX_CACHED_TEXT:
            return cached(text)
        return fn(text)

    return check
