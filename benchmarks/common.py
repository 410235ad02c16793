"""Shared pieces of the benchmarks: real hubs, concurrent spawns, polling and clean-up.

The hubs come from the integration harness (tests/integration/hubprocess.py),
so a benchmark runs the same jupyterhub, proxy, engine and images as the tests.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.hubprocess import Hub, new_hub  # noqa: E402

from tfspawner import containerspec  # noqa: E402

REQUIRED_ENV = ("TFSPAWNER_TEST_IMAGE", "TFSPAWNER_TEST_HUB_IP")


def testbed_env() -> dict[str, str]:
    """The test bed's settings: the environment first, else .testbed/env from `scripts/testbed up`."""
    env = {}
    path = REPO / ".testbed" / "env"
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line.startswith("export ") and "=" in line:
                key, value = line[len("export ") :].split("=", 1)
                env[key] = value.strip("'\"")
    env.update({k: v for k, v in os.environ.items() if k.startswith(("TFSPAWNER_", "DOCKER_"))})
    missing = [name for name in REQUIRED_ENV if not env.get(name)]
    if missing:
        sys.exit(f"{', '.join(missing)} not set: run `scripts/testbed up` first")
    # docker-py reads DOCKER_HOST from the environment.
    for key in ("DOCKER_HOST",):
        if key in env:
            os.environ[key] = env[key]
    return env


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; fields after it start at field 3 (state).
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def start_hub(base: Path, hub_ip: str, name: str, extra_config: str) -> Hub:
    """A hub whose TFSpawner.hub_name (and so its labels) is ``name``."""
    hub = new_hub(base, hub_ip, extra_config + f"c.TFSpawner.hub_name = {name!r}\n")
    hub.hub_name = name
    hub.start(timeout=120)
    return hub


def bench_name(kind: str) -> str:
    return f"bench-{kind}-{secrets.token_hex(3)}"


def api_client(hub: Hub, connections: int, timeout: float = 120) -> httpx.AsyncClient:
    # One connection per concurrent request, so the client never queues a spawn.
    return httpx.AsyncClient(
        base_url=hub.url,
        headers=hub.headers,
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections + 10, max_keepalive_connections=20),
    )


async def create_users(hub: Hub, users: list[str]) -> None:
    async with api_client(hub, 1) as c:
        r = await c.post("/hub/api/users", json={"usernames": users})
        if r.status_code not in (201, 409):
            raise RuntimeError(f"creating users: {r.status_code} {r.text}")


async def active_servers(c: httpx.AsyncClient) -> dict[str, dict]:
    """user -> default server model, for every user with a ready or pending server."""
    servers, offset = {}, 0
    while True:
        r = await c.get(
            "/hub/api/users",
            params={"state": "active", "offset": offset, "limit": 200},
            headers={"Accept": "application/jupyterhub-pagination+json"},
        )
        r.raise_for_status()
        page = r.json()
        for user in page["items"]:
            server = (user.get("servers") or {}).get("")
            if server is not None:
                servers[user["name"]] = server
        following = page["_pagination"].get("next")
        if not following:
            return servers
        offset = following["offset"]


@dataclass
class Spawn:
    user: str
    posted_at: float = 0.0
    answered_at: float | None = None
    status: int | None = None
    message: str = ""
    ready_at: float | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.ready_at is not None or self.error is not None

    @property
    def time_to_ready(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.posted_at


@dataclass
class Storm:
    spawns: list[Spawn]
    hub_cpu: float  # seconds of hub CPU from the first POST until the last spawn ended
    wall: float
    polls: int
    load_before: float
    errors: list[str] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [s.time_to_ready for s in self.spawns if s.time_to_ready is not None]

    @property
    def failures(self) -> int:
        return sum(1 for s in self.spawns if s.ready_at is None)


async def storm(
    hub: Hub,
    users: list[str],
    options: dict | None = None,
    poll_interval: float = 0.5,
    timeout: float = 900,
    accept_refusal=None,
) -> Storm:
    """POST one spawn per user at once; follow each until ready or gone.

    A spawn is ready when the POST answers 201, or when a later poll of the
    hub's user list shows it ready; it failed when the POST is refused or the
    server leaves the list while pending. ``accept_refusal(status, message)``
    marks refusals that are an expected outcome rather than failures (their
    ``error`` starts with "refused").
    """
    spawns = {u: Spawn(u) for u in users}
    polls = 0
    load = loadavg()
    async with api_client(hub, len(users)) as c:

        async def post(spawn: Spawn) -> None:
            spawn.posted_at = time.monotonic()
            try:
                r = await c.post(f"/hub/api/users/{spawn.user}/server", json=options or {})
            except httpx.HTTPError as e:
                spawn.answered_at = time.monotonic()
                spawn.error = f"POST failed: {e!r}"
                return
            spawn.answered_at = time.monotonic()
            spawn.status = r.status_code
            if r.status_code == 201:
                spawn.ready_at = spawn.answered_at
            elif r.status_code != 202:
                try:
                    spawn.message = r.json().get("message", r.text)
                except ValueError:
                    spawn.message = r.text
                refused = accept_refusal and accept_refusal(r.status_code, spawn.message)
                spawn.error = f"{'refused' if refused else 'POST'} {r.status_code}: {spawn.message}"

        cpu_before = cpu_seconds(hub.proc.pid)
        started = time.monotonic()
        tasks = [asyncio.create_task(post(s)) for s in spawns.values()]
        deadline = started + timeout
        while not all(s.done for s in spawns.values()) and time.monotonic() < deadline:
            await asyncio.sleep(poll_interval)
            asked = time.monotonic()
            try:
                active = await active_servers(c)
            except httpx.HTTPError:
                continue  # the hub is busy; judge on the next poll
            polls += 1
            seen = time.monotonic()
            for spawn in spawns.values():
                # Only judge spawns whose POST had answered before this poll was sent.
                if spawn.done or spawn.answered_at is None or spawn.answered_at > asked:
                    continue
                model = active.get(spawn.user)
                if model is None:
                    spawn.error = "server gone while pending (spawn failed; see the hub log)"
                elif model.get("ready"):
                    spawn.ready_at = seen
        for spawn in spawns.values():
            if not spawn.done:
                spawn.error = f"not ready within {timeout:.0f}s"
        cpu_after = cpu_seconds(hub.proc.pid)
        wall = time.monotonic() - started
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Storm(
        spawns=list(spawns.values()),
        hub_cpu=cpu_after - cpu_before,
        wall=wall,
        polls=polls,
        load_before=load,
        errors=[f"{s.user}: {s.error}" for s in spawns.values() if s.error],
    )


async def stop_all(hub: Hub, users: list[str], timeout: float = 600) -> float:
    """Stop every user's server and wait until the hub lists none; returns the seconds taken."""
    started = time.monotonic()
    async with api_client(hub, len(users)) as c:
        active = await active_servers(c)

        async def stop(user: str) -> None:
            r = await c.delete(f"/hub/api/users/{user}/server")
            if r.status_code not in (202, 204, 400, 404):
                print(f"  stopping {user}: {r.status_code} {r.text}", file=sys.stderr)

        await asyncio.gather(*(stop(u) for u in users if u in active))
        while time.monotonic() - started < timeout:
            if not await active_servers(c):
                break
            await asyncio.sleep(0.5)
        else:
            print(f"  servers still active after {timeout:.0f}s", file=sys.stderr)
    return time.monotonic() - started


def tfspawner_containers(client, hub_name: str):
    return client.containers.list(
        all=True, filters={"label": f"{containerspec.LABEL_HUB}={hub_name}"}
    )


def tfspawner_volumes(client, hub_name: str):
    return client.volumes.list(filters={"label": f"{containerspec.LABEL_HUB}={hub_name}"})


def prefixed_containers(client, prefix: str):
    # The engine's name filter is a substring match; check the prefix exactly.
    return [
        c
        for c in client.containers.list(all=True, filters={"name": prefix})
        if c.name.startswith(prefix)
    ]


def remove_all(containers=(), volumes=()) -> int:
    """Remove what a benchmark left; returns how many objects were removed."""
    removed = 0
    for container in containers:
        try:
            container.remove(force=True)
            removed += 1
        except Exception as e:  # already gone, or removal in progress
            if "No such container" not in str(e) and "already in progress" not in str(e):
                print(f"  could not remove container {container.name}: {e}", file=sys.stderr)
    for volume in volumes:
        try:
            volume.remove(force=True)
            removed += 1
        except Exception as e:
            print(f"  could not remove volume {volume.name}: {e}", file=sys.stderr)
    return removed
