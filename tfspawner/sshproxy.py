"""SSH into your own server through the hub: ``tfspawner ssh-proxy`` and ``ssh-config``.

Each server runs sshd as its user behind jupyter-server-proxy at
``/user/NAME/[SERVER/]sshd/``, a websocket the single-user server opens only
to its owner. ``ssh-proxy`` is the client's ProxyCommand: it carries ssh's
stdin and stdout over that websocket, with the user's hub token, after
starting the server (with its last profile) if it is stopped.

The proxy needs only the standard library, so this file also runs on its
own: ``python3 sshproxy.py ssh-proxy --hub URL --user NAME``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

TOKEN_ENV = "TFSPAWNER_HUB_TOKEN"
DEFAULT_TOKEN_FILE = "~/.config/tfspawner/hub-token"
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProxyError(Exception):
    """Ends the proxy with a one-line message for the ssh user."""


# --- the hub -------------------------------------------------------------------


def read_token(token_file: str) -> str:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = os.path.expanduser(token_file)
    try:
        with open(path) as f:
            token = f.read().strip()
    except OSError as e:
        raise ProxyError(
            f"no hub token: set {TOKEN_ENV} or save a token from the hub's Token page "
            f"in {path} ({e.strerror})"
        ) from None
    if not token:
        raise ProxyError(f"the token file {path} is empty")
    return token


def server_path(user: str, server: str = "") -> str:
    path = "/user/" + urllib.parse.quote(user, safe="")
    return path + ("/" + urllib.parse.quote(server, safe="") if server else "")


class Hub:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/hub/api{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise ProxyError(f"cannot reach the hub at {self.url}: {e}") from None
        try:
            return status, json.loads(text or b"{}")
        except ValueError:
            return status, {}

    def server(self, user: str, server: str) -> dict | None:
        """The server's model, None when stopped; the token must be the user's own."""
        status, model = self.api("GET", f"/users/{urllib.parse.quote(user, safe='')}")
        if status in (401, 403):
            raise ProxyError(f"the hub refused the token for user {user} (HTTP {status})")
        if status == 404:
            raise ProxyError(f"the hub has no user {user} that this token may see")
        if status != 200:
            raise ProxyError(f"the hub answered HTTP {status}: {model.get('message', '')}")
        return model.get("servers", {}).get(server)

    def ensure_running(self, user: str, server: str, start: bool, timeout: float) -> None:
        model = self.server(user, server)
        if model and model.get("ready"):
            return
        spawn_page = f"{self.url}/hub/spawn/{urllib.parse.quote(user, safe='')}"
        if server:
            spawn_page += "/" + urllib.parse.quote(server, safe="")
        if not start:
            raise ProxyError(f"the server is not running; start it at {spawn_page}")
        if not model:
            name = urllib.parse.quote(user, safe="")
            path = f"/users/{name}/servers/{urllib.parse.quote(server, safe='')}"
            # No options: the spawner starts the profile this server had last.
            status, answer = self.api("POST", path, {})
            why = answer.get("message") or f"HTTP {status}"
            # A start that someone else began meanwhile is waited for like ours.
            if status not in (201, 202) and "pending" not in why and "running" not in why:
                raise ProxyError(f"could not start the server ({why}); start it at {spawn_page}")
            print(f"tfspawner: starting your server on {self.url} ...", file=sys.stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server(user, server)
            if model and model.get("ready"):
                return
            if not model:
                raise ProxyError(f"the server did not start; see {spawn_page}")
            time.sleep(1)
        raise ProxyError(f"the server was not ready within {timeout:.0f}s; see {spawn_page}")


# --- a websocket client (RFC 6455), binary frames only --------------------------


class WebSocket:
    def __init__(self, url: str, headers: dict[str, str], timeout: float = 30):
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        self.sock = sock
        self.send_lock = threading.Lock()
        key = base64.b64encode(os.urandom(16)).decode()
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        lines = [
            f"GET {parts.path or '/'} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        try:
            self._handshake(sock, lines, key)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)

    def _handshake(self, sock, lines: list[str], key: str) -> None:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ProxyError("the hub closed the connection during the websocket handshake")
            self.buffer += chunk
            if len(self.buffer) > 65536:
                raise ProxyError("the hub's answer to the websocket handshake is too long")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = status_line.split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise HandshakeRefused(int(status[1]) if status[1:2] and status[1].isdigit() else 0)
        answer = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if answer.get("sec-websocket-accept") != expected:
            raise ProxyError("the websocket handshake was not answered correctly")

    def _recv_exact(self, n: int) -> bytes | None:
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                return None
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        # Client frames are masked (RFC 6455 5.3).
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        with self.send_lock:
            self.sock.sendall(header + mask + _mask(payload, mask))

    def messages(self):
        """Data of each text or binary message until the peer closes."""
        fragments = []
        while True:
            head = self._recv_exact(2)
            if head is None:
                return
            fin, opcode = head[0] & 0x80, head[0] & 0x0F
            n = head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._recv_exact(2) or b"\0\0")[0]
            elif n == 127:
                n = struct.unpack("!Q", self._recv_exact(8) or b"\0" * 8)[0]
            mask = self._recv_exact(4) if head[1] & 0x80 else None
            payload = self._recv_exact(n) if n else b""
            if payload is None:
                return
            if mask:
                payload = _mask(payload, mask)
            if opcode == 0x8:  # close: answer it, then stop
                with contextlib.suppress(OSError):
                    self.send(0x8, payload[:2])
                return
            if opcode == 0x9:
                self.send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            fragments.append(payload)
            if fin:
                yield b"".join(fragments)
                fragments = []

    def close(self) -> None:
        """Say goodbye; the peer's close frame then ends messages()."""
        with contextlib.suppress(OSError):
            self.send(0x8, struct.pack("!H", 1000))


class HandshakeRefused(ProxyError):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


def _mask(data: bytes, mask: bytes) -> bytes:
    # XOR with the repeated 4-byte mask, as one big integer operation.
    n = len(data)
    if not n:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def pipe(ws: WebSocket, stdin: int = 0, stdout: int = 1) -> None:
    """Carry stdin to the websocket and its messages to stdout until either side ends."""

    def upstream():
        while True:
            try:
                data = os.read(stdin, 65536)
            except OSError:
                data = b""
            if not data:
                ws.close()
                return
            ws.send(0x2, data)

    threading.Thread(target=upstream, daemon=True).start()
    try:
        for message in ws.messages():
            view = memoryview(message)
            while view:
                view = view[os.write(stdout, view) :]
    finally:
        ws.sock.close()


# --- commands ------------------------------------------------------------------


def cmd_ssh_proxy(args) -> int:
    try:
        token = read_token(args.token_file)
        hub = Hub(args.hub, token)
        hub.ensure_running(args.user, args.server, start=not args.no_start, timeout=args.timeout)
        url = hub.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        url += server_path(args.user, args.server) + "/sshd/"
        try:
            ws = WebSocket(url, {"Authorization": f"token {token}"})
        except HandshakeRefused as e:
            if e.status == 403:
                raise ProxyError(
                    f"the server of {args.user} refused this token (HTTP 403)"
                ) from None
            raise ProxyError(
                f"no SSH at {url} (HTTP {e.status}); is SSH on for this hub and the server running?"
            ) from None
        except OSError as e:
            raise ProxyError(f"cannot reach {url}: {e}") from None
        pipe(ws)
        return 0
    except ProxyError as e:
        print(f"tfspawner ssh-proxy: {e}", file=sys.stderr)
        return 255


def ssh_config(hub: str, user: str, server: str = "", host: str | None = None) -> str:
    """The ~/.ssh/config block that reaches USER's server through HUB."""
    from . import identity, naming

    hub = hub.rstrip("/")
    alias = host or "-".join(
        filter(None, ["tfhub", urllib.parse.urlsplit(hub).hostname, naming.escape(user), server])
    )
    proxy = f"tfspawner ssh-proxy --hub {hub} --user {user}"
    if server:
        proxy += f" --server {server}"
    return "\n".join(
        [
            f"# ssh {alias}    scp FILE {alias}:    code --remote ssh-remote+{alias}",
            f"# Save a token from {hub}/hub/token in ~/.config/tfspawner/hub-token",
            "# (chmod 600); ssh offers your own key (ssh-keygen -t ed25519 if you have none).",
            f"Host {alias}",
            # sshd in the container knows its user by the name in its passwd.
            f"    User {identity.passwd_name(user, 'u-' + naming.escape(user))}",
            f"    ProxyCommand {proxy}",
            # The host key is the server's own, kept in its home volume.
            f"    HostKeyAlias {alias}",
            # Keepalives also count as activity, so an open session is not culled.
            "    ServerAliveInterval 60",
            "",
        ]
    )


def cmd_ssh_config(args) -> int:
    print(ssh_config(args.hub, args.user, args.server, args.host), end="")
    return 0


def add_parsers(commands) -> None:
    proxy = commands.add_parser(
        "ssh-proxy",
        help="ssh's ProxyCommand: a websocket to your server's sshd through the hub",
    )
    proxy.add_argument("--hub", required=True, help="the hub's URL, e.g. https://hub.example.edu")
    proxy.add_argument("--user", required=True, help="your hub user name")
    proxy.add_argument("--server", default="", help="a named server (default: the default one)")
    proxy.add_argument(
        "--token-file",
        default=DEFAULT_TOKEN_FILE,
        help=f"file with your hub token (default {DEFAULT_TOKEN_FILE}; {TOKEN_ENV} wins)",
    )
    proxy.add_argument(
        "--no-start",
        action="store_true",
        help="do not start a stopped server; say how to start it instead",
    )
    proxy.add_argument("--timeout", type=float, default=600, help="seconds to wait for a start")
    proxy.set_defaults(func=cmd_ssh_proxy)

    config = commands.add_parser(
        "ssh-config", help="print the ~/.ssh/config block for your server on a hub"
    )
    config.add_argument("--hub", required=True, help="the hub's URL, e.g. https://hub.example.edu")
    config.add_argument("--user", required=True, help="your hub user name")
    config.add_argument("--server", default="", help="a named server (default: the default one)")
    config.add_argument("--host", help="the Host alias (default tfhub-HUBHOST-USER[-SERVER])")
    config.set_defaults(func=cmd_ssh_config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sshproxy.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_parsers(commands)
    args = parser.parse_args(argv)
    if args.command != "ssh-proxy":
        parser.error("run on its own, this file offers ssh-proxy only")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
