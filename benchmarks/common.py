"""Shared pieces of the benchmarks: real hubs, concurrent spawns, polling and clean-up.

The hubs come from the integration harness (tests/harness/hubprocess.py),
so a benchmark runs the same jupyterhub, proxy, engine and images as the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.hubprocess import Hub, new_hub  # noqa: E402
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
    if "DOCKER_HOST" in env:
        os.environ["DOCKER_HOST"] = env["DOCKER_HOST"]  # for docker.from_env()
    return env


def _stat_cpu(path: Path) -> float:
    # The command name may contain spaces; fields after it start at field 3 (state).
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, all its threads, not its children (so not the proxy)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def main_thread_cpu_seconds(pid: int) -> float:
    """utime + stime of the process's main thread: the hub's event loop.

    The rest of the hub's CPU is in its threads, mostly DockerSpawner's engine-call executor.
    """
    return _stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def engine_cpu_seconds() -> float:
    """CPU of the engine's daemons (dockerd, containerd), which do the work of every engine
    call: container set-up and teardown, archives. Per-container shims and runc are not
    included: they are gone by the time they could be read."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() in ("dockerd", "containerd"):
                total += _stat_cpu(proc / "stat")
        except OSError:
            continue  # exited while we looked
    return total


def container_cpu_seconds(container_id: str) -> float:
    """CPU a container's processes have used so far, from its cgroup (v1 or v2); nan if unknown."""
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage")
    with contextlib.suppress(OSError, ValueError):
        return int(v1.read_text()) / 1e9
    for v2 in (
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),
        Path(f"/sys/fs/cgroup/docker/{container_id}/cpu.stat"),
    ):
        with contextlib.suppress(OSError, ValueError):
            for line in v2.read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    return math.nan


def _cpu_fields() -> list[int]:
    """The host's line of /proc/stat, in clock ticks: user nice system idle iowait irq
    softirq steal ..."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _cpu_times() -> tuple[int, int]:
    fields = _cpu_fields()
    idle = fields[3] + fields[4]  # idle + iowait
    return idle, sum(fields[:8])


@dataclass(frozen=True)
class HostCPU:
    """The host's CPU-seconds since boot: spent by this machine, and stolen by its hypervisor."""

    busy: float
    steal: float

    @classmethod
    def now(cls) -> HostCPU:
        fields = _cpu_fields()
        tick = os.sysconf("SC_CLK_TCK")
        busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
        return cls(busy / tick, fields[7] / tick)

    def __sub__(self, earlier: HostCPU) -> HostCPU:
        return HostCPU(self.busy - earlier.busy, self.steal - earlier.steal)


async def wait_quiet(min_idle: float = 0.85, window: float = 2.0, longest: float = 60) -> float:
    """Wait until the whole host was at least ``min_idle`` idle over ``window`` seconds.

    Gives up after ``longest`` seconds (other work on the host may never stop);
    returns the idle fraction of the last window, to be reported with the figures.
    """
    deadline = time.monotonic() + longest
    while True:
        idle0, total0 = _cpu_times()
        await asyncio.sleep(window)
        idle1, total1 = _cpu_times()
        idle = (idle1 - idle0) / max(1, total1 - total0)
        if idle >= min_idle or time.monotonic() >= deadline:
            return idle


@contextlib.contextmanager
def profiled(py_spy: str | None, pid: int, output: Path):
    """Sample ``pid`` with py-spy while inside: collapsed stacks of the thread holding the GIL,
    so the samples show where the hub spends CPU in Python rather than where it waits."""
    if not py_spy:
        yield
        return
    proc = subprocess.Popen(
        [
            *(py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--gil"),
            *("--output", str(output), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)  # attach before the first request
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


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
    try:
        hub.start(timeout=120)
    except BaseException:
        hub.stop()  # a hub that never answered may still be running
        raise
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


async def poll_cost(c: httpx.AsyncClient, pid: int, polls: int = 30) -> float:
    """Hub CPU seconds per poll of the user list, with the servers the storm left running."""
    before = cpu_seconds(pid)
    for _ in range(polls):
        await active_servers(c)
    return (cpu_seconds(pid) - before) / polls


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
    hub_cpu_main: float  # the part of hub_cpu spent in the event loop's thread
    poll_cpu: float  # hub CPU seconds one poll of the user list costs, measured after the storm
    engine_cpu: float  # dockerd + containerd CPU seconds over the same span as hub_cpu
    started: float  # time.monotonic(), comparable with the hub's (same host clock)
    wall: float
    polls: int
    idle_before: float  # host idle fraction just before the storm
    host: HostCPU  # the whole host's CPU over the same span as hub_cpu
    errors: list[str] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [s.time_to_ready for s in self.spawns if s.time_to_ready is not None]

    @property
    def hub_cpu_net(self) -> float:
        """Hub CPU less what answering this benchmark's polls cost."""
        return max(0.0, self.hub_cpu - self.polls * self.poll_cpu)

    @property
    def failures(self) -> int:
        return sum(1 for s in self.spawns if s.ready_at is None)


async def storm(
    hub: Hub,
    users: list[str],
    options: dict | None = None,
    poll_interval: float = 1.0,
    timeout: float = 900,
    idle_before: float = math.nan,
) -> Storm:
    """POST one spawn per user at once; follow each until ready or gone.

    A spawn is ready when the hub's REST model says so: in a check right after
    its POST answered, or in a later poll of the hub's user list. It failed
    when the POST is refused or the server leaves the list while pending.
    """
    spawns = {u: Spawn(u) for u in users}
    polls = 0
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
            if r.status_code in (201, 202):
                # 201 is not proof of readiness: jupyterhub 6.1 answers 201 for a server
                # still pending when that server's previous spawn failed (its POST
                # handler holds a replaced spawner). Ask the REST model.
                try:
                    u = await c.get(f"/hub/api/users/{spawn.user}")
                    model = u.json()["servers"].get("") if u.status_code == 200 else None
                except (httpx.HTTPError, ValueError):
                    model = None
                if model and model.get("ready"):
                    spawn.ready_at = time.monotonic()
            else:
                try:
                    spawn.message = r.json().get("message", r.text)
                except ValueError:
                    spawn.message = r.text
                spawn.error = f"POST {r.status_code}: {spawn.message}"

        pid = hub.proc.pid
        cpu_before, main_before = cpu_seconds(pid), main_thread_cpu_seconds(pid)
        engine_before = engine_cpu_seconds()
        host_before = HostCPU.now()
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
        cpu_after, main_after = cpu_seconds(pid), main_thread_cpu_seconds(pid)
        engine_after = engine_cpu_seconds()
        host = HostCPU.now() - host_before
        wall = time.monotonic() - started
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        poll_cpu = await poll_cost(c, pid)
    return Storm(
        spawns=list(spawns.values()),
        hub_cpu=cpu_after - cpu_before,
        hub_cpu_main=main_after - main_before,
        poll_cpu=poll_cpu,
        engine_cpu=engine_after - engine_before,
        started=started,
        wall=wall,
        polls=polls,
        idle_before=idle_before,
        host=host,
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


def prefixed_volumes(client, prefix: str):
    return [v for v in client.volumes.list(filters={"name": prefix}) if v.name.startswith(prefix)]


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


# --- output ---------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def table(header: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def machine(client) -> list[str]:
    import dockerspawner
    import jupyterhub

    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout.strip()

    dirty = (
        " (with uncommitted changes)" if run("git", "status", "--porcelain", "tfspawner") else ""
    )
    return [
        f"tfspawner at {run('git', 'rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}",
        f"machine: {run('nproc')} CPUs, {mem_kb / 1024**2:.1f} GiB RAM, {platform.platform()}",
        f"docker engine {client.version()['Version']}, jupyterhub {jupyterhub.__version__}, "
        f"dockerspawner {dockerspawner.__version__}, Python {platform.python_version()}",
    ]
