"""Errors raised by the bus library.

BusError
 ├── BusUnavailable      the server could not be reached in time (after retries)
 ├── ValueTooLarge       a value is over the bus's per-message limit
 └── InvalidKey          a key cannot be stored (empty or malformed)
"""

from __future__ import annotations


class BusError(Exception):
    """Base class for bus failures."""


class BusUnavailable(BusError):
    """The NATS server did not acknowledge an operation before its deadline."""

    def __init__(self, operation: str, subject: str, attempts: int, last_error: BaseException | None) -> None:
        detail = f": {type(last_error).__name__}: {last_error}" if last_error else ""
        super().__init__(f"bus {operation} of {subject!r} failed after {attempts} attempt(s){detail}")
        self.operation = operation
        self.subject = subject
        self.attempts = attempts
        self.last_error = last_error


class BucketMissing(BusError):
    """A bucket does not exist yet and this client's identity may not create it (only its writers may)."""

    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket {bucket} does not exist yet (its writer creates it)")
        self.bucket = bucket


class ValueTooLarge(BusError):
    """A value is larger than MAX_VALUE_BYTES; the bus keeps one object per key by design."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        super().__init__(f"value for key {key!r} is {size} bytes, over the bus limit of {limit} bytes")
        self.key = key
        self.size = size
        self.limit = limit


class InvalidKey(BusError):
    """A key that cannot be stored in a JetStream KV bucket."""


class PermissionDenied(BusError):
    """nats-server refused an operation: this client's identity may not publish to the subject."""

    def __init__(self, identity: str, subject: str) -> None:
        super().__init__(f"bus identity {identity!r} may not publish to {subject!r} (permissions violation)")
        self.identity = identity
        self.subject = subject
