"""Keeping CA material current: reload plugged-in files when they change, rotate a self-signed root.

Root rotation follows Istio's self-signed root rotator: every check interval (after a random
jitter below it), if the root has less than ``grace_percentile`` % of its lifetime left, make a
new root **with the same key** and a fresh TTL. Certificates issued under the old root keep
verifying, and the old root stays in the trust bundle (``previous-roots.pem``) until it expires.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random

import watchfiles
from cryptography.x509.oid import NameOID

from meshplane.citadel.ca.authority import LocalAuthority
from meshplane.citadel.ca.errors import CAError
from meshplane.citadel.ca.keycert import (
    CA_CERT,
    PREVIOUS_ROOTS,
    ROOT_CERT,
    KeyCertBundle,
    make_root,
    to_pem,
    write_public,
)

log = logging.getLogger(__name__)


def needs_rotation(bundle: KeyCertBundle, grace_percentile: float, now: dt.datetime) -> bool:
    root = bundle.root
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    remaining = root.not_valid_after_utc - now
    return remaining <= lifetime * (grace_percentile / 100.0)


def rotate_root(authority: LocalAuthority, ttl: dt.timedelta, now: dt.datetime | None = None) -> None:
    """Write a new self-signed root reusing the CA key; keep the old one in ``previous-roots.pem``."""
    now = now or dt.datetime.now(dt.UTC)
    old = authority.bundle
    org = old.root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    new_root = make_root(old.key, str(org[0].value) if org else "cluster.local", ttl, now)
    previous = [r for r in old.roots if r.not_valid_after_utc > now]
    ca_dir = authority.ca_dir
    write_public(ca_dir / PREVIOUS_ROOTS, "".join(to_pem(r) for r in previous))
    write_public(ca_dir / CA_CERT, to_pem(new_root))
    write_public(ca_dir / ROOT_CERT, to_pem(new_root))
    authority.reload()
    log.info("rotated self-signed root: new serial %x, expires %s", new_root.serial_number, ttl)


async def run_root_rotator(
    authority: LocalAuthority,
    check_interval: float,
    grace_percentile: float,
    root_ttl: dt.timedelta,
    jitter: bool,
    stop: asyncio.Event,
) -> None:
    """Check the root every ``check_interval`` seconds until ``stop``; 0 or less disables rotation."""
    if check_interval <= 0:
        return
    delay = random.uniform(0, check_interval) if jitter else 0.0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return
        except TimeoutError:
            pass
        delay = check_interval
        try:
            authority.reload()  # another replica may have rotated already
            bundle = authority.bundle
            if bundle.self_signed and needs_rotation(bundle, grace_percentile, dt.datetime.now(dt.UTC)):
                await asyncio.to_thread(rotate_root, authority, root_ttl)
        except (CAError, OSError) as exc:
            log.error("root rotation check failed: %s", exc)


async def watch_ca_dir(authority: LocalAuthority, stop: asyncio.Event) -> None:
    """Reload the CA when files in its directory change (plugged-in ``cacerts`` hot reload).

    Each run reloads once its watch is in place (its first yield), so a run restarted by the
    supervisor catches up on what changed while it was down. A removed directory can never
    report again, so that raises FileNotFoundError: the supervisor counts it and restarts the
    watch with backoff until the directory is back.
    """
    caught_up = False
    async for changes in watchfiles.awatch(
        authority.ca_dir, stop_event=stop, debounce=100, step=50, rust_timeout=1000, yield_on_timeout=True
    ):
        if not changes and caught_up:
            continue
        caught_up = True
        if not await asyncio.to_thread(authority.ca_dir.is_dir):
            raise FileNotFoundError(f"the CA directory {authority.ca_dir} was removed")
        _reload(authority)


def _reload(authority: LocalAuthority) -> None:
    try:
        authority.reload()
    except CAError as exc:
        log.error("CA files changed but could not be loaded, keeping the previous material: %s", exc)
