"""Reading the components bucket from a test: what ``meshctl version`` would list."""

from __future__ import annotations

import asyncio

from meshplane.shared.bus import Buckets, Bus, BusOptions


def announced(url: str, component: str) -> list[dict[str, str]]:
    """The endpoints of every record of ``component`` in the components bucket on ``url``."""

    async def read() -> list[dict[str, str]]:
        bus = await Bus.connect(BusOptions(url=url))
        try:
            records = await Buckets(bus).components.items()
        finally:
            await bus.close()
        return [dict(r.endpoints) for r in records.values() if r.component == component]

    return asyncio.run(read())
