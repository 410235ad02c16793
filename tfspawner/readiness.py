"""Whether a new server answers HTTP yet: what ends its boot and frees its boot slot."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient

from . import messages

# Between two looks at the server. Every tenth of a second between the server
# being up and the look that finds it leaves its boot slot, and so a CPU, idle.
INTERVAL_S = 0.1
# Looks between two checks that the container still runs (about 2 s).
LOOKS_PER_CHECK = 20


async def until_answers(url: str, why_dead: Callable[[], Awaitable[str | None]]) -> None:
    """Return once ``url`` answers below 500; raise RuntimeError(why) if the server died."""
    client = AsyncHTTPClient()
    parts = urlsplit(url)
    for look in itertools.count(1):
        # A bare connect costs the hub a sixth of an HTTP request that fails; the
        # request is made only once the port takes connections.
        if await _listening(parts.hostname, parts.port or 80):
            try:
                response = await client.fetch(
                    url, raise_error=False, connect_timeout=2, request_timeout=5
                )
            except Exception:
                pass  # reset or closed: the server is still starting
            else:
                if response.code < 500:
                    return
        if look % LOOKS_PER_CHECK == 0:
            why = await why_dead()
            if why is not None:
                raise RuntimeError(why)
        await asyncio.sleep(INTERVAL_S)


async def _listening(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


def while_running(inspect: Callable[[], Awaitable[dict | None]]) -> Callable:
    """``why_dead`` for a container: None while it runs, else why it stopped, in words."""

    async def why_dead() -> str | None:
        container = await inspect() or {}
        state = container.get("State") or {}
        if state.get("Running"):
            return None
        return messages.exit_reason(state, (container.get("HostConfig") or {}).get("Memory"))

    return why_dead
