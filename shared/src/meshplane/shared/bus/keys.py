"""Reversible mapping between object identities and JetStream KV keys.

KV keys allow only ``[-/_=.a-zA-Z0-9]`` and ``.`` separates tokens, so every part is escaped:
characters outside ``[a-zA-Z0-9-_]`` become ``=XX`` (hex of the UTF-8 bytes) and the parts are
joined with ``.``. ``reviews.default.svc`` stays readable as ``reviews=2Edefault=2Esvc``.
"""

from __future__ import annotations

import re

from meshplane.shared.bus.errors import InvalidKey

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
#: ASCII characters outside the safe set, to their escapes (for ``str.translate``)
_ASCII_ESCAPES = {c: f"={c:02X}" for c in range(128) if _UNSAFE.fullmatch(chr(c))}
_ESCAPE = re.compile(r"=([0-9A-F]{2})")


def _hex(m: re.Match[str]) -> str:
    return "".join(f"={b:02X}" for b in m.group().encode())


def escape(part: str) -> str:
    """Escape one key part so that it is a single KV token."""
    if not part:
        raise InvalidKey("key parts must not be empty")
    if part.isascii():  # one pass in C (Pilot makes a key per proxy status record it writes)
        return part.translate(_ASCII_ESCAPES)
    return _UNSAFE.sub(_hex, part)


def unescape(token: str) -> str:
    """Invert :func:`escape`."""
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=":
            m = _ESCAPE.match(token, i)
            if not m:
                raise InvalidKey(f"bad escape in key token {token!r}")
            raw.append(int(m.group(1), 16))
            i += 3
        else:
            raw.extend(token[i].encode())
            i += 1
    return raw.decode()


def make_key(*parts: str) -> str:
    """Join escaped parts into one KV key: ``make_key("VirtualService", "default", "reviews")``."""
    return ".".join(escape(p) for p in parts)


def split_key(key: str) -> list[str]:
    """Invert :func:`make_key`."""
    return [unescape(t) for t in key.split(".")]
