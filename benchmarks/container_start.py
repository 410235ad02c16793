"""What starting one container costs the engine, DockerSpawner's way and TFSpawner's.

Creates containers from the test image one at a time on an idle engine and
times only the engine's ``start`` call, for four variants:

- DockerSpawner's container: the image's user, no limits, no volume;
- TFSpawner's host config (``containerspec.host_config``: cap_drop ALL,
  no-new-privileges, pids and memory limits) and a uid, no volume;
- the same with a new notebook volume, mounted ``nocopy``;
- the same with a new volume and the first-start archive put into the
  container before it starts (passwd entry and the volume's hand-over).

The command is ``sleep``, so the server's own boot is not timed. Prints p50
and mean per variant and pass; nothing is asserted.

    .venv/bin/python benchmarks/container_start.py [--n 12] [--passes 2]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

import common
import docker

from tfspawner import archive, containerspec, volumes

NOTEBOOK_DIR = "/home/jovyan"
UID, GID = 4242, 100


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="containers per variant and pass")
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args(argv)
    env = common.testbed_env()
    api = docker.APIClient(base_url=env.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    image = env["TFSPAWNER_TEST_IMAGE"]
    run_id = common.bench_name("start")
    made_volumes: list[str] = []

    def tfspawner_host_config(binds: dict) -> dict:
        return api.create_host_config(
            **containerspec.host_config(
                extra={},
                network_mode="bridge",
                port_bindings={8888: ("127.0.0.1",)},
                binds=binds,
                mounts=[],
                auto_remove=False,
                mem_limit="1G",
                cpu_limit=None,
                pids_limit=512,
                cap_add=[],
                gpu_ids=[],
            )
        )

    def dockerspawner_way(i: int) -> str:
        host = api.create_host_config(port_bindings={8888: ("127.0.0.1",)})
        return api.create_container(image, ["sleep", "600"], ports=[8888], host_config=host)["Id"]

    def tfspawner_way(i: int, volume: bool = False, seeded: bool = False) -> str:
        binds = {}
        if volume:
            name = f"{run_id}-{secrets.token_hex(4)}"
            api.create_volume(name)
            made_volumes.append(name)
            binds = {name: {"bind": NOTEBOOK_DIR, "mode": "rw,nocopy"}}
        container = api.create_container(
            image,
            ["sleep", "600"],
            user=f"{UID}:{GID}",
            ports=[8888],
            host_config=tfspawner_host_config(binds),
        )["Id"]
        if seeded:
            members = [archive.text_file("etc/passwd", f"student:x:{UID}:{GID}::/:/bin/sh\n")]
            members += volumes.seed_members(None, NOTEBOOK_DIR, UID, GID)
            api.put_archive(container, "/", archive.build(members))
        return container

    variants = [
        ("DockerSpawner's container", dockerspawner_way),
        ("TFSpawner's, no volume", tfspawner_way),
        ("TFSpawner's, new volume", lambda i: tfspawner_way(i, volume=True)),
        ("TFSpawner's, new volume + archive", lambda i: tfspawner_way(i, True, True)),
    ]
    rows = []
    try:
        for number in range(1, args.passes + 1):
            for label, create in variants:
                times, made = [], []
                try:
                    for i in range(args.n):
                        made.append(create(i))
                        began = time.monotonic()
                        api.start(made[-1])
                        times.append(time.monotonic() - began)
                finally:
                    for container in made:
                        api.remove_container(container, force=True)
                rows.append(
                    [
                        str(number),
                        label,
                        f"{1000 * statistics.median(times):.0f}",
                        f"{1000 * statistics.mean(times):.0f}",
                    ]
                )
    finally:
        for name in made_volumes:
            api.remove_volume(name, force=True)
    print(common.table(["pass", "variant", "start p50 ms", "start mean ms"], rows, True))


if __name__ == "__main__":
    main()
