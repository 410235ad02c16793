"""GPU storm: M users ask for a GPU at once from a pool of K.

Prints, for each round: how many spawns were granted and refused (and whether
every refusal said the GPUs are in use), double allocations read back from the
engine (each running container's DeviceRequests and NVIDIA_VISIBLE_DEVICES),
and the GPUs the hub's pool still holds after every server was stopped. The
last two must be 0; everything is printed, nothing is asserted.

    .venv/bin/python benchmarks/gpu_storm.py [--m 20] [--k 4] [--rounds 3] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import common
import docker

from tfspawner import containerspec

REFUSAL = "GPUs are in use"


def gpu_config(m: int, k: int, image: str) -> str:
    profiles = [
        {"slug": "cpu", "display_name": "CPU", "image": "small", "default": True},
        {"slug": "gpu", "display_name": "1 GPU", "image": "small", "gpus": 1},
    ]
    return (
        f"c.JupyterHub.concurrent_spawn_limit = {m + 10}\n"
        "c.Spawner.start_timeout = 900\n"
        "c.Spawner.http_timeout = 900\n"
        f"c.TFSpawner.images = {{'small': {image!r}}}\n"
        "c.TFSpawner.notebook_dir = '/home/jovyan'\n"
        f"c.TFSpawner.profiles = {profiles!r}\n"
        f"c.TFSpawner.gpu_pool = {[str(i) for i in range(k)]!r}\n"
    )


@dataclass
class Engine:
    """GPU ids as the engine reports them for the hub's running containers."""

    holders: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    mismatches: list[str] = field(default_factory=list)  # DeviceIDs and env disagree
    running: int = 0

    @property
    def double_allocations(self) -> int:
        return sum(1 for names in self.holders.values() if len(names) > 1)


def read_engine(client, hub_name: str) -> Engine:
    engine = Engine()
    for container in common.tfspawner_containers(client, hub_name):
        attrs = client.api.inspect_container(container.id)
        if not attrs["State"]["Running"]:
            continue
        engine.running += 1
        requests = attrs["HostConfig"].get("DeviceRequests") or []
        device_ids = [i for r in requests for i in (r.get("DeviceIDs") or [])]
        env = dict(e.split("=", 1) for e in attrs["Config"].get("Env") or [] if "=" in e)
        visible = env.get("NVIDIA_VISIBLE_DEVICES", "")
        env_ids = [] if visible in ("", containerspec.NO_GPU) else visible.split(",")
        if sorted(device_ids) != sorted(env_ids):
            engine.mismatches.append(f"{container.name}: DeviceIDs {device_ids}, env {visible!r}")
        # Either source holding an id counts, so a mismatch cannot hide a double allocation.
        for gpu in set(device_ids) | set(env_ids):
            engine.holders[gpu].add(container.name)
    return engine


async def pool_view(hub) -> dict:
    async with common.api_client(hub, 1) as c:
        r = await c.get("/hub/api/tfspawner/gpus")
        r.raise_for_status()
        return r.json()


def held(view: dict) -> int:
    return sum(1 for gpu in view["gpus"] if gpu["held_by"])


@dataclass
class Result:
    round: int
    granted: int
    refused: int
    refused_in_use: int
    failed: int
    grant_p50: float
    grant_max: float
    double: int
    mismatches: list[str]
    pool_held_running: int
    engine_gpus_running: int
    held_after: int
    containers_after: int
    wall: float
    other_errors: list[str]


async def one_round(number: int, hub, users: list[str], client, args) -> Result:
    started = time.monotonic()
    result = await common.storm(hub, users, options={"profile": "gpu"}, timeout=args.timeout)
    accepted = [s for s in result.spawns if s.status in (201, 202)]
    refusals = [s for s in result.spawns if s.status is not None and s.status not in (201, 202)]
    granted = [s for s in accepted if s.ready_at is not None]
    engine = read_engine(client, hub.hub_name)
    running_view = await pool_view(hub)
    await common.stop_all(hub, users)
    after = await pool_view(hub)
    left = common.tfspawner_containers(client, hub.hub_name)
    times = [s.time_to_ready for s in granted]
    return Result(
        round=number,
        granted=len(granted),
        refused=len(refusals),
        refused_in_use=sum(1 for s in refusals if REFUSAL in s.message),
        failed=len(result.spawns) - len(granted) - len(refusals),
        grant_p50=common.percentile(times, 50),
        grant_max=max(times, default=float("nan")),
        double=engine.double_allocations,
        mismatches=engine.mismatches,
        pool_held_running=held(running_view),
        engine_gpus_running=len(engine.holders),
        held_after=held(after),
        containers_after=len(left),
        wall=time.monotonic() - started,
        other_errors=[
            f"{s.user}: {s.error}"
            for s in result.spawns
            if s.error and not (s in refusals and REFUSAL in s.message)
        ],
    )


HEADER = [
    "round",
    "granted",
    "refused",
    f"refusals saying '{REFUSAL}'",
    "other failures",
    "time to ready p50 s",
    "max s",
    "double allocations",
    "DeviceIDs/env mismatches",
    "GPUs held (pool / engine) while running",
    "GPUs held after teardown",
    "containers left",
    "round wall s",
]


def cells(r: Result) -> list[str]:
    return [
        str(r.round),
        str(r.granted),
        str(r.refused),
        str(r.refused_in_use),
        str(r.failed),
        common.fmt(r.grant_p50),
        common.fmt(r.grant_max),
        str(r.double),
        str(len(r.mismatches)),
        f"{r.pool_held_running} / {r.engine_gpus_running}",
        str(r.held_after),
        str(r.containers_after),
        common.fmt(r.wall, 1),
    ]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=20, help="concurrent GPU spawns (default 20)")
    parser.add_argument("--k", type=int, default=4, help="GPUs in the pool (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds a round's spawns may take"
    )
    return parser.parse_args(argv)


async def main(argv=None) -> None:
    args = parse_args(argv)
    env = common.testbed_env()
    client = docker.from_env(timeout=300)
    label = env.get("TFSPAWNER_TEST_GPU_LABEL", "")
    if label and label not in (client.info().get("Labels") or []):
        print(
            f"warning: the engine lacks the label {label}: without the stand-in NVIDIA hook "
            "(or real GPUs) granted containers fail to start",
            file=sys.stderr,
        )
    workdir = Path(tempfile.mkdtemp(prefix="tfspawner-gpu-storm-"))
    name = common.bench_name("gpu")
    users = [f"g{i:03d}" for i in range(args.m)]
    results: list[Result] = []
    hub = None
    try:
        hub = common.start_hub(
            workdir / "hub",
            env["TFSPAWNER_TEST_HUB_IP"],
            name,
            gpu_config(args.m, args.k, env["TFSPAWNER_TEST_IMAGE"]),
        )
        await common.create_users(hub, users)
        for number in range(1, args.rounds + 1):
            await common.wait_quiet(longest=30)
            print(f"# round {number} ...", file=sys.stderr, flush=True)
            results.append(await one_round(number, hub, users, client, args))
    finally:
        if hub is not None:
            hub.stop()
        common.remove_all(
            common.tfspawner_containers(client, name), common.tfspawner_volumes(client, name)
        )
    print("\n".join(common.machine(client)))
    print(f"image: {env['TFSPAWNER_TEST_IMAGE']}")
    print(f"hub log: {workdir / 'hub' / 'jupyterhub.log'}")
    print(
        f"{args.m} concurrent spawns of a 1-GPU profile against a pool of {args.k}, "
        f"{args.rounds} round(s); all servers stopped between rounds.\n"
        "double allocations: GPU ids that more than one running container holds, by its "
        "HostConfig.DeviceRequests DeviceIDs or its NVIDIA_VISIBLE_DEVICES (must be 0).\n"
        "GPUs held after teardown: from /hub/api/tfspawner/gpus once every server "
        "stopped (must be 0).\n"
    )
    print(common.table(HEADER, [cells(r) for r in results], args.markdown))
    for r in results:
        for line in r.mismatches[:5] + r.other_errors[:5]:
            print(f"  round {r.round}: {line}")


if __name__ == "__main__":
    asyncio.run(main())
