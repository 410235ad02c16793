"""The SSH client side: the config block, the token, and the websocket pipe."""

import asyncio
import contextlib
import filecmp
import os
import threading
from pathlib import Path

import pytest
import websockets

from tfspawner import sshproxy

ROOT = Path(__file__).resolve().parents[2]


def test_config_block_names_the_passwd_user_and_the_server():
    block = sshproxy.ssh_config("https://hub.example.edu/", "alice", "gpu")
    assert "Host tfhub-hub.example.edu-alice-gpu\n" in block
    assert "    User alice\n" in block
    assert (
        "    ProxyCommand tfspawner ssh-proxy --hub https://hub.example.edu --user alice"
        " --server gpu\n" in block
    )
    assert "    HostKeyAlias tfhub-hub.example.edu-alice-gpu\n" in block
    # A hub name that passwd cannot hold is the escaped one the spawner writes.
    odd = sshproxy.ssh_config("http://127.0.0.1:8000", "Ann.Lee@uni", host="x")
    assert "Host x\n" in odd
    assert "    User u-" in odd


def test_token_from_environment_or_file(tmp_path, monkeypatch):
    monkeypatch.delenv(sshproxy.TOKEN_ENV, raising=False)
    with pytest.raises(sshproxy.ProxyError, match="no hub token"):
        sshproxy.read_token(str(tmp_path / "missing"))
    (tmp_path / "token").write_text("abc\n")
    assert sshproxy.read_token(str(tmp_path / "token")) == "abc"
    monkeypatch.setenv(sshproxy.TOKEN_ENV, "from-env")
    assert sshproxy.read_token(str(tmp_path / "token")) == "from-env"


@contextlib.contextmanager
def websocket_server(handler, **kwargs):
    """A real websocket server on a loopback port, in a thread; yields its port."""
    ready = threading.Event()
    state = {}

    async def main():
        async with websockets.serve(handler, "127.0.0.1", 0, **kwargs) as server:
            state["port"] = server.sockets[0].getsockname()[1]
            state["loop"] = asyncio.get_running_loop()
            state["stop"] = state["loop"].create_future()
            ready.set()
            await state["stop"]

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield state["port"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set_result, None)
        thread.join(10)


def test_pipe_carries_bytes_both_ways_over_a_real_websocket_server():
    seen = {}

    async def echo(ws):
        seen["authorization"] = ws.request.headers["Authorization"]
        seen["path"] = ws.request.path
        async for message in ws:
            await ws.send(message)

    with websocket_server(echo) as port:
        ws = sshproxy.WebSocket(
            f"ws://127.0.0.1:{port}/user/alice/sshd/", {"Authorization": "token t"}
        )
        # Sizes that take each of the three frame length encodings.
        payload = b"SSH-2.0-test\r\n" + os.urandom(70000) + b"x" * 100
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        os.write(in_w, payload[:100])
        received = bytearray()

        def reader():
            while len(received) < len(payload):
                received.extend(os.read(out_r, 65536))

        collecting = threading.Thread(target=reader, daemon=True)
        collecting.start()
        piping = threading.Thread(target=sshproxy.pipe, args=(ws, in_r, out_w), daemon=True)
        piping.start()
        os.write(in_w, payload[100:])
        collecting.join(20)
        assert bytes(received) == payload
        os.close(in_w)  # EOF on stdin closes the websocket, which ends the pipe
        piping.join(20)
        assert not piping.is_alive()
        assert seen == {"authorization": "token t", "path": "/user/alice/sshd/"}


def test_refused_handshake_reports_the_status():
    async def refuse(connection, request):
        return connection.respond(403, "Forbidden\n")

    async def never(ws):
        raise AssertionError("refused connections are not handled")

    with (
        websocket_server(never, process_request=refuse) as port,
        pytest.raises(sshproxy.HandshakeRefused) as refused,
    ):
        sshproxy.WebSocket(f"ws://127.0.0.1:{port}/x/", {})
    assert refused.value.status == 403


def test_the_stand_in_has_the_same_sshd_files_as_the_real_images():
    deploy, standin = ROOT / "deploy/images/sshd", ROOT / "images/tf-standin/sshd"
    names = sorted(p.name for p in deploy.iterdir())
    assert names == sorted(p.name for p in standin.iterdir())
    _, mismatch, errors = filecmp.cmpfiles(deploy, standin, names, shallow=False)
    assert mismatch == [] and errors == []
    for name in names:
        # git keeps only the executable bit.
        assert os.access(deploy / name, os.X_OK) == os.access(standin / name, os.X_OK), name
