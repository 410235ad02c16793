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
# How long Docker's proxy may take to close a connection that the container's
# port refused (well under a millisecond on an idle host).
PROXY_CLOSE_S = 0.03


async def until_answers(url: str, why_dead: Callable[[], Awaitable[str | None]]) -> None:
    """Return once ``url`` answers below 500; raise RuntimeError(why) if the server died."""
    client = AsyncHTTPClient()
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    for look in itertools.count(1):
        began = loop.time()
        # A bare look costs the hub a quarter of an HTTP request that fails; the
        # request is made only once something behind the port takes connections.
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
        await asyncio.sleep(max(0.0, INTERVAL_S - (loop.time() - began)))


async def _listening(host: str, port: int) -> bool:
    """Whether a server takes connections on host:port, even behind Docker's proxy.

    Docker's userland proxy accepts every connection to a published port and
    closes it at once when the container's port refuses. An HTTP server speaks
    only when spoken to, so a connection still open after a moment has one
    behind it.
    """
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        return await asyncio.wait_for(reader.read(1), PROXY_CLOSE_S) != b""
    except asyncio.TimeoutError:
        return True
    except OSError:
        return False
    finally:
        writer.close()


def while_running(inspect: Callable[[], Awaitable[dict | None]]) -> Callable:
    """``why_dead`` for a container: None while it runs, else why it stopped, in words."""

    async def why_dead() -> str | None:
        container = await inspect() or {}
        state = container.get("State") or {}
        if state.get("Running"):
            return None
        return messages.exit_reason(state, (container.get("HostConfig") or {}).get("Memory"))

    return why_dead
