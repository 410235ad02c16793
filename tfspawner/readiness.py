"""Whether a new server answers HTTP yet: what ends its boot and frees its boot slot."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

from tornado.httpclient import AsyncHTTPClient

# Between two looks at the server. A boot takes seconds and a look (a refused
# connection, mostly) well under a millisecond, while every tenth of a second
# between the server being up and the look that finds it leaves its boot slot,
# and so a CPU, idle.
INTERVAL_S = 0.1
# Looks between two checks that the container still runs (about 2 s).
LOOKS_PER_CHECK = 20


async def until_answers(url: str, why_dead: Callable[[], Awaitable[str | None]]) -> None:
    """Return once ``url`` answers below 500; raise RuntimeError(why) if the server died."""
    client = AsyncHTTPClient()
    for look in itertools.count(1):
        try:
            response = await client.fetch(
                url, raise_error=False, connect_timeout=2, request_timeout=5
            )
        except Exception:
            pass  # refused, reset or closed: the server is not listening yet
        else:
            if response.code < 500:
                return
        if look % LOOKS_PER_CHECK == 0:
            why = await why_dead()
            if why is not None:
                raise RuntimeError(why)
        await asyncio.sleep(INTERVAL_S)
