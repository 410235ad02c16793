"""A real jupyterhub process with configurable-http-proxy, driven through REST."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import websockets

from tfspawner import containerspec

HUB_TEMPLATE = """\
c = get_config()  # noqa
c.JupyterHub.spawner_class = "tfspawner"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = {hub_ip!r}
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = "{dir}/proxy.pid"
c.JupyterHub.allow_named_servers = True
c.JupyterHub.services = [{{"name": "tests", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["tests"]}}]
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"admin"}}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120
c.TFSpawner.hub_name = {hub_name!r}
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Hub:
    dir: Path
    hub_name: str
    token: str
    proxy_port: int
    config: str
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self):
        self.log_path = self.dir / "jupyterhub.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def headers(self) -> dict:
        return {"Authorization": f"token {self.token}"}

    def client(self, **kwargs) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=60, **kwargs)

    # --- process ------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        bindir = Path(sys.executable).parent
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
        self.proc = subprocess.Popen(
            [str(bindir / "jupyterhub"), "-f", str(self.dir / "jupyterhub_config.py")],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"jupyterhub exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"jupyterhub did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # The proxy lives in the hub's session; make sure it goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no hub log)"

    # --- engine -------------------------------------------------------------------

    def containers(self, client: docker.DockerClient):
        # A helper container may be removed between the listing and its inspect.
        return client.containers.list(
            all=True,
            filters={"label": f"{containerspec.LABEL_HUB}={self.hub_name}"},
            ignore_removed=True,
        )

    def remove_containers(self, client: docker.DockerClient, volumes: bool = True) -> None:
        for container in self.containers(client):
            container.remove(force=True)
        if volumes:
            for volume in self.volumes(client):
                volume.remove(force=True)
        # The lease that holds this hub's name on the engine.
        for volume in client.volumes.list(filters={"label": f"tfspawner.lease={self.hub_name}"}):
            volume.remove(force=True)

    def volumes(self, client: docker.DockerClient):
        return client.volumes.list(filters={"label": f"{containerspec.LABEL_HUB}={self.hub_name}"})

    def container_logs(self, client: docker.DockerClient) -> str:
        parts = []
        for container in self.containers(client):
            logs = container.logs(tail=60).decode(errors="replace")
            parts.append(f"--- container {container.name} ({container.status}) ---\n{logs}")
        return "\n".join(parts) or "(no containers)"

    # --- REST ---------------------------------------------------------------------

    async def login(self, name: str) -> httpx.AsyncClient:
        """A cookie session for ``name``, as a browser gets from the login form."""
        session = httpx.AsyncClient(base_url=self.url, timeout=60, follow_redirects=True)
        await session.get("/hub/login")
        xsrf = session.cookies.get("_xsrf", "")
        r = await session.post(
            "/hub/login", data={"username": name, "password": "any", "_xsrf": xsrf}
        )
        assert r.status_code == 200, r.text
        return session

    async def user_token(self, name: str) -> str:
        async with self.client() as c:
            r = await c.post(f"/hub/api/users/{name}/tokens", json={"note": "tests"})
            assert r.status_code == 201, r.text
            return r.json()["token"]

    async def create_user(self, name: str, admin: bool = False) -> None:
        async with self.client() as c:
            r = await c.post(f"/hub/api/users/{name}", json={"admin": admin})
            assert r.status_code in (201, 409), r.text

    async def request_spawn(self, name: str, server: str = "", options: dict | None = None):
        async with self.client() as c:
            return await c.post(f"/hub/api/users/{name}/servers/{server}", json=options or {})

    async def spawn(self, name: str, server: str = "", options=None, timeout: float = 180):
        r = await self.request_spawn(name, server, options)
        assert r.status_code in (201, 202), f"{r.status_code} {r.text}"
        return await self.wait_ready(name, server, timeout)

    async def server_model(self, name: str, server: str = "") -> dict | None:
        async with self.client() as c:
            r = await c.get(f"/hub/api/users/{name}")
            r.raise_for_status()
            return r.json()["servers"].get(server)

    async def wait_ready(self, name: str, server: str = "", timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = await self.server_model(name, server)
            if model and model["ready"]:
                return model
            if model is None or not model.get("pending"):
                raise AssertionError(
                    f"spawn of {name}/{server} ended without a server:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.5)
        raise AssertionError(f"{name}/{server} not ready within {timeout}s")

    async def progress_messages(self, name: str) -> list[str]:
        """Follow the spawn's progress stream, as the spawn page does, until it ends."""
        messages = []
        url = f"/hub/api/users/{name}/server/progress"
        async with self.client() as c, c.stream("GET", url) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    messages.append(event.get("message", ""))
                    if event.get("ready") or event.get("failed"):
                        break
        return messages

    async def stop_server(self, name: str, server: str = "", timeout: float = 60) -> None:
        async with self.client() as c:
            r = await c.delete(f"/hub/api/users/{name}/servers/{server}")
            assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.server_model(name, server) is None:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{name}/{server} did not stop within {timeout}s")

    def server_prefix(self, name: str, server: str = "") -> str:
        return f"/user/{name}/{server}" if server else f"/user/{name}"

    async def start_kernel(self, name: str, server: str = "") -> str:
        async with self.client() as c:
            r = await c.post(
                f"{self.server_prefix(name, server)}/api/kernels", json={"name": "python3"}
            )
            assert r.status_code == 201, f"{r.status_code} {r.text}"
            return r.json()["id"]

    async def run_code(
        self,
        name: str,
        code: str,
        server: str = "",
        timeout: float = 120,
        kernel_id: str | None = None,
    ) -> str:
        """Run ``code`` in a kernel (a new one unless given) over the websocket; return stdout."""
        prefix = self.server_prefix(name, server)
        if kernel_id is None:
            kernel_id = await self.start_kernel(name, server)
        ws_url = f"ws://127.0.0.1:{self.proxy_port}{prefix}/api/kernels/{kernel_id}/channels"
        msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "session": session,
                "username": "tests",
                "msg_type": "execute_request",
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "channel": "shell",
            "buffers": [],
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        }
        stdout = []
        async with asyncio.timeout(timeout):
            async with websockets.connect(ws_url, additional_headers=self.headers) as ws:
                await ws.send(json.dumps(request))
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind, content = msg["msg_type"], msg["content"]
                    if kind == "stream" and content["name"] == "stdout":
                        stdout.append(content["text"])
                    elif kind == "error":
                        raise AssertionError("\n".join(content["traceback"]))
                    elif kind == "status" and content["execution_state"] == "idle":
                        break
        return "".join(stdout)


def new_hub(base: Path, hub_ip: str, extra_config: str = "", hub_name: str | None = None) -> Hub:
    base.mkdir(parents=True, exist_ok=True)
    hub = Hub(
        dir=base,
        hub_name=hub_name or f"test-{secrets.token_hex(4)}",
        token=secrets.token_hex(32),
        proxy_port=free_port(),
        config="",
    )
    hub.config = (
        HUB_TEMPLATE.format(
            proxy_port=hub.proxy_port,
            proxy_api_port=free_port(),
            hub_ip=hub_ip,
            hub_port=free_port(hub_ip),
            dir=base,
            token=hub.token,
            hub_name=hub.hub_name,
        )
        + extra_config
    )
    (base / "jupyterhub_config.py").write_text(hub.config)
    return hub
