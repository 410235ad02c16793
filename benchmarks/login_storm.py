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
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common
import docker
import phasetrace

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


def trace_config(path: Path) -> str:
    return (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        f"__import__('phasetrace').install({str(path)!r})\n"
    )


def engine_threads_config(threads: int) -> str:
    # DockerSpawner funnels every engine call of every spawner through one
    # class-level single-thread executor; TFSpawner has its own pool, sized by
    # TFSpawner.engine_threads.
    return (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from dockerspawner import DockerSpawner\n"
        f"DockerSpawner._executor = ThreadPoolExecutor({threads})\n"
        f"c.TFSpawner.engine_threads = {threads}\n"
    )


def tfspawner_config(n: int, image: str, boot_slots: int | None = None) -> str:
    config = (
        shared_config(n, image)
        + f"c.TFSpawner.image = {image!r}\nc.TFSpawner.notebook_dir = '/home/jovyan'\n"
    )
    if boot_slots is not None:
        config += f"c.TFSpawner.boot_slots = {boot_slots}\n"
    return config


def dockerspawner_config(n: int, image: str, prefix: str, volume: bool = False) -> str:
    # Later assignments win: this replaces the template's "tfspawner".
    config = shared_config(n, image) + (
        f"c.JupyterHub.spawner_class = 'docker'\nc.DockerSpawner.prefix = {prefix!r}\n"
    )
    if volume:
        # DockerSpawner's documented persistent home: a named volume per user,
        # which the engine fills from the image on first mount.
        config += f"c.DockerSpawner.volumes = {{{prefix + '-vol-{username}'!r}: '/home/jovyan'}}\n"
    return config


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
        return (
            common.prefixed_containers(client, self.name + "-"),
            common.prefixed_volumes(client, self.name + "-vol-") if volumes else [],
        )


@dataclass
class Round:
    """One storm: one spawner, one group of N users, cold or warm."""

    n: int
    round: str
    spawner: str
    storm: common.Storm
    teardown: float
    container_cpu: list[float]  # CPU each user container had used when the storm ended


@dataclass
class Row:
    """The rounds of one (N, round, spawner), pooled over --repeat."""

    n: int
    round: str
    spawner: str
    spawns: int
    p50: float
    p95: float
    max: float
    failures: int
    cpu_per_spawn: float
    raw_cpu_per_spawn: float
    thread_share: float
    engine_cpu_per_spawn: float
    container_cpu_per_spawn: float
    host_cpu_per_spawn: float
    stolen_per_spawn: float
    wall: float
    teardown: float
    idle: float
    errors: list[str]
    phases: list[list[str]]


def row_of(rounds: list[Round], trace: Path | None) -> Row:
    first = rounds[0]
    storms = [r.storm for r in rounds]
    times = [t for s in storms for t in s.times]
    spawns = sum(len(s.spawns) for s in storms)
    cpu = sum(s.hub_cpu for s in storms)
    phases = []
    if trace is not None and trace.exists():
        windows = [(s.started, s.started + s.wall) for s in storms]
        phases = phasetrace.summarize(str(trace), windows)
    return Row(
        n=first.n,
        round=first.round,
        spawner=first.spawner,
        spawns=spawns,
        p50=common.percentile(times, 50),
        p95=common.percentile(times, 95),
        max=max(times) if times else math.nan,
        failures=sum(s.failures for s in storms),
        cpu_per_spawn=sum(s.hub_cpu_net for s in storms) / spawns,
        raw_cpu_per_spawn=cpu / spawns,
        thread_share=1 - sum(s.hub_cpu_main for s in storms) / cpu if cpu else math.nan,
        engine_cpu_per_spawn=sum(s.engine_cpu for s in storms) / spawns,
        container_cpu_per_spawn=sum(c for r in rounds for c in r.container_cpu)
        / max(1, sum(len(r.container_cpu) for r in rounds)),
        host_cpu_per_spawn=sum(s.host.busy for s in storms) / spawns,
        stolen_per_spawn=sum(s.host.steal for s in storms) / spawns,
        wall=sum(s.wall for s in storms) / len(storms),
        teardown=sum(r.teardown for r in rounds) / len(rounds),
        idle=min(s.idle_before for s in storms),
        errors=[e for s in storms for e in s.errors],
        phases=phases,
    )


async def run_n(n: int, index: int, env: dict, client, workdir: Path, args) -> list[Row]:
    hub_ip = env["TFSPAWNER_TEST_HUB_IP"]
    tf_image = args.tf_image or env["TFSPAWNER_TEST_IMAGE"]
    ds_image = args.ds_image or env["TFSPAWNER_TEST_IMAGE"]
    tf_name, ds_prefix = common.bench_name("tf"), common.bench_name("ds")
    sides: list[Side] = []
    rounds: list[Round] = []
    traces = {TF: workdir / f"n{n}-tf" / "phases.jsonl", DS: workdir / f"n{n}-ds" / "phases.jsonl"}
    extra = {k: trace_config(v) if args.trace else "" for k, v in traces.items()}
    if args.engine_threads:
        extra = {k: v + engine_threads_config(args.engine_threads) for k, v in extra.items()}
    if args.notebook_dir:
        # Later assignments win over the configs' /home/jovyan.
        extra[TF] += f"c.TFSpawner.notebook_dir = {args.notebook_dir!r}\n"
        extra[DS] += f"c.DockerSpawner.notebook_dir = {args.notebook_dir!r}\n"
    if args.ds_user:
        extra[DS] += f"c.DockerSpawner.extra_create_kwargs = {{'user': {args.ds_user!r}}}\n"
        # The image's home belongs to root; Jupyter writes its runtime files under HOME.
        extra[DS] += "c.DockerSpawner.environment = {'HOME': '/tmp'}\n"
    try:
        tf_hub = common.start_hub(
            workdir / f"n{n}-tf",
            hub_ip,
            tf_name,
            tfspawner_config(n, tf_image, args.boot_slots) + extra[TF],
        )
        sides.append(Side(TF, tf_hub, tf_name))
        ds_hub = common.start_hub(
            workdir / f"n{n}-ds",
            hub_ip,
            common.bench_name("dshub"),
            dockerspawner_config(n, ds_image, ds_prefix, args.dockerspawner_volume) + extra[DS],
        )
        sides.append(Side(DS, ds_hub, ds_prefix))

        for repeat in range(args.repeat):
            # New users each repeat, so every cold round really is a first start.
            users = [f"r{repeat}u{i:03d}" for i in range(n)]
            for side in sides:
                await common.create_users(side.hub, users)
            # ABBA: each spawner goes first in every other block, and the cold
            # rounds sit between the warm ones, so drift on a noisy host cancels.
            a, b = sides if (index + repeat) % 2 == 0 else sides[::-1]
            plan = [(a, "cold"), (b, "cold")]
            if args.warm:
                plan += [(b, "warm"), (a, "warm")]
            for side, round_ in plan:
                idle = await common.wait_quiet(longest=args.settle)
                print(f"# N={n} {side.spawner} {round_} ...", file=sys.stderr, flush=True)
                profile = workdir / f"n{n}-r{repeat}-{side.spawner}-{round_}.pyspy.txt"
                with common.profiled(args.py_spy, side.hub.proc.pid, profile):
                    result = await common.storm(
                        side.hub, users, timeout=args.timeout, idle_before=idle
                    )
                # Read before teardown: the servers' own start-up CPU, taken when the last was ready.
                booted = side.leftovers(client, volumes=False)[0]
                container_cpu = [common.container_cpu_seconds(c.id) for c in booted]
                teardown = await common.stop_all(side.hub, users)
                # Volumes stay for the warm round; containers never should.
                last = round_ == "warm" or not args.warm
                common.remove_all(*side.leftovers(client, volumes=last))
                rounds.append(Round(n, round_, side.spawner, result, teardown, container_cpu))
                times = result.times
                print(
                    f"#   p50 {common.percentile(times, 50):.2f}s "
                    f"max {max(times, default=math.nan):.2f}s failures {result.failures} "
                    f"hub CPU/spawn {result.hub_cpu_net / n:.3f}s "
                    f"server CPU/spawn {sum(container_cpu) / max(1, len(container_cpu)):.2f}s "
                    f"host CPU/spawn {result.host.busy / n:.2f}s "
                    f"stolen {result.host.steal:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for side in sides:
            side.hub.stop()
            common.remove_all(*side.leftovers(client, volumes=True))
    rows = []
    for round_ in ("cold", "warm"):
        for spawner in (TF, DS):
            group = [r for r in rounds if (r.round, r.spawner) == (round_, spawner)]
            if group:
                rows.append(row_of(group, traces[spawner] if args.trace else None))
    return rows


def ratio(a: float, b: float) -> str:
    if any(v is None or math.isnan(v) for v in (a, b)) or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


COLUMNS = [
    ("N", lambda r: str(r.n)),
    ("round", lambda r: r.round),
    ("spawner", lambda r: r.spawner),
    ("spawns", lambda r: str(r.spawns)),
    ("p50 s", lambda r: common.fmt(r.p50)),
    ("p95 s", lambda r: common.fmt(r.p95)),
    ("max s", lambda r: common.fmt(r.max)),
    ("failures", lambda r: str(r.failures)),
    ("hub CPU s/spawn", lambda r: common.fmt(r.cpu_per_spawn, 3)),
    ("(raw)", lambda r: common.fmt(r.raw_cpu_per_spawn, 3)),
    (
        "in threads",
        lambda r: "n/a" if math.isnan(r.thread_share) else f"{r.thread_share:.0%}",
    ),
    ("engine CPU s/spawn", lambda r: common.fmt(r.engine_cpu_per_spawn, 3)),
    ("server CPU s/spawn", lambda r: common.fmt(r.container_cpu_per_spawn, 2)),
    ("host CPU s/spawn", lambda r: common.fmt(r.host_cpu_per_spawn, 2)),
    ("stolen s/spawn", lambda r: common.fmt(r.stolen_per_spawn, 2)),
    ("storm wall s", lambda r: common.fmt(r.wall, 1)),
    ("teardown s", lambda r: common.fmt(r.teardown, 1)),
    ("host idle before", lambda r: f"{r.idle:.0%}"),
]


def ratio_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    keys = dict.fromkeys((r.n, r.round) for r in rows)
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
                ratio(t.engine_cpu_per_spawn, d.engine_cpu_per_spawn),
                ratio(t.container_cpu_per_spawn, d.container_cpu_per_spawn),
                ratio(t.host_cpu_per_spawn, d.host_cpu_per_spawn),
                ratio(t.wall, d.wall),
            ]
        )
    return out


RATIO_HEADER = [
    *("N", "round", "p50", "p95", "max", "failures"),
    *("hub CPU/spawn", "engine CPU/spawn", "server CPU/spawn", "host CPU/spawn", "storm wall"),
]


def report(
    rows: list[Row],
    env: dict,
    client,
    workdir: Path,
    markdown: bool,
    engine_threads: int,
    repeat: int,
    dockerspawner_volume: bool,
    args: argparse.Namespace,
) -> None:
    print("\n".join(common.machine(client)))
    print(f"TFSpawner image: {args.tf_image or env['TFSPAWNER_TEST_IMAGE']}")
    print(f"DockerSpawner image: {args.ds_image or env['TFSPAWNER_TEST_IMAGE']}")
    if args.boot_slots is not None:
        print(f"TFSpawner.boot_slots = {args.boot_slots}")
    print(f"hub logs: {workdir}")
    print(
        "time to ready: seconds from the spawn POST until the hub's REST model shows the "
        "server ready: checked once when the POST answers, then by polling /hub/api/users "
        "(one request a second for all users)."
    )
    print(
        "hub CPU s/spawn: utime+stime of the jupyterhub process only (not the proxy, dockerd "
        "or the containers) from the first POST to the last spawn's end, less the CPU of "
        "answering this script's polls (measured after each storm), divided by N. (raw): "
        "without that deduction. in threads: share of the hub's CPU outside its event loop "
        "thread, i.e. in DockerSpawner's engine-call executor."
    )
    print(
        "engine CPU s/spawn: dockerd + containerd CPU over the same span, divided by N (other "
        "work on the host's engine counts too). server CPU s/spawn: CPU the user containers "
        "had used when the storm ended, from their cgroups. host CPU s/spawn: everything "
        "the host's CPUs did over the same span (/proc/stat), hub, proxy, engine, runtime, "
        "servers and this script included, divided by N; stolen s/spawn: CPU time the "
        "hypervisor gave to others while this host wanted it."
    )
    print(
        "cold: first start of each user (TFSpawner creates a volume and hands it to the "
        "user); warm: the same users again, volumes already there. Round order is ABBA; "
        f"spawns: samples pooled over {repeat} repeat(s)."
    )
    if dockerspawner_volume:
        print(
            "DockerSpawner with a named volume per user at /home/jovyan "
            "(c.DockerSpawner.volumes), like TFSpawner's notebook volume."
        )
    if engine_threads:
        print(
            f"what-if: both hubs' DockerSpawner executor widened to {engine_threads} threads "
            "(stock DockerSpawner and TFSpawner use 1)."
        )
    print()
    body = [[get(r) for _, get in COLUMNS] for r in rows]
    print(common.table([h for h, _ in COLUMNS], body, markdown))
    print("\nTFSpawner / DockerSpawner:\n")
    print(common.table(RATIO_HEADER, ratio_rows(rows), markdown))
    for r in rows:
        if r.phases:
            print(f"\nphases, N={r.n} {r.round} {r.spawner} (hub-side, from --trace):\n")
            print(common.table(phasetrace.SUMMARY_HEADER, r.phases, markdown))
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
        "--repeat",
        type=int,
        default=1,
        help="run each N's ABBA block this many times with new users and pool the figures "
        "(default 1; use more for small N)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=60,
        help="before each storm, wait up to this many seconds for the host to be 85%% idle "
        "(default 60)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="sample the hub with this py-spy binary during each storm; collapsed stacks "
        "are written next to the hub logs",
    )
    parser.add_argument(
        "--dockerspawner-volume",
        action="store_true",
        help="give DockerSpawner a named volume per user at /home/jovyan too, so both "
        "spawners keep notebooks (default: DockerSpawner without one, as it ships)",
    )
    parser.add_argument(
        "--engine-threads",
        type=int,
        default=0,
        metavar="K",
        help="what-if: give both hubs' DockerSpawner a K-thread engine-call executor instead "
        "of its single thread (default: leave it alone)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="time spawn phases and engine calls inside the hubs (adds a little hub CPU)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds a storm may take (default 900)"
    )
    parser.add_argument(
        "--boot-slots",
        type=int,
        help="TFSpawner.boot_slots (default: unset, two slots per engine CPU); a large number "
        "turns the boot queue off",
    )
    parser.add_argument("--tf-image", help="TFSpawner's image (default TFSPAWNER_TEST_IMAGE)")
    parser.add_argument("--ds-image", help="DockerSpawner's image (default TFSPAWNER_TEST_IMAGE)")
    parser.add_argument("--notebook-dir", help="both spawners' notebook_dir (default /home/jovyan)")
    parser.add_argument(
        "--ds-user", help="uid:gid DockerSpawner's containers run as, for images whose USER is root"
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
            report(
                rows,
                env,
                client,
                workdir,
                args.markdown,
                args.engine_threads,
                args.repeat,
                args.dockerspawner_volume,
                args,
            )


if __name__ == "__main__":
    asyncio.run(main())
