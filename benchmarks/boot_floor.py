"""How soon N single-user servers can be ready on this host, with no hub at all.

A floor for any spawner's login storm. N ``jupyterhub-singleuser`` containers
of one image are started straight on the engine, with a stand-in hub API,
and each is ready at its first HTTP answer (polled on the container's own
address, a few bytes per look). Time to ready counts from the moment the
whole batch is asked for, so time waiting for a slot counts. One batch per
schedule:

- ``all``: every container started at once, as DockerSpawner does;
- ``S``: at most S servers booting at a time, first come first served, a
  slot held from the container's creation until its first answer (the issue's
  prototype queue, without the hub);
- ``S+priority``: the same, with TFSpawner's boot priority
  (``tfspawner.bootweights``: the oldest boot at the normal CPU weight, each
  younger one at half the one before).

No hub, proxy or spawner spends CPU here, so a schedule's figures are about
the best any spawner could do with it on this machine; the ratios against
``all`` bound what a boot queue can win over DockerSpawner on the same image.
Schedules run in ABBA order, each after the host is idle. Prints p50 and max
per schedule and repeat, their ratios against ``all`` of the same repeat,
server CPU per boot (at its first answer), and the host's CPU-seconds over
the batch, both those spent and those its hypervisor stole (a virtual
machine's CPUs can run slower for minutes); nothing is asserted.

    .venv/bin/python benchmarks/boot_floor.py [--n 50] [--schedule all,4,4+priority] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import common
import docker
from boot_cpu import PREFIX, fake_hub, singleuser_environment

from tfspawner.bootweights import BootWeights

LABEL = "tfspawner.benchmark"


@dataclass
class Batch:
    schedule: str
    ready: list[float]
    cpu: list[float]
    host: common.HostCPU

    @property
    def p50(self) -> float:
        return statistics.median(self.ready)

    @property
    def max(self) -> float:
        return max(self.ready)


def parse_schedule(text: str) -> tuple[int | None, bool]:
    """(slots, priority): ``all`` is (None, False), ``4+priority`` is (4, True)."""
    slots, _, extra = text.partition("+")
    if extra not in ("", "priority"):
        raise argparse.ArgumentTypeError(f"unknown schedule {text!r}")
    if slots == "all":
        return None, extra == "priority"
    return int(slots), extra == "priority"


async def answers(ip: str) -> bool:
    """Whether the server at ``ip`` gives an HTTP status line."""
    try:
        reader, writer = await asyncio.open_connection(ip, 8888)
    except OSError:
        return False
    try:
        writer.write(f"GET {PREFIX}api HTTP/1.0\r\n\r\n".encode())
        await writer.drain()
        return (await reader.readline()).startswith(b"HTTP/")
    except OSError:
        return False
    finally:
        writer.close()


class Engine:
    """docker-py's blocking calls in a thread pool of their own."""

    def __init__(self, api: docker.APIClient, threads: int):
        self.api = api
        self.pool = ThreadPoolExecutor(threads)

    async def __call__(self, method: str, *args, **kwargs):
        call = getattr(self.api, method)
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, lambda: call(*args, **kwargs)
        )


async def run_batch(engine: Engine, image: str, hub_url: str, n: int, schedule: str, timeout):
    slots, priority = parse_schedule(schedule)
    gate = asyncio.Semaphore(slots or n)
    weights = BootWeights(lambda cid, shares: engine("update_container", cid, cpu_shares=shares))
    ready: list[float] = []
    cpu: list[float] = []
    made: list[str] = []
    host_before = common.HostCPU.now()
    begun = time.monotonic()

    async def boot(index: int) -> None:
        async with gate:
            container = await engine(
                "create_container",
                image,
                ["jupyterhub-singleuser", "--ip=0.0.0.0", "--port=8888"],
                environment=singleuser_environment(hub_url),
                user="4242:100",
                working_dir="/tmp",
                labels={LABEL: "boot_floor"},
                host_config=engine.api.create_host_config(network_mode="bridge"),
            )
            cid = container["Id"]
            made.append(cid)
            await engine("start", cid)
            if priority:
                await weights.started(index, cid)
            ip = (await engine("inspect_container", cid))["NetworkSettings"]["IPAddress"]
            while not await answers(ip):
                if time.monotonic() - begun > timeout:
                    raise RuntimeError(f"server {index} did not answer within {timeout} s")
                await asyncio.sleep(0.05)
            ready.append(time.monotonic() - begun)
            cpu.append(common.container_cpu_seconds(cid))
            if priority:
                await weights.ended(index, running=True)

    try:
        await asyncio.gather(*(boot(i) for i in range(n)))
        host = common.HostCPU.now() - host_before
        return Batch(schedule, sorted(ready), cpu, host)
    finally:
        await asyncio.gather(
            *(engine("remove_container", cid, force=True) for cid in made),
            return_exceptions=True,
        )


def leftovers(api: docker.APIClient) -> None:
    for container in api.containers(all=True, filters={"label": f"{LABEL}=boot_floor"}):
        api.remove_container(container["Id"], force=True)


async def run(args) -> None:
    env = common.testbed_env()
    api = docker.APIClient(base_url=env.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    engine = Engine(api, args.engine_threads)
    image = args.image or env["TFSPAWNER_TEST_IMAGE"]
    schedules = args.schedule.split(",")
    if "all" not in schedules:
        schedules.insert(0, "all")
    for schedule in schedules:
        parse_schedule(schedule)
    batches: list[tuple[int, Batch]] = []
    try:
        with fake_hub(env["TFSPAWNER_TEST_HUB_IP"]) as hub_url:
            # One untimed boot, so the image's files are in the page cache.
            await run_batch(engine, image, hub_url, 1, "all", args.timeout)
            for rep in range(args.repeat):
                for schedule in schedules if rep % 2 == 0 else reversed(schedules):
                    idle = await common.wait_quiet()
                    batch = await run_batch(engine, image, hub_url, args.n, schedule, args.timeout)
                    batches.append((rep, batch))
                    print(
                        f"  repeat {rep + 1} {schedule:>12}: p50 {batch.p50:.2f} s, "
                        f"max {batch.max:.2f} s (host {idle:.0%} idle before)",
                        file=sys.stderr,
                    )
    finally:
        leftovers(api)

    for line in common.machine(docker.from_env()):
        print(line)
    print(f"image {image}, N = {args.n}, engine threads {args.engine_threads}\n")
    header = ["repeat", "schedule", "p50 s", "max s", "p50 vs all", "max vs all", "CPU s/boot"]
    header += ["host CPU s", "stolen s"]
    body = []
    for rep, batch in batches:
        base = next(b for r, b in batches if r == rep and b.schedule == "all")
        body.append(
            [
                str(rep + 1),
                batch.schedule,
                common.fmt(batch.p50),
                common.fmt(batch.max),
                common.fmt(batch.p50 / base.p50) + "x",
                common.fmt(batch.max / base.max) + "x",
                common.fmt(statistics.median(batch.cpu)),
                common.fmt(batch.host.busy, 1),
                common.fmt(batch.host.steal, 1),
            ]
        )
    print(common.table(header, body, args.markdown))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="servers per batch")
    parser.add_argument(
        "--schedule",
        default="all,2,4,4+priority",
        help="comma-separated: all, S (slots) or S+priority; all is always included",
    )
    parser.add_argument("--repeat", type=int, default=2, help="batches per schedule, ABBA")
    parser.add_argument("--image", help="the image (default TFSPAWNER_TEST_IMAGE)")
    parser.add_argument("--engine-threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
