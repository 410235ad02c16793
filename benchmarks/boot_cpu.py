"""CPU one single-user server needs to boot, per image, on the TF stand-in's base.

Starts ``jupyterhub-singleuser`` in a container limited to one CPU
(``--cpus 1``), as a non-root uid, and polls its HTTP port from the host;
at the first HTTP answer it reads the container's CPU use from its cgroup
(cpuacct.usage on cgroup v1). That is the CPU-seconds from container start
to the first answer: the interpreter, every import, extension loading and
the first request. A stand-in hub on the host answers the server's calls to
the hub API, so nothing waits on the network. Runs are interleaved (A B C,
C B A, ...) and each waits for an idle host. Prints the figures per run,
medians and ratios; nothing is asserted.

The images, all Debian bullseye, Python 3.9 and tensorflow-cpu 2.9.3:

- light: the test bed's TF stand-in (``TFSPAWNER_TEST_TF_IMAGE``), built
  with the light recipe of deploy/images (``deploy/images/light``);
- plain: ``pip install jupyterhub notebook`` and nothing else
  (``images/plain-singleuser``, built on demand);
- before: the TF stand-in as its recipe was before the light recipe
  (built on demand from git).

    sudo .venv/bin/python benchmarks/boot_cpu.py [--repeat 5] [--markdown]
    sudo .venv/bin/python benchmarks/boot_cpu.py --image NAME=REF ...  # other images
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import common
import docker
import httpx

USER = "bench"
PREFIX = f"/user/{USER}/"


class FakeHub(BaseHTTPRequestHandler):
    """Answers the single-user server's calls to the hub API (version, activity)."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"version": "5.5.4"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def fake_hub(hub_ip: str):
    """A stand-in hub API on ``hub_ip`` while inside; yields its URL."""
    server = ThreadingHTTPServer((hub_ip, 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{hub_ip}:{server.server_address[1]}"
    finally:
        server.shutdown()


def testbed(*args: str) -> str:
    out = subprocess.run(
        [str(common.REPO / "scripts" / "testbed"), *args], capture_output=True, text=True
    )
    if out.returncode != 0:
        sys.exit(f"scripts/testbed {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def before_light_rev() -> str:
    """The commit before the one that gave the TF stand-in the light recipe."""
    added = subprocess.run(
        ["git", "log", "--format=%H", "-S", "COPY light", "--", "images/tf-standin/Dockerfile"],
        capture_output=True,
        text=True,
        cwd=common.REPO,
    ).stdout.split()
    if not added:
        sys.exit("no commit adds the light recipe to images/tf-standin: pass --image before=REF")
    return f"{added[-1]}^"


def singleuser_environment(hub_url: str) -> dict[str, str]:
    """What the hub would give a single-user server, pointed at ``hub_url``."""
    token = secrets.token_hex(16)
    return {
        "JUPYTERHUB_API_TOKEN": token,
        "JPY_API_TOKEN": token,
        "JUPYTERHUB_API_URL": f"{hub_url}/hub/api",
        "JUPYTERHUB_ACTIVITY_URL": f"{hub_url}/hub/api/users/{USER}/activity",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888{PREFIX}",
        "JUPYTERHUB_USER": USER,
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{USER}",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{PREFIX}oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": json.dumps([f"access:servers!server={USER}/"]),
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([f"access:servers!server={USER}/"]),
        "JUPYTERHUB_HOST": "",
        "HOME": "/tmp",
    }


async def boot_once(client, image: str, hub_url: str, timeout: float) -> tuple[float, float]:
    """(CPU-seconds, wall seconds) from container start to the first HTTP answer."""
    env = singleuser_environment(hub_url)
    container = client.containers.create(
        image,
        ["jupyterhub-singleuser", "--ip=0.0.0.0", "--port=8888"],
        environment=env,
        user="4242:100",
        working_dir="/tmp",
        nano_cpus=1_000_000_000,
        network_mode="bridge",
        labels={"tfspawner.benchmark": "boot_cpu"},
    )
    try:
        container.start()
        started = time.monotonic()
        container.reload()
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        url = f"http://{ip}:8888{PREFIX}api"
        async with httpx.AsyncClient(timeout=1) as http:
            while time.monotonic() - started < timeout:
                try:
                    await http.get(url)
                except httpx.TransportError:
                    await asyncio.sleep(0.02)
                    continue
                cpu = common.container_cpu_seconds(container.id)
                return cpu, time.monotonic() - started
        container.reload()
        logs = container.logs(tail=20).decode(errors="replace")
        sys.exit(f"{image} did not answer HTTP within {timeout}s ({container.status}):\n{logs}")
    finally:
        container.remove(force=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


async def run(args) -> None:
    env = common.testbed_env()
    client = docker.from_env()
    images: dict[str, str] = {}
    for spec in args.image or []:
        name, _, ref = spec.partition("=")
        images[name] = ref
    if not args.image:
        images = {
            "light": env["TFSPAWNER_TEST_TF_IMAGE"],
            "plain": testbed("build-image", "plain-singleuser"),
            "before": testbed("build-image", "tf-standin", args.before_rev or before_light_rev()),
        }
    names = list(images)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    with fake_hub(env["TFSPAWNER_TEST_HUB_IP"]) as hub_url:
        # One untimed boot each, so the image's files are in the page cache.
        for name in names:
            await boot_once(client, images[name], hub_url, args.timeout)
        for rep in range(args.repeat):
            for name in names if rep % 2 == 0 else reversed(names):
                await common.wait_quiet()
                c, w = await boot_once(client, images[name], hub_url, args.timeout)
                cpu[name].append(c)
                wall[name].append(w)
                print(f"  {name:8} run {rep + 1}: {c:.2f} CPU s, {w:.2f} s", file=sys.stderr)

    for line in common.machine(client):
        print(line)
    for name in names:
        print(f"{name}: {images[name]}")
    print(f"--cpus 1, {args.repeat} runs each, interleaved\n")
    ref = "plain" if "plain" in names else names[0]
    header = ["image", "CPU s p50", "min", "max", "wall s p50", f"CPU vs {ref}"]
    if "before" in names:
        header.append("CPU vs before")
    body = []
    for name in names:
        row = [
            name,
            common.fmt(median(cpu[name])),
            common.fmt(min(cpu[name])),
            common.fmt(max(cpu[name])),
            common.fmt(median(wall[name])),
            common.fmt(median(cpu[name]) / median(cpu[ref])) + "x",
        ]
        if "before" in names:
            row.append(common.fmt(median(cpu[name]) / median(cpu["before"])) + "x")
        body.append(row)
    print(common.table(header, body, args.markdown))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed boots per image")
    parser.add_argument(
        "--image", action="append", metavar="NAME=REF", help="images to compare instead"
    )
    parser.add_argument("--before-rev", help="git revision of the 'before' TF stand-in")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
