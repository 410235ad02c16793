"""readiness: what counts as a server that takes connections, on real loopback sockets."""

import asyncio
import socket

import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from tfspawner import readiness


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def proxy_with_nothing_behind(reader, writer):
    # What Docker's userland proxy does when the container's port refuses.
    writer.close()


async def silent_server(reader, writer):
    await reader.read()  # waits for the request, as an HTTP server does
    writer.close()


async def eager_server(reader, writer):
    writer.write(b"SSH-2.0-hello\r\n")
    await writer.drain()
    await reader.read()
    writer.close()


@pytest.mark.parametrize(
    "handler, expected",
    [
        (None, False),  # nothing listens: refused
        (proxy_with_nothing_behind, False),
        (silent_server, True),
        (eager_server, True),
    ],
)
async def test_listening(handler, expected):
    port = free_port()
    server = await asyncio.start_server(handler, "127.0.0.1", port) if handler else None
    try:
        assert await readiness._listening("127.0.0.1", port) is expected
    finally:
        if server:
            server.close()


class Hello(RequestHandler):
    def get(self):
        self.write("hello")


async def test_until_answers_waits_behind_a_proxy_until_the_server_comes():
    port = free_port()
    proxy = await asyncio.start_server(proxy_with_nothing_behind, "127.0.0.1", port)
    looks = 0

    async def why_dead():
        nonlocal looks
        looks += 1
        return None

    async def server_arrives():
        await asyncio.sleep(readiness.INTERVAL_S * readiness.LOOKS_PER_CHECK * 1.5)
        proxy.close()
        await proxy.wait_closed()
        http = HTTPServer(Application([(r"/.*", Hello)]))
        http.listen(port, "127.0.0.1")
        return http

    arrival = asyncio.create_task(server_arrives())
    await asyncio.wait_for(readiness.until_answers(f"http://127.0.0.1:{port}/x", why_dead), 20)
    (await arrival).stop()
    assert looks >= 1  # it went on checking that the container still runs


async def test_until_answers_says_why_the_server_died():
    port = free_port()

    async def why_dead():
        return "it ran out of memory"

    with pytest.raises(RuntimeError, match="out of memory"):
        await asyncio.wait_for(readiness.until_answers(f"http://127.0.0.1:{port}/", why_dead), 20)
