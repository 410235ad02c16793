"""Running servers outlive the hub's records, and GPUs stay exclusive across hubs on one engine."""

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from tests.harness.gpus import engine_gpus, gpu_config, holders, pool_view
from tfspawner import containerspec

ROOT = Path(__file__).resolve().parents[2]
KEEP = "c.JupyterHub.cleanup_servers = False\n"


def started(hub, docker_client) -> dict:
    """user -> (container id, StartedAt) of the hub's running containers."""
    found = {}
    for container in hub.containers(docker_client):
        container.reload()
        if container.status == "running":
            user = container.labels[containerspec.LABEL_USER]
            found[user] = (container.id, container.attrs["State"]["StartedAt"])
    return found


def tfspawner_cli(hub, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "tfspawner"), *args, "-f", "jupyterhub_config.py"],
        cwd=hub.dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def spawn_with_kernel_state(hub, user: str) -> str:
    await hub.spawn(user, options={"profile": "gpu"})
    kernel = await hub.start_kernel(user)
    await hub.run_code(user, f"remembered = 'kept by {user}'", kernel_id=kernel)
    return kernel


async def assert_adopted(hub, user: str, kernel: str, before: tuple, docker_client, options):
    await hub.create_user(user)
    await hub.spawn(user, options=options)
    assert started(hub, docker_client)[user] == before
    assert await hub.run_code(user, "print(remembered)", kernel_id=kernel) == f"kept by {user}\n"


async def test_lost_database_keeps_and_adopts_running_servers(hub_factory, tf_image, docker_client):
    # The TF image has a kernel, whose state shows the very same server came back.
    hub = hub_factory(gpu_config(tf_image, extra=KEEP))
    for user in ("lost1", "lost2"):
        await hub.create_user(user)
    kernels = {user: await spawn_with_kernel_state(hub, user) for user in ("lost1", "lost2")}
    before = started(hub, docker_client)
    gpus_before = engine_gpus(hub, docker_client)

    hub.stop(signal.SIGKILL)
    (hub.dir / "jupyterhub.sqlite").unlink()
    hub.start()

    # Nothing was removed or restarted, and the GPUs are still held.
    assert started(hub, docker_client) == before
    assert engine_gpus(hub, docker_client) == gpus_before
    print(f"\nlost database: containers before {before}, after {started(hub, docker_client)}")
    view = await pool_view(hub)
    lost = {(s["user"], tuple(s["gpus"])) for s in view["not_known_to_hub"]}
    assert lost == {(user, tuple(ids)) for user, ids in gpus_before.items()}
    assert all(not g["held_by"]["known_to_hub"] for g in view["gpus"] if g["held_by"])
    listing = tfspawner_cli(hub, "gpus")
    assert listing.returncode == 0, listing.stderr
    assert "not known to the hub: lost1" in listing.stdout, listing.stdout

    # A new GPU spawn gets the free GPU, and the next one is refused.
    for user in ("new1", "new2"):
        await hub.create_user(user)
    await hub.spawn("new1", options={"profile": "gpu"})
    held = {i for ids in gpus_before.values() for i in ids}
    assert set(engine_gpus(hub, docker_client)["new1"]).isdisjoint(held)
    r = await hub.request_spawn("new2", options={"profile": "gpu"})
    assert r.status_code == 503, r.text
    assert "All 3 GPUs are in use right now" in r.json()["message"]

    # Each user's next start adopts their container: same id, kernels alive.
    await assert_adopted(hub, "lost1", kernels["lost1"], before["lost1"], docker_client, None)
    await assert_adopted(
        hub, "lost2", kernels["lost2"], before["lost2"], docker_client, {"profile": "gpu"}
    )
    view = await pool_view(hub)
    assert view["not_known_to_hub"] == []
    assert sorted(holders(view).values()) == ["lost1", "lost2", "new1"]
    # Adopted servers are ordinary servers again: stopping frees the GPU.
    await hub.stop_server("lost1")
    assert (await pool_view(hub))["free"] == 1


async def test_restored_database_adopts_servers_started_after_the_backup(
    hub_factory, tf_image, docker_client
):
    hub = hub_factory(gpu_config(tf_image, extra=KEEP))
    for user in ("old", "newer"):
        await hub.create_user(user)
    kernels = {"old": await spawn_with_kernel_state(hub, "old")}
    shutil.copy(hub.dir / "jupyterhub.sqlite", hub.dir / "backup.sqlite")
    kernels["newer"] = await spawn_with_kernel_state(hub, "newer")
    before = started(hub, docker_client)

    hub.stop(signal.SIGKILL)
    shutil.copy(hub.dir / "backup.sqlite", hub.dir / "jupyterhub.sqlite")
    hub.start()

    assert started(hub, docker_client) == before
    view = await pool_view(hub)
    assert [s["user"] for s in view["not_known_to_hub"]] == ["newer"]
    assert sorted(holders(view).values()) == ["newer", "old"]
    async with hub.client() as c:
        assert (await c.get("/user/old/api/status")).status_code == 200
    await assert_adopted(hub, "newer", kernels["newer"], before["newer"], docker_client, None)
    assert (await pool_view(hub))["not_known_to_hub"] == []


async def test_a_different_profile_stops_the_lost_server_first(
    hub_factory, test_image, docker_client
):
    # The spawn request returns at once, so the progress stream has every message.
    extra = KEEP + "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"
    hub = hub_factory(gpu_config(test_image, extra=extra))
    await hub.create_user("switch")
    await hub.spawn("switch", options={"profile": "gpu"})
    hub.stop(signal.SIGKILL)
    (hub.dir / "jupyterhub.sqlite").unlink()
    hub.start()
    await hub.create_user("switch")
    r = await hub.request_spawn("switch", options={"profile": "cpu"})
    assert r.status_code in (201, 202), r.text
    messages = await hub.progress_messages("switch")
    assert any("was still running with another profile" in m for m in messages), messages
    await hub.wait_ready("switch")
    assert engine_gpus(hub, docker_client) == {}
    assert (await pool_view(hub))["free"] == 3


async def test_second_hub_with_the_same_name_refuses_to_start(
    hub_factory, test_image, docker_client
):
    first = hub_factory(gpu_config(test_image, extra=KEEP))
    await first.create_user("keep")
    await first.spawn("keep", options={"profile": "gpu"})
    # A container of the first hub that never started: the second must not sweep it either.
    half_made = docker_client.containers.create(
        test_image,
        ["sleep", "600"],
        labels=containerspec.labels(hub=first.hub_name, user="half", server="", image=test_image),
    )
    before = {c.id for c in first.containers(docker_client)}

    second = hub_factory(gpu_config(test_image, extra=KEEP), hub_name=first.hub_name, run=False)
    with pytest.raises(RuntimeError) as refused:
        second.start()
    assert f"another hub named {first.hub_name!r} is running on this Docker engine" in str(
        refused.value
    )
    assert "TFSpawner.hub_name" in str(refused.value)
    assert {c.id for c in first.containers(docker_client)} == before
    half_made.reload()
    async with first.client() as c:
        assert (await c.get("/user/keep/api/status")).status_code == 200


async def test_two_hubs_with_one_gpu_pool_never_share_a_gpu(hub_factory, test_image, docker_client):
    config = gpu_config(test_image, pool=("0", "1"))
    hubs = [hub_factory(config), hub_factory(config)]
    users = [
        (hub, f"{name}{i}") for hub, name in zip(hubs, ("a", "b"), strict=True) for i in (1, 2)
    ]
    for hub, user in users:
        await hub.create_user(user)
    responses = await asyncio.gather(
        *(hub.request_spawn(user, options={"profile": "gpu"}) for hub, user in users)
    )
    for (hub, user), r in zip(users, responses, strict=True):
        if r.status_code in (201, 202):
            # It may lose its GPU to the other hub after creating its container.
            with contextlib.suppress(AssertionError):
                await hub.wait_ready(user)
        else:
            assert r.status_code == 503, r.text
    await asyncio.sleep(1)
    assigned = {}
    for hub in hubs:
        for user, ids in engine_gpus(hub, docker_client).items():
            assigned[user] = ids
    assert len(assigned) == 2, assigned
    held = sorted(i for ids in assigned.values() for i in ids)
    assert held == ["0", "1"], assigned
    # Each hub counts the other's server as holding its GPU.
    for hub in hubs:
        assert (await pool_view(hub))["free"] == 0


async def test_hub_start_removes_never_started_containers_only(
    hub_factory, test_image, docker_client
):
    hub = hub_factory(gpu_config(test_image, extra=KEEP))
    hub.stop(signal.SIGKILL)
    never_started = docker_client.containers.create(
        test_image,
        ["sleep", "600"],
        labels=containerspec.labels(
            hub=hub.hub_name, user="half", server="", image=test_image, gpu_ids=["0"]
        ),
    )
    running = docker_client.containers.run(
        test_image,
        ["sleep", "600"],
        detach=True,
        user="4242:100",
        environment={"NVIDIA_VISIBLE_DEVICES": "1"},
        device_requests=[
            docker.types.DeviceRequest(driver="nvidia", device_ids=["1"], capabilities=[["gpu"]])
        ],
        labels=containerspec.labels(
            hub=hub.hub_name, user="ghost", server="", image=test_image, gpu_ids=["1"]
        ),
    )
    hub.start()
    with pytest.raises(docker.errors.NotFound):
        never_started.reload()
    running.reload()
    assert running.status == "running"
    view = await pool_view(hub)
    assert holders(view) == {"1": "ghost"}
    assert [s["user"] for s in view["not_known_to_hub"]] == ["ghost"]
    # The admin removes it from the command line; its GPU is free again.
    removed = tfspawner_cli(hub, "gpus", "--remove", "ghost")
    assert removed.returncode == 0, removed.stderr
    assert "GPUs 1 are free again" in removed.stdout
    assert (await pool_view(hub))["free"] == 3


async def test_hub_start_gives_back_the_cpu_weight_of_a_boot_it_weighted_down(
    hub_factory, test_image, docker_client
):
    hub = hub_factory(gpu_config(test_image, extra=KEEP))
    hub.stop(signal.SIGKILL)

    def server(user: str, normal: int, now: int):
        labels = containerspec.labels(hub=hub.hub_name, user=user, server="", image=test_image)
        labels[containerspec.LABEL_CPU_SHARES] = str(normal)
        container = docker_client.containers.run(
            test_image, ["sleep", "600"], detach=True, user="4242:100", labels=labels
        )
        container.update(cpu_shares=now)
        return container

    # The dead hub had weighted one boot down to the floor; the other runs at
    # the weight its admin gave it, which is not the hub's to change.
    cut_short = server("cut-short", 1024, 2)
    admins = server("admins-weight", 512, 512)
    hub.start()
    for container in (cut_short, admins):
        container.reload()
        assert container.status == "running"
    assert cut_short.attrs["HostConfig"]["CpuShares"] == 1024
    assert admins.attrs["HostConfig"]["CpuShares"] == 512
    # The admin is told.
    assert "its CPU weight 1024 back" in hub.log_tail(400)


def test_doctor_reports_a_config_that_raises_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFSPAWNER_")}
    env.update(TFSPAWNER_IMAGE_CPU="registry.example.edu/tf@sha256:" + "a" * 64)
    for command in (["doctor"], ["gpus"], ["images", "pull"]):
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "tfspawner"),
                *command,
                "-f",
                "jupyterhub_config.py",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "Traceback" not in output, output
        assert "TFSPAWNER_ADMIN_USERS is not set" in output, output
        if command == ["doctor"]:
            assert "FAIL  config: " in result.stdout, output
