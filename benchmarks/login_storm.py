"""Login storm: N users spawn at once, TFSpawner against plain DockerSpawner.

Prints, for each spawner, N and round: time to ready (p50, p95, max, in seconds
from the POST to the server being ready in the hub's REST model), failures,
and the hub process's CPU seconds per spawn, then the TFSpawner/DockerSpawner
ratios. Figures only: nothing here passes or fails on a timing.

    .venv/bin/python benchmarks/login_storm.py [--n 1,10,50,100] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common
import docker

TF, DS = "TFSpawner", "DockerSpawner"


def shared_config(n: int, image: str) -> str:
    # Everything both hubs share: same image, home, removal and network; the
    # bridge network and the hub_ip come from the harness's template.
    return (
        f"c.JupyterHub.concurrent_spawn_limit = {n + 10}\n"
        "c.JupyterHub.active_server_limit = 0\n"
        "c.Spawner.start_timeout = 900\n"
        "c.Spawner.http_timeout = 900\n"
        f"c.DockerSpawner.image = {image!r}\n"
        "c.DockerSpawner.notebook_dir = '/home/jovyan'\n"
        "c.DockerSpawner.remove = True\n"
        "c.DockerSpawner.network_name = 'bridge'\n"
        "c.DockerSpawner.pull_policy = 'ifnotpresent'\n"
    )


def tfspawner_config(n: int, image: str) -> str:
    return (
        shared_config(n, image)
        + f"c.TFSpawner.image = {image!r}\nc.TFSpawner.notebook_dir = '/home/jovyan'\n"
    )


def dockerspawner_config(n: int, image: str, prefix: str) -> str:
    # Later assignments win: this replaces the template's "tfspawner".
    return shared_config(n, image) + (
        f"c.JupyterHub.spawner_class = 'docker'\nc.DockerSpawner.prefix = {prefix!r}\n"
    )


@dataclass
class Side:
    spawner: str
    hub: common.Hub
    name: str  # TFSpawner's hub_name, or DockerSpawner's container prefix

    def leftovers(self, client, volumes: bool):
        if self.spawner == TF:
            return (
                common.tfspawner_containers(client, self.name),
                common.tfspawner_volumes(client, self.name) if volumes else [],
            )
        return common.prefixed_containers(client, self.name + "-"), []


@dataclass
class Row:
    n: int
    round: str
    spawner: str
    p50: float
    p95: float
    max: float
    failures: int
    cpu_per_spawn: float
    wall: float
    teardown: float
    polls: int
    load: float
    errors: list[str]


def row_of(n: int, round_: str, side: Side, result: common.Storm, teardown: float) -> Row:
    times = result.times
    return Row(
        n=n,
        round=round_,
        spawner=side.spawner,
        p50=common.percentile(times, 50),
        p95=common.percentile(times, 95),
        max=max(times) if times else math.nan,
        failures=result.failures,
        cpu_per_spawn=result.hub_cpu / n,
        wall=result.wall,
        teardown=teardown,
        polls=result.polls,
        load=result.load_before,
        errors=result.errors,
    )


async def run_n(n: int, index: int, env: dict, client, workdir: Path, args) -> list[Row]:
    image, hub_ip = env["TFSPAWNER_TEST_IMAGE"], env["TFSPAWNER_TEST_HUB_IP"]
    tf_name, ds_prefix = common.bench_name("tf"), common.bench_name("ds")
    sides: list[Side] = []
    rows: list[Row] = []
    users = [f"u{i:03d}" for i in range(n)]
    try:
        tf_hub = common.start_hub(workdir / f"n{n}-tf", hub_ip, tf_name, tfspawner_config(n, image))
        sides.append(Side(TF, tf_hub, tf_name))
        ds_hub = common.start_hub(
            workdir / f"n{n}-ds", hub_ip, common.bench_name("dshub"),
            dockerspawner_config(n, image, ds_prefix),
        )
        sides.append(Side(DS, ds_hub, ds_prefix))
        for side in sides:
            await common.create_users(side.hub, users)

        # ABBA: each spawner goes first for half the N values and the cold
        # rounds sit between the warm ones, so drift on a noisy host cancels.
        a, b = sides if index % 2 == 0 else sides[::-1]
        plan = [(a, "cold"), (b, "cold")]
        if args.warm:
            plan += [(b, "warm"), (a, "warm")]
        for side, round_ in plan:
            await asyncio.sleep(args.settle)
            print(f"# N={n} {side.spawner} {round_} ...", file=sys.stderr, flush=True)
            result = await common.storm(side.hub, users, timeout=args.timeout)
            teardown = await common.stop_all(side.hub, users)
            last = round_ == "warm" or not args.warm
            containers, volumes = side.leftovers(client, volumes=last)
            common.remove_all(containers, volumes)
            row = row_of(n, round_, side, result, teardown)
            rows.append(row)
            print(
                f"#   p50 {row.p50:.2f}s max {row.max:.2f}s failures {row.failures} "
                f"hub CPU/spawn {row.cpu_per_spawn:.3f}s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        for side in sides:
            side.hub.stop()
            common.remove_all(*side.leftovers(client, volumes=True))
    return rows


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def ratio(a: float, b: float) -> str:
    if any(v is None or math.isnan(v) for v in (a, b)) or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


COLUMNS = [
    ("N", lambda r: str(r.n)),
    ("round", lambda r: r.round),
    ("spawner", lambda r: r.spawner),
    ("p50 s", lambda r: fmt(r.p50)),
    ("p95 s", lambda r: fmt(r.p95)),
    ("max s", lambda r: fmt(r.max)),
    ("failures", lambda r: str(r.failures)),
    ("hub CPU s/spawn", lambda r: fmt(r.cpu_per_spawn, 3)),
    ("storm wall s", lambda r: fmt(r.wall, 1)),
    ("teardown s", lambda r: fmt(r.teardown, 1)),
    ("load1 before", lambda r: fmt(r.load, 2)),
]


def ratio_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    keys = sorted({(r.n, r.round) for r in rows}, key=lambda k: (k[0], k[1] != "cold"))
    for n, round_ in keys:
        by = {r.spawner: r for r in rows if (r.n, r.round) == (n, round_)}
        if TF not in by or DS not in by:
            continue
        t, d = by[TF], by[DS]
        out.append(
            [
                str(n),
                round_,
                ratio(t.p50, d.p50),
                ratio(t.p95, d.p95),
                ratio(t.max, d.max),
                f"{t.failures} vs {d.failures}",
                ratio(t.cpu_per_spawn, d.cpu_per_spawn),
                ratio(t.wall, d.wall),
            ]
        )
    return out


RATIO_HEADER = ["N", "round", "p50", "p95", "max", "failures", "hub CPU/spawn", "storm wall"]


def table(header: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def machine(client) -> list[str]:
    import dockerspawner
    import jupyterhub

    mem_kb = int(
        next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1]
    )
    return [
        f"machine: {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPUs, "
        f"{mem_kb / 1024**2:.1f} GiB RAM, {platform.platform()}",
        f"docker engine {client.version()['Version']}, jupyterhub {jupyterhub.__version__}, "
        f"dockerspawner {dockerspawner.__version__}, Python {platform.python_version()}",
    ]


def report(rows: list[Row], env: dict, client, workdir: Path, markdown: bool) -> None:
    print("\n".join(machine(client)))
    print(f"image: {env['TFSPAWNER_TEST_IMAGE']}")
    print(f"hub logs: {workdir}")
    print(
        "time to ready: seconds from the spawn POST until the POST answers 201 or a poll of "
        "/hub/api/users shows the server ready (polled every 0.5 s)."
    )
    print(
        "hub CPU: utime+stime of the jupyterhub process only (not the proxy, dockerd or the "
        "containers), first POST to last spawn, divided by N; includes serving the polls."
    )
    print(
        "cold: first start of each user (TFSpawner creates a volume and runs an init "
        "container); warm: the same users again, volumes already there.\n"
    )
    body = [[get(r) for _, get in COLUMNS] for r in rows]
    print(table([h for h, _ in COLUMNS], body, markdown))
    print("\nTFSpawner / DockerSpawner:\n")
    print(table(RATIO_HEADER, ratio_rows(rows), markdown))
    failed = [r for r in rows if r.errors]
    if failed:
        print("\nfailures (first 5 per round):")
        for r in failed:
            for error in r.errors[:5]:
                print(f"  N={r.n} {r.round} {r.spawner}: {error}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", default="1,10,50", help="comma-separated user counts (default 1,10,50)"
    )
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--no-warm", dest="warm", action="store_false", help="skip the second (warm) rounds"
    )
    parser.add_argument(
        "--settle", type=float, default=10, help="seconds to wait before each storm (default 10)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds a storm may take (default 900)"
    )
    return parser.parse_args(argv)


async def main(argv=None) -> None:
    args = parse_args(argv)
    counts = [int(n) for n in args.n.split(",") if n.strip()]
    env = common.testbed_env()
    client = docker.from_env(timeout=300)
    workdir = Path(tempfile.mkdtemp(prefix="tfspawner-login-storm-"))
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for index, n in enumerate(counts):
            rows += await run_n(n, index, env, client, workdir, args)
    finally:
        print(f"# total {time.monotonic() - started:.0f}s\n", file=sys.stderr)
        if rows:
            report(rows, env, client, workdir, args.markdown)


if __name__ == "__main__":
    asyncio.run(main())
